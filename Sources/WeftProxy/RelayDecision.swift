import NIOCore
import WeftCore

/// What to do with an accepted, redirected connection.
enum RelayDecision: Sendable, Equatable {
    /// Relay the bytes to `target`. `cluster` names the matched cluster,
    /// nil for passthrough or inbound delivery.
    case relay(to: IPEndpoint, connectTimeout: TimeAmount, cluster: String?)
    /// Close the connection with a reset, counting the reason.
    case refuse(RefusalReason)
}

/// Decides a connection's fate from where it was going and where it arrived.
protocol ConnectionRouter: Sendable {
    var direction: Direction { get }
    func decide(originalDestination: IPEndpoint, localAddress: IPEndpoint) -> RelayDecision
}
