import WeftConfig
import WeftCore
import WeftRouting
import WeftUpstream

/// The configuration in force, as the data path reads it: the matching
/// table and each cluster's upstream settings and balancing plan. Immutable
/// and shared by every event loop; a new configuration is a new snapshot.
final class RuntimeSnapshot: Sendable {
    /// 1 for the configuration the node started with, then one more per
    /// reload that changed something.
    let version: Int
    let configuration: Configuration
    let table: ClusterTable
    /// The L7 rules, for HTTP requests.
    let routes: RouteTable
    /// Parallel to `configuration.clusters` (the table's indices).
    let upstreams: [UpstreamCluster]
    /// Clusters by their `hostnames` (SPEC §4 step 2: an HTTP request to a
    /// destination that names no cluster finds one by its Host).
    let byHostname: [String: UpstreamCluster]

    /// `runtime`: the node's endpoint states, which the snapshot's clusters
    /// take up (and which forgets clusters the snapshot no longer has).
    init(configuration: Configuration, version: Int = 1, runtime: UpstreamRuntime = UpstreamRuntime()) {
        self.version = version
        self.configuration = configuration
        table = ClusterTable(configuration: configuration)
        routes = RouteTable(configuration: configuration)
        upstreams = configuration.clusters.map {
            UpstreamCluster(config: $0, registry: runtime.registry(named: $0.name), locality: configuration.node.locality)
        }
        runtime.retain(Set(configuration.clusters.map(\.name)))
        var byHostname: [String: UpstreamCluster] = [:]
        for upstream in upstreams {
            // First definition wins; validation refuses duplicates.
            for hostname in upstream.config.hostnames where byHostname[hostname] == nil { byHostname[hostname] = upstream }
        }
        self.byHostname = byHostname
    }

    func upstream(named name: String) -> UpstreamCluster? {
        upstreams.first { $0.name == name }
    }

    /// Every endpoint of every cluster.
    var endpoints: Set<IPEndpoint> {
        Set(configuration.clusters.flatMap { $0.endpoints.map(\.address) })
    }
}
