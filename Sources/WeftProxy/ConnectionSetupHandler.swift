import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import WeftCore
import WeftMesh
import WeftNetfilter
import WeftObservability
import WeftTransport
import WeftUpstream

/// The first handler of every accepted outbound or inbound connection.
///
/// On `channelActive` it reads the original destination, asks its router
/// what to do, and either refuses (reset) or connects the upstream on the
/// same event loop and replaces itself with a `RelayHandler` pair. The
/// accepted channel has `autoRead` off until the relay is in place, so no
/// byte is read before there is somewhere to send it, and a server that
/// speaks first is heard at once.
final class ConnectionSetupHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let router: any ConnectionRouter
    private let resolver: any OriginalDestinationResolver
    private let metrics: ProxyMetrics
    private let logger: Logger
    private let services: LoopServiceRegistry?
    private let meshPort: UInt16
    private let detectTimeout: TimeAmount
    private let maxConnections: Int
    private let connector: any Connector

    init(router: any ConnectionRouter, resolver: any OriginalDestinationResolver,
         metrics: ProxyMetrics, logger: Logger,
         services: LoopServiceRegistry? = nil, meshPort: UInt16 = 15008, detectTimeout: TimeAmount = .seconds(1),
         maxConnections: Int = ProxyServer.maxConnectionsPerListener, connector: any Connector = TCPConnector()) {
        self.maxConnections = maxConnections
        self.connector = connector
        self.router = router
        self.resolver = resolver
        self.metrics = metrics
        self.logger = logger
        self.services = services
        self.meshPort = meshPort
        self.detectTimeout = detectTimeout
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        let channel = context.channel
        if metrics.counters(router.direction).active.load(ordering: .relaxed) >= maxConnections {
            metrics.limitHit(.connections)
            refuse(channel, .overload, peer: "\(channel.remoteAddress.map(String.init(describing:)) ?? "?")", destination: nil)
            return
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        resolver.originalDestination(of: channel).whenComplete { result in
            handler.value.route(channel: channel, originalDestination: result)
        }
    }

    private func route(channel: Channel, originalDestination: Result<IPEndpoint, Error>) {
        let direction = router.direction
        let peer = channel.remoteAddress.flatMap(IPEndpoint.init).map(String.init(describing:)) ?? "?"
        guard case .success(let destination) = originalDestination,
              let local = channel.localAddress.flatMap(IPEndpoint.init) else {
            refuse(channel, .noOriginalDestination, peer: peer, destination: nil)
            return
        }
        let snapshot = services?.services(on: channel.eventLoop)?.snapshot
        switch router.decide(originalDestination: destination, localAddress: local, snapshot: snapshot) {
        case .refuse(let reason):
            refuse(channel, reason, peer: peer, destination: destination)
        case .relay(let target, let timeout, let cluster):
            if cluster == nil && direction == .outbound { metrics.passthrough.wrappingIncrement(ordering: .relaxed) }
            connect(channel, to: target, timeout: timeout, cluster: cluster, peer: peer, destination: destination)
        case .cluster(let decision):
            if decision.isPassthrough { metrics.passthrough.wrappingIncrement(ordering: .relaxed) }
            carry(channel, decision, peer: peer, destination: destination)
        }
    }

    /// The cluster as this connection's loop balances it.
    private func route(_ decision: ClusterDecision, _ channel: Channel) -> MeshRoute {
        // Without loop services (a bare handler in tests) the connection
        // balances on its own; the node always has them.
        let loop = services?.services(on: channel.eventLoop)
        // A passthrough's stand-in cluster is this connection's alone.
        let balancer = decision.isPassthrough ? LoopBalancer(plan: decision.cluster.plan)
            : loop?.balancer(for: decision.cluster) ?? LoopBalancer(plan: decision.cluster.plan)
        return MeshRoute(cluster: decision.cluster, balancer: balancer, fixedEndpoint: decision.fixedEndpoint,
                         meshPort: meshPort, source: channel.remoteAddress.flatMap(IPEndpoint.init)?.address,
                         snapshot: decision.snapshot, services: loop, isPassthrough: decision.isPassthrough,
                         routingOnly: decision.routingOnly)
    }

    /// A cluster's connection: find out what the app speaks (or take the
    /// cluster's word for it), then carry it. HTTP is served per request
    /// (each balanced, to a meshed endpoint's node as a mesh stream or to a
    /// plain endpoint over HTTP/1.1 or h2c); anything else balances once and
    /// rides a CONNECT stream to a meshed endpoint, or a TCP relay to a
    /// plain one.
    private func carry(_ channel: Channel, _ decision: ClusterDecision, peer: String, destination: IPEndpoint) {
        if !decision.isPassthrough {
            let idle = IdleWatch(clock: IdleClock(timeout: TimeAmount(decision.cluster.config.timeouts.idle),
                                                  metrics: metrics, logger: logger))
            try? channel.pipeline.syncOperations.addHandler(idle, position: .first)
        }
        let route = route(decision, channel)
        guard let services = services?.services(on: channel.eventLoop),
              decision.knownProtocol != .tcp || decision.cluster.hasMeshedEndpoints else {
            // TCP to plain endpoints, known up front (or a bare handler
            // without loop services): a relay, balanced once.
            let lease: Lease
            switch route.connectionLease() {
            case .success(let leased): lease = leased
            case .failure(let reason):
                return refuse(channel, RefusalReason(reason), peer: peer, destination: destination)
            }
            connect(channel, to: lease.endpoint, timeout: decision.connectTimeout,
                    cluster: decision.cluster.name, peer: peer, destination: destination, lease: lease)
            return
        }
        let metrics = self.metrics
        // The app connection counts as open until it closes, so a drain
        // waits for it (a plain TCP relay chosen after detection counts
        // its bytes only).
        metrics.opened(.outbound)
        channel.closeFuture.whenComplete { _ in metrics.closed(.outbound, received: 0, sent: 0) }
        // Holds this handler (out of the pipeline by then) until detection ends.
        let connectPlain = NIOLoopBound({ (channel: Channel, lease: Lease, bytes: ByteBuffer) in
            self.connect(channel, to: lease.endpoint, timeout: decision.connectTimeout, cluster: decision.cluster.name,
                          peer: peer, destination: destination, initialBytes: bytes, lease: lease, counted: false)
        }, eventLoop: channel.eventLoop)
        var logger = self.logger
        logger[metadataKey: "peer"] = "\(peer)"
        logger[metadataKey: "dst"] = "\(destination)"
        logger[metadataKey: "cluster"] = "\(decision.cluster.name)"
        let sessionLogger = logger
        let carry = { (channel: Channel, verdict: DetectedProtocol, bytes: ByteBuffer) in
            sessionLogger.debug("protocol detected", metadata: ["protocol": "\(verdict.rawValue)"])
            do {
                switch verdict {
                case .http1:
                    try Self.installHTTP(on: channel, route: route, services: services, metrics: metrics,
                                         logger: sessionLogger)
                case .http2:
                    try Self.installHTTP2(on: channel, route: route, services: services, metrics: metrics,
                                          logger: sessionLogger)
                case .tls, .tcp:
                    // One pick for the life of the tunnel or relay.
                    let lease: Lease
                    switch route.connectionLease() {
                    case .success(let leased): lease = leased
                    case .failure(let reason):
                        metrics.refused(.outbound, RefusalReason(reason))
                        RelayHandler.reset(channel)
                        return
                    }
                    if route.cluster.isMeshed(lease.endpoint) {
                        MeshTunnel.open(on: channel, pool: services.meshPool, peer: route.meshPeer(of: lease.endpoint),
                                        lease: lease, initialBytes: bytes, logger: sessionLogger, metrics: metrics,
                                        cluster: route.cluster.name)
                    } else {
                        connectPlain.value(channel, lease, bytes)
                    }
                    return
                }
            } catch {
                channel.close(promise: nil)
                return
            }
            if bytes.readableBytes > 0 {
                channel.pipeline.fireChannelRead(bytes)
                channel.pipeline.fireChannelReadComplete()
            }
        }
        do {
            if let known = decision.knownProtocol {
                channel.pipeline.syncOperations.removeHandler(self, promise: nil)
                carry(channel, known, channel.allocator.buffer(capacity: 0))
            } else {
                // The configuration the connection was accepted under.
                let timeout = decision.snapshot.map { TimeAmount($0.configuration.detectTimeout) } ?? detectTimeout
                let detection = ProtocolDetectionHandler(timeout: timeout) { context, verdict, bytes in
                    carry(context.channel, verdict, bytes)
                }
                try channel.pipeline.syncOperations.addHandler(detection)
                channel.pipeline.syncOperations.removeHandler(self, promise: nil)
            }
        } catch {
            channel.close(promise: nil)
            return
        }
        channel.setOption(.autoRead, value: true).whenFailure { _ in channel.close(promise: nil) }
    }

    /// An HTTP/2 app (gRPC, h2c): we are its server; each of its streams
    /// is spliced to a stream to the endpoint chosen for it: a mesh stream
    /// to a meshed endpoint's node, or an h2c stream to a plain endpoint.
    private static func installHTTP2(on channel: Channel, route: MeshRoute, services: LoopServices,
                                     metrics: ProxyMetrics, logger: Logger) throws {
        let app = MeshConnection(role: .server, metrics: metrics, logger: logger, countsAsMesh: false) { app, streamID, _ in
            SplicedStream(connection: app, streamID: streamID, opener: { request, endStream, half, done in
                let target = route.target(for: request)
                let lease: Lease
                switch target.lease(header: { name in request.first { $0.name == name }?.value }) {
                case .success(let leased): lease = leased
                case .failure(let reason):
                    logger.debug("stream refused", metadata: ["cluster": "\(target.name)", "reason": "\(reason.rawValue)"])
                    return done(nil, reason)
                }
                let attempts = StreamAttempts(request: request, endStream: endStream, target: target,
                                              services: services, logger: logger)
                half.attempts = attempts
                attempts.open(on: lease, done: done)
            }, rewriteResponse: { $0 }, logger: logger,
               record: RequestRecord(direction: .outbound, cluster: route.cluster.name),
               makeRequestID: services.makeRequestID)
        }
        try channel.pipeline.syncOperations.addHandler(app)
    }

    /// The app connection's HTTP/1 pipeline towards the mesh: one handler,
    /// which takes the connection's idle clock over from its `IdleWatch`.
    private static func installHTTP(on channel: Channel, route: MeshRoute, services: LoopServices,
                                    metrics: ProxyMetrics, logger: Logger) throws {
        let sync = channel.pipeline.syncOperations
        let watch = try? sync.handler(type: IdleWatch.self)
        if let watch { sync.removeHandler(watch, promise: nil) }
        let handler = OutboundHTTPHandler(route: route, services: services, metrics: metrics, logger: logger,
                                          idle: watch?.clock)
        try sync.addHandler(handler)
        services.track(handler)
        if services.draining { handler.drain() }
        channel.closeFuture.whenComplete { _ in services.untrack(handler) }
    }

    private func refuse(_ channel: Channel, _ reason: RefusalReason, peer: String, destination: IPEndpoint?) {
        metrics.refused(router.direction, reason)
        logger.warning("connection refused", metadata: [
            "direction": "\(router.direction.rawValue)", "reason": "\(reason.rawValue)",
            "peer": "\(peer)", "dst": "\(destination.map(String.init(describing:)) ?? "?")",
        ])
        RelayHandler.reset(channel)
    }

    /// Relays `downstream` to `target` as TCP. A cluster's `lease` on the
    /// target is held until the app connection closes.
    private func connect(_ downstream: Channel, to target: IPEndpoint, timeout: TimeAmount,
                         cluster: String?, peer: String, destination: IPEndpoint,
                         initialBytes: ByteBuffer? = nil, lease: Lease? = nil, counted: Bool = true) {
        let direction = router.direction
        let metrics = self.metrics
        var logger = self.logger
        logger[metadataKey: "direction"] = "\(direction.rawValue)"
        logger[metadataKey: "peer"] = "\(peer)"
        logger[metadataKey: "dst"] = "\(destination)"
        logger[metadataKey: "upstream"] = "\(target)"
        if let cluster { logger[metadataKey: "cluster"] = "\(cluster)" }
        let sessionLogger = logger

        if counted { metrics.opened(direction) }
        let held = lease.map { NIOLoopBound(HeldLease($0), eventLoop: downstream.eventLoop) }
        let startedAt = NIODeadline.now()
        let connectFailed = NIOLoopBoundBox(false, eventLoop: downstream.eventLoop)
        let (downstreamRelay, upstreamRelay) = RelayHandler.pair(downstreamClosed: { received, sent, reset in
            held?.value.finish(.success)
            metrics.record(.session(direction, cluster: cluster, endpoint: target, startedAt: startedAt,
                                    received: received, sent: sent,
                                    reason: connectFailed.value ? .connectFailure : nil))
            if counted {
                metrics.closed(direction, received: received, sent: sent)
            } else {
                metrics.countBytes(direction, received: received, sent: sent)
            }
            if reset { metrics.counters(direction).resets.wrappingIncrement(ordering: .relaxed) }
            sessionLogger.debug("connection closed", metadata: [
                "bytes_in": "\(received)", "bytes_out": "\(sent)", "reset": "\(reset)",
            ])
        })
        do {
            try downstream.pipeline.syncOperations.addHandler(downstreamRelay)
        } catch {
            downstream.close(promise: nil)
            return
        }
        // Release this handler now that the relay owns the channel.
        if (try? downstream.pipeline.syncOperations.context(handler: self)) != nil {
            downstream.pipeline.syncOperations.removeHandler(self, promise: nil)
        }

        upstreamRelay.firstBytes = initialBytes
        let upstreamHandler = NIOLoopBound(upstreamRelay, eventLoop: downstream.eventLoop)
        connector.connect(to: target, on: downstream.eventLoop, timeout: timeout, halfClosure: true) { channel in
                try channel.pipeline.syncOperations.addHandler(upstreamHandler.value)
            }
            .whenComplete { result in
                switch result {
                case .success:
                    sessionLogger.debug("connection relayed")
                    downstream.setOption(.autoRead, value: true).whenFailure { _ in
                        downstream.close(promise: nil)
                    }
                case .failure(let error):
                    held?.value.finish(.failure)
                    connectFailed.value = true
                    metrics.counters(direction).connectFailures.wrappingIncrement(ordering: .relaxed)
                    sessionLogger.warning("upstream connect failed", metadata: ["error": "\(error)"])
                    RelayHandler.reset(downstream)
                }
            }
    }
}

extension RefusalReason {
    /// A TCP connection's refusal for what refused its lease.
    init(_ reason: ErrorReason) {
        switch reason {
        case .rateLimited: self = .rateLimited
        case .overflow: self = .overflow
        default: self = .noEndpoint
        }
    }
}
