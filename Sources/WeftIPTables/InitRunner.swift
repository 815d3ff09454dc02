import WeftCore

/// `weft init` without the command line: resolves backend and families,
/// reads each family's nat table, plans and applies one transaction.
public struct InitRunner: Sendable {
    public var options: InterceptionOptions
    public var action: InitAction
    /// The executor of a backend; tests pass fakes.
    public var executor: @Sendable (Backend) -> any IPTablesExecutor
    /// Whether the kernel runs IPv6 here (`--ipv6 auto`).
    public var kernelHasIPv6: @Sendable () -> Bool

    public init(options: InterceptionOptions, action: InitAction,
                executor: @escaping @Sendable (Backend) -> any IPTablesExecutor = { ProcessExecutor(backend: $0) },
                kernelHasIPv6: @escaping @Sendable () -> Bool = { IPv6Support.kernelEnabled() }) {
        self.options = options
        self.action = action
        self.executor = executor
        self.kernelHasIPv6 = kernelHasIPv6
    }

    /// `--dry-run`: what would be applied, without running any tool.
    /// `--ipv6 auto` follows the kernel only, since no tool is looked at.
    public func dryRun() throws -> String {
        try options.validate()
        let ipv6 = options.ipv6 == .on || (options.ipv6 == .auto && kernelHasIPv6())
        return DryRun.render(options, action: action, families: ipv6 ? [.ipv4, .ipv6] : [.ipv4])
    }

    /// Applies the rules (or removes them), reporting progress through `log`.
    public func run(log: (String) -> Void) throws {
        try options.validate()
        let selection = try BackendDetector.select(options.backend, executor: executor)
        log("backend \(selection.backend.rawValue) (\(selection.reason))")
        let tools = executor(selection.backend)
        for family in try families(tools, backend: selection.backend) {
            let current = NatTableSnapshot(parsing: try tools.save(family, table: "nat"))
            switch action {
            case .install:
                let rules = RuleSet(options: options, family: family)
                try tools.restore(family, TransactionPlanner.install(rules, over: current).text)
                let previously = current.weftChains.isEmpty ? "" : ", replacing the previous ones"
                log("\(family.displayName): installed \(rules.chains.count) chains, \(rules.rules.count) rules, "
                    + "\(rules.jumps.count) jumps\(previously)")
            case .remove:
                let transaction = TransactionPlanner.remove(from: current, family: family)
                guard !transaction.isEmpty else {
                    log("\(family.displayName): no weft rules installed, nothing to remove")
                    continue
                }
                try tools.restore(family, transaction.text)
                log("\(family.displayName): removed \(current.jumpsIntoWeft.count) jumps and "
                    + "\(current.weftChains.count) chains")
            }
        }
    }

    /// IPv4, plus IPv6 when `--ipv6` says so (and, for auto, when possible).
    func families(_ tools: any IPTablesExecutor, backend: Backend) throws -> [IPAddress.Family] {
        switch options.ipv6 {
        case .off:
            return [.ipv4]
        case .on:
            guard tools.isAvailable(.ipv6) else {
                throw InitError.toolMissing(backend.restoreCommand(.ipv6))
            }
            return [.ipv4, .ipv6]
        case .auto:
            return kernelHasIPv6() && tools.isAvailable(.ipv6) ? [.ipv4, .ipv6] : [.ipv4]
        }
    }
}
