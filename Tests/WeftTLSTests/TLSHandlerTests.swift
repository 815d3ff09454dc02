import NIOCore
import NIOEmbedded
import XCTest

@testable import WeftTLS

/// The handler on two embedded channels whose outbound bytes are carried
/// to each other.
final class TLSHandlerTests: XCTestCase {
    /// Collects what reaches the top of a pipeline.
    final class Top: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        var received = ""
        var established: TLSPeer?
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += String(buffer: unwrapInboundIn(data))
        }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? TLSHandler.Established { established = event.peer }
        }
    }

    struct Side {
        let channel = EmbeddedChannel()
        let top = Top()
        var events: [TLSHandler.Event] { box.events }
        let box = EventBox()
    }

    final class EventBox { var events: [TLSHandler.Event] = [] }

    private func side(_ context: TLSContext, _ role: TLSConnection.Role) throws -> Side {
        let side = Side()
        let box = side.box
        let handler = TLSHandler(connection: try TLSConnection(context: context, role: role, peerKey: "peer")) {
            box.events.append($0)
        }
        try side.channel.pipeline.syncOperations.addHandlers([handler, side.top])
        return side
    }

    /// Carries bytes both ways until quiet.
    private func shuttle(_ a: Side, _ b: Side) throws {
        for _ in 0..<20 {
            var moved = false
            while let bytes = try a.channel.readOutbound(as: ByteBuffer.self) {
                if b.channel.isActive { try b.channel.writeInbound(bytes) }
                moved = true
            }
            while let bytes = try b.channel.readOutbound(as: ByteBuffer.self) {
                if a.channel.isActive { try a.channel.writeInbound(bytes) }
                moved = true
            }
            if !moved { return }
        }
    }

    func testWritesMadeBeforeTheHandshakeArriveAfterItAndTheIdentityGoesUp() throws {
        let client = try side(try TLSConnectionTests.node("ns/default/sa/frontend"), .client)
        let server = try side(try TLSConnectionTests.node("ns/shop/sa/backend"), .server)
        try server.channel.connect(to: SocketAddress(ipAddress: "198.18.0.1", port: 1)).wait()
        // Many small writes (as an HTTP/2 session makes), before the handshake.
        for index in 0..<100 { client.channel.write(ByteBuffer(string: "frame \(index);"), promise: nil) }
        let flushed = client.channel.eventLoop.makePromise(of: Void.self)
        client.channel.writeAndFlush(ByteBuffer(string: "end"), promise: flushed)
        try client.channel.connect(to: SocketAddress(ipAddress: "198.18.0.2", port: 15008)).wait()
        try shuttle(client, server)

        XCTAssertEqual(server.top.established?.identity?.description, "spiffe://mesh.local/ns/default/sa/frontend")
        XCTAssertEqual(client.top.established?.identity?.description, "spiffe://mesh.local/ns/shop/sa/backend")
        XCTAssertEqual(server.top.received, (0..<100).map { "frame \($0);" }.joined() + "end")
        XCTAssertNoThrow(try flushed.futureResult.wait())

        // A clean close sends close_notify; the other side closes too.
        try client.channel.close().wait()
        try shuttle(client, server)
        XCTAssertFalse(server.channel.isActive)
    }

    func testARefusedPeerIsReportedAndClosedAndItsWritesFail() throws {
        let expired = try side(try TLSConnectionTests.node("ns/default/sa/frontend", validFor: -60), .client)
        let server = try side(try TLSConnectionTests.node("ns/shop/sa/backend"), .server)
        try server.channel.connect(to: SocketAddress(ipAddress: "198.18.0.1", port: 1)).wait()
        try expired.channel.connect(to: SocketAddress(ipAddress: "198.18.0.2", port: 15008)).wait()
        try shuttle(expired, server)
        guard case .refused(let failure)? = server.events.last else {
            return XCTFail("no refusal: \(server.events)")
        }
        XCTAssertEqual(failure.reason, .expired)
        XCTAssertNil(server.top.established)
        XCTAssertFalse(server.channel.isActive)
        XCTAssertEqual(server.top.received, "")
    }

    /// Below the TLS handler: the first time it is armed and sees ciphertext
    /// go by, it writes more plaintext from the top of the pipeline at once,
    /// as a handler told "writable again" does.
    final class Reentrant: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var armed = false
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            context.write(data, promise: promise)
            guard armed else { return }
            armed = false
            context.channel.writeAndFlush(ByteBuffer(string: "second;"), promise: nil)
        }
    }

    func testAWriteMadeWhileAFlushGoesDownIsSentOnce() throws {
        let client = try side(try TLSConnectionTests.node("ns/default/sa/frontend"), .client)
        let reentrant = Reentrant()
        try client.channel.pipeline.syncOperations.addHandler(reentrant, position: .first)
        let server = try side(try TLSConnectionTests.node("ns/shop/sa/backend"), .server)
        try server.channel.connect(to: SocketAddress(ipAddress: "198.18.0.1", port: 1)).wait()
        try client.channel.connect(to: SocketAddress(ipAddress: "198.18.0.2", port: 15008)).wait()
        try shuttle(client, server)
        XCTAssertNotNil(client.top.established)
        reentrant.armed = true
        client.channel.writeAndFlush(ByteBuffer(string: "first;"), promise: nil)
        try shuttle(client, server)
        XCTAssertEqual(server.top.received, "first;second;")
        client.channel.writeAndFlush(ByteBuffer(string: "third;"), promise: nil)
        try shuttle(client, server)
        XCTAssertEqual(server.top.received, "first;second;third;", "a write was encrypted twice")
    }
}
