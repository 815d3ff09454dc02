import Foundation
import Logging
import NIOCore
import NIOEmbedded
import XCTest
import WeftHTTP2
@testable import WeftProxy

/// Two `MeshConnection`s, a client and a server, each alone in an
/// `EmbeddedChannel`, wired back to back in memory: whatever one writes
/// the test pumps into the other, until both are quiet.
final class MeshConnectionEmbeddedTests: XCTestCase {
    /// A stream's side of the story, as its `MeshStreamHandler` hears it.
    final class RecordingStream: MeshStreamHandler {
        var headers: [(fields: [HTTP2Header], kind: HTTP2HeadersKind, endStream: Bool)] = []
        var body = ByteBuffer()
        var consumed = 0
        /// The peer finished sending (END_STREAM on HEADERS or DATA).
        var peerEnded = false
        var closedWith: [HTTP2ErrorCode] = []
        var writability: [Bool] = []
        /// Consume body bytes as they arrive, as a fast consumer does.
        var autoConsume = true
        weak var connection: MeshConnection?
        var streamID: Int32?
        /// Runs once when the peer has finished sending.
        var onPeerEnded: ((RecordingStream) -> Void)?

        var bodyString: String { String(buffer: body) }
        var unconsumed: Int { body.readableBytes - consumed }

        func streamHeaders(_ headers: [HTTP2Header], kind: HTTP2HeadersKind, endStream: Bool) {
            self.headers.append((headers, kind, endStream))
            if endStream { ended() }
        }

        func streamData(_ data: ByteBuffer, endStream: Bool) {
            var data = data
            body.writeBuffer(&data)
            if autoConsume { consumeAll() }
            if endStream { ended() }
        }

        func streamClosed(_ errorCode: HTTP2ErrorCode) {
            closedWith.append(errorCode)
        }

        func streamWritabilityChanged(_ writable: Bool) {
            writability.append(writable)
        }

        func consumeAll() {
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
    final class Accepted {
        var streams: [RecordingStream] = []
        /// Set on each accepted stream as its `onPeerEnded`.
        var answer: ((RecordingStream) -> Void)?
        var autoConsume = true
    }

    /// A client and a server connection on one embedded loop.
    final class MeshPair {
        let loop = EmbeddedEventLoop()
        let clientChannel: EmbeddedChannel
        let serverChannel: EmbeddedChannel
        let client: MeshConnection
        let server: MeshConnection
        let accepted = Accepted()
        let clientMetrics = ProxyMetrics()
        let serverMetrics = ProxyMetrics()
        var clientUnusable = 0
        var serverUnusable = 0

        /// `accept`, when given, makes the server's stream handlers instead
        /// of the recording ones.
        init(clientUpkeep: MeshConnection.Upkeep? = nil,
             accept: ((MeshConnection, Int32, [HTTP2Header]) -> MeshStreamHandler)? = nil) throws {
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
        func pump(file: StaticString = #filePath, line: UInt = #line) throws {
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
        func open(_ headers: [HTTP2Header], endStream: Bool) throws -> RecordingStream {
            let stream = RecordingStream()
            stream.connection = client
            stream.streamID = try client.openStream(headers: headers, endStream: endStream, handler: stream)
            return stream
        }

        func finish() {
            XCTAssertNoThrow(try clientChannel.finish(acceptAlreadyClosed: true))
            XCTAssertNoThrow(try serverChannel.finish(acceptAlreadyClosed: true))
        }
    }

    static func request(_ path: String, method: String = "POST") -> [HTTP2Header] {
        [HTTP2Header(":method", method), HTTP2Header(":scheme", "http"), HTTP2Header(":path", path),
         HTTP2Header(":authority", "backend:9090"), HTTP2Header("content-type", "text/plain")]
    }

    /// What a server stream says once the request has ended: 200, a body
    /// naming the request, and trailers.
    static func answerWithBodyAndTrailers(_ stream: RecordingStream) {
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

    // MARK: - exchanges

    func testRequestAndResponseWithBodiesAndTrailersArriveIntact() throws {
        let pair = try MeshPair()
        pair.accepted.answer = Self.answerWithBodyAndTrailers
        try pair.pump()
        XCTAssertEqual(pair.clientMetrics.meshConnections.client.load(ordering: .relaxed), 1)
        XCTAssertEqual(pair.serverMetrics.meshConnections.server.load(ordering: .relaxed), 1)

        let request = Self.request("/upload")
        let stream = try pair.open(request, endStream: false)
        let id = try XCTUnwrap(stream.streamID)
        try pair.client.sendData(streamID: id, ByteBuffer(string: "hello "))
        try pair.client.sendData(streamID: id, ByteBuffer(string: "world"))
        try pair.client.sendEnd(streamID: id, trailers: [HTTP2Header("x-checksum", "abc123")])
        try pair.pump()

        XCTAssertEqual(pair.accepted.streams.count, 1)
        let served = try XCTUnwrap(pair.accepted.streams.first)
        XCTAssertEqual(served.headers.map(\.kind), [.request, .trailers])
        XCTAssertEqual(served.headers.first?.fields, request)
        XCTAssertEqual(served.headers.first?.endStream, false)
        XCTAssertEqual(served.headers.last?.fields, [HTTP2Header("x-checksum", "abc123")])
        XCTAssertEqual(served.headers.last?.endStream, true)
        XCTAssertEqual(served.bodyString, "hello world")
        XCTAssertEqual(served.closedWith, [.noError])

        XCTAssertEqual(stream.headers.map(\.kind), [.response, .trailers])
        XCTAssertEqual(stream.headers.first?.fields, [HTTP2Header(":status", "200"), HTTP2Header("x-answer", "yes")])
        XCTAssertEqual(stream.headers.first?.endStream, false)
        XCTAssertEqual(stream.bodyString, "answer to /upload")
        XCTAssertEqual(stream.headers.last?.fields, [HTTP2Header("grpc-status", "0"), HTTP2Header("x-digest", "d1")])
        XCTAssertEqual(stream.headers.last?.endStream, true)
        XCTAssertEqual(stream.closedWith, [.noError])

        XCTAssertEqual(pair.client.openStreamCount, 0)
        XCTAssertEqual(pair.server.openStreamCount, 0)
        XCTAssertTrue(pair.client.hasCapacity, "a finished exchange leaves the connection usable")
        XCTAssertEqual(pair.clientUnusable, 0)
        XCTAssertTrue(pair.clientChannel.isActive)
        XCTAssertTrue(pair.serverChannel.isActive)
        pair.finish()
    }

    /// Every mesh connection and HTTP/2 app connection is one of these: it
    /// must be freed once its channel is gone (it held its context, and the
    /// context it, for the life of the process: a few KiB per connection).
    func testConnectionsAreFreedOnceTheirChannelsClose() throws {
        weak var client: MeshConnection?
        weak var server: MeshConnection?
        do {
            let pair = try MeshPair()
            pair.accepted.answer = Self.answerWithBodyAndTrailers
            let stream = try pair.open(Self.request("/get", method: "GET"), endStream: true)
            try pair.pump()
            XCTAssertEqual(stream.bodyString, "answer to /get")
            client = pair.client
            server = pair.server
            pair.clientChannel.close(promise: nil)
            try pair.pump()
            pair.finish()
        }
        XCTAssertNil(client, "the client connection outlived its channel")
        XCTAssertNil(server, "the server connection outlived its channel")
    }

    func testRequestWithoutBodyEndsOnItsHeaders() throws {
        let pair = try MeshPair()
        pair.accepted.answer = Self.answerWithBodyAndTrailers
        let stream = try pair.open(Self.request("/get", method: "GET"), endStream: true)
        try pair.pump()
        let served = try XCTUnwrap(pair.accepted.streams.first)
        XCTAssertEqual(served.headers.count, 1)
        XCTAssertEqual(served.headers.first?.endStream, true)
        XCTAssertEqual(served.body.readableBytes, 0)
        XCTAssertEqual(stream.bodyString, "answer to /get")
        XCTAssertEqual(stream.closedWith, [.noError])
        pair.finish()
    }

    func testAHundredConcurrentStreamsAllComplete() throws {
        let pair = try MeshPair()
        try pair.pump()
        var streams: [RecordingStream] = []
        for index in 0..<100 {
            let stream = try pair.open(Self.request("/\(index)"), endStream: false)
            try pair.client.sendData(streamID: XCTUnwrap(stream.streamID), ByteBuffer(string: "body \(index)"),
                                     endStream: true)
            streams.append(stream)
        }
        XCTAssertEqual(pair.client.openStreamCount, 100)
        XCTAssertEqual(Set(streams.compactMap(\.streamID)).count, 100)
        try pair.pump()
        // Every request is in, none answered yet: all 100 are open at once.
        XCTAssertEqual(pair.accepted.streams.count, 100)
        XCTAssertEqual(pair.server.openStreamCount, 100)
        XCTAssertTrue(pair.accepted.streams.allSatisfy(\.peerEnded))
        for served in pair.accepted.streams.reversed() {
            Self.answerWithBodyAndTrailers(served)
        }
        try pair.pump()
        for (index, stream) in streams.enumerated() {
            XCTAssertEqual(stream.bodyString, "answer to /\(index)")
            XCTAssertEqual(stream.closedWith, [.noError], "stream \(index)")
        }
        for served in pair.accepted.streams {
            let path = served.headers.first?.fields.first { $0.name == ":path" }?.value ?? "?"
            XCTAssertEqual(served.bodyString, "body \(path.dropFirst())")
            XCTAssertEqual(served.closedWith, [.noError])
        }
        XCTAssertEqual(pair.client.openStreamCount, 0)
        XCTAssertEqual(pair.server.openStreamCount, 0)
        XCTAssertEqual(pair.clientMetrics.meshStreams.client.load(ordering: .relaxed), 100)
        XCTAssertEqual(pair.serverMetrics.meshStreams.server.load(ordering: .relaxed), 100)
        pair.finish()
    }

    // MARK: - resets

    func testClientResetReachesTheServerStreamWithItsCode() throws {
        let pair = try MeshPair()
        let stream = try pair.open(Self.request("/slow"), endStream: false)
        let id = try XCTUnwrap(stream.streamID)
        try pair.client.sendData(streamID: id, ByteBuffer(string: "partial"))
        try pair.pump()
        let served = try XCTUnwrap(pair.accepted.streams.first)
        XCTAssertEqual(served.bodyString, "partial")
        XCTAssertEqual(served.closedWith, [])

        pair.client.reset(streamID: id, errorCode: .cancel)
        try pair.pump()
        XCTAssertEqual(served.closedWith, [.cancel])
        XCTAssertEqual(stream.closedWith, [], "the side that resets is not told again")
        XCTAssertEqual(pair.client.openStreamCount, 0)
        XCTAssertEqual(pair.server.openStreamCount, 0)

        // The connection carries on.
        pair.accepted.answer = Self.answerWithBodyAndTrailers
        let next = try pair.open(Self.request("/next"), endStream: true)
        try pair.pump()
        XCTAssertEqual(next.bodyString, "answer to /next")
        XCTAssertEqual(next.closedWith, [.noError])
        pair.finish()
    }

    func testServerResetReachesTheClientStreamWithItsCode() throws {
        let pair = try MeshPair()
        pair.accepted.answer = { stream in
            stream.connection?.reset(streamID: stream.streamID!, errorCode: .enhanceYourCalm)
        }
        let stream = try pair.open(Self.request("/refused"), endStream: true)
        try pair.pump()
        XCTAssertEqual(stream.closedWith, [.enhanceYourCalm])
        XCTAssertEqual(stream.headers.count, 0)
        XCTAssertEqual(pair.accepted.streams.first?.closedWith, [], "the side that resets is not told again")
        XCTAssertEqual(pair.client.openStreamCount, 0)
        XCTAssertEqual(pair.server.openStreamCount, 0)
        XCTAssertTrue(pair.client.hasCapacity)
        pair.finish()
    }

    /// Bytes a reset stream never consumed go back to the connection
    /// window, or enough resets would starve every later stream.
    func testResetReturnsUnconsumedBytesToTheConnectionWindow() throws {
        let pair = try MeshPair()
        pair.accepted.autoConsume = false
        let window = Int(HTTP2Settings.default.initialWindowSize)
        let connectionWindow = Int(HTTP2Settings.default.connectionWindowSize)
        // Each stream fills its whole window and is reset unconsumed: more
        // than the connection window in all.
        let resets = connectionWindow / window + 2
        for _ in 0..<resets {
            let stream = try pair.open(Self.request("/fill"), endStream: false)
            let id = try XCTUnwrap(stream.streamID)
            try pair.client.sendData(streamID: id, ByteBuffer(repeating: 0x62, count: window))
            try pair.pump()
            XCTAssertEqual(pair.accepted.streams.last?.body.readableBytes, window)
            let served = try XCTUnwrap(pair.accepted.streams.last)
            pair.server.reset(streamID: try XCTUnwrap(served.streamID), errorCode: .cancel)
            try pair.pump()
            XCTAssertEqual(stream.closedWith, [.cancel])
        }
        pair.accepted.autoConsume = true
        pair.accepted.answer = Self.answerWithBodyAndTrailers
        let last = try pair.open(Self.request("/after"), endStream: false)
        try pair.client.sendData(streamID: XCTUnwrap(last.streamID), ByteBuffer(repeating: 0x63, count: 1000),
                                 endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.accepted.streams.last?.body.readableBytes, 1000)
        XCTAssertEqual(last.closedWith, [.noError])
        pair.finish()
    }

    // MARK: - drain

    func testGracefulShutdownStopsNewStreamsAndLetsTheOpenOneFinish() throws {
        let pair = try MeshPair()
        pair.accepted.answer = Self.answerWithBodyAndTrailers
        let stream = try pair.open(Self.request("/long"), endStream: false)
        let id = try XCTUnwrap(stream.streamID)
        try pair.client.sendData(streamID: id, ByteBuffer(string: "first half "))
        try pair.pump()
        XCTAssertTrue(pair.client.hasCapacity)
        XCTAssertEqual(pair.clientUnusable, 0)

        pair.server.shutdownGracefully()
        XCTAssertEqual(pair.serverUnusable, 1)
        try pair.pump()
        XCTAssertFalse(pair.client.hasCapacity)
        XCTAssertEqual(pair.clientUnusable, 1)
        XCTAssertTrue(pair.clientChannel.isActive, "unusable because closed, not because of the GOAWAY")
        XCTAssertThrowsError(try pair.client.openStream(headers: Self.request("/late"), endStream: true,
                                                        handler: RecordingStream())) { error in
            XCTAssertEqual(error as? MeshError, .noCapacity)
        }
        XCTAssertEqual(stream.closedWith, [], "the open stream survives the GOAWAY")
        XCTAssertTrue(pair.serverChannel.isActive, "the server closed with a stream still open")

        try pair.client.sendData(streamID: id, ByteBuffer(string: "second half"))
        try pair.client.sendEnd(streamID: id)
        try pair.pump()
        XCTAssertEqual(pair.accepted.streams.count, 1)
        XCTAssertEqual(pair.accepted.streams.first?.bodyString, "first half second half")
        XCTAssertEqual(stream.bodyString, "answer to /long")
        XCTAssertEqual(stream.headers.last?.kind, .trailers)
        XCTAssertEqual(stream.closedWith, [.noError])
        // Drained: the server closes the connection, once.
        XCTAssertFalse(pair.serverChannel.isActive)
        XCTAssertFalse(pair.clientChannel.isActive)
        XCTAssertEqual(pair.clientUnusable, 1)
        XCTAssertEqual(pair.serverUnusable, 1)
        XCTAssertEqual(pair.clientMetrics.meshConnections.client.load(ordering: .relaxed), 0)
        XCTAssertEqual(pair.serverMetrics.meshConnections.server.load(ordering: .relaxed), 0)
        pair.finish()
    }

    func testConnectionLossClosesOpenStreamsOnBothSides() throws {
        let pair = try MeshPair()
        let stream = try pair.open(Self.request("/lost"), endStream: false)
        try pair.pump()
        let served = try XCTUnwrap(pair.accepted.streams.first)
        pair.clientChannel.close(promise: nil)
        try pair.pump()
        XCTAssertEqual(stream.closedWith, [.connectError])
        XCTAssertEqual(served.closedWith, [.connectError])
        XCTAssertEqual(pair.clientUnusable, 1)
        XCTAssertFalse(pair.client.hasCapacity)
        XCTAssertEqual(pair.client.openStreamCount, 0)
        XCTAssertEqual(pair.server.openStreamCount, 0)
        XCTAssertEqual(pair.clientMetrics.meshConnections.client.load(ordering: .relaxed), 0)
        pair.finish()
    }

    // MARK: - flow control

    func testSenderStopsAtTheReceiveWindowUntilTheReceiverConsumes() throws {
        let pair = try MeshPair()
        pair.accepted.autoConsume = false
        pair.accepted.answer = { stream in
            do {
                try stream.connection?.respond(streamID: stream.streamID!, headers: [HTTP2Header(":status", "204")],
                                               endStream: true)
            } catch {
                XCTFail("respond: \(error)")
            }
        }
        let window = Int(HTTP2Settings.default.initialWindowSize)
        let total = 3 * window + 12_345
        let stream = try pair.open(Self.request("/big"), endStream: false)
        let id = try XCTUnwrap(stream.streamID)
        try pair.client.sendData(streamID: id, ByteBuffer(repeating: 0x61, count: total), endStream: true)
        XCTAssertFalse(pair.client.isWritable(streamID: id), "3 MiB queued is above the high watermark")
        try pair.pump()

        let served = try XCTUnwrap(pair.accepted.streams.first)
        XCTAssertEqual(served.body.readableBytes, window, "the sender did not stop at the stream window")
        XCTAssertFalse(served.peerEnded)
        try pair.pump()
        XCTAssertEqual(served.body.readableBytes, window, "more arrived with nothing consumed")

        var rounds = 0
        while served.body.readableBytes < total && rounds < 100 {
            rounds += 1
            served.consumeAll()
            try pair.pump()
            XCTAssertLessThanOrEqual(served.unconsumed, window, "more than a window outstanding")
            XCTAssertGreaterThan(served.unconsumed, 0, "consuming reopened nothing")
        }
        XCTAssertEqual(served.body.readableBytes, total)
        XCTAssertEqual(served.body, ByteBuffer(repeating: 0x61, count: total), "the body arrived altered")
        XCTAssertTrue(served.peerEnded)
        XCTAssertEqual(stream.writability, [false, true])
        XCTAssertEqual(stream.closedWith, [.noError])
        XCTAssertEqual(stream.headers.first?.fields, [HTTP2Header(":status", "204")])
        served.consumeAll()
        pair.finish()
    }

    func testOneStalledStreamDoesNotStopAnother() throws {
        let pair = try MeshPair()
        pair.accepted.autoConsume = false
        let window = Int(HTTP2Settings.default.initialWindowSize)
        let stalled = try pair.open(Self.request("/stalled"), endStream: false)
        try pair.client.sendData(streamID: XCTUnwrap(stalled.streamID), ByteBuffer(repeating: 0x61, count: 2 * window))
        try pair.pump()
        XCTAssertEqual(pair.accepted.streams.first?.body.readableBytes, window)

        pair.accepted.autoConsume = true
        pair.accepted.answer = Self.answerWithBodyAndTrailers
        let other = try pair.open(Self.request("/other"), endStream: false)
        try pair.client.sendData(streamID: XCTUnwrap(other.streamID), ByteBuffer(repeating: 0x62, count: 2 * window),
                                 endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.accepted.streams.last?.body.readableBytes, 2 * window)
        XCTAssertEqual(other.closedWith, [.noError])
        XCTAssertEqual(pair.accepted.streams.first?.body.readableBytes, window, "the stalled stream moved")
        pair.finish()
    }

    // MARK: - socket backpressure

    /// Output is produced only while the channel is writable; the rest
    /// waits in the session until writability comes back.
    func testNothingIsWrittenWhileTheChannelIsNotWritable() throws {
        let pair = try MeshPair()
        pair.accepted.answer = Self.answerWithBodyAndTrailers
        try pair.pump()
        pair.clientChannel.isWritable = false
        let stream = try pair.open(Self.request("/held"), endStream: false)
        try pair.client.sendData(streamID: XCTUnwrap(stream.streamID), ByteBuffer(string: "held back"), endStream: true)
        pair.loop.run()
        XCTAssertNil(try pair.clientChannel.readOutbound(as: ByteBuffer.self), "wrote to an unwritable channel")
        try pair.pump()
        XCTAssertEqual(pair.accepted.streams.count, 0)

        pair.clientChannel.isWritable = true
        pair.clientChannel.pipeline.fireChannelWritabilityChanged()
        try pair.pump()
        XCTAssertEqual(pair.accepted.streams.first?.bodyString, "held back")
        XCTAssertEqual(stream.bodyString, "answer to /held")
        XCTAssertEqual(stream.closedWith, [.noError])
        pair.finish()
    }

    // MARK: - upkeep

    func testUnansweredPingClosesTheConnection() throws {
        var upkeep = MeshConnection.Upkeep()
        upkeep.pingAfter = .zero
        upkeep.pingTimeout = .zero
        upkeep.tick = .seconds(1)
        let pair = try MeshPair(clientUpkeep: upkeep)
        try pair.pump()
        pair.loop.advanceTime(by: .seconds(1))
        let ping = try XCTUnwrap(try pair.clientChannel.readOutbound(as: ByteBuffer.self), "no PING sent")
        XCTAssertEqual(ping.getInteger(at: ping.readerIndex + 3, as: UInt8.self), 0x6, "not a PING frame")
        // The peer stays silent.
        pair.loop.advanceTime(by: .seconds(1))
        XCTAssertFalse(pair.clientChannel.isActive)
        XCTAssertEqual(pair.clientUnusable, 1)
        XCTAssertEqual(pair.clientMetrics.meshKeepaliveTimeouts.load(ordering: .relaxed), 1)
        pair.finish()
    }

    func testAnsweredPingKeepsTheConnection() throws {
        var upkeep = MeshConnection.Upkeep()
        upkeep.pingAfter = .zero
        upkeep.pingTimeout = .zero
        upkeep.tick = .seconds(1)
        let pair = try MeshPair(clientUpkeep: upkeep)
        try pair.pump()
        for _ in 0..<3 {
            pair.loop.advanceTime(by: .seconds(1))
            try pair.pump()
        }
        XCTAssertTrue(pair.clientChannel.isActive)
        XCTAssertTrue(pair.client.hasCapacity)
        XCTAssertEqual(pair.clientUnusable, 0)
        pair.finish()
    }

    /// A stream this side reset is gone too: the connection is idle from
    /// then on, and idles out like any other.
    func testConnectionWhoseLastStreamWasResetIdlesOut() throws {
        var upkeep = MeshConnection.Upkeep()
        upkeep.idleTimeout = .zero
        upkeep.tick = .seconds(1)
        let pair = try MeshPair(clientUpkeep: upkeep)
        var slotsFreed = 0
        pair.client.onStreamSlotFreed = { _ in slotsFreed += 1 }
        let stream = try pair.open(Self.request("/abandoned"), endStream: false)
        try pair.pump()
        let freedBefore = slotsFreed
        pair.client.reset(streamID: try XCTUnwrap(stream.streamID), errorCode: .cancel)
        try pair.pump()
        XCTAssertEqual(pair.client.openStreamCount, 0)
        XCTAssertGreaterThan(slotsFreed, freedBefore, "onStreamSlotFreed not told of the reset stream's slot")
        pair.loop.advanceTime(by: .seconds(1))
        XCTAssertEqual(pair.clientUnusable, 1, "an idle connection stayed in use")
        try pair.pump()
        XCTAssertFalse(pair.clientChannel.isActive)
        pair.finish()
    }

    func testIdleClientConnectionSaysGoAwayAndCloses() throws {
        var upkeep = MeshConnection.Upkeep()
        upkeep.idleTimeout = .zero
        upkeep.tick = .seconds(1)
        let pair = try MeshPair(clientUpkeep: upkeep)
        pair.accepted.answer = Self.answerWithBodyAndTrailers
        let stream = try pair.open(Self.request("/busy"), endStream: false)
        try pair.pump()
        pair.loop.advanceTime(by: .seconds(1))
        try pair.pump()
        XCTAssertTrue(pair.client.hasCapacity, "closed while a stream was open")
        try pair.client.sendEnd(streamID: XCTUnwrap(stream.streamID))
        try pair.pump()
        XCTAssertEqual(stream.closedWith, [.noError])
        XCTAssertEqual(pair.clientUnusable, 0)

        pair.loop.advanceTime(by: .seconds(1))
        XCTAssertEqual(pair.clientUnusable, 1)
        try pair.pump()
        XCTAssertFalse(pair.clientChannel.isActive)
        XCTAssertFalse(pair.serverChannel.isActive)
        pair.finish()
    }
}
