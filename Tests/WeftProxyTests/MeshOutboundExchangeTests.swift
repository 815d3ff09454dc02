import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import WeftConfig
import WeftCore
import WeftHTTP2
import WeftMesh
import WeftObservability
import WeftTransport
import WeftUpstream
import XCTest
@testable import WeftProxy

/// The exchange and the app connection's handler point at each other while
/// a request runs: the handler holds the exchange until the response ends,
/// and the exchange holds the handler to answer. The exchange lets go of
/// the handler when it is done, however it ends. Others may hold the
/// exchange a while longer (the mesh connection, until its stream closes;
/// the pool, until a connect ends): the handler, and the app connection's
/// pipeline behind it, must not live on with it.
final class MeshOutboundExchangeTests: XCTestCase {
    /// A handler as `OutboundHTTPHandler` is to its exchange: holds it, and
    /// drops it when answered or closed.
    private final class Responder: ExchangeResponder {
        let metrics = ProxyMetrics()
        var draining = false
        var appIsWritable = true
        var exchange: (any OutboundExchange)?
        var answers: [String] = []
        /// Keeps the exchange's pool while the test runs.
        var pool: MeshConnectionPool?
        func setReadsPaused(_ paused: Bool) {}
        func writeHead(_ head: AppResponseHead) { answers.append("head \(head.status.code)") }
        func writeBody(_ buffer: ByteBuffer) {}
        func flush() {}
        func writeEnd(_ trailers: HTTPHeaders?, close: Bool, exchange finished: any OutboundExchange) {
            answers.append("end")
            if exchange === finished { exchange = nil }
        }
        func abortResponse() {
            answers.append("abort")
            exchange = nil
        }
        func respondWithError(_ reason: ErrorReason, keepAlive: Bool, version: HTTPVersion,
                              finished: (any OutboundExchange)?) {
            answers.append("error \(reason.rawValue)")
            if let finished, exchange === finished { exchange = nil }
        }
        func record(_ record: RequestRecord) { answers.append("record \(record.status)") }
        /// The app connection closed, as `channelInactive` tells it.
        func appClosed() {
            exchange?.appClosed()
            exchange = nil
        }
    }

    private var group: MultiThreadedEventLoopGroup!
    private var loop: EventLoop!
    private let connector = LocalPairConnector()
    private var logger: Logger = {
        var logger = Logger(label: "test.exchange")
        logger.logLevel = .critical
        return logger
    }()

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
    }

    override func tearDown() {
        XCTAssertNoThrow(try group.syncShutdownGracefully())
    }

    private func lease() throws -> Lease {
        let cluster = Cluster(name: "c", addresses: [IPEndpoint("198.19.0.12:80")!], mesh: true,
                              endpoints: [Endpoint(address: IPEndpoint("198.18.0.4:80")!)])
        let snapshot = RuntimeSnapshot(configuration: Configuration(clusters: [cluster]))
        guard let upstream = snapshot.upstream(named: "c") else { throw XCTSkip("no cluster") }
        let route = MeshRoute(cluster: upstream, balancer: LoopBalancer(plan: upstream.plan), fixedEndpoint: nil,
                              meshPort: 15008)
        return try route.connectionLease().get()
    }

    /// What is left of an exchange and its handler once the test let go
    /// of the handler; the exchange is held, as a mesh stream holds it.
    private final class Remains: @unchecked Sendable {
        weak var responder: AnyObject?
        var exchange: MeshOutboundExchange?
        var answers: [String] = []
    }

    /// Starts an exchange owned by a responder, on the loop; `end` ends it.
    private func run(uri: String = "/", _ end: @escaping @Sendable (MeshOutboundExchange, Responder) -> Void) throws
        -> Remains {
        let lease = UncheckedBox(try lease())
        let (connector, logger, loop) = (self.connector, self.logger, self.loop!)
        return try loop.submit {
            let pool = MeshConnectionPool(eventLoop: loop, metrics: ProxyMetrics(), logger: logger,
                                          connectTimeout: .seconds(1), connector: connector)
            let remains = Remains()
            let responder = Responder()
            let exchange = MeshOutboundExchange(
                handler: responder, head: HTTP1RequestHead(method: .GET, uri: uri, version: .http1_1,
                                                           fields: [HTTP2Header("host", "c")]),
                connection: ConnectionOptions(), lease: lease.value, cluster: "c", logger: logger)
            responder.exchange = exchange
            remains.responder = responder
            remains.exchange = exchange
            responder.pool = pool
            end(exchange, responder)
            remains.answers = responder.answers
            return remains
        }.wait()
    }

    /// Whether the handler is gone while its exchange is still held, once
    /// the loop has run what was due (a refusal comes back on a later turn).
    private func handlerGone(_ remains: Remains) throws -> Bool {
        let deadline = NIODeadline.now() + .seconds(5)
        while NIODeadline.now() < deadline {
            if try loop.submit({ remains.responder == nil }).wait() {
                return try loop.submit { remains.exchange != nil }.wait()
            }
            usleep(10_000)
        }
        return false
    }

    func testAnExchangeThatFailsLetsItsHandlerGo() throws {
        // Nobody serves the peer: the connect fails, the app gets a 502,
        // and the exchange is done.
        let remains = try run { exchange, responder in
            guard let pool = responder.pool else { return }
            exchange.start(pool: pool, peer: IPEndpoint("198.18.0.9:15008")!, deadline: .now() + .seconds(5))
        }
        XCTAssertTrue(try handlerGone(remains), "the handler lived on with its failed exchange")
    }

    func testAnExchangeTheAppLeavesLetsItsHandlerGo() throws {
        let remains = try run { _, responder in responder.appClosed() }
        XCTAssertTrue(try handlerGone(remains), "the handler lived on with the exchange its app left")
    }

    /// A request target the upgrade refuses (absolute form, not `http`)
    /// is answered at once: recorded once, before the answer, as every
    /// ending is (a retry stage counts on that order, or records it twice).
    func testARefusedTargetIsRecordedOnceBeforeItsAnswer() throws {
        let remains = try run(uri: "ftp://x/") { exchange, responder in
            guard let pool = responder.pool else { return }
            exchange.start(pool: pool, peer: IPEndpoint("198.18.0.9:15008")!, deadline: .now() + .seconds(5))
        }
        XCTAssertEqual(remains.answers, ["record 400", "error bad_request_target"])
        XCTAssertTrue(try handlerGone(remains))
    }

    func testAnExchangeThatTimesOutLetsItsHandlerGo() throws {
        let remains = try run { exchange, _ in exchange.timedOut() }
        XCTAssertEqual(remains.answers, ["record 504", "error timeout"])
        XCTAssertTrue(try handlerGone(remains), "the handler lived on with its timed-out exchange")
    }
}
