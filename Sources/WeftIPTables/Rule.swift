/// One iptables rule: `-A <chain> <matches> -m comment --comment "weft/..." <target>`.
///
/// Tokens are kept unquoted and in the order `iptables-save` prints them
/// (addresses, interface, protocol, match modules, comment, target), so a
/// rule reads back from `iptables-save` with the same tokens.
public struct Rule: Hashable, Sendable {
    /// The chain the rule is appended to (`WEFT_OUTPUT`, `PREROUTING`, ...).
    public var chain: String
    /// Match tokens, e.g. `["-p", "tcp", "-m", "tcp", "--dport", "22"]`.
    public var matches: [String]
    /// The comment, always starting with `weft/`.
    public var comment: String
    /// Target tokens, e.g. `["-j", "RETURN"]`.
    public var target: [String]

    public init(chain: String, matches: [String] = [], comment: String, target: [String]) {
        self.chain = chain
        self.matches = matches
        self.comment = comment
        self.target = target
    }

    /// Everything after the chain name, unquoted.
    public var specification: [String] {
        matches + ["-m", "comment", "--comment", comment] + target
    }

    /// The chain this rule jumps to (`-j` or `-g`), if any.
    public var jumpTarget: String? {
        guard target.count >= 2, target[0] == "-j" || target[0] == "-g" else { return nil }
        return target[1]
    }

    /// The restore line, e.g. `-A WEFT_INBOUND -p tcp ... -j RETURN`.
    /// `command` is `-A` (append) or `-D` (delete).
    public func rendered(_ command: String = "-A") -> String {
        let quotedComment = "\"\(comment)\""
        let parts = [command, chain] + matches + ["-m", "comment", "--comment", quotedComment] + target
        return parts.joined(separator: " ")
    }
}
