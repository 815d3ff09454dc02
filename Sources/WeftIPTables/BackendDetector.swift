/// Resolves `--backend` to one backend.
public enum BackendDetector {
    /// The chosen backend and, for the log, why.
    public struct Selection: Equatable, Sendable {
        public var backend: Backend
        public var reason: String
    }

    /// `legacy` and `nft` are taken as asked (their tools must exist).
    /// `auto` does what kube-proxy's iptables-wrapper does: count the rules
    /// each backend's save prints (all tables, IPv4 and IPv6) and use legacy
    /// only if it holds more; with only one backend installed, use it.
    public static func select(_ choice: BackendChoice,
                              executor: (Backend) -> any IPTablesExecutor) throws -> Selection {
        switch choice {
        case .legacy, .nft:
            let backend: Backend = choice == .legacy ? .legacy : .nft
            guard executor(backend).isAvailable(.ipv4) else {
                throw InitError.toolMissing(backend.restoreCommand(.ipv4))
            }
            return Selection(backend: backend, reason: "--backend \(backend.rawValue)")
        case .auto:
            let nft = executor(.nft), legacy = executor(.legacy)
            switch (nft.isAvailable(.ipv4), legacy.isAvailable(.ipv4)) {
            case (false, false):
                throw InitError.noBackend
            case (true, false):
                return Selection(backend: .nft, reason: "auto: only nft is installed")
            case (false, true):
                return Selection(backend: .legacy, reason: "auto: only legacy is installed")
            case (true, true):
                let nftRules = ruleCount(nft), legacyRules = ruleCount(legacy)
                let backend: Backend = legacyRules > nftRules ? .legacy : .nft
                return Selection(backend: backend,
                                 reason: "auto: legacy holds \(legacyRules) rules, nft \(nftRules)")
            }
        }
    }

    /// `-A` lines in every table of both families; a save that fails counts 0.
    static func ruleCount(_ executor: any IPTablesExecutor) -> Int {
        [.ipv4, .ipv6].filter(executor.isAvailable).reduce(0) { total, family in
            let text = (try? executor.save(family, table: nil)) ?? ""
            return total + text.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("-A ") }.count
        }
    }
}
