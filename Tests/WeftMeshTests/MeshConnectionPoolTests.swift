import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import WeftCore
import WeftHTTP2
import WeftMeshTesting
import WeftObservability
import WeftTransport
import XCTest
@testable import WeftMesh

/// The pool against in-process HTTP/2 servers over the in-memory
/// `LocalPairConnector`: bursts, stream limits, unreachable peers.
final class MeshConnectionPoolTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var loop: EventLoop!
    private let connector = LocalPairConnector()
    private let peer = IPEndpoint("198.18.0.3:15008")!
    private let metrics = ProxyMetrics()
    private let logger: Logger = {
        var logger = Logger(label: "test.pool")
        logger.logLevel = .critical
        return logger
    }()
    /// The server streams, held unanswered until the test answers them.
    private let held = NIOLockedValueBox<[RecordingStream]>([])

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
    }

    override func tearDown() {
        XCTAssertNoThrow(try group.syncShutdownGracefully())
    }

    /// Serves `peer` with HTTP/2 servers that take `limit` streams each.
    private func servePeer(limit: UInt32) {
        let (metrics, logger, held) = (self.metrics, self.logger, self.held)
        var settings = HTTP2Settings.default
        settings.maxConcurrentStreams = limit
        let serverSettings = settings
        connector.serve(peer) { channel in
            let server = MeshConnection(role: .server, metrics: metrics, logger: logger, settings: serverSettings) { connection, id, _ in
                let stream = RecordingStream()
                stream.connection = connection
                stream.streamID = id
                held.withLockedValue { $0.append(stream) }
                return stream
            }
            try channel.pipeline.syncOperations.addHandler(server)
        }
    }

    /// Asks the pool for `count` streams at once, each opened as soon as
    /// the pool hands out a connection.
    private func burst(_ pool: MeshConnectionPool, _ count: Int) throws -> (streams: [RecordingStream], failed: Int) {
        let peer = self.peer
        let box = Unchecked(value: pool)
        let result = NIOLockedValueBox<(streams: [RecordingStream], failed: Int)>(([], 0))
        try loop.submit {
            for index in 0..<count {
                box.value.connection(to: peer).whenComplete { outcome in
                    guard case .success(let connection) = outcome,
                          let stream = try? Self.open(MeshExchange.request("/\(index)"), on: connection) else {
                        return result.withLockedValue { $0.failed += 1 }
                    }
                    result.withLockedValue { $0.streams.append(stream) }
                }
            }
        }.wait()
        try waitUntil { result.withLockedValue { $0.streams.count + $0.failed } == count }
        return result.withLockedValue { $0 }
    }

    private static func open(_ headers: HTTP2Fields, on connection: MeshConnection) throws -> RecordingStream {
        let stream = RecordingStream()
        stream.connection = connection
        stream.streamID = try connection.openStream(headers: headers, endStream: true, handler: stream)
        return stream
    }

    private func waitUntil(_ condition: () -> Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        for _ in 0..<500 where !condition() { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertTrue(condition(), "timed out", file: file, line: line)
    }

    func testABurstBeyondOneConnectionsLimitSpreadsOverConnectionsInsteadOfBeingRefused() throws {
        servePeer(limit: 100)
        let pool = try loop.submit { [loop, metrics, logger, connector] in
            MeshConnectionPool(eventLoop: loop!, metrics: metrics, logger: logger, connectTimeout: .seconds(2),
                               connector: connector)
        }.wait()
        let (streams, failed) = try burst(pool, 250)
        XCTAssertEqual(failed, 0)
        try waitUntil { held.withLockedValue { $0.count } == 250 }
        XCTAssertEqual(connector.connectCount(peer), 3, "100 + 100 + 50 streams")
        try loop.submit { [held] in
            for stream in held.withLockedValue({ $0 }) { MeshExchange.answerWithBodyAndTrailers(stream) }
        }.wait()
        try waitUntil { try! loop.submit { streams.allSatisfy { !$0.closedWith.isEmpty } }.wait() }
        let (closes, bodies) = try loop.submit { (streams.map(\.closedWith), Set(streams.map(\.bodyString))) }.wait()
        XCTAssertEqual(closes.filter { $0 != [.noError] }.count, 0, "no stream refused or reset")
        XCTAssertEqual(bodies.count, 250, "every request answered")
    }

    func testWaitersGetSlotsAsStreamsEndWhenNoMoreConnectionsMayOpen() throws {
        servePeer(limit: 100)
        let pool = try loop.submit { [loop, metrics, logger, connector] in
            MeshConnectionPool(eventLoop: loop!, metrics: metrics, logger: logger, connectTimeout: .seconds(2),
                               connector: connector)
        }.wait()
        // Fill the pool's connection limit, then ask for more.
        let first = try burst(pool, 100 * MeshConnectionPool.maxConnectionsPerPeer)
        XCTAssertEqual(first.failed, 0)
        let box = Unchecked(value: pool)
        let late = NIOLockedValueBox<[RecordingStream]>([])
        try loop.submit { [peer] in
            for index in 0..<5 {
                box.value.connection(to: peer).whenSuccess { connection in
                    if let stream = try? Self.open(MeshExchange.request("/late\(index)"), on: connection) {
                        late.withLockedValue { $0.append(stream) }
                    }
                }
            }
        }.wait()
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertEqual(late.withLockedValue { $0.count }, 0, "no slot free yet")
        XCTAssertEqual(connector.connectCount(peer), MeshConnectionPool.maxConnectionsPerPeer)
        XCTAssertEqual(metrics.limitHits[.meshConnections]?.load(ordering: .relaxed) ?? 0 > 0, true)
        // Five streams end: the five waiters get their slots.
        try waitUntil { held.withLockedValue { $0.count } == first.streams.count }
        try loop.submit { [held] in
            for stream in held.withLockedValue({ $0.prefix(5) }) { MeshExchange.answerWithBodyAndTrailers(stream) }
        }.wait()
        try waitUntil { late.withLockedValue { $0.count } == 5 }
        XCTAssertEqual(connector.connectCount(peer), MeshConnectionPool.maxConnectionsPerPeer)
    }

    func testWaitersOfAnUnreachablePeerFailAndTheBackoffAnswersAtOnce() throws {
        let pool = try loop.submit { [loop, metrics, logger, connector] in
            MeshConnectionPool(eventLoop: loop!, metrics: metrics, logger: logger, connectTimeout: .seconds(2),
                               connector: connector)
        }.wait()
        let (streams, failed) = try burst(pool, 20)
        XCTAssertEqual(streams.count, 0)
        XCTAssertEqual(failed, 20)
        XCTAssertEqual(try burst(pool, 5).failed, 5)
        XCTAssertEqual(connector.connectCount(peer), 0, "nobody serves it: refused without a connection")
    }
}

/// Carries a loop-bound object into a task for that loop.
private struct Unchecked<Value>: @unchecked Sendable {
    let value: Value
}
