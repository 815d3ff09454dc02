import WeftCore

/// Everything weft installs in one family's nat table: its chains, the rules
/// inside them, and the jumps into them from the built-in chains.
public struct RuleSet: Equatable, Sendable {
    public var family: IPAddress.Family
    /// Chains to declare, in order.
    public var chains: [WeftChain]
    /// Rules inside weft's chains, in order.
    public var rules: [Rule]
    /// Jumps from PREROUTING / OUTPUT into weft's chains.
    public var jumps: [Rule]

    public init(family: IPAddress.Family, chains: [WeftChain], rules: [Rule], jumps: [Rule]) {
        self.family = family
        self.chains = chains
        self.rules = rules
        self.jumps = jumps
    }
}
