#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import XCTest
import WeftConfig
import WeftCore
@testable import WeftProxy

/// The receiving node's one rule (SPEC §4, §8): it delivers only to its own
/// addresses, and never to a port weft itself listens on, whatever the
/// request (HTTP stream or CONNECT) and whoever sent it.
final class MeshLocalRuleTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!

    override func setUp() { group = MultiThreadedEventLoopGroup(numberOfThreads: 2) }
    override func tearDown() { XCTAssertNoThrow(try group.syncShutdownGracefully()) }

    /// Node A sends to `endpoint` over the mesh of node B (identity: 127.0.0.1,
    /// listener ports 15008 and 15000).
    private func nodes(endpoint: String, protocol declared: ClusterProtocol = .auto,
                       authorization: [AuthorizationRule] = []) throws -> (a: ProxyFixture, b: ProxyFixture) {
        let b = try ProxyFixture(group: group, authorization: authorization)
        let bMesh = UInt16(try XCTUnwrap(b.server.boundAddresses(.mesh).first { $0.protocol == .inet }?.port))
        let cluster = Cluster(name: "backend", addresses: [IPEndpoint("198.19.0.10:9090")!], protocol: declared,
                              mesh: true, endpoints: [Endpoint(address: IPEndpoint(endpoint)!)])
        let a = try ProxyFixture(group: group, clusters: [cluster], peerMeshPort: bMesh)
        a.resolver.set(IPEndpoint("198.19.0.10:9090"))
        return (a, b)
    }

    private func ask(_ port: Int) -> String {
        rawHTTPExchange(port: port, request: "GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
    }

    func testAnAddressThatIsNotTheNodesIsRefused() throws {
        let (a, b) = try nodes(endpoint: "127.0.0.2:9090")  // loopback, but not B's address
        let response = ask(try a.port(.outbound))
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 403 Forbidden"), response)
        XCTAssertTrue(response.contains("weft-reason: not_local"), response)
        XCTAssertEqual(b.server.metrics.meshRefused.load(ordering: .relaxed), 1)
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())
    }

    func testWeftsOwnListenerPortsAreRefusedOverHTTPAndConnect() throws {
        // 15000 is B's admin port: a peer must never reach it through the mesh.
        for declared in [ClusterProtocol.http1, .tcp] {
            let (a, b) = try nodes(endpoint: "127.0.0.1:15000", protocol: declared)
            if declared == .http1 {
                let response = ask(try a.port(.outbound))
                XCTAssertTrue(response.hasPrefix("HTTP/1.1 403 Forbidden"), response)
            } else {
                // CONNECT: the tunnel is refused, so the app's connection is reset.
                let outcome = rawExchange(port: try a.port(.outbound), send: Array("hello".utf8))
                XCTAssertEqual(outcome, .reset)
            }
            XCTAssertTrue(eventually { b.server.metrics.meshRefused.load(ordering: .relaxed) == 1 }, "\(declared)")
            XCTAssertNoThrow(try a.server.close().wait())
            XCTAssertNoThrow(try b.server.close().wait())
        }
    }

    func testAPortWithAnAuthorizationRuleRefusesAPeerWithoutAnAllowedIdentity() throws {
        // Plain h2c between A and B: A has no identity, which no rule allows.
        let frontend = try SPIFFEID(parsing: "spiffe://mesh.local/ns/default/sa/frontend")
        let rules = [AuthorizationRule(port: 9090, allow: [frontend])]
        let (a, b) = try nodes(endpoint: "127.0.0.1:9090", authorization: rules)
        let response = ask(try a.port(.outbound))
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 403 Forbidden"), response)
        XCTAssertTrue(response.contains("weft-reason: unauthorized"), response)
        XCTAssertEqual(b.server.metrics.meshRefused.load(ordering: .relaxed), 0, "local, so not a relay refusal")
        XCTAssertNoThrow(try a.server.close().wait())
        XCTAssertNoThrow(try b.server.close().wait())

        // A port without a rule is not refused (nothing listens: 502).
        let (c, d) = try nodes(endpoint: "127.0.0.1:9091", authorization: rules)
        let open = ask(try c.port(.outbound))
        XCTAssertTrue(open.hasPrefix("HTTP/1.1 502"), open)
        XCTAssertFalse(open.contains("unauthorized"), open)
        XCTAssertNoThrow(try c.server.close().wait())
        XCTAssertNoThrow(try d.server.close().wait())
    }
}
