import Logging
import NIOCore
import WeftCore
import WeftObservability
import WeftTransport

/// Mesh connections to peer nodes, for one event loop (SPEC §4).
///
/// Opened lazily and shared by every request on this loop to the same
/// peer. A connection that cannot take another stream (full, GOAWAY,
/// closed) makes the pool open or pick another one. After a failed connect
/// the peer is left alone for a backoff that doubles up to a ceiling, so a
/// dead node costs one connect attempt per period, not one per request.
public final class MeshConnectionPool {
    public let eventLoop: EventLoop
    private let metrics: ProxyMetrics
    private let logger: Logger
    private let connectTimeout: TimeAmount
    /// False for the pool of h2c connections to HTTP/2 apps.
    public let countsAsMesh: Bool
    private let connector: any Connector
    private var connections: [IPEndpoint: [MeshConnection]] = [:]
    private var connecting: [IPEndpoint: EventLoopFuture<MeshConnection>] = [:]
    private var failures: [IPEndpoint: (count: Int, retryAt: NIODeadline)] = [:]
    public static let backoffBase = TimeAmount.milliseconds(100)
    public static let backoffCeiling = TimeAmount.seconds(5)

    public init(eventLoop: EventLoop, metrics: ProxyMetrics, logger: Logger, connectTimeout: TimeAmount,
         countsAsMesh: Bool = true, connector: any Connector = TCPConnector()) {
        self.countsAsMesh = countsAsMesh
        self.connector = connector
        self.eventLoop = eventLoop
        self.metrics = metrics
        self.logger = logger
        self.connectTimeout = connectTimeout
    }

    /// An open connection to `peer` that can take a stream now, if there is
    /// one: the common case, answered without a future.
    public func readyConnection(to peer: IPEndpoint) -> MeshConnection? {
        eventLoop.assertInEventLoop()
        return connections[peer]?.first(where: \.hasCapacity)
    }

    /// A connection to `peer` (its mesh listener) that can take a stream.
    public func connection(to peer: IPEndpoint) -> EventLoopFuture<MeshConnection> {
        if let ready = readyConnection(to: peer) {
            return eventLoop.makeSucceededFuture(ready)
        }
        if let pending = connecting[peer] { return pending }
        if let failure = failures[peer], NIODeadline.now() < failure.retryAt {
            return eventLoop.makeFailedFuture(MeshError.connectFailed)
        }
        return open(peer)
    }

    /// Closes connections to peers `matching` says (nodes no cluster names
    /// any more) once their open streams are done: GOAWAY now.
    public func retire(matching: (IPEndpoint) -> Bool) {
        for (peer, list) in connections where matching(peer) {
            list.forEach { $0.shutdownGracefully() }
        }
    }

    /// Asks every connection to finish its streams and take no new ones.
    public func shutdownGracefully() {
        for (_, list) in connections { list.forEach { $0.shutdownGracefully() } }
    }

    private func open(_ peer: IPEndpoint) -> EventLoopFuture<MeshConnection> {
        let connection = MeshConnection(role: .client, metrics: metrics, logger: logger, countsAsMesh: countsAsMesh)
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        connection.onUnusable = { unusable in bound.value.forget(unusable, peer: peer) }
        let handler = NIOLoopBound(connection, eventLoop: eventLoop)
        let future = connector.connect(to: peer, on: eventLoop, timeout: connectTimeout, halfClosure: false) { channel in
                try channel.pipeline.syncOperations.addHandler(handler.value)
            }
            .map { _ in handler.value }
        connecting[peer] = future
        future.whenComplete { result in
            let pool = bound.value
            pool.connecting[peer] = nil
            switch result {
            case .success(let connection):
                pool.failures[peer] = nil
                if !connection.goingAway { pool.connections[peer, default: []].append(connection) }
                pool.logger.debug("mesh connection opened", metadata: ["peer": "\(peer)"])
            case .failure(let error):
                let count = (pool.failures[peer]?.count ?? 0) + 1
                let delay = min(Self.backoffBase.nanoseconds << min(count - 1, 16), Self.backoffCeiling.nanoseconds)
                pool.failures[peer] = (count, .now() + .nanoseconds(delay))
                pool.logger.warning("mesh connect failed", metadata: ["peer": "\(peer)", "error": "\(error)",
                                                                      "retry_in_ms": "\(delay / 1_000_000)"])
            }
        }
        return future.flatMapErrorThrowing { _ in throw MeshError.connectFailed }
    }

    private func forget(_ connection: MeshConnection, peer: IPEndpoint) {
        guard var list = connections[peer] else { return }
        list.removeAll { $0 === connection }
        connections[peer] = list.isEmpty ? nil : list
    }
}
