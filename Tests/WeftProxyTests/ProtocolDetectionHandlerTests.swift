import NIOCore
import NIOEmbedded
import XCTest
@testable import WeftProxy

/// `ProtocolDetectionHandler` driven through an `EmbeddedChannel`: bytes
/// arrive in pieces, time moves only when the test says so.
final class ProtocolDetectionHandlerTests: XCTestCase {
    /// Every call of the handler's `decided` callback.
    private final class Verdicts {
        var calls: [(verdict: DetectedProtocol, bytes: [UInt8])] = []
        var verdict: DetectedProtocol? { calls.last?.verdict }
        var bytes: [UInt8]? { calls.last?.bytes }
    }

    /// Records the user events that reach the end of the pipeline.
    private final class EventRecorder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var inputClosed = 0
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? ChannelEvent, case .inputClosed = event { inputClosed += 1 }
            context.fireUserInboundEventTriggered(event)
        }
    }

    private static let timeout = TimeAmount.milliseconds(100)

    /// A channel whose only handler is a detection handler; `then` runs
    /// inside the callback, after the verdict is recorded.
    private func makeChannel(
        then: ((ChannelHandlerContext, ByteBuffer) -> Void)? = nil
    ) throws -> (EmbeddedChannel, Verdicts) {
        let verdicts = Verdicts()
        let handler = ProtocolDetectionHandler(timeout: Self.timeout) { context, verdict, bytes in
            verdicts.calls.append((verdict, Array(bytes.readableBytesView)))
            then?(context, bytes)
        }
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, verdicts)
    }

    private func isInPipeline(_ channel: EmbeddedChannel) -> Bool {
        (try? channel.pipeline.syncOperations.context(handlerType: ProtocolDetectionHandler.self)) != nil
    }

    private func write(_ text: String, to channel: EmbeddedChannel) throws {
        try channel.writeInbound(ByteBuffer(string: text))
    }

    private func assertClean(_ channel: EmbeddedChannel, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNoThrow(XCTAssertTrue(try channel.finish().isClean, file: file, line: line), file: file, line: line)
    }

    // MARK: verdicts and the bytes handed on

    func testRequestLineSplitAcrossReadsIsHTTP1WithEveryByteReadSoFar() throws {
        let (channel, verdicts) = try makeChannel()
        let pieces = ["GE", "T /ind", "ex.html HT", "TP/1", ".1\r\nHost: backend\r\n\r\n"]
        for piece in pieces.dropLast() {
            try write(piece, to: channel)
            XCTAssertNil(verdicts.verdict, "decided after \(piece.debugDescription)")
            XCTAssertTrue(isInPipeline(channel))
        }
        try write(pieces.last!, to: channel)
        XCTAssertEqual(verdicts.calls.count, 1)
        XCTAssertEqual(verdicts.verdict, .http1)
        XCTAssertEqual(verdicts.bytes, Array(pieces.joined().utf8))
        XCTAssertFalse(isInPipeline(channel), "the handler stays in the pipeline after deciding")
        // The bytes went to the callback only, not also down the pipeline.
        XCTAssertNil(try channel.readInbound(as: ByteBuffer.self))
        assertClean(channel)
    }

    func testHTTP2PrefaceSplitAcrossReadsIsHTTP2WithTheFrameBytesAfterIt() throws {
        let (channel, verdicts) = try makeChannel()
        try write("PRI * HTTP/2.0\r\n", to: channel)
        XCTAssertNil(verdicts.verdict)
        try write("\r\nSM\r", to: channel)
        XCTAssertNil(verdicts.verdict)
        let settingsFrame: [UInt8] = [0, 0, 0, 4, 0, 0, 0, 0, 0]
        try channel.writeInbound(ByteBuffer(bytes: Array("\n\r\n".utf8) + settingsFrame))
        XCTAssertEqual(verdicts.calls.count, 1)
        XCTAssertEqual(verdicts.verdict, .http2)
        XCTAssertEqual(verdicts.bytes, Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + settingsFrame)
        XCTAssertFalse(isInPipeline(channel))
        assertClean(channel)
    }

    func testRedisIsTCPOnTheFirstReadWithoutWaitingForTheTimeout() throws {
        let (channel, verdicts) = try makeChannel()
        try write("*1\r\n$4\r\nPING\r\n", to: channel)
        XCTAssertEqual(verdicts.verdict, .tcp)
        XCTAssertEqual(verdicts.bytes, Array("*1\r\n$4\r\nPING\r\n".utf8))
        XCTAssertFalse(isInPipeline(channel))
        assertClean(channel)
    }

    func testTLSClientHelloSplitAcrossReadsIsTLS() throws {
        let (channel, verdicts) = try makeChannel()
        try channel.writeInbound(ByteBuffer(bytes: [0x16, 0x03]))
        XCTAssertNil(verdicts.verdict)
        try channel.writeInbound(ByteBuffer(bytes: [0x01, 0x02, 0x00, 0x01, 0x00, 0x01]))
        XCTAssertEqual(verdicts.verdict, .tls)
        XCTAssertEqual(verdicts.bytes, [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        assertClean(channel)
    }

    func testPartialRequestLineThenTimeoutIsTCPWithThePartialBytes() throws {
        let (channel, verdicts) = try makeChannel()
        try write("GET", to: channel)
        channel.embeddedEventLoop.advanceTime(by: Self.timeout - .milliseconds(1))
        XCTAssertNil(verdicts.verdict, "decided before the timeout")
        XCTAssertTrue(isInPipeline(channel))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        XCTAssertEqual(verdicts.verdict, .tcp)
        XCTAssertEqual(verdicts.bytes, Array("GET".utf8))
        XCTAssertFalse(isInPipeline(channel))
        assertClean(channel)
    }

    func testSilentClientIsTCPWithNoBytesAtTheTimeout() throws {
        // Server-speaks-first protocols: the client says nothing.
        let (channel, verdicts) = try makeChannel()
        channel.embeddedEventLoop.advanceTime(by: Self.timeout)
        XCTAssertEqual(verdicts.verdict, .tcp)
        XCTAssertEqual(verdicts.bytes, [])
        assertClean(channel)
    }

    func testInputClosedBeforeAVerdictIsTCPWithTheBytesSoFar() throws {
        let (channel, verdicts) = try makeChannel()
        try write("GET /", to: channel)
        XCTAssertNil(verdicts.verdict)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        XCTAssertEqual(verdicts.verdict, .tcp)
        XCTAssertEqual(verdicts.bytes, Array("GET /".utf8))
        XCTAssertFalse(isInPipeline(channel))
        assertClean(channel)
    }

    /// The half-close that settled the verdict belongs to the connection:
    /// the handlers the callback installs must still hear it, or a relay
    /// never passes the client's FIN on.
    func testInputClosedThatSettlesTheVerdictReachesTheHandlersInstalledForIt() throws {
        let recorder = EventRecorder()
        let (channel, verdicts) = try makeChannel { context, _ in
            do {
                try context.channel.pipeline.syncOperations.addHandler(recorder)
            } catch {
                XCTFail("cannot add the next handler: \(error)")
            }
        }
        try write("GET /", to: channel)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        XCTAssertEqual(verdicts.verdict, .tcp)
        XCTAssertEqual(recorder.inputClosed, 1, "inputClosed was swallowed by the removed detection handler")
        assertClean(channel)
    }

    func testLongRequestTargetGivesUpAtTheProbeLimit() throws {
        let (channel, verdicts) = try makeChannel()
        var sent: [UInt8] = Array("GET /".utf8)
        try channel.writeInbound(ByteBuffer(bytes: sent))
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1024)
        while sent.count + chunk.count < ProtocolDetectionHandler.maximumProbe {
            try channel.writeInbound(ByteBuffer(bytes: chunk))
            sent += chunk
            XCTAssertNil(verdicts.verdict, "decided at \(sent.count) bytes")
        }
        try channel.writeInbound(ByteBuffer(bytes: chunk))
        sent += chunk
        XCTAssertEqual(verdicts.verdict, .tcp)
        XCTAssertEqual(verdicts.bytes, sent)
        assertClean(channel)
    }

    // MARK: one decision

    func testDecidesOnceEvenWhenTheTimerAndEOFComeLater() throws {
        let (channel, verdicts) = try makeChannel()
        try write("GET / HTTP/1.1\r\n", to: channel)
        XCTAssertEqual(verdicts.calls.count, 1)
        channel.embeddedEventLoop.advanceTime(by: Self.timeout * 3)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        XCTAssertEqual(verdicts.calls.count, 1)
        XCTAssertEqual(verdicts.verdict, .http1)
        assertClean(channel)
    }

    func testTimeoutThenEOFDecidesOnce() throws {
        let (channel, verdicts) = try makeChannel()
        try write("P", to: channel)
        channel.embeddedEventLoop.advanceTime(by: Self.timeout)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        channel.embeddedEventLoop.advanceTime(by: Self.timeout)
        XCTAssertEqual(verdicts.calls.count, 1)
        XCTAssertEqual(verdicts.verdict, .tcp)
        XCTAssertEqual(verdicts.bytes, Array("P".utf8))
        assertClean(channel)
    }

    /// As the proxy does: the callback replays the bytes into the pipeline
    /// from its head. They must pass through once, not be detected again.
    func testBytesReplayedByTheCallbackReachTheNextHandlersOnce() throws {
        let (channel, verdicts) = try makeChannel { context, bytes in
            context.channel.pipeline.fireChannelRead(bytes)
            context.channel.pipeline.fireChannelReadComplete()
        }
        try write("GET / HT", to: channel)
        try write("TP/1.1\r\n", to: channel)
        try write("Host: a\r\n\r\n", to: channel)
        XCTAssertEqual(verdicts.calls.count, 1)
        var replayed = try XCTUnwrap(try channel.readInbound(as: ByteBuffer.self))
        XCTAssertEqual(replayed.readString(length: replayed.readableBytes), "GET / HTTP/1.1\r\n")
        var later = try XCTUnwrap(try channel.readInbound(as: ByteBuffer.self))
        XCTAssertEqual(later.readString(length: later.readableBytes), "Host: a\r\n\r\n")
        XCTAssertNil(try channel.readInbound(as: ByteBuffer.self))
        assertClean(channel)
    }

    func testConnectionClosedBeforeAVerdictIsNeverHandedOn() throws {
        let (channel, verdicts) = try makeChannel()
        try write("GET", to: channel)
        XCTAssertNoThrow(try channel.close().wait())
        channel.embeddedEventLoop.advanceTime(by: Self.timeout * 2)
        XCTAssertEqual(verdicts.calls.count, 0)
        XCTAssertNoThrow(XCTAssertTrue(try channel.finish(acceptAlreadyClosed: true).isClean))
    }
}
