import NIOCore
import WeftConfig
import WeftCore
import WeftObservability

/// The inbound side's decision: deliver a redirected connection to the
/// local app on the port it was sent to (SPEC §4, inbound).
struct InboundRouter: ConnectionRouter {
    let settings: InboundListener
    let identity: NodeIdentity
    let connectTimeout: TimeAmount

    var direction: Direction { .inbound }

    func decide(originalDestination: IPEndpoint, localAddress: IPEndpoint, snapshot: RuntimeSnapshot?) -> RelayDecision {
        if originalDestination == localAddress { return .refuse(.notRedirected) }
        if identity.isOwnListener(originalDestination) { return .refuse(.loop) }
        if settings.plaintext == .deny { return .refuse(.plaintextDenied) }
        return .relay(to: settings.deliverTo.target(for: originalDestination), connectTimeout: connectTimeout, cluster: nil)
    }
}

extension InboundDelivery {
    /// Where the local app is reached for a connection or request sent to
    /// `destination` (one of this node's addresses): the loopback address
    /// of the same family, or the pod address itself.
    func target(for destination: IPEndpoint) -> IPEndpoint {
        switch self {
        case .loopback:
            let loopback: IPAddress = destination.address.family == .ipv4 ? .loopbackV4 : .loopbackV6
            return IPEndpoint(address: loopback, port: destination.port)
        case .podIP:
            return destination
        }
    }
}
