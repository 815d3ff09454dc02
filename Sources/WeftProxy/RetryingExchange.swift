import Logging
import NIOCore
import NIOHTTP1
import WeftConfig
import WeftCore
import WeftMesh
import WeftObservability
import WeftUpstream

/// The retry stage of the pipeline for one HTTP/1.x app request to a
/// cluster with `retries` (SPEC §5, Retries). It stands between the app
/// connection's handler and the attempts: each attempt is an ordinary
/// exchange (a mesh stream or a pooled HTTP/1.1 request) that answers to
/// this stage, which passes the answer on, or, when the attempt failed in
/// a listed way before anything reached the app, makes another attempt on
/// another endpoint after a jittered backoff.
///
/// Only a replayable request is retried: its body is kept as it streams
/// through, up to 64 KiB; past that, no more attempts. Retries stay within
/// the cluster's budget on this loop. `per_try_timeout` bounds each
/// attempt, `timeouts.request` (or the route's) all of them.
final class RetryingExchange: OutboundExchange, ExchangeResponder {
    private weak var handler: OutboundHTTPHandler?
    private let head: HTTPRequestHead
    private let target: RequestTarget
    private let policy: RetryPolicy
    private let services: LoopServices
    private let logger: Logger
    let metrics: ProxyMetrics
    private let overallDeadline: NIODeadline
    private var current: (any OutboundExchange)?
    private var attempts = 0
    private var tried: [IPEndpoint] = []
    /// The request body so far, for a replay; nil once past `replayLimit`.
    private var body: [ByteBuffer]? = []
    private var bodyBytes = 0
    private var ended: HTTPHeaders??
    /// The last attempt's record, written when the request is over.
    private var lastRecord: RequestRecord?
    /// Why the last attempt failed, while the next one waits for its turn.
    private var pendingFailure: ErrorReason?
    private var backoff: Scheduled<Void>?
    /// Something reached the app: no more attempts.
    private var answered = false
    private var finished = false

    static let replayLimit = 64 * 1024
    static let backoffBase = TimeAmount.milliseconds(25)
    static let backoffCeiling = TimeAmount.milliseconds(250)

    init(handler: OutboundHTTPHandler, head: HTTPRequestHead, target: RequestTarget, policy: RetryPolicy,
         services: LoopServices, logger: Logger, deadline: NIODeadline) {
        self.handler = handler
        self.head = head
        self.target = target
        self.policy = policy
        self.services = services
        self.logger = logger
        self.metrics = handler.metrics
        self.overallDeadline = deadline
    }

    /// Starts the first attempt on `lease`.
    func start(lease: Lease) {
        target.balancer.retryBudget.recordRequest(now: target.balancer.now)
        startAttempt(on: lease)
    }

    var responseDeadline: NIODeadline? {
        guard !finished, !answered else { return nil }
        return current?.responseDeadline ?? overallDeadline
    }

    // MARK: the request, from the app

    func sendBody(_ buffer: ByteBuffer) {
        if body != nil {
            bodyBytes += buffer.readableBytes
            if bodyBytes <= Self.replayLimit { body?.append(buffer) } else { body = nil }
        }
        if let current { return current.sendBody(buffer) }
        // Between attempts: the next one replays it, unless there is too
        // much to replay.
        if body == nil, let reason = pendingFailure { giveUp(reason) }
    }

    func sendEnd(_ trailers: HTTPHeaders?) {
        ended = .some(trailers)
        current?.sendEnd(trailers)
    }

    func timedOut() {
        guard !finished, let current else { return }
        // Past the overall deadline the attempt's failure is final.
        if NIODeadline.now() >= overallDeadline { overallExpired = true }
        current.timedOut()
    }

    private var overallExpired = false

    func appBecameWritable() {
        current?.appBecameWritable()
    }

    func appClosed() {
        finished = true
        backoff?.cancel()
        backoff = nil
        let attempt = current
        current = nil
        attempt?.appClosed()
        flushRecord()
    }

    // MARK: ExchangeResponder: the attempt's answer

    var draining: Bool { handler?.draining ?? false }
    var appIsWritable: Bool { handler?.appIsWritable ?? false }

    func setReadsPaused(_ paused: Bool) {
        handler?.setReadsPaused(paused)
    }

    func writeHead(_ response: HTTPResponseHead) {
        guard !finished, let attempt = current else { return }
        if !answered, response.status.code >= 200, let condition = retryCondition(response), canRetry {
            current = nil
            attempt.appClosed()  // the answer is dropped; the attempt ends (and is recorded, then replaced)
            retry(after: condition, reason: nil)
            return
        }
        answered = true
        handler?.writeHead(response)
    }

    func writeBody(_ buffer: ByteBuffer) {
        guard answered, !finished else { return }
        handler?.writeBody(buffer)
    }

    func flush() {
        handler?.flush()
    }

    func writeEnd(_ trailers: HTTPHeaders?, close: Bool, exchange: any OutboundExchange) {
        guard !finished, exchange === current else { return }
        finished = true
        current = nil
        flushRecord()
        handler?.writeEnd(trailers, close: close, exchange: self)
    }

    func abortResponse() {
        guard !finished else { return }
        finished = true
        current = nil
        flushRecord()
        handler?.abortResponse()
    }

    func respondWithError(_ reason: ErrorReason, keepAlive: Bool, version: HTTPVersion,
                          finished attempt: (any OutboundExchange)?) {
        guard !finished, attempt == nil || attempt === current else { return }
        current = nil
        if !answered, let condition = retryCondition(reason), canRetry {
            retry(after: condition, reason: reason)
            return
        }
        giveUp(reason)
    }

    func record(_ record: RequestRecord) {
        lastRecord = record
        if finished { flushRecord() }
    }

    // MARK: deciding

    /// Whether another attempt may be made: attempts left, the request
    /// replayable, time left, and the budget agreeing.
    private var canRetry: Bool {
        guard attempts < policy.attempts, body != nil, !overallExpired, NIODeadline.now() < overallDeadline else {
            return false
        }
        // One slot of max_retries while this request is being retried.
        if !holdsRetrySlot, let admission = target.cluster.admission {
            guard admission.acquire(.retries) else {
                logger.debug("retry refused: max_retries in flight", metadata: ["cluster": "\(target.name)"])
                return false
            }
            holdsRetrySlot = true
        }
        guard target.balancer.retryBudget.allowRetry(now: target.balancer.now, percent: policy.budgetPercent) else {
            target.cluster.registry.retriesOverBudget.wrappingIncrement(ordering: .relaxed)
            logger.debug("retry budget exhausted", metadata: ["cluster": "\(target.name)", "endpoint": "\(tried.last.map(String.init(describing:)) ?? "?")"])
            return false
        }
        return true
    }

    private var holdsRetrySlot = false

    /// The listed condition a failure weft saw meets, if any.
    private func retryCondition(_ reason: ErrorReason) -> String? {
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
    /// for its app (`weft-reason: connect_failure` or `upstream_reset`)
    /// counts as that failure (SPEC §5).
    private func retryCondition(_ response: HTTPResponseHead) -> String? {
        let status = Int(response.status.code)
        guard status >= 400 else { return nil }
        if (502...503).contains(status), let peer = response.headers.first(name: MeshTranslation.reasonHeader),
           let reason = ErrorReason(rawValue: peer), let condition = retryCondition(reason) {
            return condition
        }
        let conditions = policy.conditions
        if conditions.contains(.status(status)) { return "\(status)" }
        if status >= 500, conditions.contains(.serverError) { return "5xx" }
        if (502...504).contains(status), conditions.contains(.gatewayError) { return "gateway-error" }
        return nil
    }

    // MARK: attempts

    private func retry(after condition: String, reason: ErrorReason?) {
        attempts += 1
        pendingFailure = reason ?? .upstreamReset
        lastRecord = nil
        target.cluster.registry.retries.wrappingIncrement(ordering: .relaxed)
        handler?.setReadsPaused(true)
        // Full jitter over an exponential step: 0..25 ms, 0..50 ms, ...
        let ceiling = min(Self.backoffBase.nanoseconds << min(attempts - 1, 8), Self.backoffCeiling.nanoseconds)
        let delay = TimeAmount.nanoseconds(Int64(services.drawRouteWeight(below: Int(max(ceiling, 1)))))
        logger.debug("retrying", metadata: ["cluster": "\(target.name)", "condition": "\(condition)",
                                            "endpoint": "\(tried.last.map(String.init(describing:)) ?? "?")",
                                            "attempt": "\(attempts + 1)", "after_ms": "\(delay.nanoseconds / 1_000_000)"])
        let bound = NIOLoopBound(self, eventLoop: services.upstreamPool.eventLoop)
        backoff = services.upstreamPool.eventLoop.scheduleTask(in: delay) { bound.value.nextAttempt() }
    }

    private func nextAttempt() {
        backoff = nil
        guard !finished else { return }
        guard let lease = leaseAvoidingTried() else { return giveUp(pendingFailure ?? .noEndpoint) }
        pendingFailure = nil
        startAttempt(on: lease)
    }

    /// Another endpoint than those tried, when the cluster has one. A
    /// retry takes a rate-limit token and a request slot like any request.
    private func leaseAvoidingTried() -> Lease? {
        var lease = try? target.lease(header: { head.headers.first(name: $0) }).get()
        for _ in 0..<3 {
            guard let picked = lease, tried.contains(picked.endpoint), target.fixedEndpoint == nil,
                  tried.count < target.cluster.plan.endpoints.count else { break }
            picked.finish(.abandoned)
            lease = try? target.lease(header: { head.headers.first(name: $0) }).get()
        }
        return lease
    }

    private func startAttempt(on lease: Lease) {
        guard let handler else { return lease.finish(.abandoned) }
        tried.append(lease.endpoint)
        var deadline = overallDeadline
        if let perTry = policy.perTryTimeout { deadline = min(deadline, .now() + TimeAmount(perTry)) }
        OutboundDispatch.start(head, lease: lease, target: target, responder: self, services: services, logger: logger,
                               deadline: deadline) { current = $0 }
        // Replayed into the attempt unless it answered at once.
        if let attempt = current {
            for part in body ?? [] { attempt.sendBody(part) }
            if let ended { attempt.sendEnd(ended) }
        }
        handler.watchDeadline(deadline)
    }

    /// The request is over with weft's answer for `reason`.
    private func giveUp(_ reason: ErrorReason) {
        finished = true
        backoff?.cancel()
        backoff = nil
        if lastRecord == nil {
            var record = RequestRecord(direction: .outbound, cluster: target.name, endpoint: tried.last)
            record.status = reason.status
            record.reason = reason
            lastRecord = record
        }
        flushRecord()
        handler?.respondWithError(reason, keepAlive: false, version: head.version, finished: self)
    }

    private func flushRecord() {
        if finished, holdsRetrySlot {
            holdsRetrySlot = false
            target.cluster.admission?.release(.retries)
        }
        guard var record = lastRecord else { return }
        lastRecord = nil
        record.attempts = attempts + 1
        metrics.record(record)
    }
}
