import Logging
import NIOCore
import WeftConfig
import WeftCore
import WeftObservability
import WeftUpstream
import XCTest
@testable import WeftProxy

/// The retry policy's decisions, without a socket: which failures and
/// answers are listed, how many attempts, the `max_retries` slot, the
/// budget, the backoff's bounds, and the next endpoint.
final class RetryAttemptsTests: XCTestCase {
    private let logger = Logger(label: "test.retry")
    private let endpoints = (0..<3).map { Endpoint(address: IPEndpoint("198.18.0.\($0 + 10):8080")!) }

    private func attempts(_ policy: RetryPolicy, breakers: CircuitBreakers? = nil,
                          timeout: TimeAmount = .seconds(15)) -> (RetryAttempts, UpstreamCluster) {
        var config = Cluster(name: "backend", endpoints: endpoints)
        config.retries = policy
        config.circuitBreakers = breakers
        let cluster = UpstreamCluster(config: config)
        let target = RequestTarget(cluster: cluster, balancer: LoopBalancer(cluster: cluster, random: SplitMix64(seed: 5)),
                                   fixedEndpoint: nil, meshPort: 15008, source: nil, requestTimeout: .seconds(15))
        return (RetryAttempts(policy: policy, target: target, deadline: .now() + timeout), cluster)
    }

    private func retry(_ attempts: inout RetryAttempts, replayable: Bool = true) -> TimeAmount? {
        attempts.retry(replayable: replayable, logger: logger, draw: { $0 - 1 })
    }

    func testFailuresAndAnswersMeetTheListedConditionsOnly() {
        let (listed, _) = attempts(RetryPolicy(conditions: [.connectFailure, .status(503)]))
        XCTAssertEqual(listed.condition(for: .connectFailure), "connect-failure")
        XCTAssertNil(listed.condition(for: .upstreamReset))
        XCTAssertNil(listed.condition(for: .requestTimeout))
        XCTAssertEqual(listed.condition(status: 503, peerReason: nil), "503")
        XCTAssertNil(listed.condition(status: 502, peerReason: nil))
        XCTAssertNil(listed.condition(status: 200, peerReason: nil))
        // A peer node's 502 for its app's connect failure is that failure.
        XCTAssertEqual(listed.condition(status: 502, peerReason: "connect_failure"), "connect-failure")
        XCTAssertNil(listed.condition(status: 502, peerReason: "reset"))

        let (gateway, _) = attempts(RetryPolicy(conditions: [.gatewayError]))
        XCTAssertEqual(gateway.condition(for: .requestTimeout), "per-try-timeout")
        XCTAssertEqual(gateway.condition(status: 504, peerReason: nil), "gateway-error")
        XCTAssertNil(gateway.condition(status: 500, peerReason: nil))
        XCTAssertNil(gateway.condition(for: .refusedStream))

        let (any5xx, _) = attempts(RetryPolicy(conditions: [.serverError]))
        XCTAssertEqual(any5xx.condition(status: 500, peerReason: nil), "5xx")
        XCTAssertEqual(any5xx.condition(for: .refusedStream), "refused-stream")
        XCTAssertNil(any5xx.condition(for: .overflow), "weft's own refusals are never retried")
    }

    func testAttemptsStopAtThePolicysCountAndForARequestThatCannotBeReplayed() {
        var (state, cluster) = attempts(RetryPolicy(attempts: 2, budgetPercent: 100))
        XCTAssertNil(retry(&state, replayable: false))
        XCTAssertNotNil(retry(&state))
        XCTAssertNotNil(retry(&state))
        XCTAssertNil(retry(&state), "two attempts after the first, no more")
        XCTAssertEqual(state.retries, 2)
        XCTAssertEqual(cluster.registry.retries.load(ordering: .relaxed), 2)
    }

    func testNoRetryPastTheOverallDeadline() {
        var (state, _) = attempts(RetryPolicy(budgetPercent: 100), timeout: .zero)
        XCTAssertNil(retry(&state))
        var (expired, _) = attempts(RetryPolicy(budgetPercent: 100))
        expired.overallExpired = true
        XCTAssertNil(retry(&expired))
    }

    func testBackoffIsJitteredUnderAGrowingCeiling() {
        var (state, _) = attempts(RetryPolicy(attempts: 5, budgetPercent: 100))
        // Four more first tries, so the budget allows five retries.
        for _ in 0..<4 { _ = RetryAttempts(policy: state.policy, target: state.target, deadline: .now()) }
        // The draw returns its bound less one: the ceiling of each step.
        let delays = (0..<5).compactMap { _ in retry(&state)?.nanoseconds }
        XCTAssertEqual(delays, [25, 50, 100, 200, 250].map { $0 * 1_000_000 - 1 })
    }

    func testConcurrentRetriesAreBoundedByMaxRetriesUntilTheRequestEnds() {
        let breakers = CircuitBreakers(maxRetries: 1)
        var (first, cluster) = attempts(RetryPolicy(budgetPercent: 100), breakers: breakers)
        var second = RetryAttempts(policy: first.policy, target: first.target, deadline: .now() + .seconds(15))
        XCTAssertNotNil(retry(&first))
        XCTAssertNil(retry(&second), "the one max_retries slot is taken")
        XCTAssertEqual(cluster.admission?.inUse(.retries), 1)
        first.finish()
        XCTAssertEqual(cluster.admission?.inUse(.retries), 0)
        XCTAssertNotNil(retry(&second))
    }

    func testTheBudgetBoundsRetriesToAShareOfRequests() {
        // 20 first tries at 20%: 4 retries (and the 3 always allowed).
        let (seed, cluster) = attempts(RetryPolicy(attempts: 1, budgetPercent: 20))
        var all = [seed]
        for _ in 1..<20 {
            all.append(RetryAttempts(policy: seed.policy, target: seed.target, deadline: .now() + .seconds(15)))
        }
        let allowed = all.indices.filter { retry(&all[$0]) != nil }.count
        XCTAssertEqual(allowed, 4)
        XCTAssertEqual(cluster.registry.retriesOverBudget.load(ordering: .relaxed), 16)
    }

    func testTheNextLeaseAvoidsEndpointsAlreadyTried() {
        var (state, _) = attempts(RetryPolicy(budgetPercent: 100))
        let balancer = state.target.balancer
        guard let first = state.nextLease(header: { _ in nil }) else { return XCTFail("no lease") }
        _ = state.started(on: first.endpoint)
        first.finish(.failure)
        // Two other requests take their turns meanwhile: round robin's
        // next turn is the endpoint that failed.
        let others = [balancer.pick(), balancer.pick()].compactMap { $0 }
        XCTAssertEqual(others.count, 2)
        XCTAssertFalse(others.map(\.endpoint).contains(first.endpoint))
        guard let second = state.nextLease(header: { _ in nil }) else { return XCTFail("no lease") }
        XCTAssertNotEqual(second.endpoint, first.endpoint, "the retry went back to the endpoint that failed")
        _ = state.started(on: second.endpoint)
        guard let third = state.nextLease(header: { _ in nil }) else { return XCTFail("no lease") }
        XCTAssertEqual(Set([first, second, third].map(\.endpoint)).count, 3, "the third try goes to the third endpoint")
        for lease in others + [second, third] { lease.finish(.success) }
    }
}
