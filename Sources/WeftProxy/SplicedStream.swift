import Logging
import NIOCore
import WeftHTTP2
import WeftMesh
import WeftObservability
import WeftUpstream

/// One half of a pair of HTTP/2 streams on two connections that carry one
/// exchange: what one half receives, its partner sends. HTTP/2 apps (gRPC,
/// h2c) ride the mesh this way, headers and trailers intact (SPEC §4,
/// `weft-orig-proto: HTTP/2`): app stream ⇄ mesh stream on the sending
/// node, mesh stream ⇄ h2c stream to the app on the receiving node.
///
/// Flow control couples the halves: bytes received on one stream are
/// consumed (reopening its window) only while the partner's send queue is
/// below its watermark, so nothing buffers without bound.
///
/// On the sending node the half that received the request has
/// `attempts`: its partner is then one attempt, which may time out or fail
/// before answering and be replaced by another (`StreamAttempts`), the
/// request replayed into it. Once an answer reaches the caller, the
/// partner is final.
///
/// The halves point at each other; each lets go of its partner when its
/// own stream ends (cleanly, reset, or with its connection), so the pair is
/// freed once both streams are over.
final class SplicedStream: MeshStreamHandler {
    /// Opens the partner stream for a request. Calls back with the partner,
    /// or with nil and the reason when it cannot be opened.
    typealias Opener = (_ request: HTTP2Fields, _ endStream: Bool, _ half: SplicedStream,
                        _ done: @escaping (SplicedStream?, ErrorReason?) -> Void) -> Void

    let connection: MeshConnection
    private(set) var streamID: Int32?
    private var partner: SplicedStream?
    private let opener: Opener?
    /// Rewrites the headers this half passes on (drops or adds mesh headers).
    private let rewriteResponse: (HTTP2Fields) -> HTTP2Fields
    private let logger: Logger
    /// Received before the partner existed; not consumed yet, so bounded by
    /// the stream window.
    private var pending: [(ByteBuffer, Bool)] = []
    private var pendingTrailers: HTTP2Fields?
    private var unconsumed = 0
    private var finished = false
    /// The balancer's claim on the endpoint this half's stream goes to (the
    /// half towards the mesh holds it); finished when the stream ends.
    var lease: Lease?
    /// Whether the endpoint failed the exchange, as far as known.
    /// No verdict until the endpoint answers (or fails).
    private var outcome = LeaseOutcome.abandoned
    /// The half that received the request records what it came to, when
    /// its stream ends; its partner fills in the status.
    private var record: RequestRecord?
    /// The request's attempts, on the half that received it on the
    /// sending node (set by the opener).
    var attempts: StreamAttempts?
    /// The partner has answered this half's caller: it is final.
    private var answered = false
    /// Counts attempts, so that an attempt given up on while it was still
    /// opening is dropped when it opens.
    private var attempt = 0
    private var timer: (task: Scheduled<Void>, deadline: NIODeadline)?
    private var backoff: Scheduled<Void>?

    /// At the edge of the mesh (an app's request), makes the request's
    /// `x-request-id` when it has none (SPEC §6).
    private let makeRequestID: (() -> String)?

    init(connection: MeshConnection, streamID: Int32?, opener: Opener?,
         rewriteResponse: @escaping (HTTP2Fields) -> HTTP2Fields, logger: Logger,
         record: RequestRecord? = nil, makeRequestID: (() -> String)? = nil) {
        self.record = record
        self.makeRequestID = makeRequestID
        self.connection = connection
        self.streamID = streamID
        self.opener = opener
        self.rewriteResponse = rewriteResponse
        self.logger = logger
    }

    /// Wires two halves together (the partner's stream is already open).
    func join(_ other: SplicedStream) {
        partner = other
        other.partner = self
        if let endpoint = other.lease?.endpoint { record?.endpoint = endpoint }
        if let attempts, attempts.retries > 0 {
            // Another attempt: it gets all the app sent so far, including
            // what is pending (whose bytes still await consuming).
            pending.removeAll()
            pendingTrailers = nil
            for (data, end) in attempts.replay ?? [] { other.send(data, endStream: end) }
            if let trailers = attempts.replayTrailers { other.send(trailers: trailers) }
            consumeIfPartnerWritable()
            return
        }
        let queued = pending
        pending.removeAll()
        for (data, end) in queued { forward(data, endStream: end) }
        if let trailers = pendingTrailers {
            pendingTrailers = nil
            other.send(trailers: trailers)
        }
    }

    func opened(streamID: Int32) { self.streamID = streamID }

    // MARK: MeshStreamHandler

    func streamHeaders(_ headers: HTTP2Fields, kind: HTTP2HeadersKind, endStream: Bool) {
        switch kind {
        case .request:
            guard let opener else { return }
            var headers = headers
            if let makeRequestID, !headers.contains(name: "x-request-id") {
                headers.append(HTTP2Header("x-request-id", makeRequestID()))
            }
            record?.describe(headers, for: connection.metrics)
            opener(headers, endStream, self, attemptOpened(attempt))
            armTimer()
        case .response, .informational:
            // The final answer's status, read once.
            let status = kind == .response ? headers.first(name: ":status").flatMap { Int($0) } : nil
            if kind == .response {
                lease?.responded()
                outcome = MeshTranslation.isPeerReportedFailure(headers) ? .failure : LeaseOutcome(status: status ?? 0)
            }
            guard let partner, let partnerStream = partner.streamID else { return }
            if let status, partner.retryInstead(ofAnswer: headers, status: status, from: self) { return }
            partner.answeredByPartner()
            if let status { partner.record?.status = status }
            let fields = rewriteResponse(headers)
            do {
                if kind == .informational {
                    try partner.connection.sendInformational(streamID: partnerStream, headers: fields)
                } else {
                    try partner.connection.respond(streamID: partnerStream, headers: fields, endStream: endStream)
                }
            } catch {
                abort(.internalError)
            }
        case .trailers:
            attempts?.keep(trailers: headers)
            if let partner { partner.send(trailers: headers) } else { pendingTrailers = headers }
        }
    }

    func streamData(_ data: ByteBuffer, endStream: Bool) {
        attempts?.keep(data, endStream: endStream)
        unconsumed += data.readableBytes
        if partner == nil {
            pending.append((data, endStream))
            return
        }
        forward(data, endStream: endStream)
    }

    func streamClosed(_ errorCode: HTTP2ErrorCode) {
        defer { partner = nil }
        guard !finished else { return }
        end(errorCode == .noError || errorCode == .cancel ? .success : .failure)
        // A clean end needs nothing: each half ends its own stream. A reset
        // crosses to the partner, unless the partner makes another attempt.
        guard errorCode != .noError, let partner, !partner.finished else { return }
        if partner.retryInstead(ofReset: errorCode) { return }
        if let partnerStream = partner.streamID {
            partner.end(.success)
            partner.connection.reset(streamID: partnerStream, errorCode: errorCode == .connectError ? .cancel : errorCode)
        }
    }

    func streamWritabilityChanged(_ writable: Bool) {
        // Our send queue drained: the partner may give its peer more window.
        if writable { partner?.consumeIfPartnerWritable() }
    }

    // MARK: forwarding

    private func forward(_ data: ByteBuffer, endStream: Bool) {
        guard let partner else { return }
        record?.bytesIn += data.readableBytes
        partner.record?.bytesOut += data.readableBytes
        partner.send(data, endStream: endStream)
        consumeIfPartnerWritable()
    }

    private func send(_ data: ByteBuffer, endStream: Bool) {
        guard let streamID else { return }
        do { try connection.sendData(streamID: streamID, data, endStream: endStream) } catch { abort(.internalError) }
    }

    private func send(trailers: HTTP2Fields) {
        guard let streamID else { return }
        do { try connection.sendEnd(streamID: streamID, trailers: trailers) } catch { abort(.internalError) }
    }

    private func consumeIfPartnerWritable() {
        guard unconsumed > 0, let streamID, let partner, let partnerStream = partner.streamID,
              partner.connection.isWritable(streamID: partnerStream) else { return }
        connection.consume(streamID: streamID, bytes: unconsumed)
        unconsumed = 0
    }

    /// This half's stream is over: it hears nothing more, and the lease (if
    /// it holds one) is finished with what is known of the outcome.
    private func end(_ result: LeaseOutcome) {
        finished = true
        lease?.finish(result == .failure ? .failure : outcome)
        lease = nil
        timer?.task.cancel()
        timer = nil
        backoff?.cancel()
        backoff = nil
        if let attempts {
            attempts.finish()
            record?.attempts = attempts.retries + 1
        }
        if let record {
            connection.metrics.record(record)
            self.record = nil
        }
    }

    /// The partner could not be opened, or failed in time: answer the
    /// request ourselves.
    /// Answers the caller with a response weft did not make (an
    /// authorization service's denial) instead of opening a partner.
    func answer(_ fields: HTTP2Fields, body: ByteBuffer?) {
        guard let streamID, !finished else { return }
        record?.status = fields.first(name: ":status").flatMap { Int($0) } ?? 0
        record?.bytesOut += body?.readableBytes ?? 0
        try? connection.respond(streamID: streamID, headers: fields, endStream: body == nil)
        if let body { try? connection.sendData(streamID: streamID, body, endStream: true) }
        connection.stopAfterResponse(streamID: streamID)
        end(.success)
    }

    private func failRequest(_ reason: ErrorReason) {
        guard let streamID, !finished else { return }
        logger.debug("HTTP/2 request not carried", metadata: ["reason": "\(reason.rawValue)"])
        record?.answered(by: reason)
        ErrorResponder.respond(reason, on: connection, streamID: streamID)
        connection.stopAfterResponse(streamID: streamID)
        end(.success)
    }

    /// Resets both streams. A reset stream hears nothing more, so both
    /// halves let go of each other here.
    private func abort(_ code: HTTP2ErrorCode) {
        end(.failure)
        if let streamID { connection.reset(streamID: streamID, errorCode: code) }
        if let partner, let partnerStream = partner.streamID, !partner.finished {
            partner.end(.failure)
            partner.connection.reset(streamID: partnerStream, errorCode: code)
        }
        partner?.partner = nil
        partner = nil
    }

    // MARK: attempts (the half that received the request, with `attempts`)

    /// What becomes of attempt number `number` once it is opened, or not.
    private func attemptOpened(_ number: Int) -> (SplicedStream?, ErrorReason?) -> Void {
        { [weak self] other, reason in
            guard let self, !self.finished, number == self.attempt else {
                // Given up on while it opened: dropped unused.
                other?.dropAttempt(.abandoned)
                return
            }
            if let other { self.join(other) } else { self.attemptFailed(reason ?? .upstreamReset) }
        }
    }

    /// The current attempt failed before answering: another attempt, when
    /// the request's attempts allow one, or weft's answer.
    private func attemptFailed(_ reason: ErrorReason) {
        guard !finished else { return }
        if !answered, let delay = attempts?.retryDelay(after: reason) { return retry(after: delay, reason) }
        failRequest(reason)
    }

    /// The partner got an answer that the retry policy lists: it is
    /// dropped, and another attempt follows. False: pass the answer on.
    private func retryInstead(ofAnswer headers: HTTP2Fields, status: Int, from other: SplicedStream) -> Bool {
        guard !answered, let delay = attempts?.retryDelay(afterAnswer: headers, status: status) else { return false }
        other.dropAttempt(.success)
        retry(after: delay, .upstreamReset)
        return true
    }

    /// The partner's stream was reset before it answered: another attempt
    /// when the policy lists that. False: the reset crosses to the caller.
    private func retryInstead(ofReset code: HTTP2ErrorCode) -> Bool {
        let reason: ErrorReason = code == .refusedStream ? .refusedStream : .upstreamReset
        guard !answered, let delay = attempts?.retryDelay(after: reason) else { return false }
        partner = nil
        retry(after: delay, reason)
        return true
    }

    /// Ends an attempt that will not answer the caller: its stream is
    /// cancelled and its lease finished with `result` (what it came to).
    private func dropAttempt(_ result: LeaseOutcome) {
        if let owner = partner, owner.partner === self { owner.partner = nil }
        partner = nil
        guard !finished else { return }
        end(result)
        if let streamID { connection.reset(streamID: streamID, errorCode: .cancel) }
    }

    private func answeredByPartner() {
        guard !answered else { return }
        answered = true
        attempts?.answered()
        timer?.task.cancel()
        timer = nil
    }

    private func retry(after delay: TimeAmount, _ reason: ErrorReason) {
        partner = nil
        attempt += 1
        armTimer()
        guard let loop = connection.eventLoop else { return failRequest(reason) }
        backoff = loop.assumeIsolated().scheduleTask(in: delay) { [weak self] in
            self?.nextAttempt(after: reason)
            return
        }
    }

    private func nextAttempt(after reason: ErrorReason) {
        backoff = nil
        guard !finished, let attempts else { return }
        guard let lease = attempts.nextLease() else { return failRequest(reason) }
        attempts.open(on: lease, done: attemptOpened(attempt))
        armTimer()
    }

    /// Makes sure the timer fires by the current attempt's deadline.
    private func armTimer() {
        guard !finished, !answered, let deadline = attempts?.deadline, let loop = connection.eventLoop else { return }
        if let timer {
            guard deadline < timer.deadline else { return }
            timer.task.cancel()
        }
        let task = loop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            self?.timerFired()
            return
        }
        timer = (task, deadline)
    }

    /// The current attempt (or the wait for the next) is out of time.
    private func timerFired() {
        timer = nil
        guard !finished, !answered, let attempts else { return }
        guard attempts.deadline <= .now() else { return armTimer() }
        attempt += 1
        backoff?.cancel()
        backoff = nil
        partner?.dropAttempt(.failure)
        partner = nil
        attempts.timedOut()
        attemptFailed(.requestTimeout)
    }
}

extension MeshTranslation {
    /// An HTTP/2 app's request on its way into the mesh: headers as the app
    /// sent them (minus any `weft-*` it tried), plus the mesh headers.
    static func meshRequest(fromHTTP2 headers: HTTP2Fields, destination: String) -> HTTP2Fields {
        var fields = headers.filter { name, _ in !name.hasPrefix("weft-") }
        fields.append(name: origProtoHeader, value: OrigProto.Version.http2.rawValue)
        fields.append(name: destinationHeader, value: destination)
        return fields
    }

    /// Mesh headers removed before an HTTP/2 app sees a request or response;
    /// `keepReason` keeps `weft-reason` for the app that made the request.
    static func withoutMeshHeaders(_ headers: HTTP2Fields, keepReason: Bool) -> HTTP2Fields {
        headers.filter { name, _ in !name.hasPrefix("weft-") || (keepReason && name.equals("weft-reason")) }
    }
}
