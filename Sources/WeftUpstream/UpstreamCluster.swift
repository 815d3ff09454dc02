import WeftConfig
import WeftCore

/// A cluster as one configuration snapshot's data path uses it: its
/// settings and its balancing plan, shared read-only by every event loop.
/// Each loop balances with its own `LoopBalancer` over `plan`.
public final class UpstreamCluster: Sendable {
    public let config: Cluster
    public let plan: BalancerPlan
    /// Endpoints whose `mesh` differs from the cluster's.
    private let meshOverrides: [IPEndpoint: Bool]

    public init(config: Cluster) {
        self.config = config
        plan = BalancerPlan(policy: config.lb, hashOn: config.hashOn, endpoints: config.endpoints)
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
