import WeftCore

/// An iptables implementation: the same rule language over two kernel APIs.
public enum Backend: String, CaseIterable, Sendable {
    /// x_tables (`iptables-legacy-*`).
    case legacy
    /// nf_tables (`iptables-nft-*`), the Debian 12 default.
    case nft

    /// `iptables-nft-save`, `ip6tables-legacy-save`, ...
    public func saveCommand(_ family: IPAddress.Family) -> String {
        "\(Self.prefix(family))-\(rawValue)-save"
    }

    /// `iptables-nft-restore`, `ip6tables-legacy-restore`, ...
    public func restoreCommand(_ family: IPAddress.Family) -> String {
        "\(Self.prefix(family))-\(rawValue)-restore"
    }

    /// `iptables` or `ip6tables`.
    public static func prefix(_ family: IPAddress.Family) -> String {
        family == .ipv4 ? "iptables" : "ip6tables"
    }
}

/// `--backend auto|legacy|nft`.
public enum BackendChoice: String, CaseIterable, Sendable {
    /// Use the backend that already holds rules in this namespace.
    case auto
    case legacy
    case nft
}

/// `--ipv6 auto|on|off`.
public enum IPv6Mode: String, CaseIterable, Sendable {
    /// On when the kernel has IPv6 enabled and ip6tables is installed.
    case auto
    case on
    case off
}
