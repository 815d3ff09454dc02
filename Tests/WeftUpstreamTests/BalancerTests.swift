import XCTest
import WeftConfig
import WeftCore
@testable import WeftUpstream

/// Balancers without sockets: counted spreads over three or more endpoints.
final class BalancerTests: XCTestCase {
    static func endpoints(_ count: Int, weights: [Int]? = nil) -> [Endpoint] {
        (0..<count).map { Endpoint(address: IPEndpoint("198.18.0.\($0 + 10):8080")!, weight: weights?[$0] ?? 1) }
    }

    static func balancer(_ policy: LoadBalancerPolicy, _ endpoints: [Endpoint], hashOn: HashOn? = nil,
                         seed: UInt64 = 7, clock: @escaping () -> UInt64 = { 0 }) -> LoopBalancer {
        LoopBalancer(plan: BalancerPlan(policy: policy, hashOn: hashOn, endpoints: endpoints),
                     random: SplitMix64(seed: seed), clock: clock)
    }

    /// Picks `count` times, finishing each lease at once; counts by endpoint index.
    static func spread(_ balancer: LoopBalancer, _ count: Int, hash: (Int) -> UInt64? = { _ in nil }) -> [Int] {
        var counts = [Int](repeating: 0, count: balancer.plan.endpoints.count)
        for turn in 0..<count {
            guard let lease = balancer.pick(hash: hash(turn)) else { continue }
            counts[balancer.plan.endpoints.firstIndex { $0.address == lease.endpoint }!] += 1
            lease.finish(.success)
        }
        return counts
    }

    // MARK: round robin

    func testRoundRobinGivesEachOfThreeItsTurn() {
        XCTAssertEqual(Self.spread(Self.balancer(.roundRobin, Self.endpoints(3)), 30), [10, 10, 10])
    }

    func testRoundRobinWeightsAreHonouredAndSpreadOut() {
        let balancer = Self.balancer(.roundRobin, Self.endpoints(3, weights: [3, 1, 1]))
        var picks: [IPEndpoint] = []
        for _ in 0..<50 {
            let lease = balancer.pick()!
            picks.append(lease.endpoint)
            lease.finish(.success)
        }
        let heavy = Self.endpoints(3)[0].address
        XCTAssertEqual(picks.filter { $0 == heavy }.count, 30)
        // Smooth: the heavy endpoint never gets three turns in a row.
        for index in 2..<picks.count {
            XCTAssertFalse(picks[index] == heavy && picks[index - 1] == heavy && picks[index - 2] == heavy,
                           "three heavy turns in a row at \(index)")
        }
    }

    func testEmptyClusterHasNothingToPick() {
        for policy in LoadBalancerPolicy.allCases {
            XCTAssertNil(Self.balancer(policy, [], hashOn: .header("x-user")).pick(hash: 1), "\(policy)")
        }
    }

    // MARK: random

    func testRandomFollowsTheWeights() {
        let counts = Self.spread(Self.balancer(.random, Self.endpoints(4, weights: [1, 2, 1, 4])), 80_000)
        let expected = [10_000, 20_000, 10_000, 40_000]
        for (count, share) in zip(counts, expected) {
            XCTAssertEqual(Double(count), Double(share), accuracy: Double(share) * 0.05, "\(counts)")
        }
    }

    // MARK: least request and peak EWMA

    /// Runs `requests` requests, `concurrency` at a time, in simulated time:
    /// each takes `latency(endpoint index)` ms. Returns picks per endpoint.
    static func simulate(_ policy: LoadBalancerPolicy, endpoints: [Endpoint], concurrency: Int, requests: Int,
                         latency: (Int) -> UInt64) -> [Int] {
        var now: UInt64 = 1_000_000_000
        let balancer = LoopBalancer(plan: BalancerPlan(policy: policy, endpoints: endpoints),
                                    random: SplitMix64(seed: 42), clock: { now })
        var counts = [Int](repeating: 0, count: endpoints.count)
        var open: [(done: UInt64, lease: Lease)] = []
        var started = 0
        while started < requests || !open.isEmpty {
            while started < requests && open.count < concurrency {
                let lease = balancer.pick()!
                let index = endpoints.firstIndex { $0.address == lease.endpoint }!
                counts[index] += 1
                open.append((now + latency(index) * 1_000_000, lease))
                started += 1
            }
            // Advance to the next completion.
            open.sort { $0.done < $1.done }
            let next = open.removeFirst()
            now = next.done
            next.lease.responded()
            next.lease.finish(.success)
        }
        return counts
    }

    func testLeastRequestSendsLessToASlowEndpoint() {
        let counts = Self.simulate(.leastRequest, endpoints: Self.endpoints(4), concurrency: 16, requests: 8_000) {
            $0 == 0 ? 50 : 5
        }
        // Round robin would give each 2000; the slow one holds its requests
        // ten times as long, so it has more in flight and loses the choices.
        XCTAssertLessThan(counts[0], 1_000, "\(counts)")
        for fast in 1..<4 { XCTAssertGreaterThan(counts[fast], 2_000, "\(counts)") }
    }

    func testPeakEWMASendsLessToASlowEndpoint() {
        let counts = Self.simulate(.peakEWMA, endpoints: Self.endpoints(4), concurrency: 8, requests: 8_000) {
            $0 == 2 ? 100 : 5
        }
        XCTAssertLessThan(counts[2], 400, "\(counts)")
        for fast in [0, 1, 3] { XCTAssertGreaterThan(counts[fast], 2_300, "\(counts)") }
    }

    func testPeakEWMAComesBackToAnEndpointThatRecovered() {
        // Slow first, then as fast as the others: its share returns.
        var slow = true
        var now: UInt64 = 1_000_000_000
        let endpoints = Self.endpoints(3)
        let balancer = LoopBalancer(plan: BalancerPlan(policy: .peakEWMA, endpoints: endpoints),
                                    random: SplitMix64(seed: 3), clock: { now })
        func run(_ requests: Int) -> Int {
            var toFirst = 0
            for _ in 0..<requests {
                let lease = balancer.pick()!
                let isFirst = lease.endpoint == endpoints[0].address
                if isFirst { toFirst += 1 }
                now += (isFirst && slow ? 200 : 5) * 1_000_000
                lease.responded()
                lease.finish(.success)
            }
            return toFirst
        }
        XCTAssertLessThan(run(3_000), 300, "a slow endpoint is avoided")
        slow = false
        now += 30_000_000_000  // its estimate decays while it is avoided
        XCTAssertGreaterThan(run(3_000), 700, "a recovered endpoint gets its share again")
    }

    func testLeastRequestRespectsWeightsWhenIdle() {
        let counts = Self.spread(Self.balancer(.leastRequest, Self.endpoints(3, weights: [1, 1, 4])), 30_000)
        // Equal (idle) loads: the shares follow the weights, 1:1:4.
        XCTAssertEqual(Double(counts[0]), 5_000, accuracy: 500, "\(counts)")
        XCTAssertEqual(Double(counts[1]), 5_000, accuracy: 500, "\(counts)")
        XCTAssertEqual(Double(counts[2]), 20_000, accuracy: 1_000, "\(counts)")
    }

    func testInFlightIsCountedUntilTheLeaseEnds() {
        let balancer = Self.balancer(.leastRequest, Self.endpoints(3))
        let leases = (0..<6).map { _ in balancer.pick()! }
        XCTAssertEqual(balancer.loads.map(\.inFlight).reduce(0, +), 6)
        XCTAssertEqual(balancer.loads.map(\.inFlight).max(), 2, "two choices keep loads level: \(balancer.loads.map(\.inFlight))")
        leases[0].finish(.failure)
        for lease in leases.dropFirst() { lease.finish(.success) }
        XCTAssertEqual(balancer.loads.map(\.inFlight), [0, 0, 0])
        XCTAssertEqual(balancer.loads.map(\.finished).reduce(0, +), 6)
        XCTAssertEqual(balancer.loads.map(\.failures).reduce(0, +), 1)
    }

    // MARK: consistent hashing

    func testHashedKeysAlwaysLandOnTheSameEndpointOnEveryLoop() {
        for policy in [LoadBalancerPolicy.ringHash, .maglev] {
            let one = Self.balancer(policy, Self.endpoints(5), hashOn: .header("x-user"), seed: 1)
            let other = Self.balancer(policy, Self.endpoints(5), hashOn: .header("x-user"), seed: 99)
            var used = Set<IPEndpoint>()
            for user in 0..<500 {
                let key = StableHash.hash("user-\(user)")
                let first = one.pick(hash: key)!
                XCTAssertEqual(one.pick(hash: key)!.endpoint, first.endpoint, "\(policy)")
                XCTAssertEqual(other.pick(hash: key)!.endpoint, first.endpoint, "\(policy): loops disagree")
                used.insert(first.endpoint)
            }
            XCTAssertEqual(used.count, 5, "\(policy) uses every endpoint")
        }
    }

    func testHashedKeysSpreadEvenly() {
        for policy in [LoadBalancerPolicy.ringHash, .maglev] {
            let counts = Self.spread(Self.balancer(policy, Self.endpoints(8), hashOn: .header("k")), 40_000) {
                StableHash.hash("key-\($0)")
            }
            for count in counts {
                XCTAssertEqual(Double(count), 5_000, accuracy: 1_500, "\(policy): \(counts)")
            }
        }
    }

    func testRemovingOneOfTenEndpointsMovesAboutATenthOfKeys() {
        for policy in [LoadBalancerPolicy.ringHash, .maglev] {
            let all = Self.endpoints(10)
            let balancer = Self.balancer(policy, all, hashOn: .header("k"))
            let keys = (0..<20_000).map { StableHash.hash("key-\($0)") }
            let before = keys.map { balancer.pick(hash: $0)!.endpoint }
            let removed = all[4].address
            balancer.update(balancer.plan.with(endpoints: all.filter { $0.address != removed }))
            let after = keys.map { balancer.pick(hash: $0)!.endpoint }
            let moved = zip(before, after).filter { $0 != $1 }.count
            let onRemoved = before.filter { $0 == removed }.count
            XCTAssertFalse(after.contains(removed))
            // Every key of the removed endpoint must move; few others may.
            XCTAssertGreaterThanOrEqual(moved, onRemoved)
            XCTAssertLessThan(Double(moved) / Double(keys.count), 0.15, "\(policy) moved \(moved) of \(keys.count)")
            XCTAssertGreaterThan(Double(moved) / Double(keys.count), 0.05, "\(policy) moved \(moved) of \(keys.count)")
        }
    }

    func testWeightsShiftHashedShares() {
        for policy in [LoadBalancerPolicy.ringHash, .maglev] {
            let counts = Self.spread(Self.balancer(policy, Self.endpoints(3, weights: [1, 1, 2]), hashOn: .header("k")),
                                     40_000) { StableHash.hash("key-\($0)") }
            XCTAssertEqual(Double(counts[2]) / 40_000, 0.5, accuracy: 0.07, "\(policy): \(counts)")
        }
    }

    func testRequestsWithoutAKeyFallBackToRandom() {
        for policy in [LoadBalancerPolicy.ringHash, .maglev] {
            let counts = Self.spread(Self.balancer(policy, Self.endpoints(3), hashOn: .header("k")), 3_000)
            for count in counts { XCTAssertGreaterThan(count, 800, "\(policy): \(counts)") }
        }
    }

    // MARK: state across plans

    func testLoadsOfEndpointsThatStaySurviveANewPlan() {
        let first = Self.endpoints(3)
        let balancer = Self.balancer(.roundRobin, first)
        let open = (0..<3).map { _ in balancer.pick()! }  // one on each
        let kept = balancer.loads[1]
        balancer.update(balancer.plan.with(endpoints: Array(first[1...]) + Self.endpoints(5)[3...]))
        XCTAssertEqual(balancer.loads.count, 4)
        XCTAssertTrue(balancer.loads[0] === kept, "the endpoint that stayed kept its load")
        XCTAssertEqual(balancer.loads[0].inFlight, 1)
        XCTAssertEqual(balancer.loads[2].inFlight, 0, "a new endpoint starts idle")
        for lease in open { lease.finish(.success) }
        XCTAssertEqual(balancer.loads[0].inFlight, 0)
    }

    func testAFixedEndpointIsLeasedAndCounted() {
        let balancer = Self.balancer(.roundRobin, Self.endpoints(3))
        let named = Self.endpoints(3)[2].address
        let lease = balancer.lease(on: named)
        XCTAssertEqual(lease.endpoint, named)
        XCTAssertEqual(balancer.loads[2].inFlight, 1)
        lease.finish(.success)
        XCTAssertEqual(balancer.loads[2].inFlight, 0)
    }

    func testHeldLeaseFinishesOnce() {
        let balancer = Self.balancer(.roundRobin, Self.endpoints(3))
        let held = HeldLease(balancer.pick()!)
        held.finish(.failure)
        held.finish(.success)
        XCTAssertEqual(balancer.loads.map(\.finished).reduce(0, +), 1)
        XCTAssertEqual(balancer.loads.map(\.inFlight).reduce(0, +), 0)
    }
}

final class HashKeyTests: XCTestCase {
    let headers = ["x-user": "alice", "cookie": "theme=dark; session=abc123;lang=en"]

    func testHeaderCookieAndSourceKeys() {
        let lookup = { (name: String) in self.headers[name] }
        XCTAssertEqual(HashKey.hash(.header("x-user"), header: lookup, source: nil), StableHash.hash("alice"))
        XCTAssertEqual(HashKey.hash(.cookie("session"), header: lookup, source: nil), StableHash.hash("abc123"))
        XCTAssertEqual(HashKey.hash(.cookie("lang"), header: lookup, source: nil), StableHash.hash("en"))
        XCTAssertNil(HashKey.hash(.cookie("sess"), header: lookup, source: nil), "a prefix is not the cookie")
        XCTAssertNil(HashKey.hash(.header("x-tenant"), header: lookup, source: nil))
        let address = IPAddress("198.18.0.7")!
        XCTAssertEqual(HashKey.hash(.sourceIP, header: lookup, source: address), StableHash.hash("198.18.0.7"))
        XCTAssertNil(HashKey.hash(.sourceIP, header: lookup, source: nil))
    }

    func testStableHashIsFixed() {
        // The same on every node and in every process: a fixed value.
        XCTAssertEqual(StableHash.hash("alice"), StableHash.hash("alice"))
        XCTAssertNotEqual(StableHash.hash("alice"), StableHash.hash("alicf"))
        XCTAssertNotEqual(StableHash.hash("alice", seed: 1), StableHash.hash("alice"))
    }
}
