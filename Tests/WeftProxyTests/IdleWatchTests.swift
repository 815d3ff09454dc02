import Logging
import NIOCore
import NIOEmbedded
import WeftObservability
import XCTest
@testable import WeftProxy

/// `timeouts.idle` on an app connection, on an embedded loop's clock: a
/// connection with no byte either way closes between the timeout and a
/// quarter more; bytes either way keep it open; the clock keeps the rule
/// after `IdleWatch` leaves the pipeline and another handler notes for it
/// (as the HTTP/1 handler does).
final class IdleWatchTests: XCTestCase {
    private let metrics = ProxyMetrics()
    private var logger: Logger = {
        var logger = Logger(label: "test.idle")
        logger.logLevel = .critical
        return logger
    }()

    private func connection(timeout: TimeAmount = .seconds(4)) throws -> (EmbeddedChannel, IdleClock) {
        let clock = IdleClock(timeout: timeout, metrics: metrics, logger: logger)
        let channel = EmbeddedChannel(handler: IdleWatch(clock: clock))
        try channel.connect(to: SocketAddress(ipAddress: "198.18.0.2", port: 80)).wait()
        return (channel, clock)
    }

    private var idleTimeouts: Int { Int(metrics.idleTimeouts.load(ordering: .relaxed)) }

    func testAQuietConnectionClosesBetweenTheTimeoutAndAQuarterMore() throws {
        let (channel, _) = try connection()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(3_900))
        XCTAssertTrue(channel.isActive, "open before the timeout")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1_200))
        XCTAssertFalse(channel.isActive, "closed by 1.25 × the timeout")
        XCTAssertEqual(idleTimeouts, 1)
    }

    func testBytesEitherWayKeepItOpen() throws {
        let (channel, _) = try connection()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        for second in 0..<12 {
            if second % 2 == 0 {
                try channel.writeInbound(ByteBuffer(string: "in"))
                _ = try channel.readInbound(as: ByteBuffer.self)
            } else {
                try channel.writeOutbound(ByteBuffer(string: "out"))
                _ = try channel.readOutbound(as: ByteBuffer.self)
            }
            channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        }
        XCTAssertTrue(channel.isActive)
        XCTAssertEqual(idleTimeouts, 0)
        // Then quiet: it closes.
        channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        XCTAssertFalse(channel.isActive)
        XCTAssertEqual(idleTimeouts, 1)
    }

    func testTheClockKeepsTheRuleWhenAHandlerTakesItOver() throws {
        let (channel, clock) = try connection()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        let watch = try channel.pipeline.syncOperations.handler(type: IdleWatch.self)
        try channel.pipeline.syncOperations.removeHandler(watch).wait()
        // Bytes the pipeline carries no longer reach the clock; the handler
        // that took it over notes them.
        for _ in 0..<10 {
            clock.note()
            channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        }
        XCTAssertTrue(channel.isActive)
        try channel.writeInbound(ByteBuffer(string: "unnoted"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        XCTAssertFalse(channel.isActive, "closed: what the pipeline carried was not noted")
        XCTAssertEqual(idleTimeouts, 1)
        // A watch added again (a tunnel taking the connection over) starts
        // no second clock.
        let (second, secondClock) = try connection()
        defer { _ = try? second.finish(acceptAlreadyClosed: true) }
        try second.pipeline.syncOperations.addHandler(IdleWatch(clock: secondClock), position: .first)
        second.embeddedEventLoop.advanceTime(by: .seconds(6))
        XCTAssertFalse(second.isActive)
        XCTAssertEqual(idleTimeouts, 2, "one close, counted once")
    }
}
