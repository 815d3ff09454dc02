import Logging
import NIOCore
import NIOHTTP1
import WeftConfig
import WeftCore
import WeftHTTP2
import WeftMesh
import WeftObservability

/// One request stream arriving on the mesh listener, delivered to the
/// local app over an HTTP/1.1 keep-alive connection (SPEC §4, receiver).
///
/// Flow control runs end to end: request bytes are consumed (reopening the
/// sender's window) only once written to the app, and the app's response
/// is read only while the stream's send queue is below its watermark.
final class MeshInboundStream: MeshStreamHandler, HTTP1DispatchOwner {
    private let connection: MeshConnection
    private let streamID: Int32
    private let context: MeshListenerContext
    /// The request's way to the app. Parts that arrive before its
    /// connection is ready are held there; their size is bounded by the
    /// stream window, since they are not consumed yet.
    private var dispatch = HTTP1Dispatch()
    private var unconsumed = 0
    private var requestEnded = false
    private var responseStarted = false
    private var finished = false
    /// The request is HTTP/1.0 with no length, and its stream did not end
    /// with its HEADERS: a body, if bytes come, has no framing the app
    /// reads (HTTP/1.0 has no chunks), so it is refused, never written.
    private var unframedBody = false
    /// The `ext_authz` call for this request, while it runs.
    private var authzCheck: ExtAuthzCheck?
    /// What the request came to, recorded once when the stream is done.
    private var record = RequestRecord(direction: .inbound)
    private var recorded = false

    init(connection: MeshConnection, streamID: Int32, context: MeshListenerContext) {
        self.connection = connection
        self.streamID = streamID
        self.context = context
        record.peerIdentity = connection.peerIdentity
    }

    // MARK: MeshStreamHandler

    func streamHeaders(_ headers: HTTP2Fields, kind: HTTP2HeadersKind, endStream: Bool) {
        switch kind {
        case .request:
            startRequest(headers, endStream: endStream)
        case .trailers:
            var trailers = HTTPHeaders()
            for header in headers where !header.name.hasPrefix(":") { trailers.add(name: header.name, value: header.value) }
            deliver(.end(trailers))
        case .response, .informational:
            connection.reset(streamID: streamID, errorCode: .protocolError)
        }
    }

    func streamData(_ data: ByteBuffer, endStream: Bool) {
        if unframedBody, data.readableBytes > 0, !finished {
            dispatch.abandon()
            return fail(.badMeshRequest, detail: "a body of no length for an HTTP/1.0 app")
        }
        unconsumed += data.readableBytes
        record.bytesIn += data.readableBytes
        if data.readableBytes > 0 { deliver(.body(.byteBuffer(data))) }
        if endStream { deliver(.end(nil)) }
    }

    func streamClosed(_ errorCode: HTTP2ErrorCode) {
        authzCheck?.cancel()
        authzCheck = nil
        guard !finished else { return complete() }
        finished = true
        complete()
        // The sender gave up (reset or lost connection): the app may be
        // mid-exchange, so that connection cannot be reused.
        dispatch.abandon()
    }

    func streamWritabilityChanged(_ writable: Bool) {
        dispatch.setReading(writable)
    }

    // MARK: request

    private func startRequest(_ headers: HTTP2Fields, endStream: Bool) {
        if endStream { requestEnded = true }
        record.describe(headers, for: context.metrics)
        let request: DowngradedRequest
        do {
            request = try MeshTranslation.downgradeRequest(headers)
        } catch {
            fail(.badMeshRequest, detail: "\(error)")
            return
        }
        let target: IPEndpoint
        switch context.localTarget(for: request.destination, from: connection.peerIdentity) {
        case .success(let local): target = local
        case .failure(let reason): return fail(reason, detail: "\(request.destination)")
        }
        record.endpoint = target
        let key = TargetKey(endpoint: target)
        unframedBody = !endStream && request.version == .http1_0 && !request.peerFields.contains(name: "content-length")
        guard let settings = context.extAuthz, let services = context.services else {
            return send(AppRequestHead(request, bodyFollows: !endStream), to: key, endStream: endStream)
        }
        // The body that comes meanwhile is held, unconsumed (so bounded by
        // the stream window), until the verdict.
        if endStream { deliver(.end(nil)) }
        let head = request.head
        authzCheck = ExtAuthzCheck.start(for: head, peer: connection.peerIdentity, settings: settings,
                                         services: services, meshPort: context.meshPort,
                                         logger: context.logger) { [weak self] verdict in
            self?.authorized(verdict, head, bodyFollows: !endStream, to: key, settings: settings)
        }
    }

    /// The delivery stage: the request to the local app.
    private func send(_ head: AppRequestHead, to key: TargetKey, endStream: Bool) {
        let attached = dispatch.start(head, to: key, pool: context.pool, receiver: self)
        if endStream { deliver(.end(nil)) }
        if !attached {
            dispatch.waiting = HTTP1Dispatch.connect(to: key, pool: context.pool, connectTimeout: context.connectTimeout,
                                                     metrics: context.metrics, logger: context.logger, owner: self)
        }
    }

    /// The `ext_authz` verdict: deliver (with the service's headers in
    /// place of any the caller sent under those names), or answer.
    private func authorized(_ verdict: ExtAuthzCheck.Verdict, _ head: HTTPRequestHead, bodyFollows: Bool,
                            to key: TargetKey, settings: ExtAuthzSettings) {
        authzCheck = nil
        guard !finished else { return }
        switch verdict {
        case .allow(let fields):
            // The end (if it came) is held in the dispatch already.
            send(AppRequestHead(ExtAuthzCheck.forwarding(fields, into: head, settings: settings),
                                bodyFollows: bodyFollows), to: key, endStream: false)
        case .deny(let fields, let body):
            answerWith(fields, body: body)
        case .refuse(let reason):
            fail(reason, detail: "the authorization call")
        }
    }

    /// Answers the caller with the authorization service's own response.
    private func answerWith(_ fields: HTTP2Fields, body: ByteBuffer?) {
        responseStarted = true
        record.status = fields.first(name: ":status").flatMap { Int($0) } ?? 0
        dispatch.abandon()
        do {
            try connection.respond(streamID: streamID, headers: fields, endStream: body == nil)
            if let body {
                record.bytesOut += body.readableBytes
                try connection.sendData(streamID: streamID, body, endStream: true)
            }
        } catch {
            return abort()
        }
        if !requestEnded { connection.stopAfterResponse(streamID: streamID) }
        finished = true
        complete()
    }

    func dispatchConnected(_ connection: HTTP1UpstreamConnection) {
        guard !finished else { return connection.abandon() }
        dispatch.attach(connection, receiver: self)
        consumeIfWritable()
    }

    func dispatchFailed(_ reason: ErrorReason) {
        fail(reason, detail: "local app")
    }

    private func deliver(_ part: HTTPClientRequestPart) {
        if case .end = part { requestEnded = true }
        guard !finished else { return }
        dispatch.send(part)
        consumeIfWritable()
    }

    /// Reopens the sender's window for what the app socket has taken.
    private func consumeIfWritable() {
        guard unconsumed > 0, dispatch.isWritable else { return }
        connection.consume(streamID: streamID, bytes: unconsumed)
        unconsumed = 0
    }

    // MARK: HTTP1ResponseReceiver

    func receiveHead(_ head: HTTP1ResponseHead) {
        guard !finished else { return }
        dispatch.responded()
        let fields = MeshTranslation.upgradeResponse(status: head.status, fields: head.fields,
                                                     connection: head.connection)
        guard MeshTranslation.fitsPeerLimits(fields) else {
            // The peer would refuse it; the rest of it is not read either.
            dispatch.abandon()
            return fail(.badResponse, detail: "a response head no peer takes (\(fields.count) fields, or a length past 2^63 - 1)")
        }
        if head.status.code < 200 {
            try? connection.sendInformational(streamID: streamID, headers: fields)
            return
        }
        responseStarted = true
        record.status = Int(head.status.code)
        do {
            try connection.respond(streamID: streamID, headers: fields, endStream: false)
        } catch {
            abort()
        }
    }

    func receiveBody(_ buffer: ByteBuffer) {
        guard !finished else { return }
        record.bytesOut += buffer.readableBytes
        do { try connection.sendData(streamID: streamID, buffer) } catch { abort() }
    }

    func receiveEnd(_ trailers: HTTPHeaders?) {
        guard !finished else { return }
        let fields = trailers.map(MeshTranslation.trailerFields) ?? []
        do { try connection.sendEnd(streamID: streamID, trailers: fields) } catch { abort() }
        dispatch.finished()
        finishIfClean()
    }

    func receiveFailure(_ error: Error) {
        guard !finished else { return }
        let malformed = HTTP1UpstreamError.isMalformedResponse(error)
        if !responseStarted, !malformed, let target = record.endpoint, dispatch.prepareReplay() {
            context.metrics.countReplay()
            context.logger.debug("keep-alive connection closed under the request: sending it again",
                                 metadata: ["target": "\(target)"])
            dispatch.waiting = HTTP1Dispatch.connect(to: TargetKey(endpoint: target), pool: context.pool,
                                                     connectTimeout: context.connectTimeout, metrics: context.metrics,
                                                     logger: context.logger, fresh: true, owner: self)
            return
        }
        dispatch.finished()
        if responseStarted {
            abort()
        } else {
            fail(malformed ? .badResponse : .upstreamReset, detail: "\(error)")
        }
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        if writable { consumeIfWritable() }
    }

    // MARK: endings

    /// Answers the sender with an error response that says why.
    private func fail(_ reason: ErrorReason, detail: String) {
        guard !finished else { return }
        guard !responseStarted else { return abort() }
        responseStarted = true
        record.status = reason.status
        record.reason = reason
        context.logger.debug("mesh request failed", metadata: ["reason": "\(reason.rawValue)", "detail": "\(detail)"])
        ErrorResponder.respond(reason, on: connection, streamID: streamID)
        // Nobody will read the rest of the request body: the sender is told
        // to stop once the answer is out.
        if !requestEnded { connection.stopAfterResponse(streamID: streamID) }
        finished = true
        complete()
    }

    private func abort() {
        finished = true
        complete()
        dispatch.abandon()
        connection.reset(streamID: streamID, errorCode: .internalError)
    }

    private func finishIfClean() {
        if requestEnded {
            finished = true
            complete()
        }
    }

    /// Records the request, once, however it ended.
    private func complete() {
        guard !recorded else { return }
        recorded = true
        context.metrics.record(record)
    }
}
