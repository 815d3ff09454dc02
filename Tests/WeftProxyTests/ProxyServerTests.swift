#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import XCTest
import WeftConfig
import WeftCore
@testable import WeftProxy

/// Drives a real `ProxyServer` over loopback; the original destination comes
/// from a fake resolver, so no iptables or root is needed.
final class ProxyServerTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() {
        XCTAssertNoThrow(try group.syncShutdownGracefully())
    }

    private func cluster(vip: String, endpoint: Channel) throws -> Cluster {
        let port = try XCTUnwrap(endpoint.localAddress?.port)
        return Cluster(name: "backend", addresses: [try XCTUnwrap(IPEndpoint(vip))],
                       endpoints: [Endpoint(address: IPEndpoint(address: .loopbackV4, port: UInt16(port)))],
                       timeouts: ClusterTimeouts(connect: .seconds(2)))
    }

    func testVIPIsRelayedAndHalfCloseCarriesTheRest() throws {
        let echo = try startServer(group: group) { EchoHandler() }
        defer { echo.close(promise: nil) }
        let fixture = try ProxyFixture(group: group, clusters: [cluster(vip: "198.19.0.10:9090", endpoint: echo)])
        fixture.resolver.set(IPEndpoint("198.19.0.10:9090"))

        let client = CollectingHandler(eventLoop: group.next())
        let channel = try XCTUnwrap(fixture.connect(to: .outbound, handler: client))
        let payload = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try channel.writeAndFlush(ByteBuffer(bytes: payload)).wait()
        // Half-close: the echo server only closes its side after our FIN
        // crossed the relay, and every echoed byte must still arrive.
        try channel.close(mode: .output).wait()
        XCTAssertNil(try client.closed.futureResult.wait())
        XCTAssertEqual(client.bytes, payload)
        XCTAssertEqual(fixture.server.metrics.outbound.opened.load(ordering: .relaxed), 1)
        XCTAssertNoThrow(try fixture.server.close().wait())
    }

    func testServerThatSpeaksFirstIsHeardBeforeTheClientWrites() throws {
        let banner = try startServer(group: group) { BannerHandler() }
        defer { banner.close(promise: nil) }
        let fixture = try ProxyFixture(group: group, clusters: [cluster(vip: "198.19.0.10:3306", endpoint: banner)])
        fixture.resolver.set(IPEndpoint("198.19.0.10:3306"))

        let client = CollectingHandler(eventLoop: group.next())
        let channel = try XCTUnwrap(fixture.connect(to: .outbound, handler: client))
        let deadline = NIODeadline.now() + .seconds(5)
        while client.bytes.count < 12, NIODeadline.now() < deadline { usleep(10_000) }
        XCTAssertEqual(String(decoding: client.bytes, as: UTF8.self), "220 banner\r\n")
        try channel.close().wait()
        XCTAssertNoThrow(try fixture.server.close().wait())
    }

    func testLargeDownloadArrivesWholeAndInOrder() throws {
        let payload = (0..<(8 << 20)).map { UInt8(truncatingIfNeeded: $0 ^ ($0 >> 9)) }
        let sender = try startServer(group: group) { SendAndFinishHandler(payload: payload) }
        defer { sender.close(promise: nil) }
        let fixture = try ProxyFixture(group: group, clusters: [cluster(vip: "198.19.0.10:80", endpoint: sender)])
        fixture.resolver.set(IPEndpoint("198.19.0.10:80"))

        let client = CollectingHandler(eventLoop: group.next(), onEOF: { $0.close(promise: nil) })
        try fixture.connect(to: .outbound, handler: client)
        _ = try client.closed.futureResult.wait()
        XCTAssertEqual(client.bytes.count, payload.count)
        XCTAssertTrue(client.bytes == payload)
        XCTAssertNoThrow(try fixture.server.close().wait())
    }

    func testNotRedirectedConnectionIsResetAndCounted() throws {
        let fixture = try ProxyFixture(group: group)
        fixture.resolver.set(try fixture.endpoint(.outbound))
        XCTAssertEqual(rawExchange(port: try fixture.port(.outbound)), .reset)
        XCTAssertEqual(fixture.server.metrics.refusedCount(.outbound, .notRedirected), 1)
        XCTAssertNoThrow(try fixture.server.close().wait())
    }

    func testRegistryOnlyRefusesUnknownDestinations() throws {
        let fixture = try ProxyFixture(group: group, policy: .registryOnly)
        fixture.resolver.set(IPEndpoint("198.18.0.9:80"))
        XCTAssertEqual(rawExchange(port: try fixture.port(.outbound)), .reset)
        XCTAssertEqual(fixture.server.metrics.refusedCount(.outbound, .registryOnly), 1)
        XCTAssertNoThrow(try fixture.server.close().wait())
    }

    func testConnectFailureResetsTheAppAndIsCounted() throws {
        // Bind then close a server to get a port that refuses connections.
        let closedServer = try startServer(group: group) { EchoHandler() }
        let deadCluster = try cluster(vip: "198.19.0.10:9090", endpoint: closedServer)
        try closedServer.close().wait()
        let fixture = try ProxyFixture(group: group, clusters: [deadCluster])
        fixture.resolver.set(IPEndpoint("198.19.0.10:9090"))
        XCTAssertEqual(rawExchange(port: try fixture.port(.outbound)), .reset)
        XCTAssertEqual(fixture.server.metrics.outbound.connectFailures.load(ordering: .relaxed), 1)
        XCTAssertNoThrow(try fixture.server.close().wait())
    }

    func testUpstreamResetIsPropagatedToTheApp() throws {
        let resetter = try startServer(group: group) { ResetOnReadHandler() }
        defer { resetter.close(promise: nil) }
        let fixture = try ProxyFixture(group: group, clusters: [cluster(vip: "198.19.0.10:9090", endpoint: resetter)])
        fixture.resolver.set(IPEndpoint("198.19.0.10:9090"))
        XCTAssertEqual(rawExchange(port: try fixture.port(.outbound), send: Array("hello".utf8)), .reset)
        XCTAssertNoThrow(try fixture.server.close().wait())
    }

    func testInboundDeliversToLoopbackOnTheOriginalPort() throws {
        let echo = try startServer(group: group) { EchoHandler() }
        defer { echo.close(promise: nil) }
        let fixture = try ProxyFixture(group: group)
        let appPort = UInt16(try XCTUnwrap(echo.localAddress?.port))
        // A pod address that is not ours: inbound delivers by port.
        fixture.resolver.set(IPEndpoint(address: IPAddress("198.18.0.3")!, port: appPort))
        let client = CollectingHandler(eventLoop: group.next())
        let channel = try XCTUnwrap(fixture.connect(to: .inbound, handler: client))
        try channel.writeAndFlush(ByteBuffer(string: "ping")).wait()
        try channel.close(mode: .output).wait()
        _ = try client.closed.futureResult.wait()
        XCTAssertEqual(String(decoding: client.bytes, as: UTF8.self), "ping")
        XCTAssertEqual(fixture.server.metrics.inbound.opened.load(ordering: .relaxed), 1)
        XCTAssertNoThrow(try fixture.server.close().wait())
    }

    func testDrainStopsAcceptingAndFailsReady() throws {
        let fixture = try ProxyFixture(group: group)
        let outbound = try fixture.port(.outbound)
        XCTAssertTrue(fixture.server.isReady)
        try fixture.server.drain(timeout: .seconds(2)).wait()
        XCTAssertFalse(fixture.server.isReady)
        XCTAssertThrowsError(try ClientBootstrap(group: group).connect(host: "127.0.0.1", port: outbound).wait())
        XCTAssertNoThrow(try fixture.server.close().wait())
    }
}

extension ProxyServerTests {
    func testConnectionsPastTheListenerLimitAreResetAndCounted() throws {
        let echo = try startServer(group: group) { EchoHandler() }
        defer { echo.close(promise: nil) }
        let fixture = try ProxyFixture(group: group, clusters: [cluster(vip: "198.19.0.10:9090", endpoint: echo)],
                                       maxConnections: 1)
        fixture.resolver.set(IPEndpoint("198.19.0.10:9090"))
        let first = CollectingHandler(eventLoop: group.next())
        let held = try XCTUnwrap(fixture.connect(to: .outbound, handler: first))
        try held.writeAndFlush(ByteBuffer(string: "hold")).wait()
        let deadline = NIODeadline.now() + .seconds(5)
        while first.bytes.count < 4, NIODeadline.now() < deadline { usleep(10_000) }
        XCTAssertEqual(String(decoding: first.bytes, as: UTF8.self), "hold", "the first connection is relayed")
        XCTAssertEqual(rawExchange(port: try fixture.port(.outbound)), .reset)
        XCTAssertEqual(fixture.server.metrics.refusedCount(.outbound, .overload), 1)
        XCTAssertEqual(fixture.server.metrics.limitHits[.connections]?.load(ordering: .relaxed), 1)
        try held.close().wait()
        XCTAssertNoThrow(try fixture.server.close().wait())
    }
}
