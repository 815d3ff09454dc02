#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import Foundation
import XCTest
import WeftConfig
import WeftCore
import WeftDiscovery
import Synchronization
@testable import WeftProxy

/// HTTP clusters whose endpoints run no weft (`mesh: false`, or a
/// per-endpoint override): each request is balanced and carried over a
/// pooled HTTP/1.1 connection to its endpoint, end to end in one process.
final class PlainEndpointTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!
    var apps: [Channel] = []

    override func setUpWithError() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        apps = try ["one", "two", "three"].map { name in
            try ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(NamedHTTPApp(name: name))
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
        }
    }

    override func tearDownWithError() throws {
        for app in apps { try app.close().wait() }
        try group.syncShutdownGracefully()
    }

    private func endpoints(mesh: [Bool?] = [nil, nil, nil]) throws -> [Endpoint] {
        try zip(apps, mesh).map { app, mesh in
            Endpoint(address: IPEndpoint(address: .loopbackV4, port: UInt16(try XCTUnwrap(app.localAddress?.port))),
                     mesh: mesh)
        }
    }

    private func node(_ endpoints: [Endpoint], meshPeer: UInt16? = nil) throws -> ProxyFixture {
        let cluster = Cluster(name: "plain", addresses: [IPEndpoint("198.19.0.30:8080")!], mesh: false,
                              endpoints: endpoints)
        let node = try ProxyFixture(group: group, clusters: [cluster], peerMeshPort: meshPeer)
        node.resolver.set(IPEndpoint("198.19.0.30:8080"))
        return node
    }

    /// Sends `count` pipelined GETs on one connection; returns the names
    /// that answered, in order, and the raw text.
    /// Waits until every loop has taken the snapshot the server published
    /// last: loops take it on their next turn, in the order tasks were
    /// queued. A moment first, for a discovery source's publish (made on
    /// its own thread just after the server shows the new endpoints) to be
    /// queued; then a task on every loop, which runs after it.
    private func loopsTookTheSnapshot() throws {
        usleep(20_000)
        for loop in group.makeIterator() { try loop.submit {}.wait() }
    }

    private func requests(_ count: Int, port: Int, extra: String = "") -> (names: [String], text: String) {
        guard case .success(let fd) = rawConnect(port: port) else { return ([], "") }
        defer { close(fd) }
        return ask(String(repeating: "GET / HTTP/1.1\r\nHost: plain\r\n\(extra)\r\n", count: count), count: count, on: fd)
    }

    /// Sends `raw` (holding `count` requests) on `fd` and reads until `count`
    /// answers are in: the names that answered, in order, and the raw text.
    private func ask(_ raw: String, count: Int, on fd: Int32) -> (names: [String], text: String) {
        _ = Array(raw.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var collected: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while String(decoding: collected, as: UTF8.self).components(separatedBy: "END\n").count <= count {
            let read = recv(fd, &buffer, buffer.count, 0)
            if read <= 0 { break }
            collected += buffer[..<read]
        }
        let text = String(decoding: collected, as: UTF8.self)
        let names = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n")
            .filter { $0.hasPrefix("name=") }.map { String($0.dropFirst(5)) }
        return (names, text)
    }

    /// `count` copies of `raw` on a new connection to `port`: the names.
    private func names(_ raw: String, count: Int, port: Int) -> [String] {
        guard case .success(let fd) = rawConnect(port: port) else { return [] }
        defer { close(fd) }
        return ask(String(repeating: raw, count: count), count: count, on: fd).names
    }

    func testEachRequestOnAKeepAliveConnectionIsBalanced() throws {
        let node = try node(try endpoints())
        let (names, text) = requests(30, port: try node.port(.outbound), extra: "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Kept: 1\r\n")
        XCTAssertEqual(names.count, 30, text)
        var counts: [String: Int] = [:]
        for name in names { counts[name, default: 0] += 1 }
        XCTAssertEqual(counts, ["one": 10, "two": 10, "three": 10], "one connection, one loop: strict turns")
        // In turn: each answer is from the endpoint after the previous one's.
        let order = ["one", "two", "three"]
        for (previous, next) in zip(names, names.dropFirst()) {
            XCTAssertEqual(order[(order.firstIndex(of: previous)! + 1) % 3], next, "\(names)")
        }
        XCTAssertTrue(text.contains("x-kept=1"), text)
        XCTAssertFalse(text.contains("x-hop="), "a header named by Connection crossed: \(text)")
        XCTAssertEqual(node.server.metrics.meshStreams.client.load(ordering: .relaxed), 0, "no mesh on a plain cluster")
        XCTAssertEqual(try node.server.metrics.requests(.outbound, statusClass: 2), 30)
        XCTAssertNoThrow(try node.server.close().wait())
    }

    func testADownEndpointAnswers502AndTheOthersStillServe() throws {
        var list = try endpoints()
        list[1] = Endpoint(address: IPEndpoint(address: .loopbackV4, port: 1))  // nothing listens there
        let node = try node(list)
        // One request per connection: a 502 closes its connection.
        var names: [String] = []
        var texts = ""
        for _ in 0..<12 {
            let (answered, text) = requests(1, port: try node.port(.outbound))
            names += answered
            texts += text
        }
        XCTAssertEqual(Set(names), ["one", "three"], texts)
        XCTAssertTrue(texts.contains("502 Bad Gateway"), texts)
        XCTAssertTrue(texts.contains("weft-reason: connect_failure"), texts)
        XCTAssertEqual(node.server.metrics.errorResponseCount(status: 502), 12 - names.count)
        XCTAssertGreaterThanOrEqual(12 - names.count, 2, "the down endpoint keeps its turns")
        // Every connect goes through the one Connector, which counts it.
        XCTAssertEqual(node.server.metrics.connects.failed.load(ordering: .relaxed), 12 - names.count)
        XCTAssertGreaterThanOrEqual(node.server.metrics.connects.succeeded.load(ordering: .relaxed), 2)
        XCTAssertNoThrow(try node.server.close().wait())
    }

    /// A rollout that mixes nodes with and without weft: the endpoint
    /// marked `mesh: true` is reached through its node's mesh listener, the
    /// others directly.
    func testPerEndpointMeshOverridesTheCluster() throws {
        let receiver = try ProxyFixture(group: group)
        let meshPort = UInt16(try XCTUnwrap(receiver.server.boundAddresses(.mesh).first { $0.protocol == .inet }?.port))
        let node = try node(try endpoints(mesh: [nil, true, nil]), meshPeer: meshPort)
        let (names, text) = requests(9, port: try node.port(.outbound))
        XCTAssertEqual(Set(names), ["one", "two", "three"], text)
        XCTAssertEqual(node.server.metrics.meshStreams.client.load(ordering: .relaxed), 3, "only `two` rides the mesh")
        XCTAssertEqual(receiver.server.metrics.meshStreams.server.load(ordering: .relaxed), 3)
        XCTAssertNoThrow(try node.server.close().wait())
        XCTAssertNoThrow(try receiver.server.close().wait())
    }

    /// L7 rules move requests between clusters: by path, by header, and by
    /// weight, counted; a request no rule takes stays on the VIP's cluster.
    func testRoutesSplitRequestsByPathHeaderAndWeight() throws {
        let all = try endpoints()
        let clusters = [
            Cluster(name: "one", addresses: [IPEndpoint("198.19.0.30:8080")!], endpoints: [all[0]]),
            Cluster(name: "two", endpoints: [all[1]]),
            Cluster(name: "three", endpoints: [all[2]]),
        ]
        let routes = [
            Route(match: RouteMatch(pathPrefix: "/v2"), clusters: [WeightedCluster(name: "two")]),
            Route(match: RouteMatch(headers: ["x-canary": "1"]), clusters: [WeightedCluster(name: "three")]),
            Route(match: RouteMatch(host: "split"),
                  clusters: [WeightedCluster(name: "one", weight: 1), WeightedCluster(name: "three", weight: 3)]),
        ]
        let node = try ProxyFixture(group: group, clusters: clusters, routes: routes)
        node.resolver.set(IPEndpoint("198.19.0.30:8080"))
        let port = try node.port(.outbound)

        XCTAssertEqual(names("GET /v2/items HTTP/1.1\r\nHost: plain\r\n\r\n", count: 5, port: port), Array(repeating: "two", count: 5))
        XCTAssertEqual(names("GET /v1 HTTP/1.1\r\nHost: plain\r\nX-Canary: 1\r\n\r\n", count: 5, port: port),
                       Array(repeating: "three", count: 5))
        XCTAssertEqual(names("GET /v1 HTTP/1.1\r\nHost: plain\r\n\r\n", count: 5, port: port), Array(repeating: "one", count: 5),
                       "no rule: the VIP's cluster")
        let split = names("GET / HTTP/1.1\r\nHost: split:8080\r\n\r\n", count: 400, port: port)
        XCTAssertEqual(split.count, 400)
        let toThree = split.filter { $0 == "three" }.count
        XCTAssertEqual(Double(toThree) / 400, 0.75, accuracy: 0.08, "weights 1:3, got \(toThree) of 400 to three")
        XCTAssertEqual(split.filter { $0 == "one" }.count, 400 - toThree)
        XCTAssertNoThrow(try node.server.close().wait())
    }

    /// A reload adds endpoints while a keep-alive connection is open: the
    /// connection is not dropped and its next requests spread over the new
    /// set, as do new connections'; the same file again changes nothing;
    /// an invalid one is counted and the configuration in force stays.
    func testReloadChangesEndpointsWithoutDroppingConnections() throws {
        let all = try endpoints()
        let before = Cluster(name: "plain", addresses: [IPEndpoint("198.19.0.30:8080")!], endpoints: [all[0]])
        let node = try ProxyFixture(group: group, clusters: [before])
        node.resolver.set(IPEndpoint("198.19.0.30:8080"))
        guard case .success(let fd) = rawConnect(port: try node.port(.outbound)) else { return XCTFail("connect") }
        defer { close(fd) }
        XCTAssertEqual(ask(String(repeating: "GET / HTTP/1.1\r\nHost: plain\r\n\r\n", count: 3), count: 3, on: fd).names, ["one", "one", "one"])

        var configuration = Configuration(clusters: [before])
        configuration.clusters[0].endpoints = all
        XCTAssertEqual(node.server.reload(configuration), .applied(version: 2))
        XCTAssertEqual(node.server.configurationVersion, 2)
        try loopsTookTheSnapshot()
        let same = ask(String(repeating: "GET / HTTP/1.1\r\nHost: plain\r\n\r\n", count: 30), count: 30, on: fd).names
        XCTAssertEqual(same.count, 30, "the open connection kept working")
        XCTAssertEqual(Set(same), ["one", "two", "three"], "\(same)")
        let fresh = requests(30, port: try node.port(.outbound)).names
        XCTAssertEqual(Set(fresh), ["one", "two", "three"], "\(fresh)")

        XCTAssertEqual(node.server.reload(configuration), .unchanged(version: 2))
        node.server.reloadFailed(["clusters[0].name: bad"])
        XCTAssertEqual(node.server.configurationVersion, 2)
        XCTAssertEqual(node.server.metrics.configReloadCount(.success), 1)
        XCTAssertEqual(node.server.metrics.configReloadCount(.unchanged), 1)
        XCTAssertEqual(node.server.metrics.configReloadCount(.failure), 1)

        // Endpoints leave: only the one that stays answers.
        configuration.clusters[0].endpoints = [all[2]]
        XCTAssertEqual(node.server.reload(configuration), .applied(version: 3))
        try loopsTookTheSnapshot()
        XCTAssertEqual(Set(ask(String(repeating: "GET / HTTP/1.1\r\nHost: plain\r\n\r\n", count: 6), count: 6, on: fd).names), ["three"])
        XCTAssertNoThrow(try node.server.close().wait())
    }

    /// SPEC §4 step 2: a destination that names no cluster is still matched
    /// per HTTP request by its Host against cluster `hostnames`; a request
    /// whose Host names none goes where the app sent it.
    func testHostNamesAClusterForADestinationThatNamesNone() throws {
        let all = try endpoints()
        let named = Cluster(name: "named", hostnames: ["named.svc"], endpoints: [all[1]])
        let node = try ProxyFixture(group: group, clusters: [named])
        node.resolver.set(all[0].address)  // the app called `one` directly: no cluster has it
        let port = try node.port(.outbound)
        XCTAssertEqual(names("GET / HTTP/1.1\r\nHost: Named.SVC:8080\r\n\r\n", count: 3, port: port), ["two", "two", "two"], "Host names the cluster")
        XCTAssertEqual(names("GET / HTTP/1.1\r\nHost: elsewhere\r\n\r\n", count: 3, port: port), ["one", "one", "one"], "no cluster: where the app sent it")
        XCTAssertEqual(node.server.metrics.passthrough.load(ordering: .relaxed), 2)
        XCTAssertNoThrow(try node.server.close().wait())
    }

    /// `discovery: file`: the endpoint list follows the file.
    func testFileDiscoveryFollowsTheFile() throws {
        let all = try endpoints()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-discovery-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("plain.yaml").path
        func write(_ list: [Endpoint]) throws {
            try list.map { "- { address: \"\($0.address)\" }\n" }.joined().write(toFile: path, atomically: true, encoding: .utf8)
        }
        try write([all[0]])
        let cluster = Cluster(name: "plain", addresses: [IPEndpoint("198.19.0.30:8080")!], discovery: .file, file: path)
        let node = try ProxyFixture(group: group, clusters: [cluster])
        node.resolver.set(IPEndpoint("198.19.0.30:8080"))
        XCTAssertTrue(eventually { node.server.endpoints(of: "plain") == [all[0].address] })
        try loopsTookTheSnapshot()
        XCTAssertEqual(Set(requests(6, port: try node.port(.outbound)).names), ["one"])

        try write(all)
        XCTAssertTrue(eventually { node.server.endpoints(of: "plain").count == 3 })
        try loopsTookTheSnapshot()
        XCTAssertEqual(Set(requests(30, port: try node.port(.outbound)).names), ["one", "two", "three"])
        XCTAssertEqual(node.server.metrics.endpointUpdates.load(ordering: .relaxed), 2)
        XCTAssertEqual(node.server.configurationVersion, 1, "discovery changes endpoints, not the configuration")
        XCTAssertNoThrow(try node.server.close().wait())
    }

    /// `discovery: dns`: names resolved again every refresh; a failed
    /// lookup keeps the last answer.
    func testDNSDiscoveryFollowsTheAnswers() throws {
        let ports = try apps.map { UInt16(try XCTUnwrap($0.localAddress?.port)) }
        let resolver = TestResolver()
        resolver.set("one.internal", ["127.0.0.1"])
        let cluster = Cluster(name: "plain", addresses: [IPEndpoint("198.19.0.30:8080")!], discovery: .dns,
                              namedEndpoints: zip(["one", "two", "three"], ports).map {
                                  NamedEndpoint(host: "\($0).internal", port: $1)
                              },
                              dnsRefresh: .milliseconds(100))
        let node = try ProxyFixture(group: group, clusters: [cluster], hostResolver: resolver)
        node.resolver.set(IPEndpoint("198.19.0.30:8080"))
        XCTAssertTrue(eventually { node.server.endpoints(of: "plain").count == 1 })
        try loopsTookTheSnapshot()
        XCTAssertEqual(Set(requests(6, port: try node.port(.outbound)).names), ["one"])

        resolver.set("two.internal", ["127.0.0.1"])
        resolver.set("three.internal", ["127.0.0.1"])
        XCTAssertTrue(eventually { node.server.endpoints(of: "plain").count == 3 })
        resolver.fail("one.internal")
        usleep(400_000)  // refreshes that fail for `one` keep its last answer
        XCTAssertEqual(node.server.endpoints(of: "plain").count, 3)
        XCTAssertEqual(Set(requests(30, port: try node.port(.outbound)).names), ["one", "two", "three"])
        XCTAssertNoThrow(try node.server.close().wait())
    }

    func testUpgradeToAPlainEndpointBecomesARelay() throws {
        let upgrading = try startServer(group: group) { UpgradeThenEchoHandler() }
        defer { upgrading.close(promise: nil) }
        let node = try node([Endpoint(address: IPEndpoint(address: .loopbackV4,
                                                           port: UInt16(try XCTUnwrap(upgrading.localAddress?.port))))])
        let client = CollectingHandler(eventLoop: group.next())
        let channel = try XCTUnwrap(node.connect(to: .outbound, handler: client))
        try channel.writeAndFlush(ByteBuffer(string:
            "GET /chat HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")).wait()
        let deadline = NIODeadline.now() + .seconds(5)
        while !String(decoding: client.bytes, as: UTF8.self).contains("\r\n\r\n"), NIODeadline.now() < deadline {
            usleep(10_000)
        }
        try channel.writeAndFlush(ByteBuffer(string: "raw frames")).wait()
        while !String(decoding: client.bytes, as: UTF8.self).hasSuffix("raw frames"), NIODeadline.now() < deadline {
            usleep(10_000)
        }
        let text = String(decoding: client.bytes, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"), text)
        XCTAssertTrue(text.lowercased().contains("saw-upgrade: echo"), text)
        XCTAssertTrue(text.hasSuffix("raw frames"), text)
        try channel.close().wait()
        XCTAssertNoThrow(try node.server.close().wait())
    }
}

/// Answers every request with its name, the URI and the headers it saw
/// (`name=value` lines), then `END`.
private final class NamedHTTPApp: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let name: String
    private var head: HTTPRequestHead?

    init(name: String) { self.name = name }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            var text = "name=\(name)\nuri=\(head.uri)\n"
            for (name, value) in head.headers { text += "\(name.lowercased())=\(value)\n" }
            text += "END\n"
            let headers = HTTPHeaders([("content-length", String(text.utf8.count))])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

/// A resolver whose answers the test sets.
final class TestResolver: HostResolver {
    private let answers = Mutex<[String: Result<[IPAddress], HostResolutionError>]>([:])

    func set(_ host: String, _ addresses: [String]) {
        answers.withLock { $0[host] = .success(addresses.compactMap(IPAddress.init)) }
    }

    func fail(_ host: String) {
        answers.withLock { $0[host] = .failure(HostResolutionError("SERVFAIL")) }
    }

    func resolve(_ host: String) -> Result<[IPAddress], HostResolutionError> {
        answers.withLock { $0[host] } ?? .failure(HostResolutionError("NXDOMAIN"))
    }
}

/// Polls `condition` for up to five seconds.
func eventually(_ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(5)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}
