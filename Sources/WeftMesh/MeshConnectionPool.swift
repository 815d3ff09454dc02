import Logging
import NIOCore
import WeftCore
import WeftObservability
import WeftTransport

/// Mesh connections to peer nodes, for one event loop (SPEC §4).
///
/// Opened lazily and shared by every request on this loop to the same
/// peer. A request that finds no connection with a free stream slot waits
/// in the peer's queue; it is handed a connection as soon as one has a
/// slot: a new connection once it is open, or an open one when a stream
/// ends. More connections are opened while the queue holds more than the
/// ones being opened can take (up to `maxConnectionsPerPeer`), so a burst
/// of thousands of streams is spread over connections instead of failing.
/// After a failed connect the peer is left alone for a backoff that
/// doubles up to a ceiling, so a dead node costs one connect attempt per
/// period, not one per request.
///
/// A waiter is handed its connection by fulfilling its promise, and must
/// open its stream right there, in the callback registered on the future
/// `connection(to:)` returned: the queue hands out the next slot only
/// after that callback has run.
public final class MeshConnectionPool {
    public let eventLoop: EventLoop
    private let metrics: ProxyMetrics
    private let logger: Logger
    private let connectTimeout: TimeAmount
    /// False for the pool of h2c connections to HTTP/2 apps.
    public let countsAsMesh: Bool
    private let connector: any Connector
    private var connections: [IPEndpoint: [MeshConnection]] = [:]
    /// Connects in flight, by peer.
    private var connecting: [IPEndpoint: Int] = [:]
    /// Requests waiting for a stream slot, by peer, oldest first.
    private var waiters: [IPEndpoint: [EventLoopPromise<MeshConnection>]] = [:]
    private var failures: [IPEndpoint: (count: Int, retryAt: NIODeadline)] = [:]
    public static let backoffBase = TimeAmount.milliseconds(100)
    public static let backoffCeiling = TimeAmount.seconds(5)
    /// Connections to one peer (open or opening) this loop keeps at most.
    public static let maxConnectionsPerPeer = 64
    /// Requests that may wait for one peer at once; more are refused.
    public static let maxWaitersPerPeer = 10_000
    /// Streams a new connection is counted on to take.
    static let expectedStreamsPerConnection = MeshConnection.streamsBeforeSettings

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
        guard waiters[peer] == nil else { return nil }  // first come, first served
        return connections[peer]?.first(where: \.hasCapacity)
    }

    /// A connection to `peer` (its mesh listener) with a free stream slot,
    /// now or once there is one. Fails with `MeshError.connectFailed` when
    /// the peer cannot be reached (or is in its backoff), and with
    /// `MeshError.noCapacity` when too many requests wait for it already.
    public func connection(to peer: IPEndpoint) -> EventLoopFuture<MeshConnection> {
        if let ready = readyConnection(to: peer) {
            return eventLoop.makeSucceededFuture(ready)
        }
        if let failure = failures[peer], NIODeadline.now() < failure.retryAt, connecting[peer] == nil {
            return eventLoop.makeFailedFuture(MeshError.connectFailed)
        }
        guard (waiters[peer]?.count ?? 0) < Self.maxWaitersPerPeer else {
            metrics.limitHit(.meshQueue)
            logger.warning("too many requests waiting for a mesh connection", metadata: ["peer": "\(peer)"])
            return eventLoop.makeFailedFuture(MeshError.noCapacity)
        }
        let promise = eventLoop.makePromise(of: MeshConnection.self)
        waiters[peer, default: []].append(promise)
        openIfNeeded(peer)
        return promise.futureResult
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

    /// Hands free slots to waiters, oldest first; opens more connections
    /// when the ones there cannot take everybody.
    private func serve(_ peer: IPEndpoint) {
        while var queue = waiters[peer], !queue.isEmpty,
              let ready = connections[peer]?.first(where: \.hasCapacity) {
            let waiter = queue.removeFirst()
            waiters[peer] = queue.isEmpty ? nil : queue
            // The waiter opens its stream in this call (or gives up), so the
            // next turn of the loop sees the slot taken.
            waiter.succeed(ready)
        }
        openIfNeeded(peer)
    }

    private func openIfNeeded(_ peer: IPEndpoint) {
        guard let queue = waiters[peer], !queue.isEmpty else { return }
        let open = connections[peer]?.count ?? 0
        var opening = connecting[peer] ?? 0
        while opening * Self.expectedStreamsPerConnection < queue.count, open + opening < Self.maxConnectionsPerPeer {
            opening += 1
            self.open(peer)
        }
        if opening == 0 && open >= Self.maxConnectionsPerPeer {
            metrics.limitHit(.meshConnections)
        }
    }

    private func open(_ peer: IPEndpoint) {
        let connection = MeshConnection(role: .client, metrics: metrics, logger: logger, countsAsMesh: countsAsMesh)
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        connection.onUnusable = { unusable in bound.value.forget(unusable, peer: peer) }
        connection.onStreamSlotFreed = { _ in
            // Told from inside the connection's stream handling: hand the
            // slot out on the loop's next turn, not re-entrantly.
            let pool = bound.value
            guard pool.waiters[peer] != nil else { return }
            pool.eventLoop.execute { bound.value.serve(peer) }
        }
        let handler = NIOLoopBound(connection, eventLoop: eventLoop)
        connecting[peer, default: 0] += 1
        connector.connect(to: peer, on: eventLoop, timeout: connectTimeout, halfClosure: false) { channel in
            try channel.pipeline.syncOperations.addHandler(handler.value)
        }.whenComplete { result in
            let pool = bound.value
            let left = (pool.connecting[peer] ?? 1) - 1
            pool.connecting[peer] = left > 0 ? left : nil
            switch result {
            case .success:
                let connection = handler.value
                pool.failures[peer] = nil
                if !connection.goingAway { pool.connections[peer, default: []].append(connection) }
                pool.logger.debug("mesh connection opened", metadata: ["peer": "\(peer)"])
                pool.serve(peer)
            case .failure(let error):
                let count = (pool.failures[peer]?.count ?? 0) + 1
                let delay = min(Self.backoffBase.nanoseconds << min(count - 1, 16), Self.backoffCeiling.nanoseconds)
                pool.failures[peer] = (count, .now() + .nanoseconds(delay))
                pool.logger.warning("mesh connect failed", metadata: ["peer": "\(peer)", "error": "\(error)",
                                                                      "retry_in_ms": "\(delay / 1_000_000)"])
                // Nobody else is connecting and nothing is open: the
                // waiters would wait for nothing.
                if pool.connecting[peer] == nil, pool.connections[peer]?.isEmpty ?? true {
                    let queue = pool.waiters.removeValue(forKey: peer) ?? []
                    for waiter in queue { waiter.fail(MeshError.connectFailed) }
                }
            }
        }
    }

    private func forget(_ connection: MeshConnection, peer: IPEndpoint) {
        guard var list = connections[peer] else { return }
        list.removeAll { $0 === connection }
        connections[peer] = list.isEmpty ? nil : list
        openIfNeeded(peer)
    }
}
