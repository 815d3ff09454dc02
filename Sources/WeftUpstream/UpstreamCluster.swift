import WeftConfig

/// A cluster as one configuration snapshot's data path uses it: its
/// settings and its balancing plan, shared read-only by every event loop.
/// Each loop balances with its own `LoopBalancer` over `plan`.
public final class UpstreamCluster: Sendable {
    public let config: Cluster
    public let plan: BalancerPlan

    public init(config: Cluster) {
        self.config = config
        plan = BalancerPlan(policy: config.lb, hashOn: config.hashOn, endpoints: config.endpoints)
    }

    public var name: String { config.name }
}
