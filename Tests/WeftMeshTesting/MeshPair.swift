import Logging
import NIOCore
import NIOEmbedded
import WeftHTTP2
import WeftMesh
import WeftObservability
import XCTest

// An in-memory pair of mesh connections for tests: a client and a server
// `MeshConnection`, each alone in an `EmbeddedChannel` on one embedded
// loop, wired back to back; whatever one writes, `pump` carries to the other.

/// A stream's side of the story, as its `MeshStreamHandler` hears it.
public final class RecordingStream: MeshStreamHandler, @unchecked Sendable {
    public var headers: [(fields: HTTP2Fields, kind: HTTP2HeadersKind, endStream: Bool)] = []
    public var body = ByteBuffer()
    public var consumed = 0
    /// The peer finished sending (END_STREAM on HEADERS or DATA).
    public var peerEnded = false
    public var closedWith: [HTTP2ErrorCode] = []
    public var writability: [Bool] = []
    /// Consume body bytes as they arrive, as a fast consumer does.
    public var autoConsume = true
    public weak var connection: MeshConnection?
    public var streamID: Int32?
    /// Runs once when the peer has finished sending.
    public var onPeerEnded: ((RecordingStream) -> Void)?

    public init() {}

    public var bodyString: String { String(buffer: body) }
    public var unconsumed: Int { body.readableBytes - consumed }

    public func streamHeaders(_ headers: HTTP2Fields, kind: HTTP2HeadersKind, endStream: Bool) {
        self.headers.append((headers, kind, endStream))
        if endStream { ended() }
    }

    public func streamData(_ data: ByteBuffer, endStream: Bool) {
        var data = data
        body.writeBuffer(&data)
        if autoConsume { consumeAll() }
        if endStream { ended() }
    }

    public func streamClosed(_ errorCode: HTTP2ErrorCode) {
        closedWith.append(errorCode)
    }

    public func streamWritabilityChanged(_ writable: Bool) {
        writability.append(writable)
    }

    public func consumeAll() {
        guard let connection, let streamID, unconsumed > 0 else { return }
        let count = unconsumed
        consumed += count
        connection.consume(streamID: streamID, bytes: count)
    }

    private func ended() {
        XCTAssertFalse(peerEnded, "END_STREAM delivered twice")
        peerEnded = true
        onPeerEnded?(self)
    }
}

/// The streams the server accepted, in order.
public final class AcceptedStreams {
    public var streams: [RecordingStream] = []
    /// Set on each accepted stream as its `onPeerEnded`.
    public var answer: ((RecordingStream) -> Void)?
    public var autoConsume = true

    public init() {}
}

/// A client and a server connection on one embedded loop.
public final class MeshPair {
    public let loop = EmbeddedEventLoop()
    public let clientChannel: EmbeddedChannel
    public let serverChannel: EmbeddedChannel
    public let client: MeshConnection
    public let server: MeshConnection
    public let accepted = AcceptedStreams()
    public let clientMetrics = ProxyMetrics()
    public let serverMetrics = ProxyMetrics()
    public var clientUnusable = 0
    public var serverUnusable = 0

    /// `accept`, when given, makes the server's stream handlers instead
    /// of the recording ones.
    public init(clientUpkeep: MeshConnection.Upkeep? = nil,
         accept: ((MeshConnection, Int32, HTTP2Fields) -> MeshStreamHandler)? = nil) throws {
        var logger = Logger(label: "test.mesh")
        logger.logLevel = .critical
        client = MeshConnection(role: .client, metrics: clientMetrics, logger: logger)
        let accepted = self.accepted
        server = MeshConnection(role: .server, metrics: serverMetrics, logger: logger) { connection, streamID, headers in
            if let accept { return accept(connection, streamID, headers) }
            let stream = RecordingStream()
            stream.connection = connection
            stream.streamID = streamID
            stream.autoConsume = accepted.autoConsume
            stream.onPeerEnded = accepted.answer
            accepted.streams.append(stream)
            return stream
        }
        if let clientUpkeep { client.upkeep = clientUpkeep }
        clientChannel = EmbeddedChannel(handler: client, loop: loop)
        serverChannel = EmbeddedChannel(handler: server, loop: loop)
        client.onUnusable = { [unowned self] _ in self.clientUnusable += 1 }
        server.onUnusable = { [unowned self] _ in self.serverUnusable += 1 }
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 15008)
        try serverChannel.connect(to: address).wait()
        try clientChannel.connect(to: address).wait()
    }

    /// Moves bytes both ways until neither side writes anything more. A
    /// side whose channel closed makes the other side see the
    /// connection close, as a socket would.
    public func pump(file: StaticString = #filePath, line: UInt = #line) throws {
        for _ in 0..<10_000 {
            loop.run()
            let forward = try transfer(from: clientChannel, to: serverChannel)
            let backward = try transfer(from: serverChannel, to: clientChannel)
            loop.run()
            if !forward && !backward {
                propagateClose()
                return
            }
        }
        XCTFail("the connections never went quiet", file: file, line: line)
    }

    private func transfer(from source: EmbeddedChannel, to sink: EmbeddedChannel) throws -> Bool {
        var moved = false
        while let buffer = try source.readOutbound(as: ByteBuffer.self) {
            moved = true
            if sink.isActive { sink.pipeline.fireChannelRead(buffer) }
        }
        if moved && sink.isActive { sink.pipeline.fireChannelReadComplete() }
        return moved
    }

    private func propagateClose() {
        if !clientChannel.isActive && serverChannel.isActive { serverChannel.close(promise: nil) }
        if !serverChannel.isActive && clientChannel.isActive { clientChannel.close(promise: nil) }
        loop.run()
    }

    /// Opens a client stream whose handler consumes what it receives.
    public func open(_ headers: HTTP2Fields, endStream: Bool) throws -> RecordingStream {
        let stream = RecordingStream()
        stream.connection = client
        stream.streamID = try client.openStream(headers: headers, endStream: endStream, handler: stream)
        return stream
    }

    public func finish() {
        XCTAssertNoThrow(try clientChannel.finish(acceptAlreadyClosed: true))
        XCTAssertNoThrow(try serverChannel.finish(acceptAlreadyClosed: true))
    }
}

/// Requests and answers the tests exchange.
public enum MeshExchange {
    public static func request(_ path: String, method: String = "POST") -> HTTP2Fields {
        [HTTP2Header(":method", method), HTTP2Header(":scheme", "http"), HTTP2Header(":path", path),
         HTTP2Header(":authority", "backend:9090"), HTTP2Header("content-type", "text/plain")]
    }

    /// What a server stream says once the request has ended: 200, a body
    /// naming the request, and trailers.
    public static func answerWithBodyAndTrailers(_ stream: RecordingStream) {
        guard let connection = stream.connection, let id = stream.streamID else { return XCTFail("unbound stream") }
        let path = stream.headers.first?.fields.first { $0.name == ":path" }?.value ?? "?"
        XCTAssertNoThrow(try connection.respond(streamID: id, headers: [HTTP2Header(":status", "200"),
                                                                        HTTP2Header("x-answer", "yes")],
                                                endStream: false))
        XCTAssertNoThrow(try connection.sendData(streamID: id, ByteBuffer(string: "answer to ")))
        XCTAssertNoThrow(try connection.sendData(streamID: id, ByteBuffer(string: path)))
        XCTAssertNoThrow(try connection.sendEnd(streamID: id, trailers: [HTTP2Header("grpc-status", "0"),
                                                                        HTTP2Header("x-digest", "d1")]))
    }
}
