import Logging
import NIOCore
import WeftConfig
import WeftCore
import WeftMesh
import WeftObservability
import WeftTransport

/// What the mesh listener's streams share on one event loop: the node's
/// identity, where to deliver, and the loop's pool of app connections.
final class MeshListenerContext {
    let identity: NodeIdentity
    let delivery: InboundDelivery
    let pool: HTTP1UpstreamPool
    /// h2c connections to local HTTP/2 apps (gRPC), for `weft-orig-proto: HTTP/2`.
    let http2Pool: MeshConnectionPool
    let metrics: ProxyMetrics
    let logger: Logger
    let connectTimeout: TimeAmount
    /// Opens TCP connections to local apps (CONNECT streams).
    let connector: any Connector
    /// The identities allowed to reach each local port that has a rule
    /// (`authorization`); follows reloads (`LoopServices.publish`).
    var authorization: [UInt16: Set<SPIFFEID>] = [:]
    /// `ext_authz`, if set; follows reloads like `authorization`.
    var extAuthz: ExtAuthzSettings?
    /// The loop's services (the authorization call goes through them).
    weak var services: LoopServices?
    /// Peer nodes' mesh port (a meshed authorization cluster).
    let meshPort: UInt16

    init(identity: NodeIdentity, delivery: InboundDelivery, pool: HTTP1UpstreamPool, http2Pool: MeshConnectionPool,
         metrics: ProxyMetrics, logger: Logger, connectTimeout: TimeAmount, connector: any Connector = TCPConnector(),
         meshPort: UInt16 = 15008) {
        self.meshPort = meshPort
        self.connector = connector
        self.http2Pool = http2Pool
        self.identity = identity
        self.delivery = delivery
        self.pool = pool
        self.metrics = metrics
        self.logger = logger
        self.connectTimeout = connectTimeout
    }

    /// The receiving half of an HTTP/2 app's stream: checks `weft-dst`, then
    /// opens the same request on an h2c connection to the local app.
    func http2Stream(on connection: MeshConnection, streamID: Int32) -> SplicedStream {
        var record = RequestRecord(direction: .inbound)
        record.peerIdentity = connection.peerIdentity
        return SplicedStream(connection: connection, streamID: streamID, opener: { [self] request, endStream, half, done in
            let destinationText = request.first { $0.name == MeshTranslation.destinationHeader }?.value
            guard let destination = destinationText.flatMap(IPEndpoint.init) else {
                return done(nil, .badMeshRequest)
            }
            let target: IPEndpoint
            switch self.localTarget(for: destination, from: connection.peerIdentity) {
            case .success(let local): target = local
            case .failure(let reason): return done(nil, reason)
            }
            let headers = MeshTranslation.withoutMeshHeaders(request, keepReason: false)
            guard let settings = self.extAuthz, let services = self.services,
                  let head = ExtAuthzCheck.describe(headers) else {
                return HTTP2Dispatch.open(headers, endStream: endStream, to: target, pool: self.http2Pool, lease: nil,
                                          logger: self.logger, done: done)
            }
            // The check runs to its answer or its timeout even if the caller
            // goes away meanwhile; its verdict then finds nobody.
            _ = ExtAuthzCheck.start(for: head, peer: connection.peerIdentity, settings: settings, services: services,
                                    meshPort: self.meshPort, logger: self.logger) { [weak half, self] verdict in
                guard let half else { return }
                switch verdict {
                case .allow(let fields):
                    HTTP2Dispatch.open(ExtAuthzCheck.forwarding(fields, into: headers, settings: settings),
                                       endStream: endStream, to: target, pool: self.http2Pool, lease: nil,
                                       logger: self.logger, done: done)
                case .deny(let fields, let body):
                    half.answer(fields, body: body)
                case .refuse(let reason):
                    done(nil, reason)
                }
            }
        }, rewriteResponse: { $0 }, logger: logger, record: record)
    }

    /// The one rule for "may this peer reach this destination" on the
    /// receiving side (SPEC §4, §8): a mesh request may only name one of
    /// this node's own addresses (no open relay), never a port weft itself
    /// listens on (a peer must not reach the admin API, or loop into weft),
    /// and a port with an `authorization` rule only from an identity it
    /// allows (`peer` is nil without mTLS, which no rule allows). Counted
    /// when refused. Gives where the local app is reached.
    func localTarget(for destination: IPEndpoint, from peer: SPIFFEID?) -> Result<IPEndpoint, ErrorReason> {
        guard identity.addresses.contains(destination.address), !identity.listenerPorts.contains(destination.port) else {
            metrics.meshRefused.wrappingIncrement(ordering: .relaxed)
            return .failure(.notLocalDestination)
        }
        if let allowed = authorization[destination.port], !(peer.map(allowed.contains) ?? false) {
            logger.debug("mesh request refused: unauthorized", metadata: [
                "peer": "\(peer.map(String.init(describing:)) ?? "none (no mTLS)")", "port": "\(destination.port)",
            ])
            return .failure(.unauthorized)
        }
        return .success(delivery.target(for: destination))
    }

    /// The `authorization` rules of `configuration`, by port.
    static func rules(of configuration: Configuration) -> [UInt16: Set<SPIFFEID>] {
        Dictionary(configuration.authorization.map { ($0.port, Set($0.allow)) }, uniquingKeysWith: { $0.union($1) })
    }
}
