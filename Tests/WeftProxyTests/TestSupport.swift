#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest
import WeftConfig
import WeftDiscovery
import WeftCore
import WeftNetfilter
import WeftObservability
@testable import WeftProxy

/// Answers every lookup with the destination the test set last.
final class FakeOriginalDestination: OriginalDestinationResolver {
    private let answer = NIOLockedValueBox<IPEndpoint?>(nil)

    func set(_ endpoint: IPEndpoint?) { answer.withLockedValue { $0 = endpoint } }

    func originalDestination(of channel: Channel) -> EventLoopFuture<IPEndpoint> {
        guard let endpoint = answer.withLockedValue({ $0 }) else {
            return channel.eventLoop.makeFailedFuture(OriginalDestinationError.notASocket)
        }
        return channel.eventLoop.makeSucceededFuture(endpoint)
    }
}

/// Collects everything a connection receives and how it ended.
final class CollectingHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let lock = NIOLock()
    private var received = ByteBuffer()
    private var eofSeen = false
    let closed: EventLoopPromise<Error?>
    let onActive: (@Sendable (Channel) -> Void)?
    let onEOF: (@Sendable (Channel) -> Void)?

    init(eventLoop: EventLoop, onActive: (@Sendable (Channel) -> Void)? = nil, onEOF: (@Sendable (Channel) -> Void)? = nil) {
        closed = eventLoop.makePromise()
        self.onActive = onActive
        self.onEOF = onEOF
    }

    var bytes: [UInt8] { lock.withLock { Array(received.readableBytesView) } }
    var sawEOF: Bool { lock.withLock { eofSeen } }

    private var error: Error?

    func channelActive(context: ChannelHandlerContext) {
        onActive?(context.channel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        lock.withLock { _ = received.writeBuffer(&buffer) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            lock.withLock { eofSeen = true }
            onEOF?(context.channel)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.error = error
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed.succeed(error)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        closed.succeed(error)  // no-op when already completed
    }
}

/// A proxy on loopback with ephemeral ports and a fake original destination.
struct ProxyFixture {
    let group: MultiThreadedEventLoopGroup
    let server: ProxyServer
    let resolver: FakeOriginalDestination

    init(group: MultiThreadedEventLoopGroup, clusters: [Cluster] = [], routes: [Route] = [],
         policy: OutboundPolicy = .allowAny,
         inbound: InboundListener = InboundListener(port: 0), peerMeshPort: UInt16? = nil,
         maxConnections: Int = ProxyServer.maxConnectionsPerListener,
         hostResolver: any HostResolver = SystemResolver(),
         authorization: [AuthorizationRule] = [], extAuthz: ExtAuthzSettings? = nil) throws {
        self.group = group
        resolver = FakeOriginalDestination()
        let listeners = Listeners(outbound: PortListener(port: 0), inbound: inbound,
                                  mesh: MeshListener(port: 0),
                                  admin: AddressListener(address: .loopbackV4, port: 15000),
                                  health: PortListener(port: 0))
        var configuration = Configuration(listeners: listeners, outboundPolicy: policy, clusters: clusters,
                                          routes: routes, drainTimeout: .seconds(2))
        configuration.authorization = authorization
        configuration.extAuthz = extAuthz
        var logger = Logger(label: "test")
        // WEFT_TEST_LOG=debug shows what the nodes do while a test runs.
        logger.logLevel = getenv("WEFT_TEST_LOG").flatMap { Logger.Level(rawValue: String(cString: $0)) } ?? .critical
        server = ProxyServer(configuration: configuration,
                             identity: NodeIdentity(id: "test", addresses: [.loopbackV4],
                                                    listenerPorts: [15008, 15000]),
                             resolver: resolver, group: group, logger: logger, peerMeshPort: peerMeshPort,
                             maxConnectionsPerListener: maxConnections, hostResolver: hostResolver)
        try server.start()
    }

    func port(_ listener: ProxyServer.Listener) throws -> Int {
        try XCTUnwrap(server.boundAddresses(listener).first { $0.protocol == .inet }?.port)
    }

    func endpoint(_ listener: ProxyServer.Listener) throws -> IPEndpoint {
        IPEndpoint(address: .loopbackV4, port: UInt16(try port(listener)))
    }

    /// Opens a client connection to a listener of the proxy. A refusal can
    /// reset the connection before the client sees it established; then the
    /// connect error completes `handler.closed` and nil is returned.
    @discardableResult
    func connect(to listener: ProxyServer.Listener, handler: CollectingHandler) throws -> Channel? {
        let port = try port(listener)
        do {
            return try ClientBootstrap(group: group)
                .channelOption(.allowRemoteHalfClosure, value: true)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
                }
                .connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: port)).wait()
        } catch {
            handler.closed.succeed(error)
            return nil
        }
    }
}

/// A loopback TCP server whose per-connection behaviour is a handler factory.
func startServer(group: EventLoopGroup, handler: @escaping @Sendable () -> ChannelHandler & Sendable) throws -> Channel {
    try ServerBootstrap(group: group)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.allowRemoteHalfClosure, value: true)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler()) }
        }
        .bind(host: "127.0.0.1", port: 0).wait()
}

/// Echoes bytes; on EOF from the client, closes its own output too.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // Only after every echo is written: NIO turns an output close on
            // a half-closed socket into a full close that drops queued writes.
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                channel.close(mode: .output, promise: nil)
            }
        }
    }
}

/// Sends a banner as soon as a client connects, then echoes.
final class BannerHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "220 banner\r\n")), promise: nil)
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

/// Resets every connection as soon as it has read something.
final class ResetOnReadHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let channel = context.channel
        (channel as? SocketOptionProvider)?.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}

/// Writes a large payload, then closes its output.
final class SendAndFinishHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let payload: [UInt8]
    init(payload: [UInt8]) { self.payload = payload }
    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: payload))).whenComplete { _ in
            channel.close(mode: .output, promise: nil)
        }
    }
}

/// How a plain blocking socket saw its connection end.
enum RawOutcome: Equatable {
    case reset, eof, data([UInt8]), timeout, connectFailed(Int32)
}

/// Connects a blocking IPv4 socket to 127.0.0.1:`port`, optionally writes,
/// and reports the first thing `recv` sees (bounded by a 5 s timeout).
/// Unlike NIO, a raw socket tells a reset (ECONNRESET) from a clean FIN.
func rawExchange(port: Int, send: [UInt8] = []) -> RawOutcome {
    let fd: Int32
    switch rawConnect(port: port) {
    case .success(let socket): fd = socket
    case .failure(let failure): return .connectFailed(failure.code)
    }
    defer { close(fd) }
    if !send.isEmpty { _ = send.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) } }
    var buffer = [UInt8](repeating: 0, count: 4096)
    let count = recv(fd, &buffer, buffer.count, 0)
    if count > 0 { return .data(Array(buffer[..<count])) }
    if count == 0 { return .eof }
    switch errno {
    case ECONNRESET: return .reset
    case EAGAIN: return .timeout
    default: return .connectFailed(errno)
    }
}

struct SocketFailure: Error { let code: Int32 }

/// A blocking IPv4 socket connected to 127.0.0.1:`port`, whose reads give
/// up after 5 s (so a test that waits on one cannot hang). Close it.
func rawConnect(port: Int) -> Result<Int32, SocketFailure> {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return .failure(SocketFailure(code: errno)) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        let code = errno
        close(fd)
        return .failure(SocketFailure(code: code))
    }
    return .success(fd)
}

extension ProxyMetrics {
    /// Requests finished in `direction` with status class `statusClass`
    /// (1...5; 0: none), over every event loop (waits for their counts).
    func requests(_ direction: Direction, statusClass: Int, cluster: String? = nil) throws -> Int {
        try requestTotals(on: MultiThreadedEventLoopGroup.singleton.next()).wait()
            .filter { key, _ in
                !key.isSession && key.direction == direction && key.statusClass == statusClass
                    && (cluster == nil || key.cluster == cluster)
            }
            .reduce(0) { $0 + $1.value.count }
    }
}

/// Sends `request` (raw HTTP/1.1 text) to a loopback port and returns the
/// response as text, read until its head and Content-Length bytes of body
/// are in (or the connection ends, or 5 s pass).
func rawHTTPExchange(port: Int, request: String) -> String {
    guard case .success(let fd) = rawConnect(port: port) else { return "" }
    defer { close(fd) }
    let bytes = Array(request.utf8)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var buffer = [UInt8](repeating: 0, count: 4096)
    var collected: [UInt8] = []
    while !isCompleteResponse(String(decoding: collected, as: UTF8.self)) {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count <= 0 { break }
        collected += buffer[..<count]
    }
    return String(decoding: collected, as: UTF8.self)
}

/// A whole response: its head and Content-Length bytes of body.
private func isCompleteResponse(_ response: String) -> Bool {
    guard let headEnd = response.range(of: "\r\n\r\n") else { return false }
    let head = response[..<headEnd.lowerBound].lowercased()
    guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
          let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) else {
        return true
    }
    return response.utf8.count - response[..<headEnd.upperBound].utf8.count >= length
}
