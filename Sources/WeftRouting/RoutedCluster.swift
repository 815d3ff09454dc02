import WeftConfig
import WeftCore

/// A cluster as the data path uses it: its configuration plus the live
/// balancing state. Shared read-only by every event loop.
public final class RoutedCluster: Sendable {
    public let config: Cluster
    public let balancer: any LoadBalancer

    public init(config: Cluster) {
        self.config = config
        switch config.lb {
        case .roundRobin:
            balancer = RoundRobinBalancer(endpoints: config.endpoints.map { ($0.address, $0.weight) })
        }
    }

    public var name: String { config.name }
}
