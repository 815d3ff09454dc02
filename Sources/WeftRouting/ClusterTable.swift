import WeftConfig
import WeftCore

/// Where an outbound connection goes, decided from its original destination.
public enum OutboundRoute: Sendable {
    /// The destination names a cluster. `endpoint` is set when the app
    /// called one of the cluster's endpoints directly (it chose it); for a
    /// VIP it is nil, and an endpoint is picked where one is needed: once
    /// per request for HTTP, once per connection for TCP.
    case cluster(RoutedCluster, endpoint: IPEndpoint?)
    /// No cluster: relay to where the app was going (`allow_any`).
    case passthrough(IPEndpoint)
    /// No cluster and `registry_only`: refuse.
    case refused
}

/// The cluster table: matches original destinations to clusters (SPEC §4,
/// step 2). Built once per configuration and shared by every event loop.
public final class ClusterTable: Sendable {
    public let clusters: [RoutedCluster]
    public let outboundPolicy: OutboundPolicy
    private let byVIP: [IPEndpoint: RoutedCluster]
    private let byEndpoint: [IPEndpoint: RoutedCluster]

    public init(configuration: Configuration) {
        let clusters = configuration.clusters.map(RoutedCluster.init(config:))
        var byVIP: [IPEndpoint: RoutedCluster] = [:]
        var byEndpoint: [IPEndpoint: RoutedCluster] = [:]
        for cluster in clusters {
            // First definition wins; validation already refuses duplicates.
            for vip in cluster.config.addresses where byVIP[vip] == nil { byVIP[vip] = cluster }
            for endpoint in cluster.config.endpoints where byEndpoint[endpoint.address] == nil {
                byEndpoint[endpoint.address] = cluster
            }
        }
        self.clusters = clusters
        self.byVIP = byVIP
        self.byEndpoint = byEndpoint
        self.outboundPolicy = configuration.outboundPolicy
    }

    /// A VIP means the cluster, balanced later (matching never picks: a
    /// pick here and another per request would walk the same schedule); a
    /// direct call to one of its endpoints keeps that endpoint (the app
    /// chose it) but still gets the cluster's policies.
    public func route(_ destination: IPEndpoint) -> OutboundRoute {
        if let cluster = byVIP[destination] {
            return .cluster(cluster, endpoint: nil)
        }
        if let cluster = byEndpoint[destination] {
            return .cluster(cluster, endpoint: destination)
        }
        switch outboundPolicy {
        case .allowAny: return .passthrough(destination)
        case .registryOnly: return .refused
        }
    }

    public func cluster(named name: String) -> RoutedCluster? {
        clusters.first { $0.name == name }
    }
}
