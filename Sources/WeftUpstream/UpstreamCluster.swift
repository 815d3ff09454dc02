import WeftConfig
import WeftCore

/// A cluster as one configuration snapshot's data path uses it: its
/// settings and its balancing plan, shared read-only by every event loop.
/// Each loop balances with its own `LoopBalancer` over `plan`.
public final class UpstreamCluster: Sendable {
    public let config: Cluster
    public let plan: BalancerPlan
    /// The node's state of each endpoint, parallel to `plan.endpoints`.
    public let health: [EndpointHealth]
    /// Where those states live between snapshots.
    public let registry: EndpointRegistry
    /// The token bucket and circuit breakers, when the cluster has either.
    public let admission: ClusterAdmission?
    /// Locality tiers, nearest first: each a plan of its endpoints and
    /// their states; empty when locality does not apply.
    public let tiers: [(plan: BalancerPlan, health: [EndpointHealth])]
    /// Endpoints whose `mesh` differs from the cluster's.
    private let meshOverrides: [IPEndpoint: Bool]

    /// `registry`: the node's registry of this cluster (a snapshot's
    /// clusters take theirs from the `UpstreamRuntime`); a cluster of its
    /// own without it.
    public init(config: Cluster, registry: EndpointRegistry? = nil, locality: Locality = Locality()) {
        self.config = config
        plan = BalancerPlan(policy: config.lb, hashOn: config.hashOn, endpoints: config.endpoints)
        let registry = registry ?? EndpointRegistry(name: config.name)
        self.registry = registry
        health = registry.update(endpoints: plan.endpoints.map(\.address), detection: config.outlierDetection)
        registry.admission.configure(breakers: config.circuitBreakers, rateLimit: config.rateLimit)
        admission = config.circuitBreakers == nil && config.rateLimit == nil ? nil : registry.admission
        let plan = self.plan, health = self.health
        tiers = (LocalityTiers.tiers(of: plan.endpoints, node: locality) ?? []).map { members in
            (plan.with(endpoints: members.map { plan.endpoints[$0] }), members.map { health[$0] })
        }
        var overrides: [IPEndpoint: Bool] = [:]
        for endpoint in config.endpoints {
            if let mesh = endpoint.mesh, mesh != config.mesh { overrides[endpoint.address] = mesh }
        }
        meshOverrides = overrides
    }

    public var name: String { config.name }

    /// Whether `endpoint` runs weft (its traffic rides the mesh) or is a
    /// plain endpoint (HTTP/1.1 or TCP straight to it).
    public func isMeshed(_ endpoint: IPEndpoint) -> Bool {
        meshOverrides.isEmpty ? config.mesh : meshOverrides[endpoint] ?? config.mesh
    }

    /// Some endpoint runs weft.
    public var hasMeshedEndpoints: Bool { config.mesh || meshOverrides.values.contains(true) }
}
