import WeftCore

/// One `iptables-restore --noflush` transaction on the nat table.
public struct RestoreTransaction: Equatable, Sendable {
    public var family: IPAddress.Family
    /// Lines between `*nat` and `COMMIT`.
    public var lines: [String]

    public init(family: IPAddress.Family, lines: [String]) {
        self.family = family
        self.lines = lines
    }

    /// Nothing to do (e.g. removing when nothing is installed).
    public var isEmpty: Bool { lines.isEmpty }

    /// The restore input: `*nat`, the lines, `COMMIT`, newline-terminated.
    public var text: String {
        (["*nat"] + lines + ["COMMIT"]).map { $0 + "\n" }.joined()
    }
}
