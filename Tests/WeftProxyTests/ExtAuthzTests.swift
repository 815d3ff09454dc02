#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import XCTest
import WeftConfig
import WeftCore
@testable import WeftProxy

/// `ext_authz` on the receiving node (SPEC §8): node A sends to node B over
/// the mesh; B asks an authorization service on loopback before it
/// delivers to the app.
final class ExtAuthzTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!

    override func setUp() { group = MultiThreadedEventLoopGroup(numberOfThreads: 2) }
    override func tearDown() { XCTAssertNoThrow(try group.syncShutdownGracefully()) }

    /// A loopback HTTP/1.1 server that remembers each request's head in
    /// `seen` and answers what `answer` says, after `delay` if it gives one.
    final class ScriptedServer: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        typealias Answer = (status: HTTPResponseStatus, headers: HTTPHeaders, body: String, delay: TimeAmount?)
        private let seen: SeenHeads
        private let answer: @Sendable (HTTPRequestHead) -> Answer
        private var head: HTTPRequestHead?

        init(seen: SeenHeads, answer: @escaping @Sendable (HTTPRequestHead) -> Answer) {
            self.seen = seen
            self.answer = answer
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): self.head = head
            case .body: break
            case .end:
                guard let head else { return }
                seen.append(head)
                let answer = self.answer(head)
                var headers = answer.headers
                headers.add(name: "content-length", value: String(answer.body.utf8.count))
                let respond = {
                    context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: answer.status,
                                                                              headers: headers))), promise: nil)
                    if !answer.body.isEmpty {
                        context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: answer.body)))), promise: nil)
                    }
                    context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
                }
                if let delay = answer.delay {
                    context.eventLoop.scheduleTask(in: delay) { respond() }
                } else {
                    respond()
                }
            }
        }
    }

    /// What the authorization service was asked, and what the app served.
    static let asked = SeenHeads()
    static let served = SeenHeads()

    /// The service answers from the request's `authorization`: `Bearer
    /// alice` → 200 with `x-user-id: alice`; `Bearer slow` → the same after
    /// 2 s; anything else → 401 with `www-authenticate` and a body.
    static func authzService() -> ScriptedServer {
        ScriptedServer(seen: asked) { head in
            switch head.headers.first(name: "authorization") ?? "" {
            case "Bearer alice": (.ok, ["x-user-id": "alice", "x-other": "not forwarded"], "", nil)
            case "Bearer slow": (.ok, ["x-user-id": "alice", "x-other": "not forwarded"], "", .seconds(2))
            default: (.unauthorized, ["www-authenticate": "Bearer"], "no entry\n", nil)
            }
        }
    }

    /// The app answers 200 with the request's `x-user-id` values and path.
    static func app() -> ScriptedServer {
        ScriptedServer(seen: served) { head in
            (.ok, [:], "user=\(head.headers["x-user-id"].joined(separator: ",")) path=\(head.uri)", nil)
        }
    }

    private func httpServer(_ make: @escaping @Sendable () -> ChannelHandler & Sendable) throws -> Channel {
        try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(make())
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    private struct Setup {
        let a: ProxyFixture
        let b: ProxyFixture
        let servers: [Channel]
        func close() {
            XCTAssertNoThrow(try a.server.close().wait())
            XCTAssertNoThrow(try b.server.close().wait())
            for server in servers { XCTAssertNoThrow(try server.close().wait()) }
        }
    }

    /// A → B over the mesh, B delivering to the app after asking the
    /// service (`authzUp: false`: nothing listens where the service is).
    private func setup(authzUp: Bool = true, failureModeAllow: Bool = false) throws -> Setup {
        Self.asked.removeAll()
        Self.served.removeAll()
        let app = try httpServer { Self.app() }
        var servers = [app]
        var authzPort = 1  // nothing listens on port 1
        if authzUp {
            let authz = try httpServer { Self.authzService() }
            servers.append(authz)
            authzPort = try XCTUnwrap(authz.localAddress?.port)
        }
        let authzCluster = Cluster(name: "authz", protocol: .http1,
                                   endpoints: [Endpoint(address: IPEndpoint("127.0.0.1:\(authzPort)")!)])
        let settings = ExtAuthzSettings(cluster: "authz", path: "/check", timeout: .milliseconds(500),
                                        forwardHeaders: ["x-user-id"], failureModeAllow: failureModeAllow)
        let b = try ProxyFixture(group: group, clusters: [authzCluster], extAuthz: settings)
        let bMesh = UInt16(try XCTUnwrap(b.server.boundAddresses(.mesh).first { $0.protocol == .inet }?.port))
        let appPort = try XCTUnwrap(app.localAddress?.port)
        let cluster = Cluster(name: "backend", addresses: [IPEndpoint("198.19.0.10:9090")!], protocol: .http1,
                              mesh: true, endpoints: [Endpoint(address: IPEndpoint("127.0.0.1:\(appPort)")!)])
        let a = try ProxyFixture(group: group, clusters: [cluster], peerMeshPort: bMesh)
        a.resolver.set(IPEndpoint("198.19.0.10:9090"))
        return Setup(a: a, b: b, servers: servers)
    }

    private func request(_ setup: Setup, token: String, path: String = "/items?id=7", extra: String = "") throws -> String {
        rawHTTPExchange(port: try setup.a.port(.outbound),
                        request: "GET \(path) HTTP/1.1\r\nHost: backend\r\nAuthorization: \(token)\r\n\(extra)\r\n")
    }

    func testAnAllowedRequestIsDeliveredWithTheServicesHeadersOnly() throws {
        let setup = try setup()
        defer { setup.close() }
        // The caller's own x-user-id must not survive: only the service sets it.
        let response = try request(setup, token: "Bearer alice", extra: "X-User-Id: mallory\r\n")
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 200"), response)
        XCTAssertTrue(response.hasSuffix("user=alice path=/items?id=7"), response)
        let asked = try XCTUnwrap(Self.asked.all.first)
        XCTAssertEqual(asked.method, .POST)
        XCTAssertEqual(asked.uri, "/check")
        XCTAssertEqual(asked.headers.first(name: "x-forwarded-method"), "GET")
        XCTAssertEqual(asked.headers.first(name: "x-forwarded-uri"), "/items?id=7")
        XCTAssertEqual(asked.headers.first(name: "x-forwarded-host"), "backend")
        XCTAssertEqual(asked.headers.first(name: "authorization"), "Bearer alice")
        XCTAssertEqual(asked.headers["x-user-id"], [], "the caller's claim reached the service as if it were its own")
        XCTAssertEqual(Self.served.all.first?.headers["x-other"], [], "a header not in forward_headers went on")
        XCTAssertEqual(setup.b.server.metrics.extAuthz.allowed.load(ordering: .relaxed), 1)
    }

    func testADeniedRequestGetsTheServicesAnswerAndNeverReachesTheApp() throws {
        let setup = try setup()
        defer { setup.close() }
        let response = try request(setup, token: "Bearer eve")
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 401"), response)
        XCTAssertTrue(response.lowercased().contains("www-authenticate: bearer"), response)
        XCTAssertTrue(response.hasSuffix("no entry\n"), response)
        XCTAssertEqual(Self.served.all.count, 0)
        XCTAssertEqual(setup.b.server.metrics.extAuthz.denied.load(ordering: .relaxed), 1)
        // And the next allowed request is served.
        XCTAssertTrue(try request(setup, token: "Bearer alice").hasPrefix("HTTP/1.1 200"))
    }

    func testNoAnswerIs403UnlessFailureModeAllow() throws {
        for (up, token) in [(false, "Bearer alice"), (true, "Bearer slow")] {
            let closed = try setup(authzUp: up)
            let response = try request(closed, token: token)
            XCTAssertTrue(response.hasPrefix("HTTP/1.1 403"), response)
            XCTAssertTrue(response.contains("weft-reason: ext_authz_failure"), response)
            XCTAssertEqual(Self.served.all.count, 0, token)
            XCTAssertEqual(closed.b.server.metrics.extAuthz.failed.load(ordering: .relaxed), 1)
            closed.close()
        }
        let open = try setup(authzUp: false, failureModeAllow: true)
        defer { open.close() }
        let response = try request(open, token: "Bearer alice", extra: "X-User-Id: mallory\r\n")
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 200"), response)
        XCTAssertTrue(response.hasSuffix("user= path=/items?id=7"), "a forward header the service never set: \(response)")
        XCTAssertEqual(open.b.server.metrics.extAuthz.failedOpen.load(ordering: .relaxed), 1)
    }
}

/// Heads seen by a test server, across its loops.
final class SeenHeads: @unchecked Sendable {
    private let lock = NSLock()
    private var heads: [HTTPRequestHead] = []
    func append(_ head: HTTPRequestHead) { lock.lock(); heads.append(head); lock.unlock() }
    func removeAll() { lock.lock(); heads.removeAll(); lock.unlock() }
    var all: [HTTPRequestHead] { lock.lock(); defer { lock.unlock() }; return heads }
}
