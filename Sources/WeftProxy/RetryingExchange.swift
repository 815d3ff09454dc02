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
    private let head: HTTP1RequestHead
    /// What the head's `Connection` fields said, for every attempt.
    private let connectionOptions: ConnectionOptions
    private var attempts: RetryAttempts
    private let services: LoopServices
    private let logger: Logger
    let metrics: ProxyMetrics
    private var current: (any OutboundExchange)?
    /// The request body so far, for a replay; nil once past
    /// `RetryAttempts.replayLimit`.
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

    init(handler: OutboundHTTPHandler, head: HTTP1RequestHead, connection: ConnectionOptions, target: RequestTarget,
         policy: RetryPolicy, services: LoopServices, logger: Logger, deadline: NIODeadline) {
        self.handler = handler
        self.head = head
        self.connectionOptions = connection
        self.attempts = RetryAttempts(policy: policy, target: target, deadline: deadline)
        self.services = services
        self.logger = logger
        self.metrics = handler.metrics
    }

    /// Starts the first attempt on `lease`.
    func start(lease: Lease) {
        startAttempt(on: lease)
    }

    var responseDeadline: NIODeadline? {
        guard !finished, !answered else { return nil }
        return current?.responseDeadline ?? attempts.overallDeadline
    }

    // MARK: the request, from the app

    func sendBody(_ buffer: ByteBuffer) {
        if body != nil {
            bodyBytes += buffer.readableBytes
            if bodyBytes <= RetryAttempts.replayLimit { body?.append(buffer) } else { body = nil }
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
        if NIODeadline.now() >= attempts.overallDeadline { attempts.overallExpired = true }
        current.timedOut()
    }

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

    func writeHead(_ response: AppResponseHead) {
        guard !finished, let attempt = current else { return }
        if !answered, response.status.code >= 200,
           let condition = attempts.condition(status: Int(response.status.code),
                                              peerReason: response.first(name: MeshTranslation.reasonHeader)),
           let delay = attempts.retry(replayable: body != nil, logger: logger, draw: services.drawRouteWeight) {
            current = nil
            attempt.appClosed()  // the answer is dropped; the attempt ends (and is recorded, then replaced)
            retry(after: condition, reason: nil, delay: delay)
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
        if !answered, let condition = attempts.condition(for: reason),
           let delay = attempts.retry(replayable: body != nil, logger: logger, draw: services.drawRouteWeight) {
            retry(after: condition, reason: reason, delay: delay)
            return
        }
        giveUp(reason)
    }

    func record(_ record: RequestRecord) {
        lastRecord = record
        if finished { flushRecord() }
    }

    // MARK: attempts

    private func retry(after condition: String, reason: ErrorReason?, delay: TimeAmount) {
        pendingFailure = reason ?? .upstreamReset
        lastRecord = nil
        handler?.setReadsPaused(true)
        logger.debug("retrying", metadata: ["cluster": "\(attempts.target.name)", "condition": "\(condition)",
                                            "endpoint": "\(attempts.tried.last.map(String.init(describing:)) ?? "?")",
                                            "attempt": "\(attempts.retries + 1)",
                                            "after_ms": "\(delay.nanoseconds / 1_000_000)"])
        let bound = NIOLoopBound(self, eventLoop: services.upstreamPool.eventLoop)
        backoff = services.upstreamPool.eventLoop.scheduleTask(in: delay) { bound.value.nextAttempt() }
    }

    private func nextAttempt() {
        backoff = nil
        guard !finished else { return }
        guard let lease = attempts.nextLease(header: { head.fields.first(name: $0) }) else {
            return giveUp(pendingFailure ?? .noEndpoint)
        }
        pendingFailure = nil
        startAttempt(on: lease)
    }

    private func startAttempt(on lease: Lease) {
        guard let handler else { return lease.finish(.abandoned) }
        let deadline = attempts.started(on: lease.endpoint)
        OutboundDispatch.start(head, connection: connectionOptions, lease: lease, target: attempts.target, responder: self, services: services,
                               logger: logger, deadline: deadline) { current = $0 }
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
            var record = RequestRecord(direction: .outbound, cluster: attempts.target.name,
                                       endpoint: attempts.tried.last)
            record.answered(by: reason)
            record.describe(head, for: metrics)
            lastRecord = record
        }
        flushRecord()
        handler?.respondWithError(reason, keepAlive: false, version: head.version, finished: self)
    }

    private func flushRecord() {
        if finished { attempts.finish() }
        guard var record = lastRecord else { return }
        lastRecord = nil
        record.attempts = attempts.retries + 1
        metrics.record(record)
    }
}
