import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import WeftMesh
import WeftObservability
import XCTest
import WeftConfig
import WeftCore
@testable import WeftProxy

/// Two nodes on loopback: an app's HTTP/1.1 request enters node A's
/// outbound listener, crosses as an HTTP/2 stream to node B's mesh
/// listener, and reaches an HTTP/1.1 app behind B.
final class MeshPathTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!
    var app: Channel!

    override func setUpWithError() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        app = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(EchoHTTPApp())
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    override func tearDownWithError() throws {
        try app.close().wait()
        try group.syncShutdownGracefully()
    }

    /// Node B (receiver) and node A (sender, one meshed cluster whose VIP
    /// maps to the app behind B).
    private func nodes() throws -> (a: ProxyFixture, b: ProxyFixture) {
        let b = try ProxyFixture(group: group)
        let bMesh = UInt16(try XCTUnwrap(b.server.boundAddresses(.mesh).first { $0.protocol == .inet }?.port))
        let appPort = UInt16(try XCTUnwrap(app.localAddress?.port))
        let cluster = Cluster(name: "backend", addresses: [IPEndpoint("198.19.0.10:9090")!], mesh: true,
                              endpoints: [Endpoint(address: IPEndpoint(address: .loopbackV4, port: appPort))])
        let a = try ProxyFixture(group: group, clusters: [cluster], peerMeshPort: bMesh)
        a.resolver.set(IPEndpoint("198.19.0.10:9090"))
        return (a, b)
    }

    private func send(_ raw: String, to port: Int, responses: Int = 1) -> String {
        var collected: [UInt8] = []
        // One raw exchange; the app's answers are small enough for a few reads.
        guard case .success(let fd) = rawConnect(port: port) else { return "" }
        defer { close(fd) }
        let bytes = Array(raw.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            collected += buffer[..<count]
            let text = String(decoding: collected, as: UTF8.self)
            if text.components(separatedBy: "END\n").count > responses || text.contains("weft-reason")
                || text.hasSuffix("slow\n") { break }
        }
        return String(decoding: collected, as: UTF8.self)
    }

    func testRequestCrossesTheMeshAndArrivesAsHTTP1WithoutMeshHeaders() throws {
        let (a, b) = try nodes()
        let response = send("POST /hello HTTP/1.1\r\nHost: backend:9090\r\nContent-Length: 5\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nX-Kept: k\r\n\r\nworld",
                            to: try a.port(.outbound))
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 200 OK\r\n"), response)
        XCTAssertTrue(response.contains("method=POST uri=/hello body=world"), response)
        XCTAssertTrue(response.contains("host=backend:9090"), response)
        XCTAssertTrue(response.contains("x-kept=k"), response)
        XCTAssertFalse(response.contains("x-secret"), "a header named by Connection crossed: \(response)")
        XCTAssertFalse(response.contains("weft-"), "a mesh header reached the app: \(response)")
        XCTAssertEqual(a.server.metrics.meshStreams.client.load(ordering: .relaxed), 1)
        XCTAssertEqual(b.server.metrics.meshStreams.server.load(ordering: .relaxed), 1)
        var text = try a.server.metricsText(on: group.next()).wait()
        XCTAssertTrue(text.contains("weft_requests_total{direction=\"outbound\",cluster=\"backend\",status_class=\"2xx\","
                                    + "reason=\"none\"} 1\n"), text)
        XCTAssertTrue(text.contains("weft_request_duration_seconds_count{direction=\"outbound\",cluster=\"backend\","
                                    + "status_class=\"2xx\",reason=\"none\"} 1\n"), text)
        text = try b.server.metricsText(on: group.next()).wait()
        XCTAssertTrue(text.contains("weft_requests_total{direction=\"inbound\",cluster=\"none\",status_class=\"2xx\","
                                    + "reason=\"none\"} 1\n"), text)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    /// An Upgrade with a body longer than one read is declined: the app
    /// gets an ordinary request with the whole body and no Upgrade, and the
    /// request pipelined after it is read as HTTP, not as tunnel bytes.
    func testAnUpgradeWithABodyIsServedAsAnOrdinaryRequest() throws {
        let (a, b) = try nodes()
        let body = String(repeating: "x", count: 200_000)
        let response = send("POST /up HTTP/1.1\r\nHost: backend\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                            + "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: 200000\r\n\r\n"
                            + body + "GET /after HTTP/1.1\r\nHost: backend\r\n\r\n",
                            to: try a.port(.outbound), responses: 2)
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 200 OK\r\n"), String(response.prefix(300)))
        XCTAssertTrue(response.contains("method=POST uri=/up body=\(body)\n"), "the body must arrive whole")
        XCTAssertTrue(response.contains("uri=/after"), "the request after it must be served")
        XCTAssertFalse(response.contains("upgrade="), "the declined Upgrade must not reach the app")
        XCTAssertEqual(a.server.metrics.meshStreams.client.load(ordering: .relaxed), 2, "two requests, no CONNECT")
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    /// A GET with a chunked body: the body crosses as DATA, and must reach
    /// the app framed, never as bytes after a head that declares none,
    /// where the app would read them as a request of their own.
    func testABodyOnAGetReachesTheAppFramed() throws {
        let (a, b) = try nodes()
        let inner = "GET /smuggled HTTP/1.1\r\nHost: backend\r\n\r\n"
        let response = send("GET /outer HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\n\r\n"
                            + String(inner.utf8.count, radix: 16) + "\r\n" + inner + "\r\n0\r\n\r\n"
                            + "GET /after HTTP/1.1\r\nHost: backend\r\n\r\n",
                            to: try a.port(.outbound), responses: 2)
        XCTAssertTrue(response.contains("uri=/outer body=\(inner)"), "the body must reach the app as a body: \(response)")
        XCTAssertTrue(response.contains("uri=/after"), response)
        XCTAssertFalse(EchoHTTPApp.targets.withLockedValue { $0 }.contains("/smuggled"),
                       "the body was read as a request: \(EchoHTTPApp.targets.withLockedValue { $0 })")
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    func testPipelinedRequestsAreAnsweredInOrder() throws {
        let (a, b) = try nodes()
        let response = send("GET /one HTTP/1.1\r\nHost: backend\r\n\r\nGET /two HTTP/1.1\r\nHost: backend\r\nX-Last: 1\r\n\r\n",
                            to: try a.port(.outbound), responses: 2)
        let one = try XCTUnwrap(response.range(of: "uri=/one"))
        let two = try XCTUnwrap(response.range(of: "uri=/two"))
        XCTAssertLessThan(one.lowerBound, two.lowerBound)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    /// Sends `raw`, half-closes, and reads until the node closes.
    private func sendAndHalfClose(_ raw: String, to port: Int) throws -> String {
        let fd = try rawConnect(port: port).get()
        defer { close(fd) }
        _ = Array(raw.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        shutdown(fd, Int32(SHUT_WR))
        var collected: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 {
                XCTAssertEqual(count, 0, "the node should close cleanly, errno \(errno)")
                break
            }
            collected += buffer[..<count]
        }
        return String(decoding: collected, as: UTF8.self)
    }

    /// Requests sent back to back, then FIN: each is answered, in order,
    /// and only then does the node close the connection.
    func testPipelinedRequestsBeforeHalfCloseAreAllAnsweredThenClosed() throws {
        let (a, b) = try nodes()
        let requests = (1...3).map { "GET /p\($0) HTTP/1.1\r\nHost: backend\r\n\r\n" }.joined()
        let response = try sendAndHalfClose(requests, to: try a.port(.outbound))
        let positions = try (1...3).map { try XCTUnwrap(response.range(of: "uri=/p\($0) ")?.lowerBound, response) }
        XCTAssertEqual(positions, positions.sorted())
        XCTAssertEqual(response.components(separatedBy: "HTTP/1.1 200 OK\r\n").count - 1, 3, response)
        XCTAssertEqual(b.server.metrics.meshStreams.server.load(ordering: .relaxed), 3)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    /// A bad request pipelined behind good ones gets its 400 after their
    /// responses, never in front of them.
    func testBadRequestBehindPipelinedOnesIsAnsweredInOrder() throws {
        let (a, b) = try nodes()
        let raw = "GET /good1 HTTP/1.1\r\nHost: backend\r\n\r\nGET /good2 HTTP/1.1\r\nHost: backend\r\n\r\n"
            + "GET /bad HTTP/1.1\r\nHost: backend\r\nthis is not a header\r\n\r\n"
        let response = try sendAndHalfClose(raw, to: try a.port(.outbound))
        let good1 = try XCTUnwrap(response.range(of: "uri=/good1 "), response)
        let good2 = try XCTUnwrap(response.range(of: "uri=/good2 "), response)
        let bad = try XCTUnwrap(response.range(of: "HTTP/1.1 400 Bad Request\r\n"), response)
        XCTAssertLessThan(good1.lowerBound, good2.lowerBound)
        XCTAssertLessThan(good2.lowerBound, bad.lowerBound)
        XCTAssertFalse(response.contains("uri=/bad"), response)
        XCTAssertEqual(a.server.metrics.limitHits[.httpRequest]?.load(ordering: .relaxed), 1)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    /// A request queued behind one answered with a closing refusal never
    /// reaches an upstream: the connection ends with the refusal.
    func testNothingQueuedBehindAClosingRefusalIsServed() throws {
        let (a, b) = try nodes()
        let raw = "GET /first HTTP/1.1\r\nHost: backend\r\n\r\n"
            + "GET /no-host HTTP/1.1\r\nX-A: b\r\n\r\n"
            + "GET /after HTTP/1.1\r\nHost: backend\r\n\r\n"
        let response = try sendAndHalfClose(raw, to: try a.port(.outbound))
        let first = try XCTUnwrap(response.range(of: "uri=/first "), response)
        let refused = try XCTUnwrap(response.range(of: "HTTP/1.1 400 Bad Request\r\n"), response)
        XCTAssertLessThan(first.lowerBound, refused.lowerBound)
        XCTAssertFalse(response.contains("uri=/after"), response)
        XCTAssertEqual(b.server.metrics.meshStreams.server.load(ordering: .relaxed), 1, "only /first crossed")
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    /// The head went on before the body broke: the stream is reset (the app
    /// behind B never answers a request cut short), the app gets 400 at
    /// once, not a timeout, and the connection closes.
    func testARequestWhoseBodyBreaksAfterItsHeadWentOnIsAnswered400AndNeverCompleted() throws {
        let (a, b) = try nodes()
        let port = try a.port(.outbound)
        for badChunk in ["zz\r\nhello\r\n0\r\n\r\n", "5\r\nhello!!\r\n0\r\n\r\n"] {
            let response = send("POST /cut HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\n\r\n\(badChunk)",
                                to: port)
            XCTAssertTrue(response.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), response)
            XCTAssertTrue(response.lowercased().contains("connection: close"), response)
        }
        XCTAssertEqual(try b.server.metrics.requests(.inbound, statusClass: 2), 0, "the app answered a broken request")
        XCTAssertEqual(a.server.metrics.limitHits[.httpRequest]?.load(ordering: .relaxed), 2)
        XCTAssertTrue(send("GET /after HTTP/1.1\r\nHost: backend\r\n\r\n", to: port).hasPrefix("HTTP/1.1 200 OK\r\n"))
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    /// Found by FuzzTranslation: a CONNECT was translated as a request, with
    /// `:scheme` and `:path`, which RFC 9113 §8.5 forbids, so the peer
    /// refused it. Like an Upgrade, it is carried as a tunnel: the app
    /// behind B (an HTTP proxy, say) reads the request as it was sent.
    func testAnAppsCONNECTIsCarriedAsATunnelToTheAppBehindThePeer() throws {
        let (a, b) = try nodes()
        let response = send("CONNECT backend:443 HTTP/1.1\r\nHost: backend:443\r\n\r\n", to: try a.port(.outbound))
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 200 OK\r\n"), response)
        XCTAssertTrue(response.lowercased().contains("x-connect: backend:443"), response)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    func testRequestsWhoseFramingOrHostBreaksRFC9112AreRefusedAtTheFirstHop() throws {
        let (a, b) = try nodes()
        let port = try a.port(.outbound)
        let refused = [
            "GET / HTTP/1.1\r\nX-A: b\r\n\r\n",                                   // no Host
            "GET / HTTP/1.1\r\nHost: backend\r\nHost: other\r\n\r\n",              // two Hosts
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",  // TE in 1.0
            "POST / HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ]
        for raw in refused {
            let response = send(raw, to: port)
            XCTAssertTrue(response.hasPrefix("HTTP/1.1 400 Bad Request\r\n") || response.hasPrefix("HTTP/1.0 400 Bad Request\r\n"),
                          "\(raw.debugDescription) -> \(response)")
            XCTAssertTrue(response.lowercased().contains("connection: close"), response)
        }
        XCTAssertEqual(try b.server.metrics.requests(.inbound, statusClass: 2), 0, "a refused request reached the app")
        // (Two Transfer-Encoding fields are already refused by the parser, before the route stage.)
        XCTAssertEqual(try a.server.metrics.requests(.outbound, statusClass: 4), refused.count)
        // HTTP/1.0 without Host is fine, as is one chunked coding.
        XCTAssertTrue(send("GET / HTTP/1.0\r\n\r\n", to: port).hasPrefix("HTTP/1.0 200 OK\r\n"))
        XCTAssertTrue(send("POST / HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                           to: port).hasPrefix("HTTP/1.1 200 OK\r\n"))
        XCTAssertEqual(try b.server.metrics.requests(.inbound, statusClass: 2), 2)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    func testRequestsTheMeshWouldNotCarryGet431Or414AtTheFirstHop() throws {
        let (a, b) = try nodes()
        let port = try a.port(.outbound)
        let manyFields = (0..<HTTP1RequestRules.maxHeaderCount + 1).map { "X-F\($0): v\r\n" }.joined()
        let bigField = "X-Big: " + String(repeating: "b", count: HTTP1RequestRules.maxHeaderBytes) + "\r\n"
        let longTarget = "/" + String(repeating: "u", count: HTTP1RequestRules.maxURIBytes)
        for (raw, expected) in [
            ("GET / HTTP/1.1\r\nHost: backend\r\n\(manyFields)\r\n", "431 Request Header Fields Too Large"),
            ("GET / HTTP/1.1\r\nHost: backend\r\n\(bigField)\r\n", "431 Request Header Fields Too Large"),
            ("GET \(longTarget) HTTP/1.1\r\nHost: backend\r\n\r\n", "414 URI Too Long"),
            // Past the parser's own limit (80 KiB): 431 too, not 400.
            ("GET / HTTP/1.1\r\nHost: backend\r\nX-Huge: \(String(repeating: "h", count: 90 * 1024))\r\n\r\n",
             "431 Request Header Fields Too Large"),
        ] {
            let response = send(raw, to: port)
            XCTAssertTrue(response.hasPrefix("HTTP/1.1 \(expected)\r\n"), String(response.prefix(200)))
        }
        XCTAssertEqual(try b.server.metrics.requests(.inbound, statusClass: 2), 0, "a refused request reached the app")
        XCTAssertEqual(a.server.metrics.errorResponses[.headersTooLarge]?.load(ordering: .relaxed), 3)
        XCTAssertEqual(a.server.metrics.errorResponses[.uriTooLong]?.load(ordering: .relaxed), 1)
        // Just under the bounds, the request crosses the mesh.
        let fitting = (0..<HTTP1RequestRules.maxHeaderCount - 2).map { "X-F\($0): v\r\n" }.joined()
        XCTAssertTrue(send("GET / HTTP/1.1\r\nHost: backend\r\n\(fitting)\r\n", to: port).hasPrefix("HTTP/1.1 200 OK\r\n"))
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    func testClosedAppPortAnswers502WithAReason() throws {
        let closed = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let deadPort = UInt16(try XCTUnwrap(closed.localAddress?.port))
        try closed.close().wait()
        let b = try ProxyFixture(group: group)
        let bMesh = UInt16(try XCTUnwrap(b.server.boundAddresses(.mesh).first { $0.protocol == .inet }?.port))
        let cluster = Cluster(name: "down", addresses: [IPEndpoint("198.19.0.11:80")!], mesh: true,
                              endpoints: [Endpoint(address: IPEndpoint(address: .loopbackV4, port: deadPort))])
        let a = try ProxyFixture(group: group, clusters: [cluster], peerMeshPort: bMesh)
        a.resolver.set(IPEndpoint("198.19.0.11:80"))
        let response = send("GET / HTTP/1.1\r\nHost: down\r\n\r\n", to: try a.port(.outbound))
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"), response)
        XCTAssertTrue(response.lowercased().contains("weft-reason: connect_failure"), response)
        XCTAssertEqual(try a.server.metrics.requests(.outbound, statusClass: 5), 1, "counted as 5xx")
        XCTAssertEqual(b.server.metrics.errorResponses[.connectFailure]?.load(ordering: .relaxed), 1)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    func testDeadPeerNodeAnswers502() throws {
        let b = try ProxyFixture(group: group)
        let bMesh = UInt16(try XCTUnwrap(b.server.boundAddresses(.mesh).first { $0.protocol == .inet }?.port))
        try b.server.close().wait()  // the peer node is gone
        let appPort = UInt16(try XCTUnwrap(app.localAddress?.port))
        let cluster = Cluster(name: "backend", addresses: [IPEndpoint("198.19.0.10:9090")!], mesh: true,
                              endpoints: [Endpoint(address: IPEndpoint(address: .loopbackV4, port: appPort))])
        let a = try ProxyFixture(group: group, clusters: [cluster], peerMeshPort: bMesh)
        a.resolver.set(IPEndpoint("198.19.0.10:9090"))
        let response = send("GET / HTTP/1.1\r\nHost: backend\r\n\r\n", to: try a.port(.outbound))
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"), response)
        XCTAssertTrue(response.lowercased().contains("weft-reason: connect_failure"), response)
        XCTAssertNoThrow(try a.server.close().wait())
    }
}

extension MeshPathTests {
    /// Node B in front of `app`, node A with a meshed cluster for it.
    private func nodes(for app: Channel, vip: String) throws -> (a: ProxyFixture, b: ProxyFixture) {
        let b = try ProxyFixture(group: group)
        let bMesh = UInt16(try XCTUnwrap(b.server.boundAddresses(.mesh).first { $0.protocol == .inet }?.port))
        let appPort = UInt16(try XCTUnwrap(app.localAddress?.port))
        let cluster = Cluster(name: "raw", addresses: [IPEndpoint(vip)!], mesh: true,
                              endpoints: [Endpoint(address: IPEndpoint(address: .loopbackV4, port: appPort))])
        let a = try ProxyFixture(group: group, clusters: [cluster], peerMeshPort: bMesh)
        a.resolver.set(IPEndpoint(vip))
        return (a, b)
    }

    func testOpaqueBytesRideAConnectStreamWithHalfClose() throws {
        let echo = try startServer(group: group) { EchoHandler() }
        defer { echo.close(promise: nil) }
        let (a, b) = try nodes(for: echo, vip: "198.19.0.12:6380")
        let client = CollectingHandler(eventLoop: group.next())
        let channel = try XCTUnwrap(a.connect(to: .outbound, handler: client))
        let payload = Array("*1\r\n$4\r\nPING\r\n".utf8) + (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try channel.writeAndFlush(ByteBuffer(bytes: payload)).wait()
        try channel.close(mode: .output).wait()
        XCTAssertNil(try client.closed.futureResult.wait())
        XCTAssertEqual(client.bytes.count, payload.count)
        XCTAssertTrue(client.bytes == payload)
        XCTAssertEqual(a.server.metrics.meshStreams.client.load(ordering: .relaxed), 1, "one CONNECT stream")
        XCTAssertEqual(b.server.metrics.meshStreams.server.load(ordering: .relaxed), 1)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    func testUpgradeBecomesATunnel() throws {
        let upgrading = try startServer(group: group) { UpgradeThenEchoHandler() }
        defer { upgrading.close(promise: nil) }
        let (a, b) = try nodes(for: upgrading, vip: "198.19.0.13:8765")
        let client = CollectingHandler(eventLoop: group.next())
        let channel = try XCTUnwrap(a.connect(to: .outbound, handler: client))
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
        XCTAssertTrue(text.lowercased().contains("saw-upgrade: echo"), "the Upgrade header must reach the app: \(text)")
        XCTAssertTrue(text.hasSuffix("raw frames"), text)
        try channel.close().wait()
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }
}

/// Reads an HTTP/1.1 upgrade request as raw bytes, answers 101 (echoing
/// the Upgrade header it saw), then echoes raw bytes.
final class UpgradeThenEchoHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var head = ""
    private var upgraded = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if upgraded {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            return
        }
        head += buffer.readString(length: buffer.readableBytes) ?? ""
        guard let end = head.range(of: "\r\n\r\n") else { return }
        let upgradeValue = head[..<end.lowerBound].split(separator: "\r\n")
            .first { $0.lowercased().hasPrefix("upgrade:") }
            .map { $0.dropFirst("upgrade:".count).trimmingCharacters(in: .whitespaces) } ?? "none"
        let rest = String(head[end.upperBound...])
        upgraded = true
        context.write(wrapOutboundOut(ByteBuffer(string:
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\nSaw-Upgrade: \(upgradeValue)\r\n\r\n")),
            promise: nil)
        if !rest.isEmpty { context.write(wrapOutboundOut(ByteBuffer(string: rest)), promise: nil) }
        context.flush()
    }
}

/// Answers every request with what it saw: method, uri, body, and its
/// headers as `name=value` lines, then `END`.
private final class EchoHTTPApp: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    /// Every request target any instance read, in order.
    static let targets = NIOLockedValueBox<[String]>([])
    private var head: HTTPRequestHead?
    private var body = ""

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            Self.targets.withLockedValue { $0.append(head.uri) }
            self.head = head
            body = ""
        case .body(let buffer):
            body += String(buffer: buffer)
        case .end:
            guard let head else { return }
            if head.method == .CONNECT {
                // A 2xx to CONNECT has no body (RFC 9110 §9.3.6): say what
                // was asked in a header, then end the tunnel.
                let headers = HTTPHeaders([("x-connect", head.uri)])
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                              promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
                return
            }
            var text = "method=\(head.method.rawValue) uri=\(head.uri) body=\(body)\n"
            for (name, value) in head.headers { text += "\(name.lowercased())=\(value)\n" }
            text += "END\n"
            let headers = HTTPHeaders([("content-length", String(text.utf8.count))])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

extension MeshPathTests {
    func testFailedMeshConnectsDoNotCountAsConnections() throws {
        let b = try ProxyFixture(group: group)
        let bMesh = UInt16(try XCTUnwrap(b.server.boundAddresses(.mesh).first { $0.protocol == .inet }?.port))
        try b.server.close().wait()
        let appPort = UInt16(try XCTUnwrap(app.localAddress?.port))
        let cluster = Cluster(name: "backend", addresses: [IPEndpoint("198.19.0.10:9090")!], mesh: true,
                              endpoints: [Endpoint(address: IPEndpoint(address: .loopbackV4, port: appPort))])
        let a = try ProxyFixture(group: group, clusters: [cluster], peerMeshPort: bMesh)
        a.resolver.set(IPEndpoint("198.19.0.10:9090"))
        for _ in 0..<3 {
            _ = rawExchange(port: try a.port(.outbound), send: Array("GET / HTTP/1.1\r\nHost: b\r\n\r\n".utf8))
        }
        XCTAssertEqual(a.server.metrics.meshConnections.client.load(ordering: .relaxed), 0)
        XCTAssertNoThrow(try a.server.close().wait())
    }
}

final class MeshKeepaliveTests: XCTestCase {
    /// A peer that accepts and then never says a word (a dead path without
    /// a FIN): the PING goes unanswered and the connection is closed.
    func testSilentPeerIsClosedAfterAnUnansweredPing() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { XCTAssertNoThrow(try group.syncShutdownGracefully()) }
        let silent = try ServerBootstrap(group: group)
            .childChannelOption(.autoRead, value: false)
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { silent.close(promise: nil) }
        let metrics = ProxyMetrics()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let loop = group.next()
        let channel = try ClientBootstrap(group: loop)
            .channelInitializer { [logger] channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = MeshConnection(role: .client, metrics: metrics, logger: logger)
                    connection.upkeep = .init(pingAfter: .milliseconds(50), pingTimeout: .milliseconds(100),
                                              idleTimeout: .hours(1), tick: .milliseconds(20))
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .connect(to: try XCTUnwrap(silent.localAddress)).wait()
        // A guard so a broken keepalive fails below instead of hanging here.
        let guardClose = loop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        try channel.closeFuture.wait()
        guardClose.cancel()
        XCTAssertEqual(metrics.meshKeepaliveTimeouts.load(ordering: .relaxed), 1, "closed by the guard, not the keepalive")
        XCTAssertEqual(metrics.meshConnections.client.load(ordering: .relaxed), 0)
    }
}

extension MeshPathTests {
    func testNoResponseHeadWithinTheRequestTimeoutAnswers504() throws {
        // An app that reads the request and never answers.
        let mute = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        defer { mute.close(promise: nil) }
        let b = try ProxyFixture(group: group)
        let bMesh = UInt16(try XCTUnwrap(b.server.boundAddresses(.mesh).first { $0.protocol == .inet }?.port))
        let mutePort = UInt16(try XCTUnwrap(mute.localAddress?.port))
        let cluster = Cluster(name: "slow", addresses: [IPEndpoint("198.19.0.14:80")!], mesh: true,
                              endpoints: [Endpoint(address: IPEndpoint(address: .loopbackV4, port: mutePort))],
                              timeouts: ClusterTimeouts(connect: .seconds(1), request: .milliseconds(200)))
        let a = try ProxyFixture(group: group, clusters: [cluster], peerMeshPort: bMesh)
        a.resolver.set(IPEndpoint("198.19.0.14:80"))
        let response = send("GET / HTTP/1.1\r\nHost: slow\r\n\r\n", to: try a.port(.outbound))
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 504 Gateway Timeout\r\n"), response)
        XCTAssertTrue(response.lowercased().contains("weft-reason: timeout"), response)
        XCTAssertEqual(a.server.metrics.errorResponses[.requestTimeout]?.load(ordering: .relaxed), 1)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }
}

extension MeshPathTests {
    /// An app that answers `/fast` at once and never answers `/slow`.
    final class FastOrMuteApp: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        private var uri = ""

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): uri = head.uri
            case .body: break
            case .end:
                guard uri == "/fast" else { return }
                let headers = HTTPHeaders([("content-length", "2")])
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "ok")))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }

    /// The request timeout runs from each request's own start, on a
    /// keep-alive connection whose one timer was armed by an earlier
    /// request: the second request gets its full time, then its 504.
    func testRequestTimeoutCountsFromEachRequestOnAKeepAliveConnection() throws {
        let app = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FastOrMuteApp())
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { app.close(promise: nil) }
        let b = try ProxyFixture(group: group)
        let bMesh = UInt16(try XCTUnwrap(b.server.boundAddresses(.mesh).first { $0.protocol == .inet }?.port))
        let appPort = UInt16(try XCTUnwrap(app.localAddress?.port))
        let timeout = TimeAmount.milliseconds(400)
        let cluster = Cluster(name: "mixed", addresses: [IPEndpoint("198.19.0.15:80")!], mesh: true,
                              endpoints: [Endpoint(address: IPEndpoint(address: .loopbackV4, port: appPort))],
                              timeouts: ClusterTimeouts(connect: .seconds(1), request: .milliseconds(400)))
        let a = try ProxyFixture(group: group, clusters: [cluster], peerMeshPort: bMesh)
        a.resolver.set(IPEndpoint("198.19.0.15:80"))

        let fd = try rawConnect(port: try a.port(.outbound)).get()
        defer { close(fd) }
        func exchange(_ request: String) -> String {
            _ = Array(request.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, 0)
            return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
        }
        let first = exchange("GET /fast HTTP/1.1\r\nHost: mixed\r\n\r\n")
        XCTAssertTrue(first.hasPrefix("HTTP/1.1 200 OK\r\n"), first)
        XCTAssertTrue(first.hasSuffix("\r\n\r\nok"), first)
        // Half the timeout later, a request that is never answered.
        usleep(200_000)
        let started = NIODeadline.now()
        let second = exchange("GET /slow HTTP/1.1\r\nHost: mixed\r\n\r\n")
        let waited = NIODeadline.now() - started
        XCTAssertTrue(second.hasPrefix("HTTP/1.1 504 Gateway Timeout\r\n"), second)
        XCTAssertGreaterThanOrEqual(waited.nanoseconds, timeout.nanoseconds,
                                    "the 504 came before this request's own timeout")
        XCTAssertEqual(a.server.metrics.errorResponses[.requestTimeout]?.load(ordering: .relaxed), 1)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }
}

extension MeshPathTests {
    func testAbsoluteFormAndHTTP10ReachTheAppAsSent() throws {
        let (a, b) = try nodes()
        let absolute = send("GET http://backend:9090/abs?x=1 HTTP/1.1\r\nHost: backend:9090\r\n\r\n", to: try a.port(.outbound))
        XCTAssertTrue(absolute.contains("uri=http://backend:9090/abs?x=1 "), absolute)
        let old = send("GET /old HTTP/1.0\r\n\r\n", to: try a.port(.outbound))
        XCTAssertTrue(old.hasPrefix("HTTP/1.0 200 OK\r\n"), old)
        XCTAssertFalse(old.contains("host="), "no Host invented for an HTTP/1.0 request without one: \(old)")
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }
}

extension MeshPathTests {
    func testUnparsableRequestGets400AndIsCounted() throws {
        let (a, b) = try nodes()
        let response = send("GET / HTTP/1.1\r\nHost: backend\r\nthis is not a header\r\n\r\n", to: try a.port(.outbound))
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), response)
        XCTAssertEqual(a.server.metrics.limitHits[.httpRequest]?.load(ordering: .relaxed), 1)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }
}

/// Answers after a delay: a request that is in flight when a drain starts.
private final class SlowHTTPApp: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .milliseconds(300)) {
            let (app, context) = bound.value
            let headers = HTTPHeaders([("content-length", "5")])
            context.write(app.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(app.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "slow\n")))), promise: nil)
            context.writeAndFlush(app.wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

extension MeshPathTests {
    func testDrainLetsTheRequestInFlightFinishWithConnectionClose() throws {
        let slow = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(SlowHTTPApp())
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { slow.close(promise: nil) }
        let (a, b) = try nodes(for: slow, vip: "198.19.0.15:80")
        let drained = group.next().makePromise(of: NIODeadline.self)
        let drainStart = group.next().scheduleTask(in: .milliseconds(100)) {
            a.server.drain(timeout: .seconds(10)).whenComplete { _ in drained.succeed(.now()) }
        }
        let started = NIODeadline.now()
        let response = send("GET /slow HTTP/1.1\r\nHost: slow\r\n\r\n", to: try a.port(.outbound))
        _ = drainStart
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 200 OK\r\n"), response)
        XCTAssertTrue(response.lowercased().contains("connection: close"), response)
        XCTAssertTrue(response.hasSuffix("slow\n"), response)
        let finished = try drained.futureResult.wait()
        XCTAssertLessThan(finished - started, .seconds(5), "the drain ended when the last request did, not at its timeout")
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }
}

extension MeshPathTests {
    /// An opaque port on a meshed cluster: no detection wait, a CONNECT
    /// stream at once, and the server's banner arrives before the client
    /// writes anything.
    func testServerSpeaksFirstOverAConnectStream() throws {
        let banner = try startServer(group: group) { BannerHandler() }
        defer { banner.close(promise: nil) }
        let (a, b) = try nodes(for: banner, vip: "198.19.0.16:3306")
        XCTAssertEqual(rawExchange(port: try a.port(.outbound)), .data(Array("220 banner\r\n".utf8)))
        XCTAssertEqual(a.server.metrics.meshStreams.client.load(ordering: .relaxed), 1, "carried on a CONNECT stream")
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }
}

extension MeshPathTests {
    /// An app that closes its keep-alive connection after a response must
    /// find it closed on weft's side too (no socket left in CLOSE-WAIT).
    func testAppThatHangsUpIsClosedAndForgotten() throws {
        let (a, b) = try nodes()
        for _ in 0..<3 {
            let client = CollectingHandler(eventLoop: group.next())
            let channel = try XCTUnwrap(a.connect(to: .outbound, handler: client))
            try channel.writeAndFlush(ByteBuffer(string: "GET /bye HTTP/1.1\r\nHost: backend\r\n\r\n")).wait()
            let deadline = NIODeadline.now() + .seconds(5)
            while !String(decoding: client.bytes, as: UTF8.self).contains("END\n"), NIODeadline.now() < deadline {
                usleep(10_000)
            }
            try channel.close(mode: .output).wait()
            // A guard so a regression fails on the metric below, not by hanging.
            let guardClose = group.next().scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
            XCTAssertNil(try client.closed.futureResult.wait(), "weft closes its side cleanly")
            guardClose.cancel()
        }
        let deadline = NIODeadline.now() + .seconds(5)
        while a.server.metrics.outbound.active.load(ordering: .relaxed) > 0, NIODeadline.now() < deadline { usleep(10_000) }
        XCTAssertEqual(a.server.metrics.outbound.active.load(ordering: .relaxed), 0)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }
}
