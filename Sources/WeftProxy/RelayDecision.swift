import NIOCore
import WeftCore
import WeftObservability
import WeftUpstream

/// What to do with an accepted, redirected connection.
enum RelayDecision: Sendable {
    /// Relay the bytes to `target`. `cluster` names the matched cluster,
    /// nil for passthrough or inbound delivery.
    case relay(to: IPEndpoint, connectTimeout: TimeAmount, cluster: String?)
    /// A cluster: detect the protocol (unless known); HTTP is balanced per
    /// request (unless the app named `fixedEndpoint`), anything else once
    /// per connection; meshed endpoints are reached over the mesh, plain
    /// ones directly.
    case cluster(ClusterDecision)
    /// Close the connection with a reset, counting the reason.
    case refuse(RefusalReason)
}

/// The details of a decision for a cluster.
struct ClusterDecision: Sendable {
    let cluster: UpstreamCluster
    /// The configuration in force when the connection was accepted.
    var snapshot: RuntimeSnapshot? = nil
    /// The destination named no cluster: `cluster` stands for the original
    /// destination itself, and HTTP requests find a cluster by their Host
    /// (SPEC §4 step 2), else go where the app sent them.
    var isPassthrough = false
    /// An HTTP-routing listener's connection: a request that names no
    /// cluster is answered 404 `no_route`, not carried anywhere.
    var routingOnly = false
    let fixedEndpoint: IPEndpoint?
    let connectTimeout: TimeAmount
    /// The cluster's declared protocol, which skips detection.
    let knownProtocol: DetectedProtocol?
}

extension RelayDecision: Equatable {
    static func == (lhs: RelayDecision, rhs: RelayDecision) -> Bool {
        switch (lhs, rhs) {
        case let (.relay(a, b, c), .relay(x, y, z)):
            return a == x && b == y && c == z
        case let (.cluster(a), .cluster(b)):
            return a.cluster === b.cluster && a.fixedEndpoint == b.fixedEndpoint
                && a.connectTimeout == b.connectTimeout && a.knownProtocol == b.knownProtocol
        case let (.refuse(a), .refuse(b)):
            return a == b
        default:
            return false
        }
    }
}

/// Decides a connection's fate from where it was going and where it arrived.
protocol ConnectionRouter: Sendable {
    var direction: Direction { get }
    /// `snapshot` is the configuration in force on the connection's loop
    /// (nil: the router's own, as it was built).
    func decide(originalDestination: IPEndpoint, localAddress: IPEndpoint, snapshot: RuntimeSnapshot?) -> RelayDecision
}

extension ConnectionRouter {
    func decide(originalDestination: IPEndpoint, localAddress: IPEndpoint) -> RelayDecision {
        decide(originalDestination: originalDestination, localAddress: localAddress, snapshot: nil)
    }
}
