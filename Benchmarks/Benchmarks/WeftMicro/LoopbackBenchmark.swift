#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Benchmark
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import WeftConfig
import WeftCore
import WeftProxy

// The client's methods are named like the calls they make.
private func systemClose(_ fd: Int32) -> Int32 { close(fd) }
private func systemConnect(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
    connect(fd, address, length)
}
/// `send` without SIGPIPE when the peer is gone.
private func systemSend(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    #if os(Linux)
    send(fd, bytes, count, Int32(MSG_NOSIGNAL))
    #else
    send(fd, bytes, count, 0)
    #endif
}

/// The whole node path in one process, on loopback: a keep-alive HTTP/1.1
/// client -> node A's outbound listener -> HTTP/2 mesh -> node B -> an
/// HTTP/1.1 app answering 1 KiB, and back. One iteration is one request.
///
/// `.direct` sends the same request straight to the app. Malloc counts are
/// process-wide (every thread), so proxied minus direct is what weft adds
/// per proxied request, both nodes together.
///
/// The client is one blocking socket on the benchmark thread with
/// preallocated buffers, so it allocates nothing itself; the app and both
/// nodes share one event loop thread.
final class LoopbackBenchmark {
    enum Path { case proxied, direct }

    let path: Path
    private var group: MultiThreadedEventLoopGroup?
    private var app: Channel?
    private var nodes: [ProxyServer] = []
    private var client: BlockingClient?
    private var failed = false

    static let requestText =
        "GET /index.html HTTP/1.1\r\nHost: backend:9090\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"

    init(path: Path) {
        self.path = path
    }

    func setUp() async throws {
        do {
            try await start()
        } catch {
            try? await tearDown()
            throw error
        }
    }

    private func start() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        let app = try await Self.startApp(group: group)
        self.app = app
        guard let appPort = app.localAddress?.port else { throw LoopbackError.noPort("app") }
        let clientPort: Int
        switch path {
        case .direct:
            clientPort = appPort
        case .proxied:
            let b = try Self.startNode(name: "bench-b", group: group)
            nodes.append(b)
            let meshPort = try Self.port(of: b, .mesh)
            let cluster = Cluster(name: "backend", addresses: [TypicalHeads.vip], mesh: true,
                                  endpoints: [Endpoint(address: IPEndpoint(address: .loopbackV4,
                                                                           port: UInt16(appPort)))])
            let a = try Self.startNode(name: "bench-a", group: group, clusters: [cluster],
                                       peerMeshPort: UInt16(meshPort))
            nodes.append(a)
            clientPort = try Self.port(of: a, .outbound)
        }
        let client = try BlockingClient(port: clientPort, request: Array(Self.requestText.utf8))
        self.client = client
        try client.prime()
        // The first request must have crossed the mesh, not some other path.
        if path == .proxied, !nodes.allSatisfy({ $0.metrics.openMeshConnections > 0 }) {
            throw LoopbackError.badResponse("the request did not cross a mesh connection")
        }
    }

    /// Best effort: every step runs; the first error is rethrown at the end.
    func tearDown() async throws {
        var firstError: Error?
        func note(_ step: () async throws -> Void) async {
            do { try await step() } catch { firstError = firstError ?? error }
        }
        client?.close()
        client = nil
        for node in nodes.reversed() {
            await note { try await node.close().get() }
        }
        nodes = []
        if let app { await note { try await app.close().get() } }
        app = nil
        if let group { await note { try await group.shutdownGracefully() } }
        group = nil
        if let firstError { throw firstError }
    }

    func run(_ benchmark: Benchmark) {
        // After a failure the connection is in an unknown state: the
        // remaining iterations do nothing (the benchmark is failed anyway).
        guard let client, !failed else {
            if !failed { benchmark.error("client not set up") }
            return
        }
        for _ in benchmark.scaledIterations {
            if let failure = client.roundTrip() {
                failed = true
                benchmark.error("request \(benchmark.currentIteration) failed: \(failure)")
                return
            }
        }
    }

    // MARK: - Setup helpers

    private static func startApp(group: EventLoopGroup) async throws -> Channel {
        var body = ByteBufferAllocator().buffer(capacity: TypicalHeads.bodySize)
        body.writeRepeatingByte(UInt8(ascii: "x"), count: TypicalHeads.bodySize)
        let app = FixedResponseApp(head: TypicalHeads.response, body: body)
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(app)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    /// A node with every listener on an ephemeral port and every
    /// connection's original destination the VIP.
    private static func startNode(name: String, group: EventLoopGroup, clusters: [Cluster] = [],
                                  peerMeshPort: UInt16? = nil) throws -> ProxyServer {
        let listeners = Listeners(outbound: PortListener(port: 0), inbound: InboundListener(port: 0),
                                  mesh: MeshListener(port: 0),
                                  admin: AddressListener(address: .loopbackV4, port: 15000),
                                  health: PortListener(port: 0))
        let configuration = Configuration(listeners: listeners, outboundPolicy: .allowAny, clusters: clusters,
                                          drainTimeout: .seconds(2))
        let logger = Logger(label: name, factory: { _ in SwiftLogNoOpLogHandler() })
        let node = ProxyServer(configuration: configuration,
                               identity: NodeIdentity(id: name, addresses: [.loopbackV4],
                                                      listenerPorts: [15008, 15000]),
                               resolver: FixedOriginalDestination(endpoint: TypicalHeads.vip),
                               group: group, logger: logger, peerMeshPort: peerMeshPort)
        try node.start()
        return node
    }

    private static func port(of node: ProxyServer, _ listener: ProxyServer.Listener) throws -> Int {
        guard let port = node.boundAddresses(listener).first(where: { $0.protocol == .inet })?.port else {
            throw LoopbackError.noPort(listener.rawValue)
        }
        return port
    }
}

enum LoopbackError: Error, CustomStringConvertible {
    case noPort(String)
    case socket(String, Int32)
    case badResponse(String)

    var description: String {
        switch self {
        case .noPort(let what): return "no IPv4 port bound for \(what)"
        case .socket(let call, let code): return "\(call) failed: \(String(cString: strerror(code)))"
        case .badResponse(let text): return "unexpected response: \(text)"
        }
    }
}

/// Every connection was headed for the VIP (what `SO_ORIGINAL_DST` would
/// say after the iptables redirect).
struct FixedOriginalDestination: OriginalDestinationResolver {
    let endpoint: IPEndpoint

    func originalDestination(of channel: Channel) -> EventLoopFuture<IPEndpoint> {
        channel.eventLoop.makeSucceededFuture(endpoint)
    }
}

/// The app: answers every request with the same head and 1 KiB body.
final class FixedResponseApp: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let head: HTTPResponseHead
    private let body: ByteBuffer

    init(head: HTTPResponseHead, body: ByteBuffer) {
        self.head = head
        self.body = body
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

/// A blocking keep-alive HTTP/1.1 client that allocates nothing per
/// request: the request and the receive buffer are allocated once, and the
/// response length (fixed: same head, same body every time) is learnt by
/// ``prime()``.
final class BlockingClient {
    private let fd: Int32
    private let request: UnsafeMutableRawPointer
    private let requestCount: Int
    private let buffer: UnsafeMutableRawPointer
    private let bufferCount = 64 * 1024
    /// `HTTP/1.1 200 `, compared with each response's first bytes.
    private let status: UnsafeMutableRawPointer
    private let statusCount: Int
    private var expectedLength = 0

    enum Failure: CustomStringConvertible {
        case send(Int32), receive(Int32), closed(received: Int), length(Int), status

        var description: String {
            switch self {
            case .send(let code): return "send: \(String(cString: strerror(code)))"
            case .receive(let code): return "recv: \(String(cString: strerror(code)))"
            case .closed(let received): return "connection closed after \(received) bytes"
            case .length(let received): return "response was \(received) bytes, expected a fixed length"
            case .status: return "status was not 200"
            }
        }
    }

    init(port: Int, request: [UInt8]) throws {
        fd = try Self.connect(port: port)
        self.request = Self.copy(request)
        requestCount = request.count
        buffer = .allocate(byteCount: bufferCount, alignment: 16)
        let statusLine = Array("HTTP/1.1 200 ".utf8)
        status = Self.copy(statusLine)
        statusCount = statusLine.count
    }

    deinit {
        request.deallocate()
        buffer.deallocate()
        status.deallocate()
    }

    private static func copy(_ bytes: [UInt8]) -> UnsafeMutableRawPointer {
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(1, bytes.count), alignment: 1)
        bytes.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(pointer), byteCount: $0.count) }
        return pointer
    }

    /// A blocking IPv4 socket connected to 127.0.0.1:`port`, Nagle off; a
    /// stalled path fails the benchmark after 5 s instead of hanging it.
    private static func connect(port: Int) throws -> Int32 {
        #if canImport(Glibc)
        let streamType = Int32(SOCK_STREAM.rawValue)
        #else
        let streamType = SOCK_STREAM
        #endif
        let fd = socket(AF_INET, streamType, 0)
        guard fd >= 0 else { throw LoopbackError.socket("socket", errno) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                systemConnect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            let code = errno
            _ = systemClose(fd)
            throw LoopbackError.socket("connect", code)
        }
        return fd
    }

    func close() {
        _ = systemClose(fd)
    }

    /// The first request: reads the head, takes the body's length from
    /// Content-Length, and remembers the whole response's size.
    func prime() throws {
        if let failure = send() { throw LoopbackError.badResponse("\(failure)") }
        var received = 0
        var total: Int?
        while received < total ?? .max {
            let count = recv(fd, buffer + received, bufferCount - received, 0)
            if count < 0 { throw LoopbackError.socket("recv", errno) }
            if count == 0 { throw LoopbackError.badResponse("closed after \(received) bytes") }
            received += count
            if total == nil {
                let bytes = Array(UnsafeRawBufferPointer(start: buffer, count: received))
                guard let end = Self.endOfHead(bytes) else { continue }
                let head = String(decoding: bytes[..<end], as: UTF8.self)
                guard head.hasPrefix("HTTP/1.1 200 "), let length = Self.contentLength(head) else {
                    throw LoopbackError.badResponse(head)
                }
                total = end + length
            }
        }
        guard let total, received == total else {
            throw LoopbackError.badResponse("\(received) bytes, more than one response")
        }
        expectedLength = total
    }

    /// One request and its whole response; nil on success.
    func roundTrip() -> Failure? {
        if let failure = send() { return failure }
        var received = 0
        while received < expectedLength {
            let count = recv(fd, buffer + received, bufferCount - received, 0)
            if count < 0 { return .receive(errno) }
            if count == 0 { return .closed(received: received) }
            received += count
        }
        if received != expectedLength { return .length(received) }
        if memcmp(buffer, status, statusCount) != 0 { return .status }
        return nil
    }

    private func send() -> Failure? {
        var sent = 0
        while sent < requestCount {
            let count = systemSend(fd, request + sent, requestCount - sent)
            if count <= 0 { return .send(errno) }
            sent += count
        }
        return nil
    }

    /// Offset just past `\r\n\r\n`.
    private static func endOfHead(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4)
        where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index + 4
        }
        return nil
    }

    private static func contentLength(_ head: String) -> Int? {
        for line in head.split(separator: "\r\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "content-length" {
                return Int(parts[1].filter { $0 != " " && $0 != "\t" })
            }
        }
        return nil
    }
}
