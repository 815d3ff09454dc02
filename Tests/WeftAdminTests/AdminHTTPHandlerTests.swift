import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest
@testable import WeftAdmin

/// The admin/health connection pipeline, built as `AdminServer` builds it,
/// driven with raw HTTP/1.1 bytes through an `EmbeddedChannel`.
final class AdminHTTPHandlerTests: XCTestCase {
    /// Answers from a table and remembers what it was asked.
    final class Router: Sendable {
        let calls = NIOLockedValueBox<[String]>([])

        func route(_ request: AdminRequest) -> AdminResponse {
            let query = request.query.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
            let uri = request.path + (query.isEmpty ? "" : "?" + query)
            calls.withLockedValue { $0.append("\(request.method.rawValue) \(uri)") }
            switch uri {
            case "/ready": return AdminResponse(body: "ready\n")
            case "/stats?format=json": return AdminResponse(contentType: "application/json", body: "{\"ok\":true}")
            case "/unavailable": return AdminResponse(status: .serviceUnavailable, body: "draining\n")
            default: return .notFound
            }
        }
    }

    private func makeChannel(router: Router) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        let sync = channel.pipeline.syncOperations
        try sync.configureHTTPServerPipeline(withErrorHandling: true)
        try sync.addHandler(IdleStateHandler(allTimeout: AdminServer.idleTimeout))
        try sync.addHandler(IdleCloseHandler())
        try sync.addHandler(AdminHTTPHandler(router: { $1.makeSucceededFuture(router.route($0)) }))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 15000)).wait()
        return channel
    }

    private func send(_ text: String, to channel: EmbeddedChannel) throws {
        try channel.writeInbound(ByteBuffer(string: text))
    }

    private func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    func testGetIsAnsweredWithTheRoutersStatusTypeLengthAndBody() throws {
        let router = Router()
        let channel = try makeChannel(router: router)
        try send("GET /stats?format=json HTTP/1.1\r\nHost: localhost\r\n\r\n", to: channel)
        XCTAssertEqual(try written(channel),
                       "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}")
        XCTAssertEqual(router.calls.withLockedValue { $0 }, ["GET /stats?format=json"])
        XCTAssertTrue(channel.isActive, "a keep-alive connection was closed")
        XCTAssertNoThrow(XCTAssertTrue(try channel.finish().isClean))
    }

    func testStatusOtherThanOKAndUnknownRoutes() throws {
        let channel = try makeChannel(router: Router())
        try send("GET /unavailable HTTP/1.1\r\nHost: localhost\r\n\r\n", to: channel)
        XCTAssertTrue(try written(channel).hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        try send("GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n", to: channel)
        XCTAssertEqual(try written(channel),
                       "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 10\r\n\r\nnot found\n")
        XCTAssertNoThrow(XCTAssertTrue(try channel.finish().isClean))
    }

    func testHeadGetsTheLengthButNoBody() throws {
        let channel = try makeChannel(router: Router())
        try send("HEAD /ready HTTP/1.1\r\nHost: localhost\r\n\r\n", to: channel)
        XCTAssertEqual(try written(channel),
                       "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 6\r\n\r\n")
        // The connection is still in step: the next answer is whole.
        try send("GET /ready HTTP/1.1\r\nHost: localhost\r\n\r\n", to: channel)
        XCTAssertTrue(try written(channel).hasSuffix("\r\n\r\nready\n"))
        XCTAssertNoThrow(XCTAssertTrue(try channel.finish().isClean))
    }

    func testRequestBodyIsDroppedAndTheAnswerWaitsForItsEnd() throws {
        let router = Router()
        let channel = try makeChannel(router: router)
        try send("POST /ready HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n01234", to: channel)
        XCTAssertEqual(try written(channel), "", "answered before the request ended")
        XCTAssertEqual(router.calls.withLockedValue { $0 }, [])
        try send("56789", to: channel)
        XCTAssertTrue(try written(channel).hasSuffix("\r\n\r\nready\n"))
        XCTAssertEqual(router.calls.withLockedValue { $0 }, ["POST /ready"])
        XCTAssertNoThrow(XCTAssertTrue(try channel.finish().isClean))
    }

    func testPipelinedRequestsAreAnsweredInOrder() throws {
        let router = Router()
        let channel = try makeChannel(router: router)
        try send("GET /ready HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\n", to: channel)
        let text = try written(channel)
        let ready = try XCTUnwrap(text.range(of: "HTTP/1.1 200 OK"))
        let missing = try XCTUnwrap(text.range(of: "HTTP/1.1 404 Not Found"))
        XCTAssertLessThan(ready.lowerBound, missing.lowerBound)
        XCTAssertEqual(router.calls.withLockedValue { $0 }, ["GET /ready", "GET /nope"])
        XCTAssertNoThrow(XCTAssertTrue(try channel.finish().isClean))
    }

    func testHTTP10WithoutKeepAliveIsAnsweredThenClosed() throws {
        let channel = try makeChannel(router: Router())
        try send("GET /ready HTTP/1.0\r\n\r\n", to: channel)
        channel.embeddedEventLoop.run()
        XCTAssertEqual(try written(channel),
                       "HTTP/1.0 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 6\r\nconnection: close\r\n\r\nready\n")
        XCTAssertFalse(channel.isActive, "the connection stayed open after a close-delimited exchange")
        XCTAssertNoThrow(try channel.finish(acceptAlreadyClosed: true))
    }

    func testConnectionCloseRequestIsHonoured() throws {
        let channel = try makeChannel(router: Router())
        try send("GET /ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", to: channel)
        channel.embeddedEventLoop.run()
        XCTAssertTrue(try written(channel).contains("\r\nconnection: close\r\n"))
        XCTAssertFalse(channel.isActive)
        XCTAssertNoThrow(try channel.finish(acceptAlreadyClosed: true))
    }

    /// `IdleStateHandler` measures with the wall clock, so an embedded
    /// loop's time cannot make it fire; its event is fired by hand.
    func testIdleEventClosesTheConnection() throws {
        let channel = try makeChannel(router: Router())
        struct OtherEvent: Sendable {}
        channel.pipeline.fireUserInboundEventTriggered(OtherEvent())
        XCTAssertTrue(channel.isActive, "closed on an event that is not idleness")
        channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.all)
        XCTAssertFalse(channel.isActive, "an idle admin connection stayed open")
        XCTAssertNoThrow(try channel.finish(acceptAlreadyClosed: true))
    }

    func testMalformedRequestGetsA400AndTheConnectionCloses() throws {
        let router = Router()
        let channel = try makeChannel(router: router)
        XCTAssertNoThrow(try send("NOT HTTP AT ALL\r\n\r\n", to: channel))
        channel.embeddedEventLoop.run()
        XCTAssertTrue(try written(channel).hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        XCTAssertFalse(channel.isActive)
        XCTAssertEqual(router.calls.withLockedValue { $0 }, [])
        XCTAssertNoThrow(try channel.finish(acceptAlreadyClosed: true))
    }
}

/// The health routes answer from the node's view, nothing else.
final class HealthRoutesTests: XCTestCase {
    final class FakeNode: NodeView, @unchecked Sendable {
        var isReady = true
        func metricsText(on loop: EventLoop) -> EventLoopFuture<String> { loop.makeSucceededFuture("weft_up 1\n") }
    }

    func testReadyFollowsTheNodeAndMetricsComeFromIt() throws {
        let node = FakeNode()
        let router = HealthRoutes.router(for: node)
        let loop = EmbeddedEventLoop()
        func ask(_ method: HTTPMethod, _ uri: String) throws -> AdminResponse {
            try router(AdminRequest(method: method, uri: uri), loop).wait()
        }
        XCTAssertEqual(try ask(.GET, "/ready").status, .ok)
        node.isReady = false
        XCTAssertEqual(try ask(.GET, "/ready").status, .serviceUnavailable)
        XCTAssertEqual(try ask(.GET, "/healthz").body, "ok\n")
        XCTAssertEqual(try ask(.GET, "/metrics?x=1").body, "weft_up 1\n")
        XCTAssertEqual(try ask(.POST, "/ready").status, .methodNotAllowed)
        XCTAssertEqual(try ask(.GET, "/config_dump").status, .notFound, "the health port has no admin routes")
    }
}
