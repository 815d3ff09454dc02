import WeftCore

/// `--dry-run` output: per family, a `#` header line and the transaction.
///
/// Each family's section is by itself valid `iptables-restore --noflush`
/// (resp. `ip6tables-restore`) input; `iptables/rules.v4` and `rules.v6`
/// are these sections for the default flags.
public enum DryRun {
    /// The transaction `action` would apply to a namespace holding nothing
    /// of weft's (install), or holding exactly these rules (remove).
    public static func transaction(_ options: InterceptionOptions, action: InitAction,
                                   family: IPAddress.Family) -> RestoreTransaction {
        let rules = RuleSet(options: options, family: family)
        switch action {
        case .install: return TransactionPlanner.install(rules, over: NatTableSnapshot())
        case .remove: return TransactionPlanner.remove(from: NatTableSnapshot(installed: rules), family: family)
        }
    }

    /// One family's section.
    public static func section(_ options: InterceptionOptions, action: InitAction,
                               family: IPAddress.Family) -> String {
        header(action: action, family: family) + transaction(options, action: action, family: family).text
    }

    /// Every family's section, IPv4 first.
    public static func render(_ options: InterceptionOptions, action: InitAction,
                              families: [IPAddress.Family]) -> String {
        families.map { section(options, action: action, family: $0) }.joined()
    }

    static func header(action: InitAction, family: IPAddress.Family) -> String {
        let tool = "\(Backend.prefix(family))-restore --noflush"
        switch action {
        case .install: return "# weft init: \(family.displayName) rules, input for \(tool)\n"
        case .remove: return "# weft init --remove: \(family.displayName) rules, input for \(tool)\n"
        }
    }
}

extension IPAddress.Family {
    /// `IPv4` or `IPv6`.
    var displayName: String { self == .ipv4 ? "IPv4" : "IPv6" }
}
