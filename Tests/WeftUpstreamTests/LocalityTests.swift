import XCTest
import WeftConfig
import WeftCore
@testable import WeftUpstream

/// Locality tiers and their shares (Envoy's overprovisioning rule), and a
/// balancer keeping traffic near, counted over many picks.
final class LocalityTests: XCTestCase {
    private let node = Locality(region: "eu-west", zone: "a")

    private func endpoints(_ zones: [(String?, String?)]) -> [Endpoint] {
        zones.enumerated().map { index, place in
            Endpoint(address: IPEndpoint("198.18.0.\(index + 10):8080")!,
                     locality: place.0 == nil && place.1 == nil ? nil : Locality(region: place.0, zone: place.1))
        }
    }

    func testTiersAreTheZoneThenTheRegionThenTheRest() {
        let list = endpoints([("eu-west", "a"), ("eu-west", "b"), ("us-east", "a"), (nil, nil), ("eu-west", "a")])
        XCTAssertEqual(LocalityTiers.tiers(of: list, node: node), [[0, 4], [1], [2, 3]])
        XCTAssertNil(LocalityTiers.tiers(of: list, node: Locality()), "a node without locality: one pool")
        // Zone only (EndpointSlices): the zone decides.
        XCTAssertEqual(LocalityTiers.tiers(of: endpoints([(nil, "b"), (nil, "a"), (nil, nil)]), node: node), [[1], [0, 2]])
        XCTAssertNil(LocalityTiers.tiers(of: endpoints([(nil, nil), (nil, nil)]), node: node), "endpoints without")
        XCTAssertNil(LocalityTiers.tiers(of: endpoints([("eu-west", "a"), ("eu-west", "a")]), node: node), "one tier")
    }

    func testSharesFollowTheOverprovisioningRule() throws {
        // 5 of 7 usable: 0.71 × 1.4 ≥ 1, the tier keeps everything.
        let full = try XCTUnwrap(LocalityTiers.shares(SIMD3(LocalityTiers.health(usable: 5, total: 7), 1, 1)))
        XCTAssertEqual(full.x, 1, accuracy: 1e-9)
        // 1 of 2: 0.7 stays, 0.3 spills to the next tier.
        let half = try XCTUnwrap(LocalityTiers.shares(SIMD3(LocalityTiers.health(usable: 1, total: 2), 1, 0)))
        XCTAssertEqual(half.x, 0.7, accuracy: 1e-9)
        XCTAssertEqual(half.y, 0.3, accuracy: 1e-9)
        // Together short of the whole: scaled up.
        let short = try XCTUnwrap(LocalityTiers.shares(SIMD3(0.35, 0.35, 0)))
        XCTAssertEqual(short.x, 0.5, accuracy: 1e-9)
        XCTAssertEqual(short.y, 0.5, accuracy: 1e-9)
        XCTAssertNil(LocalityTiers.shares(SIMD3(0, 0, 0)), "nothing healthy: panic")
    }

    func testTrafficStaysInTheZoneAndSpillsInProportionWhenItsEndpointsFail() {
        // Zone a: two endpoints; zone b of the same region: two more.
        let list = endpoints([("eu-west", "a"), ("eu-west", "a"), ("eu-west", "b"), ("eu-west", "b")])
        for policy in [LoadBalancerPolicy.roundRobin, .leastRequest, .random] {
            let cluster = UpstreamCluster(config: Cluster(name: "backend", lb: policy, endpoints: list), locality: node)
            let balancer = LoopBalancer(cluster: cluster, random: SplitMix64(seed: 11))
            func counts(_ picks: Int) -> [Int] {
                var counts = [0, 0, 0, 0]
                for _ in 0..<picks {
                    guard let lease = balancer.pick() else { continue }
                    counts[list.firstIndex { $0.address == lease.endpoint }!] += 1
                    lease.finish(.success)
                }
                return counts
            }
            XCTAssertEqual(counts(1000).suffix(2), [0, 0], "\(policy): all of it stays in zone a")
            // One of zone a's two fails: 70% stays (on the healthy one), 30% spills.
            cluster.health[0].setFailingHealthCheck(true)
            let spilled = counts(4000)
            XCTAssertEqual(spilled[0], 0, "\(policy)")
            XCTAssertEqual(Double(spilled[1]) / 4000, 0.7, accuracy: 0.04, "\(policy): \(spilled)")
            XCTAssertEqual(Double(spilled[2] + spilled[3]) / 4000, 0.3, accuracy: 0.04, "\(policy): \(spilled)")
            // Zone a healthy again: traffic comes back.
            cluster.health[0].setFailingHealthCheck(false)
            XCTAssertEqual(counts(1000).suffix(2), [0, 0], "\(policy): back in zone a")
        }
    }
}
