import Logging
import NIOCore
import WeftConfig
import WeftCore

/// What the mesh listener's streams share on one event loop: the node's
/// identity, where to deliver, and the loop's pool of app connections.
final class MeshListenerContext {
    let identity: NodeIdentity
    let delivery: InboundDelivery
    let pool: HTTP1UpstreamPool
    let metrics: ProxyMetrics
    let logger: Logger
    let connectTimeout: TimeAmount

    init(identity: NodeIdentity, delivery: InboundDelivery, pool: HTTP1UpstreamPool,
         metrics: ProxyMetrics, logger: Logger, connectTimeout: TimeAmount) {
        self.identity = identity
        self.delivery = delivery
        self.pool = pool
        self.metrics = metrics
        self.logger = logger
        self.connectTimeout = connectTimeout
    }

    /// The app's address for a request sent to `destination` (one of ours).
    func deliveryTarget(for destination: IPEndpoint) -> IPEndpoint {
        switch delivery {
        case .loopback:
            let loopback: IPAddress = destination.address.family == .ipv4 ? .loopbackV4 : .loopbackV6
            return IPEndpoint(address: loopback, port: destination.port)
        case .podIP:
            return destination
        }
    }
}
