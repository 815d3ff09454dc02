import NIOCore
import XCTest
import WeftConfig
import WeftCore
import WeftRouting
import WeftUpstream
@testable import WeftProxy

final class OutboundRouterTests: XCTestCase {
    let listener = IPEndpoint("127.0.0.1:15001")!
    let identity = NodeIdentity(id: "a", addresses: [IPAddress("198.18.0.2")!, .loopbackV4],
                                listenerPorts: Listeners().ownPorts)

    func router(_ policy: OutboundPolicy = .allowAny) -> OutboundRouter {
        let configuration = Configuration(outboundPolicy: policy, clusters: [
            Cluster(name: "backend", addresses: [IPEndpoint("198.19.0.10:9090")!],
                    endpoints: [Endpoint(address: IPEndpoint("198.18.0.3:9090")!)],
                    timeouts: ClusterTimeouts(connect: .milliseconds(250))),
            Cluster(name: "empty", addresses: [IPEndpoint("198.19.0.11:80")!]),
            Cluster(name: "empty-tcp", addresses: [IPEndpoint("198.19.0.11:81")!], protocol: .tcp),
        ])
        return OutboundRouter(snapshot: RuntimeSnapshot(configuration: configuration), identity: identity,
                              passthroughConnectTimeout: .seconds(5))
    }

    func testNotRedirectedIsRefused() {
        XCTAssertEqual(router().decide(originalDestination: listener, localAddress: listener),
                       .refuse(.notRedirected))
    }

    func testOwnListenersAreRefused() {
        XCTAssertEqual(router().decide(originalDestination: IPEndpoint("198.18.0.2:15006")!, localAddress: listener),
                       .refuse(.loop))
        XCTAssertEqual(router().decide(originalDestination: IPEndpoint("127.0.0.1:15020")!, localAddress: listener),
                       .refuse(.loop))
        // Another host's 15006 is not us.
        XCTAssertEqual(router().decide(originalDestination: IPEndpoint("198.18.0.3:15006")!, localAddress: listener),
                       .relay(to: IPEndpoint("198.18.0.3:15006")!, connectTimeout: .seconds(5), cluster: nil))
    }

    func testVIPGoesToItsClusterWithTheClusterTimeout() throws {
        guard case .cluster(let decision) = router().decide(originalDestination: IPEndpoint("198.19.0.10:9090")!,
                                                                 localAddress: listener) else {
            return XCTFail("expected a relay to the cluster")
        }
        XCTAssertEqual(decision.cluster.name, "backend")
        XCTAssertNil(decision.fixedEndpoint)
        XCTAssertEqual(decision.connectTimeout, .milliseconds(250))
    }

    /// One request per connection (curl in a loop, HTTP/1.0): the
    /// decision picks nothing, so each connection's one pick on its loop's
    /// balancer walks the endpoints in turn.
    func testEachConnectionToAVIPBalancesOnce() throws {
        let configuration = Configuration(clusters: [
            Cluster(name: "three", addresses: [IPEndpoint("198.19.0.12:80")!],
                    endpoints: ["198.18.0.4:80", "198.18.0.5:80", "198.18.0.6:80"].map { Endpoint(address: IPEndpoint($0)!) }),
        ])
        let router = OutboundRouter(snapshot: RuntimeSnapshot(configuration: configuration), identity: identity,
                                    passthroughConnectTimeout: .seconds(5))
        var balancer: LoopBalancer?
        var counts: [String: Int] = [:]
        for _ in 0..<30 {
            guard case .cluster(let decision) = router.decide(originalDestination: IPEndpoint("198.19.0.12:80")!,
                                                                   localAddress: listener) else {
                return XCTFail("expected a relay to the cluster")
            }
            let loop = balancer ?? LoopBalancer(plan: decision.cluster.plan)
            balancer = loop
            let route = MeshRoute(cluster: decision.cluster, balancer: loop, fixedEndpoint: decision.fixedEndpoint,
                                  meshPort: 15008)
            let lease = try route.connectionLease().get()
            counts[lease.endpoint.description, default: 0] += 1
            lease.finish(.success)
        }
        XCTAssertEqual(counts, ["198.18.0.4:80": 10, "198.18.0.5:80": 10, "198.18.0.6:80": 10])
    }

    /// With cluster hostnames to match, an unknown destination's protocol is
    /// detected (its HTTP requests may name a cluster); on an opaque port,
    /// or with no hostnames anywhere, it stays a plain relay.
    func testPassthroughIsDetectedWhenHostnamesCanMatch() {
        let configuration = Configuration(clusters: [
            Cluster(name: "named", hostnames: ["named.svc"], endpoints: [Endpoint(address: IPEndpoint("198.18.0.5:80")!)]),
        ])
        let router = OutboundRouter(snapshot: RuntimeSnapshot(configuration: configuration), identity: identity,
                                    passthroughConnectTimeout: .seconds(5))
        guard case .cluster(let decision) = router.decide(originalDestination: IPEndpoint("198.18.0.9:8080")!,
                                                          localAddress: listener) else {
            return XCTFail("expected detection")
        }
        XCTAssertTrue(decision.isPassthrough)
        XCTAssertEqual(decision.cluster.plan.endpoints.map(\.address), [IPEndpoint("198.18.0.9:8080")!])
        XCTAssertEqual(router.decide(originalDestination: IPEndpoint("198.18.0.9:3306")!, localAddress: listener),
                       .relay(to: IPEndpoint("198.18.0.9:3306")!, connectTimeout: .seconds(5), cluster: nil))
    }

    func testPassthroughAndRegistryOnly() {
        let unknown = IPEndpoint("198.18.0.9:8080")!
        XCTAssertEqual(router(.allowAny).decide(originalDestination: unknown, localAddress: listener),
                       .relay(to: unknown, connectTimeout: .seconds(5), cluster: nil))
        XCTAssertEqual(router(.registryOnly).decide(originalDestination: unknown, localAddress: listener),
                       .refuse(.registryOnly))
    }

    /// TCP to a cluster with no endpoint is refused at once; HTTP is taken,
    /// so that each request can be answered (503, no_healthy_endpoint).
    func testClusterWithoutEndpoints() throws {
        XCTAssertEqual(router().decide(originalDestination: IPEndpoint("198.19.0.11:81")!, localAddress: listener),
                       .refuse(.noEndpoint))
        guard case .cluster(let decision) = router().decide(originalDestination: IPEndpoint("198.19.0.11:80")!,
                                                            localAddress: listener) else {
            return XCTFail("expected the cluster")
        }
        XCTAssertNil(LoopBalancer(plan: decision.cluster.plan).pick())
    }
}

final class InboundRouterTests: XCTestCase {
    let identity = NodeIdentity(id: "b", addresses: [IPAddress("198.18.0.3")!, IPAddress("2001:2::3")!],
                                listenerPorts: Listeners().ownPorts)
    let local4 = IPEndpoint("198.18.0.3:15006")!

    func router(_ settings: InboundListener = InboundListener()) -> InboundRouter {
        InboundRouter(settings: settings, identity: identity, connectTimeout: .seconds(1))
    }

    func testDeliversOverLoopbackOfTheSameFamily() {
        XCTAssertEqual(router().decide(originalDestination: IPEndpoint("198.18.0.3:9090")!, localAddress: local4),
                       .relay(to: IPEndpoint("127.0.0.1:9090")!, connectTimeout: .seconds(1), cluster: nil))
        XCTAssertEqual(router().decide(originalDestination: IPEndpoint("[2001:2::3]:9090")!,
                                       localAddress: IPEndpoint("[2001:2::3]:15006")!),
                       .relay(to: IPEndpoint("[::1]:9090")!, connectTimeout: .seconds(1), cluster: nil))
    }

    func testDeliversToThePodAddressWhenAsked() {
        let settings = InboundListener(deliverTo: .podIP)
        XCTAssertEqual(router(settings).decide(originalDestination: IPEndpoint("198.18.0.3:9090")!, localAddress: local4),
                       .relay(to: IPEndpoint("198.18.0.3:9090")!, connectTimeout: .seconds(1), cluster: nil))
    }

    func testRefusesLoopsUnredirectedAndPlaintextWhenDenied() {
        XCTAssertEqual(router().decide(originalDestination: local4, localAddress: local4), .refuse(.notRedirected))
        XCTAssertEqual(router().decide(originalDestination: IPEndpoint("198.18.0.3:15001")!, localAddress: local4),
                       .refuse(.loop))
        XCTAssertEqual(router(InboundListener(plaintext: .deny))
                        .decide(originalDestination: IPEndpoint("198.18.0.3:9090")!, localAddress: local4),
                       .refuse(.plaintextDenied))
    }
}

final class OutboundRouterMeshTests: XCTestCase {
    let listener = IPEndpoint("127.0.0.1:15001")!

    private func decision(for destination: String, protocol declared: ClusterProtocol = .auto) -> ClusterDecision? {
        let configuration = Configuration(clusters: [
            Cluster(name: "backend", addresses: [IPEndpoint("198.19.0.10:9090")!, IPEndpoint("198.19.0.10:3306")!],
                    protocol: declared, mesh: true,
                    endpoints: [Endpoint(address: IPEndpoint("198.18.0.3:9090")!),
                                Endpoint(address: IPEndpoint("198.18.0.3:3306")!)]),
        ])
        let router = OutboundRouter(snapshot: RuntimeSnapshot(configuration: configuration),
                                    identity: NodeIdentity(id: "a", addresses: [], listenerPorts: []),
                                    passthroughConnectTimeout: .seconds(5))
        guard case .cluster(let decision) = router.decide(originalDestination: IPEndpoint(destination)!, localAddress: listener) else {
            return nil
        }
        return decision
    }

    func testVIPDetectsAndBalancesPerRequest() throws {
        let meshed = try XCTUnwrap(decision(for: "198.19.0.10:9090"))
        XCTAssertNil(meshed.knownProtocol)
        XCTAssertNil(meshed.fixedEndpoint, "a VIP call picks an endpoint per request")
    }

    /// The decision itself picks nothing, so a connection carrying one
    /// request (the request's pick is the only one) walks the endpoints in
    /// turn instead of always landing on the same one.
    func testDecisionLeavesTheScheduleToTheRequests() throws {
        var picks: [IPEndpoint] = []
        var balancer: LoopBalancer?
        let configuration = Configuration(clusters: [
            Cluster(name: "backend", addresses: [IPEndpoint("198.19.0.10:9090")!], mesh: true,
                    endpoints: ["198.18.0.3:9090", "198.18.0.4:9090", "198.18.0.5:9090"].map { Endpoint(address: IPEndpoint($0)!) }),
        ])
        let router = OutboundRouter(snapshot: RuntimeSnapshot(configuration: configuration),
                                    identity: NodeIdentity(id: "a", addresses: [], listenerPorts: []),
                                    passthroughConnectTimeout: .seconds(5))
        for _ in 0..<6 {
            guard case .cluster(let decision) = router.decide(originalDestination: IPEndpoint("198.19.0.10:9090")!,
                                                          localAddress: listener) else { return XCTFail() }
            let loop = balancer ?? LoopBalancer(plan: decision.cluster.plan)
            balancer = loop
            let route = MeshRoute(cluster: decision.cluster, balancer: loop, fixedEndpoint: decision.fixedEndpoint,
                                  meshPort: 15008)
            picks.append(try route.connectionLease().get().endpoint)
        }
        XCTAssertEqual(Set(picks).count, 3, "one request per connection must still reach every endpoint: \(picks)")
    }

    func testDirectEndpointCallKeepsThatEndpoint() throws {
        let meshed = try XCTUnwrap(decision(for: "198.18.0.3:9090"))
        XCTAssertEqual(meshed.fixedEndpoint, IPEndpoint("198.18.0.3:9090"))
    }

    /// The loop's snapshot decides, so a reload's `opaque_ports` apply to
    /// the next connection.
    func testOpaquePortsComeFromTheSnapshotInForce() throws {
        let cluster = Cluster(name: "backend", addresses: [IPEndpoint("198.19.0.10:7000")!], mesh: true,
                              endpoints: [Endpoint(address: IPEndpoint("198.18.0.3:7000")!)])
        let started = RuntimeSnapshot(configuration: Configuration(clusters: [cluster]))
        var reloaded = Configuration(clusters: [cluster])
        reloaded.opaquePorts = [7000]
        let router = OutboundRouter(snapshot: started, identity: NodeIdentity(id: "a", addresses: [], listenerPorts: []),
                                    passthroughConnectTimeout: .seconds(5))
        guard case .cluster(let before) = router.decide(originalDestination: IPEndpoint("198.19.0.10:7000")!,
                                                        localAddress: listener, snapshot: nil),
              case .cluster(let after) = router.decide(originalDestination: IPEndpoint("198.19.0.10:7000")!,
                                                       localAddress: listener,
                                                       snapshot: RuntimeSnapshot(configuration: reloaded, version: 2)) else {
            return XCTFail("expected the cluster")
        }
        XCTAssertNil(before.knownProtocol)
        XCTAssertEqual(after.knownProtocol, .tcp)
    }

    func testOpaquePortAndDeclaredProtocolsSkipDetection() throws {
        XCTAssertEqual(try XCTUnwrap(decision(for: "198.19.0.10:3306")).knownProtocol, .tcp)
        XCTAssertEqual(try XCTUnwrap(decision(for: "198.19.0.10:9090", protocol: .http2)).knownProtocol, .http2)
        XCTAssertEqual(try XCTUnwrap(decision(for: "198.19.0.10:9090", protocol: .tcp)).knownProtocol, .tcp)
        XCTAssertEqual(try XCTUnwrap(decision(for: "198.19.0.10:9090", protocol: .http1)).knownProtocol, .http1)
    }
}
