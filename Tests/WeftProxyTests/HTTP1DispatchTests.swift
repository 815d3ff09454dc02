import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import WeftCore
import WeftObservability
import WeftTransport
import WeftMesh
import XCTest
@testable import WeftProxy

/// The HTTP/1.1 dispatch stage against in-process apps, reached through
/// the in-memory `LocalPairConnector` (no sockets on any network).
final class HTTP1DispatchTests: XCTestCase {
    /// An exchange as the pipeline's are: owns its dispatch, hears the answer.
    private final class Exchange: HTTP1DispatchOwner, @unchecked Sendable {
        var dispatch = HTTP1Dispatch()
        let answer: EventLoopPromise<String>
        private var body = ""
        init(loop: EventLoop) { answer = loop.makePromise() }

        func dispatchConnected(_ connection: HTTP1UpstreamConnection) { dispatch.attach(connection, receiver: self) }
        func dispatchFailed(_ reason: ErrorReason) { answer.succeed("failed: \(reason.rawValue)") }
        func receiveHead(_ head: HTTP1ResponseHead) { dispatch.responded() }
        func receiveBody(_ buffer: ByteBuffer) { body += String(buffer: buffer) }
        func receiveEnd(_ trailers: HTTPHeaders?) {
            dispatch.finished()
            answer.succeed(body)
        }
        func receiveFailure(_ error: Error) {
            if let replay, dispatch.prepareReplay() { return replay(self) }
            dispatch.finished()
            answer.succeed("broken")
        }
        /// Sends the request again when its reused connection closed under it.
        var replay: ((Exchange) -> Void)?
        func upstreamWritabilityChanged(_ writable: Bool) {}
    }

    private var group: MultiThreadedEventLoopGroup!
    private var loop: EventLoop!
    private let connector = LocalPairConnector()
    private let app = IPEndpoint("198.18.0.3:8080")!
    private let served = NIOLockedValueBox(0)
    private let metrics = ProxyMetrics()
    private var logger: Logger = {
        var logger = Logger(label: "test.dispatch")
        logger.logLevel = .critical
        return logger
    }()

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        let served = self.served
        connector.serve(app) { channel in
            let number = served.withLockedValue { $0 += 1; return $0 }
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            try channel.pipeline.syncOperations.addHandler(AppHandler(connection: number))
        }
    }

    override func tearDown() {
        XCTAssertNoThrow(try group.syncShutdownGracefully())
    }

    private func makePool(maxConnections: Int = 1024, connectsInFlight: Int = 16) throws -> HTTP1UpstreamPool {
        let (loop, connector) = (self.loop!, self.connector)
        return try loop.submit {
            var limits = HTTP1UpstreamPool.Limits()
            limits.maxConnectionsPerTarget = maxConnections
            limits.maxConnectsInFlightPerTarget = connectsInFlight
            return HTTP1UpstreamPool(eventLoop: loop, limits: limits, connector: connector)
        }.wait()
    }

    /// Starts a POST of `body` to `target` and sends the whole request at
    /// once, before any connection can be open.
    /// `length`: the Content-Length to declare, when not the body's.
    private func start(_ pool: HTTP1UpstreamPool, to target: IPEndpoint? = nil, uri: String = "/", body: String = "",
                       end: Bool = true, length: Int? = nil) throws -> Exchange {
        let (target, metrics, logger) = (TargetKey(endpoint: target ?? app), self.metrics, self.logger)
        let box = UncheckedBox(pool)
        return try loop.submit {
            let exchange = Exchange(loop: box.value.eventLoop)
            let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: uri,
                                       headers: ["host": "app", "content-length": "\(length ?? body.utf8.count)"])
            let attached = exchange.dispatch.start(head, to: target, pool: box.value, receiver: exchange)
            if !body.isEmpty { exchange.dispatch.send(.body(.byteBuffer(ByteBuffer(string: body)))) }
            if end { exchange.dispatch.send(.end(nil)) }
            if !attached {
                exchange.dispatch.waiting = HTTP1Dispatch.connect(to: target, pool: box.value, connectTimeout: .seconds(2),
                                                                  metrics: metrics, logger: logger, owner: exchange)
            }
            return exchange
        }.wait()
    }

    func testRequestsCancelledWhileWaitingForAConnectionCostTheAppOneConnectionNotOneEach() throws {
        let pool = try makePool()
        let (metrics, logger, key, box) = (self.metrics, self.logger, TargetKey(endpoint: app), UncheckedBox(pool))
        // A rapid-reset flood, as a peer sends it: each request starts, then
        // is cancelled at once, before any connection could open.
        try loop.submit {
            for _ in 0..<500 {
                let exchange = Exchange(loop: box.value.eventLoop)
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["host": "app"])
                XCTAssertFalse(exchange.dispatch.start(head, to: key, pool: box.value, receiver: exchange))
                exchange.dispatch.waiting = HTTP1Dispatch.connect(to: key, pool: box.value, connectTimeout: .seconds(2),
                                                                  metrics: metrics, logger: logger, owner: exchange)
                exchange.dispatch.abandon()
                exchange.answer.succeed("cancelled")
            }
        }.wait()
        // The one connect in flight finishes into the idle list; a later
        // request uses it.
        XCTAssertEqual(try start(pool, body: "after").answer.futureResult.wait(), "conn=1 got=5")
        XCTAssertEqual(connector.connectCount(app), 1)
        XCTAssertEqual(metrics.limitHits[.upstreamPool]?.load(ordering: .relaxed) ?? 0, 0)
    }

    func testWaitersShareTheConnectsInFlightAndAFreedConnection() throws {
        // One connect at a time: three requests at once are all answered,
        // over at most three connections, in the order they came.
        let pool = try makePool(connectsInFlight: 1)
        let exchanges = try (0..<3).map { try start(pool, body: "n\($0)") }
        let answers = try exchanges.map { try $0.answer.futureResult.wait() }
        XCTAssertEqual(answers.map { $0.hasSuffix("got=2") }, [true, true, true], "\(answers)")
        XCTAssertLessThanOrEqual(connector.connectCount(app), 3)
        let (key, box) = (TargetKey(endpoint: app), UncheckedBox(pool))
        XCTAssertEqual(try loop.submit { box.value.openCount(key) }.wait(), connector.connectCount(app),
                       "every connection opened is accounted for")
    }

    func testPartsSentBeforeTheConnectionOpensArriveAndTheConnectionIsReused() throws {
        let pool = try makePool()
        XCTAssertEqual(try start(pool, body: "hello").answer.futureResult.wait(), "conn=1 got=5")
        XCTAssertEqual(try start(pool, body: "again!").answer.futureResult.wait(), "conn=1 got=6",
                       "the second request took the idle connection")
        XCTAssertEqual(connector.connectCount(app), 1)
    }

    func testARequestTheUpstreamClosedItsIdleConnectionOnGoesOnceMoreOnAFreshOne() throws {
        let pool = try makePool()
        XCTAssertEqual(try start(pool, uri: "/drop-next", body: "first").answer.futureResult.wait(), "conn=1 got=5")
        // The app closes connection 1 as this request arrives on it.
        let (metrics, logger, key, box) = (self.metrics, self.logger, TargetKey(endpoint: app), UncheckedBox(pool))
        let raced = try loop.submit {
            let exchange = Exchange(loop: box.value.eventLoop)
            exchange.replay = { exchange in
                HTTP1Dispatch.connect(to: key, pool: box.value, connectTimeout: .seconds(2), metrics: metrics,
                                      logger: logger, owner: exchange)
            }
            let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/", headers: ["content-length": "6"])
            XCTAssertTrue(exchange.dispatch.start(head, to: key, pool: box.value, receiver: exchange), "reused")
            exchange.dispatch.send(.body(.byteBuffer(ByteBuffer(string: "second"))))
            exchange.dispatch.send(.end(nil))
            return exchange
        }.wait()
        XCTAssertEqual(try raced.answer.futureResult.wait(), "conn=2 got=6", "the whole request, again, on a fresh one")
        XCTAssertEqual(connector.connectCount(app), 2)
    }

    func testAnAnsweredRequestIsNeverSentAgain() throws {
        let pool = try makePool()
        XCTAssertEqual(try start(pool, body: "x").answer.futureResult.wait(), "conn=1 got=1")
        // /cut answers its head and part of the body, then closes: the
        // request reached the app, so it is not replayed.
        let (key, box) = (TargetKey(endpoint: app), UncheckedBox(pool))
        let cut = try loop.submit {
            let exchange = Exchange(loop: box.value.eventLoop)
            exchange.replay = { _ in XCTFail("replayed a request the app had answered") }
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/cut", headers: ["host": "app"])
            XCTAssertTrue(exchange.dispatch.start(head, to: key, pool: box.value, receiver: exchange))
            exchange.dispatch.send(.end(nil))
            return exchange
        }.wait()
        XCTAssertEqual(try cut.answer.futureResult.wait(), "broken")
        XCTAssertEqual(connector.connectCount(app), 1)
    }

    func testAnUnreachableTargetIsAConnectFailure() throws {
        let pool = try makePool()
        let nobody = IPEndpoint("198.18.0.9:8080")!
        XCTAssertEqual(try start(pool, to: nobody, body: "x").answer.futureResult.wait(), "failed: connect_failure")
        XCTAssertEqual(try start(pool, body: "x").answer.futureResult.wait(), "conn=1 got=1", "other targets unaffected")
    }

    func testRequestsWaitingOnAnUnreachableTargetFailWithTheConnectTheyWaitedFor() throws {
        // One connect at a time: the three requests queued behind the one
        // connect fail when it fails, instead of trying again one by one.
        let pool = try makePool(connectsInFlight: 1)
        let nobody = IPEndpoint("198.18.0.9:8080")!
        let (metrics, logger, key, box) = (self.metrics, self.logger, TargetKey(endpoint: nobody), UncheckedBox(pool))
        let exchanges = try loop.submit {
            (0..<3).map { _ in
                let exchange = Exchange(loop: box.value.eventLoop)
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["host": "app"])
                _ = exchange.dispatch.start(head, to: key, pool: box.value, receiver: exchange)
                exchange.dispatch.waiting = HTTP1Dispatch.connect(to: key, pool: box.value, connectTimeout: .seconds(2),
                                                                  metrics: metrics, logger: logger, owner: exchange)
                return exchange
            }
        }.wait()
        XCTAssertEqual(try exchanges.map { try $0.answer.futureResult.wait() }, Array(repeating: "failed: connect_failure", count: 3))
        XCTAssertEqual(connector.attemptCount(nobody), 1)
    }

    func testAFullPoolIsCountedAndAnsweredUntilAConnectionIsFree() throws {
        let pool = try makePool(maxConnections: 1)
        let first = try start(pool, body: "slow", end: false, length: 10)
        XCTAssertEqual(try start(pool, body: "x").answer.futureResult.wait(), "failed: connect_failure")
        XCTAssertEqual(metrics.limitHits[.upstreamPool]?.load(ordering: .relaxed), 1)
        try loop.submit {
            first.dispatch.send(.body(.byteBuffer(ByteBuffer(string: "+six!!"))))
            first.dispatch.send(.end(nil))
        }.wait()
        XCTAssertEqual(try first.answer.futureResult.wait(), "conn=1 got=10")
        XCTAssertEqual(try start(pool, body: "x").answer.futureResult.wait(), "conn=1 got=1", "free again")
    }

    func testAnAbandonedExchangeClosesItsConnectionInsteadOfReusingIt() throws {
        let pool = try makePool()
        let broken = try start(pool, body: "half", end: false, length: 100)
        // Wait until the request is on a connection, then give up on it.
        for _ in 0..<200 {
            if try loop.submit({ broken.dispatch.connection != nil }).wait() { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertFalse(try loop.submit { broken.dispatch.connection == nil }.wait(), "the request reached a connection")
        try loop.submit {
            broken.dispatch.abandon()
            broken.answer.succeed("abandoned")
        }.wait()
        XCTAssertEqual(try start(pool, body: "x").answer.futureResult.wait(), "conn=2 got=1")
        XCTAssertEqual(connector.connectCount(app), 2)
        // The abandoned connection is closed, not left open and busy.
        let key = TargetKey(endpoint: app)
        let box = UncheckedBox(pool)
        var open = 2
        for _ in 0..<200 {
            open = try loop.submit { box.value.openCount(key) }.wait()
            if open == 1 { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertEqual(open, 1, "only the reusable connection is left")
    }
}
