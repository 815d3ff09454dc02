import WeftCore

/// Runs one backend's `*-save` and `*-restore` tools: the only door to the
/// kernel, so that tests can replace it with a fake.
public protocol IPTablesExecutor: Sendable {
    /// Whether the save and restore tools of `family` are installed.
    func isAvailable(_ family: IPAddress.Family) -> Bool
    /// `iptables-save [-t table]` output.
    func save(_ family: IPAddress.Family, table: String?) throws -> String
    /// `iptables-restore --noflush` with `text` on stdin: one atomic transaction.
    func restore(_ family: IPAddress.Family, _ text: String) throws
}
