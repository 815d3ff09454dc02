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

    /// Answers from the request's `authorization`: `Bearer alice` → 200 with
    /// `x-user-id: alice`; `Bearer slow` → 200 after 2 s; anything else →
    /// 401 with `www-authenticate` and a body. Remembers what it was asked.
    final class AuthzService: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        static let asked = SeenHeads()
        private var head: HTTPRequestHead?

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): self.head = head
            case .body: break
            case .end:
                guard let head else { return }
                Self.asked.append(head)
                let token = head.headers.first(name: "authorization") ?? ""
                let answer: (HTTPResponseStatus, HTTPHeaders, String)
                switch token {
                case "Bearer alice", "Bearer slow": answer = (.ok, ["x-user-id": "alice", "x-other": "not forwarded"], "")
                default: answer = (.unauthorized, ["www-authenticate": "Bearer"], "no entry\n")
                }
                var headers = answer.1
                headers.add(name: "content-length", value: String(answer.2.utf8.count))
                let respond = {
                    context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: answer.0,
                                                                              headers: headers))), promise: nil)
                    if !answer.2.isEmpty {
                        context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: answer.2)))), promise: nil)
                    }
                    context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
                }
                if token == "Bearer slow" {
                    context.eventLoop.scheduleTask(in: .seconds(2)) { respond() }
                } else {
                    respond()
                }
            }
        }
    }

    /// Answers 200 with the request's `x-user-id` values and path as its body.
    final class App: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        static let served = SeenHeads()
        private var head: HTTPRequestHead?
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): self.head = head
            case .body: break
            case .end:
                guard let head else { return }
                Self.served.append(head)
                let body = "user=\(head.headers["x-user-id"].joined(separator: ",")) path=\(head.uri)"
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok,
                                                                     headers: ["content-length": String(body.utf8.count)]))),
                              promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
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
        AuthzService.asked.removeAll()
        App.served.removeAll()
        let app = try httpServer { App() }
        var servers = [app]
        var authzPort = 1  // nothing listens on port 1
        if authzUp {
            let authz = try httpServer { AuthzService() }
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
        let asked = try XCTUnwrap(AuthzService.asked.all.first)
        XCTAssertEqual(asked.method, .POST)
        XCTAssertEqual(asked.uri, "/check")
        XCTAssertEqual(asked.headers.first(name: "x-forwarded-method"), "GET")
        XCTAssertEqual(asked.headers.first(name: "x-forwarded-uri"), "/items?id=7")
        XCTAssertEqual(asked.headers.first(name: "x-forwarded-host"), "backend")
        XCTAssertEqual(asked.headers.first(name: "authorization"), "Bearer alice")
        XCTAssertEqual(asked.headers["x-user-id"], [], "the caller's claim reached the service as if it were its own")
        XCTAssertEqual(App.served.all.first?.headers["x-other"], [], "a header not in forward_headers went on")
        XCTAssertEqual(setup.b.server.metrics.extAuthz.allowed.load(ordering: .relaxed), 1)
    }

    func testADeniedRequestGetsTheServicesAnswerAndNeverReachesTheApp() throws {
        let setup = try setup()
        defer { setup.close() }
        let response = try request(setup, token: "Bearer eve")
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 401"), response)
        XCTAssertTrue(response.lowercased().contains("www-authenticate: bearer"), response)
        XCTAssertTrue(response.hasSuffix("no entry\n"), response)
        XCTAssertEqual(App.served.all.count, 0)
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
            XCTAssertEqual(App.served.all.count, 0, token)
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
