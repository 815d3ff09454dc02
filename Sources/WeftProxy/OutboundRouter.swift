import NIOCore
import WeftConfig
import WeftCore
import WeftObservability
import WeftRouting
import WeftUpstream

/// The outbound side's decision (SPEC §4, steps 1, 2 and 4): refuse what
/// would loop, then match a cluster and pick an endpoint, else passthrough.
struct OutboundRouter: ConnectionRouter {
    /// The configuration it was built with; a loop's newer one wins.
    let snapshot: RuntimeSnapshot
    let identity: NodeIdentity
    let passthroughConnectTimeout: TimeAmount

    var direction: Direction { .outbound }

    func decide(originalDestination: IPEndpoint, localAddress: IPEndpoint, snapshot current: RuntimeSnapshot?) -> RelayDecision {
        let snapshot = current ?? self.snapshot
        // Ports where the server speaks first: never wait to detect there.
        let opaquePorts = snapshot.configuration.opaquePorts
        // Not redirected: the kernel reports the listener itself as the
        // original destination. Relaying would connect weft to itself.
        if originalDestination == localAddress { return .refuse(.notRedirected) }
        if identity.isOwnListener(originalDestination) { return .refuse(.loop) }
        switch snapshot.table.route(originalDestination) {
        case .cluster(let index, let endpoint):
            return ClusterDecision.carry(snapshot.upstreams[index], snapshot: snapshot, fixedEndpoint: endpoint,
                                         opaque: opaquePorts.contains(originalDestination.port))
        case .passthrough(let destination):
            // HTTP to it may name a cluster by Host: find out what the app
            // speaks, unless no cluster has a hostname or the server speaks first.
            if !snapshot.byHostname.isEmpty && !opaquePorts.contains(destination.port) {
                let original = UpstreamCluster(config: Cluster(
                    name: "passthrough", endpoints: [Endpoint(address: destination)],
                    timeouts: ClusterTimeouts(connect: passthroughConnectTimeout.duration)))
                return .cluster(ClusterDecision(cluster: original, snapshot: snapshot, isPassthrough: true,
                                                fixedEndpoint: nil, connectTimeout: passthroughConnectTimeout,
                                                knownProtocol: nil))
            }
            return .relay(to: destination, connectTimeout: passthroughConnectTimeout, cluster: nil)
        case .refused:
            return .refuse(.registryOnly)
        }
    }
}

extension ClusterDecision {
    /// A connection for `cluster`: detect what the app speaks, unless the
    /// cluster says, or the port is `opaque` (the server speaks first: no
    /// waiting for the client's bytes). The endpoint is picked once the
    /// protocol tells where one is needed.
    static func carry(_ cluster: UpstreamCluster, snapshot: RuntimeSnapshot, fixedEndpoint: IPEndpoint?,
                      opaque: Bool) -> RelayDecision {
        let known: DetectedProtocol? = if opaque {
            .tcp
        } else {
            switch cluster.config.protocol {
            case .http1: .http1
            case .http2: .http2
            case .tcp: .tcp
            case .auto: nil
            }
        }
        if cluster.plan.endpoints.isEmpty && fixedEndpoint == nil && known == .tcp { return .refuse(.noEndpoint) }
        return .cluster(ClusterDecision(cluster: cluster, snapshot: snapshot, fixedEndpoint: fixedEndpoint,
                                        connectTimeout: TimeAmount(cluster.config.timeouts.connect), knownProtocol: known))
    }
}

/// `listeners.egress` (SPEC §5): every connection to this local port goes
/// to one cluster, balanced as if to its VIP. Not redirected: the
/// destination is the listener itself.
struct EgressRouter: ConnectionRouter {
    let cluster: String
    let snapshot: RuntimeSnapshot

    var direction: Direction { .outbound }

    func decide(originalDestination: IPEndpoint, localAddress: IPEndpoint, snapshot current: RuntimeSnapshot?) -> RelayDecision {
        let snapshot = current ?? self.snapshot
        // A reload may have removed the cluster since the listener was bound.
        guard let upstream = snapshot.upstream(named: cluster) else { return .refuse(.noEndpoint) }
        return ClusterDecision.carry(upstream, snapshot: snapshot, fixedEndpoint: nil, opaque: false)
    }
}

/// `listeners.http_routing` (SPEC §5): HTTP for the mesh, called
/// explicitly; each request goes where its Host (and the routes) say, and
/// a request nothing matches gets 404 `no_route`.
struct HTTPRoutingRouter: ConnectionRouter {
    let snapshot: RuntimeSnapshot

    var direction: Direction { .outbound }

    func decide(originalDestination: IPEndpoint, localAddress: IPEndpoint, snapshot current: RuntimeSnapshot?) -> RelayDecision {
        let snapshot = current ?? self.snapshot
        return .cluster(ClusterDecision(cluster: Self.noRoute, snapshot: snapshot, isPassthrough: true,
                                        routingOnly: true, fixedEndpoint: nil, connectTimeout: .seconds(5),
                                        knownProtocol: nil))
    }

    /// What a request no rule and no hostname takes: nowhere.
    static let noRoute = UpstreamCluster(config: Cluster(name: "no_route"))
}

extension TimeAmount {
    /// The same span as a `Duration`.
    var duration: Duration { .nanoseconds(nanoseconds) }

    /// Converts a configuration duration, saturating at the largest amount.
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let (nanos, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        self = overflow ? .nanoseconds(.max) : .nanoseconds(nanos &+ attoseconds / 1_000_000_000)
    }
}
