import NIOCore
import WeftConfig
import WeftCore

/// The inbound side's decision: deliver a redirected connection to the
/// local app on the port it was sent to (SPEC §4, inbound).
struct InboundRouter: ConnectionRouter {
    let settings: InboundListener
    let identity: NodeIdentity
    let connectTimeout: TimeAmount

    var direction: Direction { .inbound }

    func decide(originalDestination: IPEndpoint, localAddress: IPEndpoint) -> RelayDecision {
        if originalDestination == localAddress { return .refuse(.notRedirected) }
        if identity.isOwnListener(originalDestination) { return .refuse(.loop) }
        if settings.plaintext == .deny { return .refuse(.plaintextDenied) }
        let target: IPEndpoint
        switch settings.deliverTo {
        case .loopback:
            let loopback: IPAddress = originalDestination.address.family == .ipv4 ? .loopbackV4 : .loopbackV6
            target = IPEndpoint(address: loopback, port: originalDestination.port)
        case .podIP:
            target = originalDestination
        }
        return .relay(to: target, connectTimeout: connectTimeout, cluster: nil)
    }
}
