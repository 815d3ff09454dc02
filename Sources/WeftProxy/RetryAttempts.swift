import Logging
import NIOCore
import WeftConfig
import WeftCore
import WeftMesh
import WeftObservability
import WeftUpstream

/// The retry policy's decisions for one request (SPEC §5, Retries),
/// whichever protocol carries it: which failures are worth another
/// attempt, whether one more fits (attempts left, time left, `max_retries`,
/// the loop's retry budget), the jittered backoff, and the next endpoint.
/// Shared by the HTTP/1.x retry stage (`RetryingExchange`) and HTTP/2 app
/// streams (`StreamAttempts`); the caller says whether its request can
/// still be replayed.
struct RetryAttempts {
    let policy: RetryPolicy
    let target: RequestTarget
    /// `timeouts.request` (or the route's): the end of every attempt.
    let overallDeadline: NIODeadline
    /// Retries made so far (attempts after the first).
    private(set) var retries = 0
    /// The endpoints tried, in order.
    private(set) var tried: [IPEndpoint] = []
    /// An attempt ran into the overall deadline: no more after it.
    var overallExpired = false
    private var holdsRetrySlot = false

    /// The most of a request body kept for a replay; a larger request is
    /// not retried.
    static let replayLimit = 64 * 1024
    static let backoffBase = TimeAmount.milliseconds(25)
    static let backoffCeiling = TimeAmount.milliseconds(250)

    /// A first try to the cluster, counted in the loop's retry budget.
    init(policy: RetryPolicy, target: RequestTarget, deadline: NIODeadline) {
        self.policy = policy
        self.target = target
        self.overallDeadline = deadline
        target.balancer.retryBudget.recordRequest(now: target.balancer.now)
    }

    /// An attempt starts on `endpoint`; its deadline (`per_try_timeout`
    /// within the overall one).
    mutating func started(on endpoint: IPEndpoint) -> NIODeadline {
        tried.append(endpoint)
        guard let perTry = policy.perTryTimeout else { return overallDeadline }
        return min(overallDeadline, .now() + TimeAmount(perTry))
    }

    // MARK: conditions

    /// The listed condition a failure weft saw meets, if any.
    func condition(for reason: ErrorReason) -> String? {
        let conditions = policy.conditions
        let any5xx = conditions.contains(.serverError), gateway = conditions.contains(.gatewayError)
        switch reason {
        case .connectFailure where conditions.contains(.connectFailure) || any5xx || gateway: return "connect-failure"
        case .upstreamReset where conditions.contains(.reset) || any5xx || gateway: return "reset"
        case .badResponse where conditions.contains(.reset) || any5xx: return "reset"
        case .refusedStream where conditions.contains(.refusedStream) || any5xx: return "refused-stream"
        case .requestTimeout where any5xx || gateway: return "per-try-timeout"
        default: return nil
        }
    }

    /// The listed condition an answer meets, if any. A peer node's own 502
    /// or 503 for its app (`weft-reason: connect_failure` or
    /// `reset`) counts as that failure (SPEC §5).
    func condition(status: Int, peerReason: String?) -> String? {
        guard status >= 400 else { return nil }
        if (502...503).contains(status), let peerReason, let reason = ErrorReason(rawValue: peerReason),
           let condition = condition(for: reason) {
            return condition
        }
        let conditions = policy.conditions
        if conditions.contains(.status(status)) { return "\(status)" }
        if status >= 500, conditions.contains(.serverError) { return "5xx" }
        if (502...504).contains(status), conditions.contains(.gatewayError) { return "gateway-error" }
        return nil
    }

    // MARK: one more?

    /// Whether another attempt may be made: attempts left, the request
    /// replayable, time left, a `max_retries` slot (held until `finish`),
    /// and the budget agreeing. When it may, the retry is counted and the
    /// backoff to wait before it returned: full jitter over an exponential
    /// step (0..25 ms, 0..50 ms, ... up to 250 ms), `draw` giving a uniform
    /// value below its bound.
    mutating func retry(replayable: Bool, logger: Logger, draw: (_ below: Int) -> Int) -> TimeAmount? {
        guard retries < policy.attempts, replayable, !overallExpired, NIODeadline.now() < overallDeadline else {
            return nil
        }
        if !holdsRetrySlot, let admission = target.cluster.admission {
            guard admission.acquire(.retries) else {
                logger.debug("retry refused: max_retries in flight", metadata: ["cluster": "\(target.name)"])
                return nil
            }
            holdsRetrySlot = true
        }
        guard target.balancer.retryBudget.allowRetry(now: target.balancer.now, percent: policy.budgetPercent) else {
            target.cluster.registry.retriesOverBudget.wrappingIncrement(ordering: .relaxed)
            logger.debug("retry budget exhausted", metadata: ["cluster": "\(target.name)"])
            return nil
        }
        retries += 1
        target.cluster.registry.retries.wrappingIncrement(ordering: .relaxed)
        let ceiling = min(Self.backoffBase.nanoseconds << min(retries - 1, 8), Self.backoffCeiling.nanoseconds)
        return .nanoseconds(Int64(draw(Int(max(ceiling, 1)))))
    }

    /// A lease on another endpoint than those tried, when the cluster has
    /// one. A retry takes a rate-limit token and a request slot like any
    /// request.
    func nextLease(header: (String) -> String?) -> Lease? {
        var lease = try? target.lease(header: header).get()
        for _ in 0..<3 {
            guard let picked = lease, tried.contains(picked.endpoint), target.fixedEndpoint == nil,
                  tried.count < target.cluster.plan.endpoints.count else { break }
            picked.finish(.abandoned)
            lease = try? target.lease(header: header).get()
        }
        return lease
    }

    /// The request is over: its `max_retries` slot, if it took one, is
    /// given back.
    mutating func finish() {
        guard holdsRetrySlot else { return }
        holdsRetrySlot = false
        target.cluster.admission?.release(.retries)
    }
}
