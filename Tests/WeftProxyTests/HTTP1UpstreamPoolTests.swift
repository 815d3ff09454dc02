import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import WeftMesh
import XCTest
import WeftCore
@testable import WeftProxy

/// A loopback HTTP/1.1 app: `/close` answers with Connection: close,
/// `/cut` closes mid-body, `/continue` sends 100 first, `/drop-next`
/// answers and then closes the connection when the next request's head
/// arrives, without answering it (an app closing an idle keep-alive
/// connection just as a request comes); every answer's body names the
/// connection number, so tests can see reuse.
final class AppHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let connection: Int
    private var head: HTTPRequestHead?
    private var received = 0
    private var dropNext = false
    init(connection: Int) { self.connection = connection }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if dropNext {
                context.close(promise: nil)
                return
            }
            if head.uri == "/drop-next" { dropNext = true }
            self.head = head
            received = 0
            if head.uri == "/continue" {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
            }
        case .body(let buffer):
            received += buffer.readableBytes
        case .end:
            guard let head else { return }
            let body = "conn=\(connection) got=\(received)"
            var headers = HTTPHeaders([("content-length", String(body.utf8.count))])
            if head.uri == "/close" { headers.add(name: "connection", value: "close") }
            if head.uri == "/ka1" { headers.add(name: "keep-alive", value: "timeout=2, max=100") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            if head.uri == "/cut" {
                context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "con"))))).whenComplete { _ in
                    context.close(promise: nil)
                }
                return
            }
            if head.uri == "/twice" || head.uri == "/late" {
                // The framing says `body`; a second response follows it, at
                // once or a little later (the encoder does not police lengths).
                let smuggled = ByteBuffer(string: "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled")
                if head.uri == "/twice" {
                    var both = ByteBuffer(string: body)
                    both.writeImmutableBuffer(smuggled)
                    context.write(wrapOutboundOut(.body(.byteBuffer(both))), promise: nil)
                } else {
                    context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
                    // Raw bytes below the encoder, after the response ended.
                    let wire = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self)
                    context.eventLoop.scheduleTask(in: .milliseconds(100)) {
                        wire?.writeAndFlush(NIOAny(smuggled), promise: nil)
                    }
                }
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                return
            }
            if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil) }
            let closing = head.uri == "/close"
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if closing { context.close(promise: nil) }
            }
        }
    }
}

private final class RecordingReceiver: HTTP1ResponseReceiver, @unchecked Sendable {
    var heads: [HTTPResponseHead] = []
    var body = ""
    let done: EventLoopPromise<Result<String, Error>>
    init(eventLoop: EventLoop) { done = eventLoop.makePromise() }
    func receiveHead(_ head: HTTP1ResponseHead) { heads.append(head.head) }
    func receiveBody(_ buffer: ByteBuffer) { body += String(buffer: buffer) }
    func receiveEnd(_ trailers: HTTPHeaders?) { done.succeed(.success(body)) }
    func receiveFailure(_ error: Error) { done.succeed(.failure(error)) }
    func upstreamWritabilityChanged(_ writable: Bool) {}
}

final class HTTP1UpstreamPoolTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!
    var app: Channel!
    let connections = NIOLockedValueBox(0)

    override func setUpWithError() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let counter = connections
        app = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let number = counter.withLockedValue { $0 += 1; return $0 }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(AppHandler(connection: number))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    override func tearDownWithError() throws {
        try app.close().wait()
        try group.syncShutdownGracefully()
    }

    private var target: TargetKey {
        TargetKey(endpoint: IPEndpoint(address: .loopbackV4, port: UInt16(app.localAddress!.port!)))
    }

    /// Runs one exchange on the pool's loop and returns the body or error.
    private func run(_ pool: HTTP1UpstreamPool, _ uri: String, method: HTTPMethod = .GET,
                          body: String? = nil, headers: [(String, String)] = []) throws -> (Result<String, Error>, RecordingReceiver) {
        let loop = pool.eventLoop
        let boundPool = UncheckedBox(pool)
        let target = self.target
        let receiver = RecordingReceiver(eventLoop: loop)
        try loop.flatSubmit {
            let promise = loop.makePromise(of: Void.self)
            boundPool.value.acquire(target, connectTimeout: .seconds(2)) { result in
                switch result {
                case .success(let connection):
                    var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri,
                                               headers: HTTPHeaders([("host", "app")] + headers))
                    if let body { head.headers.add(name: "content-length", value: String(body.utf8.count)) }
                    connection.start(head, receiver: receiver)
                    if let body { connection.sendBody(ByteBuffer(string: body)) }
                    connection.sendEnd(nil)
                    promise.succeed(())
                case .failure(let error):
                    promise.fail(error)
                }
            }
            return promise.futureResult
        }.wait()
        return (try receiver.done.futureResult.wait(), receiver)
    }

    private func makePool() throws -> HTTP1UpstreamPool {
        let loop = group.next()
        return try loop.submit { HTTP1UpstreamPool(eventLoop: loop) }.wait()
    }

    func testSequentialExchangesReuseOneConnection() throws {
        let pool = try makePool()
        XCTAssertEqual(try run(pool, "/a").0.get(), "conn=1 got=0")
        XCTAssertEqual(try run(pool, "/b", method: .POST, body: "hello").0.get(), "conn=1 got=5")
        XCTAssertEqual(try run(pool, "/c", method: .HEAD).0.get(), "", "HEAD has no body but ends")
        XCTAssertEqual(try run(pool, "/d").0.get(), "conn=1 got=0", "still the same connection after HEAD")
        XCTAssertEqual(connections.withLockedValue { $0 }, 1)
    }

    func testAnIdleConnectionTheAppWillSoonCloseIsNotReused() throws {
        let pool = try makePool()
        XCTAssertEqual(try run(pool, "/ka1").0.get(), "conn=1 got=0")
        XCTAssertEqual(try run(pool, "/a").0.get(), "conn=1 got=0", "within timeout=2 less a second")
        XCTAssertEqual(try run(pool, "/ka1").0.get(), "conn=1 got=0")
        Thread.sleep(forTimeInterval: 1.2)
        XCTAssertEqual(try run(pool, "/b").0.get(), "conn=2 got=0", "the app may be closing it: not raced")
    }

    func testKeepAliveTimeoutsAreRead() {
        XCTAssertEqual(HTTP1UpstreamConnection.timeout(inKeepAlive: "timeout=5, max=1000"), .seconds(5))
        XCTAssertEqual(HTTP1UpstreamConnection.timeout(inKeepAlive: "max=10 ,  Timeout = 2 "), .seconds(2))
        XCTAssertNil(HTTP1UpstreamConnection.timeout(inKeepAlive: "max=10"))
        XCTAssertNil(HTTP1UpstreamConnection.timeout(inKeepAlive: "timeout=soon"))
    }

    func testConnectionCloseIsNotReused() throws {
        let pool = try makePool()
        XCTAssertEqual(try run(pool, "/close").0.get(), "conn=1 got=0")
        XCTAssertEqual(try run(pool, "/after").0.get(), "conn=2 got=0")
    }

    func testInformationalResponsesAreForwarded() throws {
        let pool = try makePool()
        let (result, receiver) = try run(pool, "/continue", method: .POST, body: "xyz", headers: [("expect", "100-continue")])
        XCTAssertEqual(try result.get(), "conn=1 got=3")
        XCTAssertEqual(receiver.heads.map(\.status), [.continue, .ok])
    }

    /// Bytes past a response's framing would answer the next request sent
    /// on the connection (a desync). NIO's decoder refuses a response with
    /// no request out, and the connection is closed.
    func testBytesAfterTheResponseCloseTheConnectionAndNeverAnswerTheNextRequest() throws {
        let pool = try makePool()
        XCTAssertEqual(try run(pool, "/twice").0.get(), "conn=1 got=0")
        XCTAssertEqual(try run(pool, "/next").0.get(), "conn=2 got=0", "the second response in the same read")
        XCTAssertEqual(try run(pool, "/late").0.get(), "conn=2 got=0")
        Thread.sleep(forTimeInterval: 0.4)
        XCTAssertEqual(try run(pool, "/after").0.get(), "conn=3 got=0", "a response sent to an idle connection")
        let open = try pool.eventLoop.submit { [target] in pool.openCount(target) }.wait()
        XCTAssertEqual(open, 1)
    }

    func testEarlyCloseIsAFailureAndTheConnectionIsGone() throws {
        let pool = try makePool()
        let (result, _) = try run(pool, "/cut")
        XCTAssertThrowsError(try result.get())
        XCTAssertEqual(try run(pool, "/next").0.get(), "conn=2 got=0")
        let open = try pool.eventLoop.submit { [target] in pool.openCount(target) }.wait()
        XCTAssertEqual(open, 1)
    }
}

/// Hands a loop-confined object to a closure that runs on that loop.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
