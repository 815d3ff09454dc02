import WeftConfig
import WeftCore

/// Where an outbound connection goes, decided from its original destination.
public enum OutboundRoute: Sendable, Equatable {
    /// The destination names the cluster at `index` in the configuration.
    /// `endpoint` is set when the app called one of the cluster's endpoints
    /// directly (it chose it); for a VIP it is nil, and an endpoint is
    /// picked where one is needed: once per request for HTTP, once per
    /// connection for TCP.
    case cluster(index: Int, endpoint: IPEndpoint?)
    /// No cluster: relay to where the app was going (`allow_any`).
    case passthrough(IPEndpoint)
    /// No cluster and `registry_only`: refuse.
    case refused
}

/// The cluster table: matches original destinations to clusters (SPEC §4,
/// step 2). Pure matching, built once per configuration and shared by
/// every event loop; it never picks an endpoint.
public final class ClusterTable: Sendable {
    public let clusters: [Cluster]
    public let outboundPolicy: OutboundPolicy
    private let byVIP: [IPEndpoint: Int]
    private let byEndpoint: [IPEndpoint: Int]

    public init(configuration: Configuration) {
        var byVIP: [IPEndpoint: Int] = [:]
        var byEndpoint: [IPEndpoint: Int] = [:]
        for (index, cluster) in configuration.clusters.enumerated() {
            // First definition wins; validation already refuses duplicates.
            for vip in cluster.addresses where byVIP[vip] == nil { byVIP[vip] = index }
            for endpoint in cluster.endpoints where byEndpoint[endpoint.address] == nil {
                byEndpoint[endpoint.address] = index
            }
        }
        self.clusters = configuration.clusters
        self.byVIP = byVIP
        self.byEndpoint = byEndpoint
        self.outboundPolicy = configuration.outboundPolicy
    }

    /// A VIP means the cluster, balanced later (matching never picks: a
    /// pick here and another per request would walk the same schedule); a
    /// direct call to one of its endpoints keeps that endpoint (the app
    /// chose it) but still gets the cluster's policies.
    public func route(_ destination: IPEndpoint) -> OutboundRoute {
        if let index = byVIP[destination] {
            return .cluster(index: index, endpoint: nil)
        }
        if let index = byEndpoint[destination] {
            return .cluster(index: index, endpoint: destination)
        }
        switch outboundPolicy {
        case .allowAny: return .passthrough(destination)
        case .registryOnly: return .refused
        }
    }
}
