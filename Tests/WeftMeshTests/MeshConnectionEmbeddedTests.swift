import Foundation
import Logging
import NIOCore
import NIOEmbedded
import WeftObservability
import WeftMeshTesting
import XCTest
import WeftHTTP2
@testable import WeftMesh

/// Two `MeshConnection`s, a client and a server, each alone in an
/// `EmbeddedChannel`, wired back to back in memory: whatever one writes
/// the test pumps into the other, until both are quiet.
final class MeshConnectionEmbeddedTests: XCTestCase {
    // MARK: - exchanges

    func testRequestAndResponseWithBodiesAndTrailersArriveIntact() throws {
        let pair = try MeshPair()
        pair.accepted.answer = MeshExchange.answerWithBodyAndTrailers
        try pair.pump()
        XCTAssertEqual(pair.clientMetrics.meshConnections.client.load(ordering: .relaxed), 1)
        XCTAssertEqual(pair.serverMetrics.meshConnections.server.load(ordering: .relaxed), 1)

        let request = MeshExchange.request("/upload")
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
            pair.accepted.answer = MeshExchange.answerWithBodyAndTrailers
            let stream = try pair.open(MeshExchange.request("/get", method: "GET"), endStream: true)
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

    /// A queued flush task keeps its connection alive only until it runs,
    /// even when the channel closed while it was queued.
    func testAConnectionWithAFlushQueuedAtItsCloseIsFreedOnceTheTaskRan() throws {
        weak var client: MeshConnection?
        do {
            let pair = try MeshPair()
            try pair.pump()
            _ = try pair.open(MeshExchange.request("/get", method: "GET"), endStream: true)
            client = pair.client
            pair.clientChannel.close(promise: nil)
            pair.finish()
        }
        XCTAssertNil(client, "the queued flush task kept the connection")
    }

    /// A connect completes its promise before `channelActive` reaches the
    /// handlers, and the pool hands the connection out from that promise:
    /// it must take streams then, or the pool opens another connection.
    func testAConnectionTakesStreamsOnceItsChannelIsActiveBeforeTheEventReachesIt() throws {
        /// Keeps `channelActive` from the handlers behind it.
        final class HoldsActive: ChannelInboundHandler, Sendable {
            typealias InboundIn = ByteBuffer
            func channelActive(context: ChannelHandlerContext) {}
        }
        var logger = Logger(label: "test.mesh")
        logger.logLevel = .critical
        let connection = MeshConnection(role: .client, metrics: ProxyMetrics(), logger: logger)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(HoldsActive())
        try channel.pipeline.syncOperations.addHandler(connection)
        XCTAssertFalse(connection.hasCapacity, "not connected")
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 15008)).wait()
        XCTAssertTrue(channel.isActive)
        XCTAssertTrue(connection.hasCapacity, "active, though the event has not come")
        _ = try connection.openStream(headers: MeshExchange.request("/early"), endStream: true, handler: RecordingStream())
        channel.embeddedEventLoop.run()
        var written = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&part) }
        XCTAssertEqual(written.readString(length: 24), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "the preface first")
        XCTAssertGreaterThan(written.readableBytes, 9 + 9, "then SETTINGS and the request's HEADERS")
        XCTAssertNoThrow(try channel.finish(acceptAlreadyClosed: true))
    }

    func testRequestWithoutBodyEndsOnItsHeaders() throws {
        let pair = try MeshPair()
        pair.accepted.answer = MeshExchange.answerWithBodyAndTrailers
        let stream = try pair.open(MeshExchange.request("/get", method: "GET"), endStream: true)
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
            let stream = try pair.open(MeshExchange.request("/\(index)"), endStream: false)
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
            MeshExchange.answerWithBodyAndTrailers(served)
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
        let stream = try pair.open(MeshExchange.request("/slow"), endStream: false)
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
        pair.accepted.answer = MeshExchange.answerWithBodyAndTrailers
        let next = try pair.open(MeshExchange.request("/next"), endStream: true)
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
        let stream = try pair.open(MeshExchange.request("/refused"), endStream: true)
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
            let stream = try pair.open(MeshExchange.request("/fill"), endStream: false)
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
        pair.accepted.answer = MeshExchange.answerWithBodyAndTrailers
        let last = try pair.open(MeshExchange.request("/after"), endStream: false)
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
        pair.accepted.answer = MeshExchange.answerWithBodyAndTrailers
        let stream = try pair.open(MeshExchange.request("/long"), endStream: false)
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
        XCTAssertThrowsError(try pair.client.openStream(headers: MeshExchange.request("/late"), endStream: true,
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
        let stream = try pair.open(MeshExchange.request("/lost"), endStream: false)
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
        let stream = try pair.open(MeshExchange.request("/big"), endStream: false)
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
        let stalled = try pair.open(MeshExchange.request("/stalled"), endStream: false)
        try pair.client.sendData(streamID: XCTUnwrap(stalled.streamID), ByteBuffer(repeating: 0x61, count: 2 * window))
        try pair.pump()
        XCTAssertEqual(pair.accepted.streams.first?.body.readableBytes, window)

        pair.accepted.autoConsume = true
        pair.accepted.answer = MeshExchange.answerWithBodyAndTrailers
        let other = try pair.open(MeshExchange.request("/other"), endStream: false)
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
        pair.accepted.answer = MeshExchange.answerWithBodyAndTrailers
        try pair.pump()
        pair.clientChannel.isWritable = false
        pair.clientChannel.pipeline.fireChannelWritabilityChanged()  // as a socket's channel does
        let stream = try pair.open(MeshExchange.request("/held"), endStream: false)
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
        let stream = try pair.open(MeshExchange.request("/abandoned"), endStream: false)
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
        pair.accepted.answer = MeshExchange.answerWithBodyAndTrailers
        let stream = try pair.open(MeshExchange.request("/busy"), endStream: false)
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
