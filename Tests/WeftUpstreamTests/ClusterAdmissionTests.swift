import XCTest
import WeftConfig
@testable import WeftUpstream

/// The token bucket (GCRA) and the circuit breakers, on a clock the test moves.
final class ClusterAdmissionTests: XCTestCase {
    private let second: UInt64 = 1_000_000_000

    func testTheBucketLetsTheBurstThroughThenTheRate() {
        let admission = ClusterAdmission()
        admission.configure(breakers: nil, rateLimit: RateLimit(perSecond: 10, burst: 5))
        var now = 50 * second
        XCTAssertEqual((0..<20).filter { _ in admission.takeToken(now: now) }.count, 5, "the burst")
        XCTAssertEqual(admission.rateLimited, 15)
        // A tenth of a second brings one token, a full second ten (not more
        // than the burst, however long the pause).
        now += second / 10
        XCTAssertEqual((0..<5).filter { _ in admission.takeToken(now: now) }.count, 1)
        now += second
        XCTAssertEqual((0..<20).filter { _ in admission.takeToken(now: now) }.count, 5)
        now += 60 * second
        XCTAssertEqual((0..<20).filter { _ in admission.takeToken(now: now) }.count, 5)
        // Paced at the rate, every request goes.
        for _ in 0..<30 {
            now += second / 10
            XCTAssertTrue(admission.takeToken(now: now))
        }
    }

    func testWithoutARateLimitEveryRequestGoes() {
        let admission = ClusterAdmission()
        admission.configure(breakers: CircuitBreakers(), rateLimit: nil)
        XCTAssertEqual((0..<1000).filter { _ in admission.takeToken(now: 0) }.count, 1000)
    }

    func testBreakersBoundWhatIsInFlightAndCountOverflows() {
        let admission = ClusterAdmission()
        admission.configure(breakers: CircuitBreakers(maxConnections: 1, maxPending: 0, maxRequests: 2, maxRetries: 3),
                            rateLimit: nil)
        XCTAssertTrue(admission.acquire(.requests))
        XCTAssertTrue(admission.acquire(.requests))
        XCTAssertFalse(admission.acquire(.requests))
        XCTAssertEqual(admission.inUse(.requests), 2)
        XCTAssertEqual(admission.overflows(.requests), 1)
        admission.release(.requests)
        XCTAssertTrue(admission.acquire(.requests), "a finished request frees its slot")
        XCTAssertFalse(admission.acquire(.pending), "max_pending: 0 lets nobody wait")
        XCTAssertTrue(admission.acquire(.connections))
        XCTAssertFalse(admission.acquire(.connections))
        // A reload that raises the bound keeps what is in flight.
        admission.configure(breakers: CircuitBreakers(maxRequests: 3), rateLimit: nil)
        XCTAssertEqual(admission.inUse(.requests), 2)
        XCTAssertTrue(admission.acquire(.requests))
        XCTAssertFalse(admission.acquire(.requests))
    }

    func testALeaseGivesItsSlotBackWhenItEnds() {
        var config = Cluster(name: "backend", endpoints: BalancerTests.endpoints(3))
        config.circuitBreakers = CircuitBreakers(maxRequests: 1)
        let upstream = UpstreamCluster(config: config)
        guard let admission = upstream.admission else { return XCTFail("no admission") }
        let balancer = LoopBalancer(cluster: upstream)
        XCTAssertTrue(admission.acquire(.requests))
        let lease = balancer.pick()!.holding(.requests, of: admission)
        XCTAssertFalse(admission.acquire(.requests))
        lease.finish(.success)
        XCTAssertEqual(admission.inUse(.requests), 0)
        XCTAssertNil(UpstreamCluster(config: Cluster(name: "plain", endpoints: BalancerTests.endpoints(1))).admission,
                     "a cluster without limits pays nothing")
    }
}
