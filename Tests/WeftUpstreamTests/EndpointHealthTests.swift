import XCTest
import WeftConfig
import WeftCore
@testable import WeftUpstream

/// Outlier detection, health verdicts and panic mode, without sockets: a
/// fake clock, counted spreads over three or more endpoints.
final class EndpointHealthTests: XCTestCase {
    /// Monotonic nanoseconds the test moves by hand.
    final class Clock: @unchecked Sendable {
        var now: UInt64 = 1_000_000_000
        func advance(_ duration: Duration) { now += UInt64(duration.components.seconds) * 1_000_000_000 }
    }

    private let clock = Clock()
    private let endpoints = BalancerTests.endpoints(3)
    private var addresses: [IPEndpoint] { endpoints.map(\.address) }

    private func cluster(_ policy: LoadBalancerPolicy = .roundRobin, endpoints: [Endpoint]? = nil, hashOn: HashOn? = nil,
                         detection: OutlierDetection? = OutlierDetection(consecutive5xx: 5, consecutiveGatewayErrors: 3,
                                                                         interval: .seconds(10), baseEjection: .seconds(30),
                                                                         maxEjectionPercent: 50),
                         registry: EndpointRegistry? = nil) -> (UpstreamCluster, LoopBalancer) {
        var config = Cluster(name: "backend", lb: policy, hashOn: hashOn, endpoints: endpoints ?? self.endpoints)
        config.outlierDetection = detection
        let upstream = UpstreamCluster(config: config, registry: registry)
        let clock = self.clock
        let balancer = LoopBalancer(plan: upstream.plan, health: upstream.health, random: SplitMix64(seed: 3),
                                    clock: { clock.now })
        return (upstream, balancer)
    }

    /// `count` picks; each lease finishes with `outcome(endpoint)`.
    private func run(_ balancer: LoopBalancer, _ count: Int,
                     outcome: (IPEndpoint) -> LeaseOutcome = { _ in .success }) -> [IPEndpoint: Int] {
        var counts: [IPEndpoint: Int] = [:]
        for _ in 0..<count {
            guard let lease = balancer.pick() else { continue }
            counts[lease.endpoint, default: 0] += 1
            lease.finish(outcome(lease.endpoint))
        }
        return counts
    }

    // MARK: outlier detection

    func testGatewayErrorsEjectAnEndpointUntilItsTimeIsUp() {
        let (upstream, balancer) = cluster()
        let bad = addresses[1]
        // Round robin: 9 picks give the bad endpoint its third failure.
        _ = run(balancer, 9) { $0 == bad ? .serverError(gateway: true) : .success }
        XCTAssertTrue(upstream.health[1].isEjected)
        XCTAssertEqual(upstream.registry.ejections.load(ordering: .relaxed), 1)

        var counts = run(balancer, 300)
        XCTAssertNil(counts[bad], "an ejected endpoint gets no request")
        XCTAssertEqual(counts[addresses[0]], 150)
        XCTAssertEqual(counts[addresses[2]], 150)

        clock.advance(.seconds(29))
        XCTAssertNil(run(balancer, 30)[bad], "still ejected before base_ejection")
        clock.advance(.seconds(1))
        counts = run(balancer, 300)
        XCTAssertEqual(counts[bad], 100, "back in the rotation once the ejection is over")
        XCTAssertFalse(upstream.health[1].isEjected)
        XCTAssertEqual(upstream.registry.ejectedCount, 0)
    }

    func testEachEjectionLastsLongerAndTimeBackInServiceForgivesThem() {
        let (upstream, balancer) = cluster()
        let bad = addresses[0]
        let failing: (IPEndpoint) -> LeaseOutcome = { $0 == bad ? .failure : .success }
        _ = run(balancer, 9, outcome: failing)
        XCTAssertTrue(upstream.health[0].isEjected)
        clock.advance(.seconds(30))
        _ = run(balancer, 9, outcome: failing)  // back, and failing again at once
        XCTAssertTrue(upstream.health[0].isEjected)
        XCTAssertEqual(upstream.health[0].ejections, 2)
        clock.advance(.seconds(59))
        XCTAssertNil(run(balancer, 30)[bad], "the second ejection lasts 2 × base_ejection")
        clock.advance(.seconds(1))
        XCTAssertEqual(run(balancer, 30)[bad], 10)
        // Two intervals in service forgive both ejections: the next is base long again.
        clock.advance(.seconds(20))
        _ = run(balancer, 9, outcome: failing)
        XCTAssertEqual(upstream.health[0].ejections, 1)
        clock.advance(.seconds(30))
        XCTAssertEqual(run(balancer, 30)[bad], 10)
    }

    func testASuccessEndsTheRunAndOnlyGatewayErrorsCountAsSuch() {
        let (upstream, balancer) = cluster()
        let bad = addresses[2]
        var answers: [LeaseOutcome] = [.failure, .failure, .success, .failure, .failure, .success]
        _ = run(balancer, 18) { $0 == bad ? answers.removeFirst() : .success }
        XCTAssertFalse(upstream.health[2].isEjected, "never three in a row")
        // 500s are not gateway errors: only consecutive_5xx (5) ejects.
        answers = [.serverError(gateway: false), .serverError(gateway: false), .serverError(gateway: false),
                   .serverError(gateway: false)]
        _ = run(balancer, 12) { $0 == bad ? answers.removeFirst() : .success }
        XCTAssertFalse(upstream.health[2].isEjected)
        _ = run(balancer, 3) { $0 == bad ? .serverError(gateway: false) : .success }
        XCTAssertTrue(upstream.health[2].isEjected, "the fifth 5xx in a row")
    }

    func testAbandonedAttemptsSayNothingAboutTheEndpoint() {
        let (upstream, balancer) = cluster()
        let bad = addresses[0]
        var answers: [LeaseOutcome] = [.failure, .failure, .abandoned, .failure]
        _ = run(balancer, 12) { $0 == bad ? answers.removeFirst() : .success }
        XCTAssertTrue(upstream.health[0].isEjected, "an abandoned attempt neither counts nor ends the run")
    }

    func testAtMostMaxEjectionPercentAreEjectedButAlwaysOne() {
        let four = BalancerTests.endpoints(4)
        let detection = OutlierDetection(consecutiveGatewayErrors: 1, baseEjection: .seconds(30), maxEjectionPercent: 10)
        let (upstream, balancer) = cluster(endpoints: four, detection: detection)
        let bad = Set(four.prefix(2).map(\.address))
        let counts = run(balancer, 400) { bad.contains($0) ? .failure : .success }
        XCTAssertEqual(upstream.registry.ejectedCount, 1, "10% of 4 rounds down to 0, but one may always go")
        XCTAssertEqual(upstream.health.filter(\.isEjected).count, 1)
        let stillServed = four.prefix(2).filter { !upstream.health[four.firstIndex(of: $0)!].isEjected }
        XCTAssertGreaterThan(counts[stillServed[0].address] ?? 0, 50, "the second failing endpoint stays in")
    }

    func testNoOutlierDetectionNeverEjects() {
        let (upstream, balancer) = cluster(detection: nil)
        let counts = run(balancer, 300) { $0 == self.addresses[0] ? .failure : .success }
        XCTAssertEqual(counts[addresses[0]], 100)
        XCTAssertEqual(upstream.registry.ejections.load(ordering: .relaxed), 0)
    }

    // MARK: health verdicts and panic mode

    func testEveryPolicyPassesOverAnUnhealthyEndpoint() {
        let four = BalancerTests.endpoints(4)
        for policy in LoadBalancerPolicy.allCases {
            let hashOn: HashOn? = policy.isConsistentHash ? .header("x-user") : nil
            let (upstream, balancer) = cluster(policy, endpoints: four, hashOn: hashOn)
            let key: (Int) -> UInt64? = policy.isConsistentHash ? { StableHash.hash("user-\($0)") } : { _ in nil }
            // Where each key lands while all are healthy.
            var before: [Int: IPEndpoint] = [:]
            for turn in 0..<400 { before[turn] = balancer.pick(hash: key(turn)).map { $0.finish(.success); return $0.endpoint } }

            XCTAssertTrue(upstream.health[1].setFailingHealthCheck(true))
            var counts: [IPEndpoint: Int] = [:]
            var moved = 0
            for turn in 0..<400 {
                guard let lease = balancer.pick(hash: key(turn)) else { continue }
                counts[lease.endpoint, default: 0] += 1
                if before[turn] != four[1].address && before[turn] != lease.endpoint { moved += 1 }
                lease.finish(.success)
            }
            XCTAssertNil(counts[four[1].address], "\(policy): the unhealthy endpoint got requests")
            for index in [0, 2, 3] {
                XCTAssertGreaterThan(counts[four[index].address] ?? 0, 60, "\(policy): endpoint \(index) starved")
            }
            if policy.isConsistentHash {
                XCTAssertEqual(moved, 0, "\(policy): keys of healthy endpoints must stay where they were")
            }
            XCTAssertEqual(upstream.registry.panics.load(ordering: .relaxed), 0)
        }
    }

    func testPanicModeUsesEveryEndpointWhenNoneIsUsableAndEndsWithIt() {
        let (upstream, balancer) = cluster()
        for health in upstream.health { health.setFailingHealthCheck(true) }
        var counts = run(balancer, 300)
        XCTAssertEqual(counts.values.sorted(), [100, 100, 100], "panic: all endpoints, not none")
        XCTAssertEqual(upstream.registry.panics.load(ordering: .relaxed), 300)

        upstream.health[2].setFailingHealthCheck(false)
        counts = run(balancer, 300)
        XCTAssertEqual(counts, [addresses[2]: 300], "one healthy endpoint takes everything")
        XCTAssertEqual(upstream.registry.panics.load(ordering: .relaxed), 300, "no panic while one is usable")
    }

    // MARK: the registry across snapshots

    func testStatesOutliveANewSnapshotAndLeavingEndpointsFreeTheirEjection() {
        let registry = EndpointRegistry(name: "backend")
        let (first, balancer) = cluster(registry: registry)
        _ = run(balancer, 9) { $0 == self.addresses[0] ? .failure : .success }
        first.health[2].setFailingHealthCheck(true)
        XCTAssertTrue(first.health[0].isEjected)

        // Same endpoints plus one: the same states.
        let (second, _) = cluster(endpoints: endpoints + BalancerTests.endpoints(4).suffix(1), registry: registry)
        XCTAssertTrue(second.health[0] === first.health[0])
        XCTAssertTrue(second.health[0].isEjected)
        XCTAssertTrue(second.health[2].isFailingHealthCheck)
        XCTAssertEqual(registry.ejectedCount, 1)

        // The ejected endpoint leaves: its slot is free, and if it comes
        // back it starts afresh.
        let (third, _) = cluster(endpoints: Array(endpoints.suffix(2)), registry: registry)
        XCTAssertEqual(third.health.map(\.address), Array(addresses.suffix(2)))
        XCTAssertEqual(registry.ejectedCount, 0)
        let (fourth, _) = cluster(registry: registry)
        XCTAssertFalse(fourth.health[0].isEjected)
        XCTAssertFalse(fourth.health[0] === first.health[0])
    }
}
