import Atomics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import WeftConfig
import WeftCore
import WeftDNS
import WeftNetfilter
import WeftObservability

/// DNS capture (SPEC §7, `weft init --capture-dns`): the app's DNS,
/// redirected to `listeners.dns.port`, over UDP and TCP. Queries for a
/// cluster hostname are answered with the cluster's first VIP of the family
/// asked (TTL 30 s); everything else goes to the upstream resolver as it
/// came and its answer back as it came (EDNS, truncation and the client's
/// TCP retry included). The names follow reloads. With `upstream:
/// original`, a query goes where the app sent it (conntrack for UDP,
/// `SO_ORIGINAL_DST` for TCP), and to `upstream` when that is unknown.
final class DNSCapture: Sendable {
    static let ttl: UInt32 = 30
    /// Forwarded queries waiting for the upstream at once; more are dropped
    /// (a flood must not cost a socket each).
    static let maxForwardsInFlight = 1024
    static let forwardTimeout = TimeAmount.seconds(5)

    /// Where forwarded queries go (the fallback with `followsOriginal`).
    let upstream: SocketAddress
    /// Forward each query to its original destination when known.
    let followsOriginal: Bool
    /// A conntrack lookup was refused once (logged once).
    private let conntrackRefused = ManagedAtomic(false)
    private let names: NIOLockedValueBox<DNSNames>
    private let searchDomains: [String]
    private let inFlight = ManagedAtomic(0)
    let metrics: ProxyMetrics
    let logger: Logger

    init(upstream: SocketAddress, followsOriginal: Bool = false, searchDomains: [String], configuration: Configuration,
         metrics: ProxyMetrics, logger: Logger) {
        self.upstream = upstream
        self.followsOriginal = followsOriginal
        self.searchDomains = searchDomains
        self.metrics = metrics
        self.logger = logger
        self.names = NIOLockedValueBox(Self.names(of: configuration, searchDomains: searchDomains))
    }

    /// The upstream of `listeners.dns.upstream`: an address, or `auto` (and
    /// `original`'s fallback): the first nameserver of /etc/resolv.conf (port 53).
    static func upstream(_ setting: DNSUpstream, resolvConf: ResolvConf) throws -> SocketAddress {
        switch setting {
        case .address(let endpoint):
            return SocketAddress(endpoint)
        case .auto, .original:
            guard let first = resolvConf.nameservers.compactMap({ IPAddress($0) }).first else {
                throw DNSCaptureError.noUpstream
            }
            return SocketAddress(IPEndpoint(address: first, port: 53))
        }
    }

    func update(_ configuration: Configuration) {
        let table = Self.names(of: configuration, searchDomains: searchDomains)
        names.withLockedValue { $0 = table }
    }

    static func names(of configuration: Configuration, searchDomains: [String]) -> DNSNames {
        var names = DNSNames()
        for cluster in configuration.clusters where !cluster.hostnames.isEmpty {
            let v4 = cluster.addresses.first { $0.address.family == .ipv4 }?.address.bytes
            let v6 = cluster.addresses.first { $0.address.family == .ipv6 }?.address.bytes
            guard v4 != nil || v6 != nil else { continue }
            for hostname in cluster.hostnames {
                names.add(hostname, .init(v4: v4, v6: v6), searchDomains: searchDomains)
            }
        }
        return names
    }

    /// The answer weft gives itself, or nil: forward the query.
    func localAnswer(_ message: [UInt8]) -> [UInt8]? {
        guard let query = try? DNSQuery(parsing: message), query.qclass == DNSQuery.classIN,
              let addresses = names.withLockedValue({ $0.lookup(query.name) }) else { return nil }
        let address: [UInt8]? = switch query.type {
        case DNSQuery.typeA: addresses.v4
        case DNSQuery.typeAAAA: addresses.v6
        default: nil
        }
        metrics.dnsQueries.answered.wrappingIncrement(ordering: .relaxed)
        return query.answer(addresses: address.map { [$0] } ?? [], ttl: Self.ttl)
    }

    /// A client's TCP connection with no query for this long is closed
    /// (RFC 7766 §6.2.3: servers time idle connections out).
    static let tcpIdleTimeout = TimeAmount.seconds(30)

    enum Transport { case udp, tcp }

    /// Where to forward a query whose original destination is `original`
    /// (nil: unknown), received on `listener`: with `followsOriginal`, the
    /// original destination unless it is the listener itself (the app
    /// asked weft directly); else the upstream.
    func destination(original: IPEndpoint?, listener: SocketAddress?) -> SocketAddress {
        guard followsOriginal, let original else { return upstream }
        let address = SocketAddress(original)
        return address == listener ? upstream : address
    }

    func reportConntrack(_ error: ConntrackError) {
        guard !conntrackRefused.exchange(true, ordering: .relaxed) else { return }
        logger.warning("DNS capture: the original destination of UDP queries is unknown, forwarding them to the upstream", metadata: [
            "upstream": "\(upstream)", "reason": "\(error)",
        ])
    }

    /// Sends `message` to `upstream` from a socket of its own (UDP) or
    /// over a connection of its own (TCP) and completes with the first
    /// answer, or fails after `forwardTimeout`. At most
    /// `maxForwardsInFlight` at once: beyond, nil (dropped, counted).
    func forward(_ message: ByteBuffer, to upstream: SocketAddress, over transport: Transport,
                 on loop: EventLoop) -> EventLoopFuture<ByteBuffer>? {
        guard inFlight.loadThenWrappingIncrement(ordering: .relaxed) < Self.maxForwardsInFlight else {
            inFlight.wrappingDecrement(ordering: .relaxed)
            metrics.dnsQueries.dropped.wrappingIncrement(ordering: .relaxed)
            metrics.limitHit(.dnsForwards)
            return nil
        }
        let promise = loop.makePromise(of: ByteBuffer.self)
        let opened: EventLoopFuture<Channel>
        switch transport {
        case .udp:
            let any = IPEndpoint(address: upstream.protocol == .inet6 ? .v6(high: 0, low: 0) : .v4(0), port: 0)
            opened = DatagramBootstrap(group: loop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            FirstAnswer<AddressedEnvelope<ByteBuffer>>(promise: promise) {
                                $0.remoteAddress == upstream ? $0.data : nil
                            })
                    }
                }
                .bind(to: SocketAddress(any))
                .map { channel in
                    channel.writeAndFlush(AddressedEnvelope(remoteAddress: upstream, data: message), promise: nil)
                    return channel
                }
        case .tcp:
            opened = ClientBootstrap(group: loop)
                .connectTimeout(Self.forwardTimeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            ByteToMessageHandler(DNSTCPFrameDecoder()), FirstAnswer<ByteBuffer>(promise: promise) { $0 },
                        ])
                    }
                }
                .connect(to: upstream)
                .map { channel in
                    channel.writeAndFlush(DNSTCPFrameDecoder.frame(message), promise: nil)
                    return channel
                }
        }
        opened.whenComplete { result in
            switch result {
            case .failure(let error):
                promise.fail(error)
            case .success(let channel):
                let timer = channel.eventLoop.scheduleTask(in: Self.forwardTimeout) {
                    promise.fail(ChannelError.connectTimeout(Self.forwardTimeout))
                }
                promise.futureResult.whenComplete { _ in
                    timer.cancel()
                    channel.close(promise: nil)
                }
            }
        }
        let (inFlight, metrics) = (self.inFlight, self.metrics)
        promise.futureResult.whenComplete { result in
            inFlight.wrappingDecrement(ordering: .relaxed)
            let counter = (try? result.get()) != nil ? metrics.dnsQueries.forwarded : metrics.dnsQueries.failed
            counter.wrappingIncrement(ordering: .relaxed)
        }
        return promise.futureResult
    }

    // MARK: - Listeners

    func bindUDP(group: EventLoopGroup, at address: SocketAddress) -> EventLoopFuture<Channel> {
        DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(UDPHandler(self)) }
            }
            .bind(to: address)
    }

    func bindTCP(group: EventLoopGroup, at address: SocketAddress) -> EventLoopFuture<Channel> {
        ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: Self.tcpIdleTimeout),
                        ByteToMessageHandler(DNSTCPFrameDecoder()), TCPHandler(self),
                    ])
                }
            }
            .bind(to: address)
    }

    /// Queries over UDP: each answered here, or forwarded and the answer
    /// sent back to where the query came from.
    private final class UDPHandler: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        private let capture: DNSCapture
        /// This listener's netlink socket to conntrack (`upstream: original`).
        private lazy var conntrack: ConntrackTable? = {
            guard capture.followsOriginal else { return nil }
            do throws(ConntrackError) {
                return try ConntrackTable()
            } catch {
                capture.reportConntrack(error)
                return nil
            }
        }()
        init(_ capture: DNSCapture) { self.capture = capture }

        /// Where a UDP query from `client` received at `local` was going,
        /// from conntrack; nil when unknown. After a refusal (no
        /// CAP_NET_ADMIN, logged once) conntrack is not asked again.
        private func originalDestination(of client: SocketAddress, at local: SocketAddress?) -> IPEndpoint? {
            guard let table = conntrack, let local, let listener = IPEndpoint(local), let peer = IPEndpoint(client) else {
                return nil
            }
            do {
                return try table.originalDestination(udpReceivedAt: listener, from: peer)
            } catch .noEntry {
                return nil
            } catch {
                if error == .notPermitted { conntrack = nil }
                capture.reportConntrack(error)
                return nil
            }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let client = envelope.remoteAddress
            if let answer = capture.localAnswer(Array(envelope.data.readableBytesView)) {
                context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: client, data: ByteBuffer(bytes: answer))),
                                      promise: nil)
                return
            }
            let local = context.channel.localAddress
            let original = capture.followsOriginal ? originalDestination(of: client, at: local) : nil
            let upstream = capture.destination(original: original, listener: local)
            let listener = NIOLoopBound(context.channel, eventLoop: context.eventLoop)
            capture.forward(envelope.data, to: upstream, over: .udp, on: context.eventLoop)?.whenSuccess { reply in
                listener.value.writeAndFlush(AddressedEnvelope(remoteAddress: client, data: reply), promise: nil)
            }
        }
    }

    /// Queries over TCP, each answered here or forwarded over a connection
    /// of its own; an idle connection is closed.
    private final class TCPHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private let capture: DNSCapture
        /// Where this connection's queries go (its original destination
        /// with `upstream: original`, read once it is active).
        private var upstream: SocketAddress
        init(_ capture: DNSCapture) {
            self.capture = capture
            upstream = capture.upstream
        }

        func channelActive(context: ChannelHandlerContext) {
            if capture.followsOriginal {
                let local = context.channel.localAddress
                let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
                OriginalDestination.lookup(context.channel).whenSuccess { original in
                    handler.value.upstream = handler.value.capture.destination(original: original, listener: local)
                }
            }
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let message = unwrapInboundIn(data)
            if let answer = capture.localAnswer(Array(message.readableBytesView)) {
                context.writeAndFlush(wrapOutboundOut(DNSTCPFrameDecoder.frame(ByteBuffer(bytes: answer))), promise: nil)
                return
            }
            let client = NIOLoopBound(context.channel, eventLoop: context.eventLoop)
            capture.forward(message, to: upstream, over: .tcp, on: context.eventLoop)?.whenComplete { result in
                switch result {
                case .success(let reply): client.value.writeAndFlush(DNSTCPFrameDecoder.frame(reply), promise: nil)
                case .failure: client.value.close(promise: nil)
                }
            }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if event is IdleStateHandler.IdleStateEvent {
                context.close(promise: nil)
                return
            }
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Completes with the first answer a forwarding socket or connection
    /// receives (`answer` picks it out of a message, or ignores one: over
    /// UDP, anything not from the upstream), and fails if it closes first.
    private final class FirstAnswer<Message>: ChannelInboundHandler {
        typealias InboundIn = Message
        private let promise: EventLoopPromise<ByteBuffer>
        private let answer: (Message) -> ByteBuffer?
        init(promise: EventLoopPromise<ByteBuffer>, answer: @escaping (Message) -> ByteBuffer?) {
            self.promise = promise
            self.answer = answer
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if let reply = answer(unwrapInboundIn(data)) { promise.succeed(reply) }
        }
        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.ioOnClosedChannel)  // no-op once answered
        }
        func handlerRemoved(context: ChannelHandlerContext) {
            promise.fail(ChannelError.ioOnClosedChannel)
        }
    }
}

/// DNS over TCP frames each message with a 2-byte length (RFC 1035 §4.2.2).
struct DNSTCPFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              buffer.readableBytes >= 2 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 2)
        guard let message = buffer.readSlice(length: Int(length)) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(message))
        return .continue
    }

    static func frame(_ message: ByteBuffer) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(2 + message.readableBytes)
        out.writeInteger(UInt16(clamping: message.readableBytes))
        var message = message
        out.writeBuffer(&message)
        return out
    }
}

enum DNSCaptureError: Error, CustomStringConvertible {
    case noUpstream
    var description: String {
        "listeners.dns.upstream is auto but /etc/resolv.conf names no nameserver: set an address"
    }
}
