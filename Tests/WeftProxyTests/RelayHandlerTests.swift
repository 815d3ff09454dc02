#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOEmbedded
import XCTest
@testable import WeftProxy

/// A `RelayHandler` pair across two `EmbeddedChannel`s on one loop, as the
/// proxy pairs an accepted connection with its upstream.
final class RelayHandlerTests: XCTestCase {
    /// Sits between the relay and the channel: counts the `read`s the relay
    /// lets through and records what it asks of the channel.
    ///
    /// An `EmbeddedChannel` has no half-close: `close(mode: .output)` would
    /// close it outright. A socket channel shuts its output down and stays
    /// open, so this recorder notes the request and completes it the way a
    /// socket does, without passing it on.
    final class ChannelRecorder: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        enum Operation: Equatable { case write(String), flush, closeOutput, close }
        var reads = 0
        var operations: [Operation] = []

        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            operations.append(.write(String(buffer: unwrapOutboundIn(data))))
            context.write(data, promise: promise)
        }

        func flush(context: ChannelHandlerContext) {
            operations.append(.flush)
            context.flush()
        }

        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            switch mode {
            case .output:
                operations.append(.closeOutput)
                promise?.succeed(())
            default:
                operations.append(.close)
                context.close(mode: mode, promise: promise)
            }
        }
    }

    /// What each side's `onClose` reported.
    final class Reports {
        var downstream: [(read: Int, written: Int, reset: Bool)] = []
        var upstream: [(read: Int, written: Int, reset: Bool)] = []
    }

    final class RelayPair {
        let loop = EmbeddedEventLoop()
        let reports = Reports()
        let downstream: EmbeddedChannel
        let downstreamRecorder = ChannelRecorder()
        let upstreamRecorder = ChannelRecorder()
        let upstreamRelay: RelayHandler
        private(set) var upstream: EmbeddedChannel?

        /// The downstream (accepted, already connected) gets its relay at
        /// once; the upstream only with `connectUpstream`, as the proxy's
        /// bootstrap does.
        init(connectUpstream: Bool = true) throws {
            let reports = self.reports
            let (downstreamRelay, upstreamRelay) = RelayHandler.pair(
                downstreamClosed: { reports.downstream.append(($0, $1, $2)) },
                upstreamClosed: { reports.upstream.append(($0, $1, $2)) })
            self.upstreamRelay = upstreamRelay
            downstream = EmbeddedChannel(loop: loop)
            try downstream.connect(to: SocketAddress(ipAddress: "10.0.0.1", port: 40000)).wait()
            try downstream.pipeline.syncOperations.addHandlers([downstreamRecorder, downstreamRelay])
            if connectUpstream { try self.connectUpstream() }
        }

        /// The upstream channel: relay installed first, then connected.
        @discardableResult
        func connectUpstream(connect: Bool = true) throws -> EmbeddedChannel {
            let channel = EmbeddedChannel(handlers: [upstreamRecorder, upstreamRelay], loop: loop)
            upstream = channel
            if connect { try channel.connect(to: SocketAddress(ipAddress: "10.0.0.2", port: 8080)).wait() }
            return channel
        }

        func finish() {
            XCTAssertNoThrow(try downstream.finish(acceptAlreadyClosed: true))
            if let upstream { XCTAssertNoThrow(try upstream.finish(acceptAlreadyClosed: true)) }
        }
    }

    private func outbound(_ channel: EmbeddedChannel) throws -> [String] {
        var strings: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { strings.append(String(buffer: buffer)) }
        return strings
    }

    // MARK: bytes

    func testBytesReadOnEachSideAreWrittenOnTheOther() throws {
        let pair = try RelayPair()
        let upstream = try XCTUnwrap(pair.upstream)
        try pair.downstream.writeInbound(ByteBuffer(string: "request"))
        XCTAssertEqual(try outbound(upstream), ["request"])
        try upstream.writeInbound(ByteBuffer(string: "response"))
        XCTAssertEqual(try outbound(pair.downstream), ["response"])
        // Passed on, not also left in the pipeline.
        XCTAssertNil(try pair.downstream.readInbound(as: ByteBuffer.self))
        XCTAssertNil(try upstream.readInbound(as: ByteBuffer.self))
        XCTAssertTrue(pair.downstream.isActive)
        XCTAssertTrue(upstream.isActive)
        pair.finish()
        XCTAssertEqual(pair.reports.downstream.map(\.read), [7])
        XCTAssertEqual(pair.reports.downstream.map(\.written), [8])
        XCTAssertEqual(pair.reports.downstream.map(\.reset), [false])
        XCTAssertEqual(pair.reports.upstream.map(\.read), [8])
        XCTAssertEqual(pair.reports.upstream.map(\.written), [7])
    }

    func testOneFlushPerReadBurst() throws {
        let pair = try RelayPair()
        let upstream = try XCTUnwrap(pair.upstream)
        pair.downstream.pipeline.fireChannelRead(ByteBuffer(string: "a"))
        pair.downstream.pipeline.fireChannelRead(ByteBuffer(string: "b"))
        XCTAssertEqual(try outbound(upstream), [], "flushed before the read burst ended")
        pair.downstream.pipeline.fireChannelReadComplete()
        XCTAssertEqual(try outbound(upstream), ["a", "b"])
        XCTAssertEqual(pair.upstreamRecorder.operations, [.write("a"), .write("b"), .flush])
        pair.finish()
    }

    // MARK: half-close

    func testEOFShutsThePartnersOutputOnlyAfterTheBytesBeforeIt() throws {
        let pair = try RelayPair()
        let upstream = try XCTUnwrap(pair.upstream)
        // The last bytes and the FIN arrive in one read burst, unflushed.
        pair.downstream.pipeline.fireChannelRead(ByteBuffer(string: "last words"))
        pair.downstream.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        XCTAssertEqual(pair.upstreamRecorder.operations, [.write("last words"), .write(""), .flush, .closeOutput])
        XCTAssertEqual(try outbound(upstream), ["last words", ""])
        XCTAssertEqual(pair.downstreamRecorder.operations, [], "the half-closed side's own output was touched")

        // The other direction still flows.
        try upstream.writeInbound(ByteBuffer(string: "still answering"))
        XCTAssertEqual(try outbound(pair.downstream), ["still answering"])

        // A repeated EOF does not shut down twice.
        pair.downstream.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        XCTAssertEqual(pair.upstreamRecorder.operations.filter { $0 == .closeOutput }.count, 1)

        // Then the upstream finishes too: the downstream's output is shut.
        upstream.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        XCTAssertEqual(pair.downstreamRecorder.operations.last, .closeOutput)
        XCTAssertFalse(pair.downstreamRecorder.operations.contains(.close))
        XCTAssertFalse(pair.upstreamRecorder.operations.contains(.close))
        XCTAssertEqual(try outbound(pair.downstream), [""])
        pair.finish()
    }

    // MARK: backpressure

    func testReadIsHeldWhileThePartnerIsNotWritable() throws {
        let pair = try RelayPair()
        let upstream = try XCTUnwrap(pair.upstream)
        pair.downstream.read()
        XCTAssertEqual(pair.downstreamRecorder.reads, 1, "a read was held with a writable partner")

        upstream.isWritable = false
        pair.downstream.read()
        XCTAssertEqual(pair.downstreamRecorder.reads, 1, "read from the app while the upstream was full")
        pair.downstream.read()
        XCTAssertEqual(pair.downstreamRecorder.reads, 1)
        // Other writability news from the full side releases nothing.
        upstream.pipeline.fireChannelWritabilityChanged()
        XCTAssertEqual(pair.downstreamRecorder.reads, 1)

        upstream.isWritable = true
        upstream.pipeline.fireChannelWritabilityChanged()
        XCTAssertEqual(pair.downstreamRecorder.reads, 2, "the held read was not released")
        upstream.pipeline.fireChannelWritabilityChanged()
        XCTAssertEqual(pair.downstreamRecorder.reads, 2, "a read was issued that nobody asked for")

        // And the same the other way round.
        pair.downstream.isWritable = false
        upstream.read()
        XCTAssertEqual(pair.upstreamRecorder.reads, 0)
        pair.downstream.isWritable = true
        pair.downstream.pipeline.fireChannelWritabilityChanged()
        XCTAssertEqual(pair.upstreamRecorder.reads, 1)
        XCTAssertEqual(pair.downstreamRecorder.reads, 2)
        pair.finish()
    }

    func testReadHeldUntilTheUpstreamIsInPlaceAndConnected() throws {
        let pair = try RelayPair(connectUpstream: false)
        pair.downstream.read()
        XCTAssertEqual(pair.downstreamRecorder.reads, 0, "read from the app with no upstream to write to")
        let upstream = try pair.connectUpstream(connect: false)
        XCTAssertEqual(pair.downstreamRecorder.reads, 0)
        try upstream.connect(to: SocketAddress(ipAddress: "10.0.0.2", port: 8080)).wait()
        XCTAssertEqual(pair.downstreamRecorder.reads, 1, "the held read was not released on connect")
        pair.finish()
    }

    // MARK: closing

    func testPartnerGoneClosesThisSideAfterItsQueuedBytes() throws {
        let pair = try RelayPair()
        let upstream = try XCTUnwrap(pair.upstream)
        upstream.pipeline.fireChannelRead(ByteBuffer(string: "bye"))
        upstream.close(promise: nil)
        pair.loop.run()
        XCTAssertEqual(pair.downstreamRecorder.operations, [.write("bye"), .write(""), .flush, .close])
        XCTAssertEqual(try outbound(pair.downstream), ["bye", ""])
        XCTAssertFalse(pair.downstream.isActive)
        XCTAssertEqual(pair.reports.upstream.count, 1)
        XCTAssertEqual(pair.reports.downstream.count, 1)
        XCTAssertEqual(pair.reports.upstream.first?.read, 3)
        XCTAssertEqual(pair.reports.downstream.first?.written, 3)
        XCTAssertEqual(pair.reports.downstream.first?.reset, false)
        pair.finish()
        XCTAssertEqual(pair.reports.downstream.count, 1, "onClose ran twice")
        XCTAssertEqual(pair.reports.upstream.count, 1, "onClose ran twice")
    }

    func testResetOnOneSideResetsTheOther() throws {
        let pair = try RelayPair()
        let upstream = try XCTUnwrap(pair.upstream)
        pair.downstream.pipeline.fireErrorCaught(IOError(errnoCode: ECONNRESET, reason: "read(descriptor:pointer:size:)"))
        pair.loop.run()
        XCTAssertFalse(pair.downstream.isActive)
        XCTAssertFalse(upstream.isActive)
        // An EmbeddedChannel is no SocketOptionProvider, so SO_LINGER is not
        // observable here; that the reset was taken for one is.
        XCTAssertEqual(pair.reports.downstream.map(\.reset), [true])
        XCTAssertEqual(pair.reports.upstream.map(\.reset), [true])
        pair.finish()
    }

    func testOtherErrorsCloseBothSidesCleanly() throws {
        let pair = try RelayPair()
        let upstream = try XCTUnwrap(pair.upstream)
        upstream.pipeline.fireErrorCaught(IOError(errnoCode: ETIMEDOUT, reason: "read(descriptor:pointer:size:)"))
        pair.loop.run()
        XCTAssertFalse(pair.downstream.isActive)
        XCTAssertFalse(upstream.isActive)
        XCTAssertEqual(pair.reports.downstream.map(\.reset), [false])
        XCTAssertEqual(pair.reports.upstream.map(\.reset), [false])
        pair.finish()
    }

    /// A failed connect is answered by the proxy's connect-failure path,
    /// not by the relay closing the app's connection cleanly.
    func testUpstreamThatNeverConnectedLeavesTheDownstreamAlone() throws {
        let pair = try RelayPair(connectUpstream: false)
        let upstream = try pair.connectUpstream(connect: false)
        upstream.pipeline.fireErrorCaught(IOError(errnoCode: ECONNREFUSED, reason: "connect"))
        pair.loop.run()
        XCTAssertTrue(pair.downstream.isActive)
        XCTAssertEqual(pair.downstreamRecorder.operations, [])
        XCTAssertEqual(pair.reports.downstream.count, 0)
        XCTAssertEqual(pair.reports.upstream.map(\.reset), [false])
        pair.finish()
    }

    func testUpstreamConnectingAfterTheAppLeftIsClosed() throws {
        let pair = try RelayPair(connectUpstream: false)
        pair.downstream.close(promise: nil)
        pair.loop.run()
        XCTAssertEqual(pair.reports.downstream.count, 1)
        let upstream = try pair.connectUpstream()
        pair.loop.run()
        XCTAssertFalse(upstream.isActive, "an upstream with nobody to relay for stayed open")
        XCTAssertEqual(pair.upstreamRecorder.operations, [.close])
        pair.finish()
    }
}
