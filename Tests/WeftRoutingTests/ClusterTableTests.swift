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
            XCTAssertEqual(table.route(endpoint("198.19.0.10:9090")), .cluster(index: 0, endpoint: nil),
                           "matching must not pick: the pick belongs where a destination is needed")
        }
        XCTAssertEqual(table.route(endpoint("198.19.0.11:6379")), .cluster(index: 1, endpoint: nil))
    }

    func testDirectCallToAnEndpointKeepsThatEndpoint() {
        let table = ClusterTable(configuration: configuration())
        for _ in 0..<3 {
            XCTAssertEqual(table.route(endpoint("198.18.0.3:9090")),
                           .cluster(index: 0, endpoint: endpoint("198.18.0.3:9090")))
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

}
