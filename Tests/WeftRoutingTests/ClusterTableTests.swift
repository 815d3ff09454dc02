import XCTest
import WeftConfig
import WeftCore
@testable import WeftRouting

final class ClusterTableTests: XCTestCase {
    private func endpoint(_ text: String) -> IPEndpoint { IPEndpoint(text)! }

    private func configuration(policy: OutboundPolicy = .allowAny, endpoints: [String] = ["198.18.0.2:9090", "198.18.0.3:9090"]) -> Configuration {
        Configuration(outboundPolicy: policy, clusters: [
            Cluster(name: "backend", addresses: [endpoint("198.19.0.10:9090")], hostnames: ["backend"],
                    endpoints: endpoints.map { Endpoint(address: endpoint($0)) }),
            Cluster(name: "redis", addresses: [endpoint("198.19.0.11:6379")],
                    endpoints: [Endpoint(address: endpoint("198.18.0.4:6379"))]),
        ])
    }

    func testVIPMatchesItsClusterWithoutPicking() {
        let table = ClusterTable(configuration: configuration())
        for _ in 0..<3 {
            guard case .cluster(let cluster, let chosen) = table.route(endpoint("198.19.0.10:9090")) else {
                return XCTFail("VIP did not match its cluster")
            }
            XCTAssertEqual(cluster.name, "backend")
            XCTAssertNil(chosen, "matching must not pick: the pick belongs where a destination is needed")
        }
        // So the balancer's schedule is untouched by matching.
        guard case .cluster(let cluster, _) = table.route(endpoint("198.19.0.10:9090")) else { return XCTFail() }
        XCTAssertEqual(cluster.balancer.pick(), endpoint("198.18.0.2:9090"))
        XCTAssertEqual(cluster.balancer.pick(), endpoint("198.18.0.3:9090"))
    }

    func testDirectCallToAnEndpointKeepsThatEndpoint() {
        let table = ClusterTable(configuration: configuration())
        for _ in 0..<3 {
            guard case .cluster(let cluster, let chosen) = table.route(endpoint("198.18.0.3:9090")) else {
                return XCTFail("endpoint did not match its cluster")
            }
            XCTAssertEqual(cluster.name, "backend")
            XCTAssertEqual(chosen, endpoint("198.18.0.3:9090"))
        }
    }

    func testSameAddressOtherPortIsNotTheCluster() {
        let table = ClusterTable(configuration: configuration())
        guard case .passthrough(let destination) = table.route(endpoint("198.19.0.10:8080")) else {
            return XCTFail("expected passthrough")
        }
        XCTAssertEqual(destination, endpoint("198.19.0.10:8080"))
    }

    func testRegistryOnlyRefusesUnknownDestinations() {
        let table = ClusterTable(configuration: configuration(policy: .registryOnly))
        guard case .refused = table.route(endpoint("198.18.0.9:80")) else { return XCTFail("expected refusal") }
        guard case .cluster = table.route(endpoint("198.19.0.11:6379")) else { return XCTFail("known VIP refused") }
    }

    func testClusterWithoutEndpointsHasNothingToPick() {
        let table = ClusterTable(configuration: configuration(endpoints: []))
        guard case .cluster(let cluster, nil) = table.route(endpoint("198.19.0.10:9090")) else {
            return XCTFail("expected the cluster")
        }
        XCTAssertNil(cluster.balancer.pick())
    }
}

final class RoundRobinBalancerTests: XCTestCase {
    func testWeightsAreHonouredAndSpreadOut() throws {
        let a = IPEndpoint("198.18.0.2:80")!, b = IPEndpoint("198.18.0.3:80")!
        let balancer = RoundRobinBalancer(endpoints: [(a, 3), (b, 1)])
        let picks = (0..<8).compactMap { _ in balancer.pick() }
        XCTAssertEqual(picks.filter { $0 == a }.count, 6)
        XCTAssertEqual(picks.filter { $0 == b }.count, 2)
        // Smooth: the light endpoint is not starved for more than 3 turns.
        XCTAssertEqual(Array(picks.prefix(4)).filter { $0 == b }.count, 1)
    }

    func testScheduleIsBoundedForHugeWeights() {
        let endpoints = (0..<50).map { (IPEndpoint(address: .v4(0xC612_0000 + UInt32($0)), port: 80), 10_000 - $0) }
        let schedule = RoundRobinBalancer.smoothSchedule(endpoints)
        XCTAssertLessThanOrEqual(schedule.count, RoundRobinBalancer.maximumScheduleLength)
        XCTAssertEqual(Set(schedule).count, 50, "every endpoint keeps at least one turn")
    }

    func testEmptyClusterPicksNothing() {
        XCTAssertNil(RoundRobinBalancer(endpoints: []).pick())
    }
}
