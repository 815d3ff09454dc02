import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import WeftConfig
import WeftCore
import WeftDNS
import WeftObservability

/// DNS capture (SPEC §7, `weft init --capture-dns`): the app's DNS,
/// redirected to `listeners.dns.port`, over UDP and TCP. Queries for a
/// cluster hostname are answered with the cluster's first VIP of the family
/// asked (TTL 30 s); everything else goes to the upstream resolver as it
/// came and its answer back as it came (EDNS, truncation and the client's
/// TCP retry included). The names follow reloads.
final class DNSCapture: Sendable {
    static let ttl: UInt32 = 30
    /// Forwarded queries waiting for the upstream at once; more are dropped
    /// (a flood must not cost a socket each).
    static let maxForwardsInFlight = 1024
    static let forwardTimeout = TimeAmount.seconds(5)

    let upstream: SocketAddress
    private let names: NIOLockedValueBox<DNSNames>
    private let searchDomains: [String]
    private let inFlight = NIOLockedValueBox(0)
    let metrics: ProxyMetrics
    let logger: Logger

    init(upstream: SocketAddress, searchDomains: [String], configuration: Configuration, metrics: ProxyMetrics,
         logger: Logger) {
        self.upstream = upstream
        self.searchDomains = searchDomains
        self.metrics = metrics
        self.logger = logger
        self.names = NIOLockedValueBox(Self.names(of: configuration, searchDomains: searchDomains))
    }

    /// The upstream of `listeners.dns.upstream`: an address, or `auto`: the
    /// first nameserver of /etc/resolv.conf (port 53).
    static func upstream(_ setting: DNSUpstream, resolvConf: ResolvConf) throws -> SocketAddress {
        switch setting {
        case .address(let endpoint):
            return SocketAddress(endpoint)
        case .auto:
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

    /// Takes a forwarding slot; false when they are all taken (counted).
    func takeForwardSlot() -> Bool {
        let taken = inFlight.withLockedValue { count -> Bool in
            guard count < Self.maxForwardsInFlight else { return false }
            count += 1
            return true
        }
        if !taken {
            metrics.dnsQueries.dropped.wrappingIncrement(ordering: .relaxed)
            metrics.limitHit(.dnsForwards)
        }
        return taken
    }

    func releaseForwardSlot(answered: Bool) {
        inFlight.withLockedValue { $0 -= 1 }
        (answered ? metrics.dnsQueries.forwarded : metrics.dnsQueries.failed).wrappingIncrement(ordering: .relaxed)
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
                        ByteToMessageHandler(DNSTCPFrameDecoder()), TCPHandler(self),
                    ])
                }
            }
            .bind(to: address)
    }

    /// One query over UDP: answered here, or sent to the upstream from a
    /// socket of its own and the first reply passed back.
    private final class UDPHandler: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        private let capture: DNSCapture
        init(_ capture: DNSCapture) { self.capture = capture }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let message = Array(envelope.data.readableBytesView)
            if let answer = capture.localAnswer(message) {
                let reply = AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: ByteBuffer(bytes: answer))
                context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
                return
            }
            guard capture.takeForwardSlot() else { return }
            let capture = self.capture
            let listener = NIOLoopBound(context.channel, eventLoop: context.eventLoop)
            let client = envelope.remoteAddress
            let promise = context.eventLoop.makePromise(of: ByteBuffer.self)
            let upstream = capture.upstream
            DatagramBootstrap(group: context.eventLoop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(FirstDatagram(promise: promise))
                    }
                }
                .bind(to: SocketAddress(IPEndpoint(address: upstream.protocol == .inet6 ? .v6(high: 0, low: 0) : .v4(0),
                                                   port: 0)))
                .whenComplete { result in
                    switch result {
                    case .failure(let error):
                        promise.fail(error)
                    case .success(let socket):
                        socket.writeAndFlush(AddressedEnvelope(remoteAddress: upstream, data: envelope.data), promise: nil)
                        let timer = socket.eventLoop.scheduleTask(in: DNSCapture.forwardTimeout) {
                            promise.fail(ChannelError.connectTimeout(DNSCapture.forwardTimeout))
                        }
                        promise.futureResult.whenComplete { _ in
                            timer.cancel()
                            socket.close(promise: nil)
                        }
                    }
                }
            promise.futureResult.whenComplete { result in
                capture.releaseForwardSlot(answered: (try? result.get()) != nil)
                guard case .success(let reply) = result else { return }
                listener.value.writeAndFlush(AddressedEnvelope(remoteAddress: client, data: reply), promise: nil)
            }
        }
    }

    /// Completes with the first datagram a forwarding socket receives.
    private final class FirstDatagram: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        private let promise: EventLoopPromise<ByteBuffer>
        init(promise: EventLoopPromise<ByteBuffer>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            promise.succeed(unwrapInboundIn(data).data)
        }
        func handlerRemoved(context: ChannelHandlerContext) {
            promise.fail(ChannelError.ioOnClosedChannel)  // no-op once answered
        }
    }

    /// Queries over TCP, one at a time per connection, each answered here
    /// or over a TCP connection of its own to the upstream.
    private final class TCPHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private let capture: DNSCapture
        init(_ capture: DNSCapture) { self.capture = capture }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let message = unwrapInboundIn(data)
            if let answer = capture.localAnswer(Array(message.readableBytesView)) {
                context.writeAndFlush(wrapOutboundOut(DNSTCPFrameDecoder.frame(ByteBuffer(bytes: answer))), promise: nil)
                return
            }
            guard capture.takeForwardSlot() else { return }
            let capture = self.capture
            let client = NIOLoopBound(context.channel, eventLoop: context.eventLoop)
            let promise = context.eventLoop.makePromise(of: ByteBuffer.self)
            ClientBootstrap(group: context.eventLoop)
                .connectTimeout(DNSCapture.forwardTimeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            ByteToMessageHandler(DNSTCPFrameDecoder()), FirstFrame(promise: promise),
                        ])
                    }
                }
                .connect(to: capture.upstream)
                .whenComplete { result in
                    switch result {
                    case .failure(let error):
                        promise.fail(error)
                    case .success(let upstream):
                        upstream.writeAndFlush(DNSTCPFrameDecoder.frame(message), promise: nil)
                        let timer = upstream.eventLoop.scheduleTask(in: DNSCapture.forwardTimeout) {
                            promise.fail(ChannelError.connectTimeout(DNSCapture.forwardTimeout))
                        }
                        promise.futureResult.whenComplete { _ in
                            timer.cancel()
                            upstream.close(promise: nil)
                        }
                    }
                }
            promise.futureResult.whenComplete { result in
                capture.releaseForwardSlot(answered: (try? result.get()) != nil)
                switch result {
                case .success(let reply): client.value.writeAndFlush(DNSTCPFrameDecoder.frame(reply), promise: nil)
                case .failure: client.value.close(promise: nil)
                }
            }
        }
    }

    private final class FirstFrame: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        private let promise: EventLoopPromise<ByteBuffer>
        init(promise: EventLoopPromise<ByteBuffer>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            promise.succeed(unwrapInboundIn(data))
        }
        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.ioOnClosedChannel)
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
