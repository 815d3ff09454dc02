import Logging
import NIOCore
import NIOHTTP1
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
final class MeshInboundStream: MeshStreamHandler, HTTP1ResponseReceiver {
    private let connection: MeshConnection
    private let streamID: Int32
    private let context: MeshListenerContext
    private var upstream: HTTP1UpstreamConnection?
    /// Request parts that arrived before the app connection was ready; their
    /// size is bounded by the stream window, since they are not consumed yet.
    private var pending: [HTTPClientRequestPart] = []
    private var unconsumed = 0
    private var requestEnded = false
    private var responseStarted = false
    private var finished = false
    /// What the request came to, recorded once when the stream is done.
    private var record = RequestRecord(direction: .inbound)
    private var recorded = false

    init(connection: MeshConnection, streamID: Int32, context: MeshListenerContext) {
        self.connection = connection
        self.streamID = streamID
        self.context = context
    }

    // MARK: MeshStreamHandler

    func streamHeaders(_ headers: [HTTP2Header], kind: HTTP2HeadersKind, endStream: Bool) {
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
        unconsumed += data.readableBytes
        record.bytesIn += data.readableBytes
        if data.readableBytes > 0 { deliver(.body(.byteBuffer(data))) }
        if endStream { deliver(.end(nil)) }
    }

    func streamClosed(_ errorCode: HTTP2ErrorCode) {
        guard !finished else { return complete() }
        finished = true
        complete()
        // The sender gave up (reset or lost connection): the app may be
        // mid-exchange, so that connection cannot be reused.
        upstream?.abandon()
        upstream = nil
    }

    func streamWritabilityChanged(_ writable: Bool) {
        upstream?.setReading(writable)
    }

    // MARK: request

    private func startRequest(_ headers: [HTTP2Header], endStream: Bool) {
        if endStream { requestEnded = true }
        let request: DowngradedRequest
        do {
            request = try MeshTranslation.downgradeRequest(headers)
        } catch {
            fail(.badMeshRequest, detail: "\(error)")
            return
        }
        let target: IPEndpoint
        switch context.localTarget(for: request.destination) {
        case .success(let local): target = local
        case .failure(let reason): return fail(reason, detail: "\(request.destination)")
        }
        record.endpoint = target
        if let idle = context.pool.idleConnection(TargetKey(endpoint: target)) {
            return attach(idle, head: request.head)
        }
        let bound = NIOLoopBound(self, eventLoop: context.pool.eventLoop)
        let head = request.head
        context.pool.acquire(TargetKey(endpoint: target), connectTimeout: context.connectTimeout).whenComplete { result in
            let stream = bound.value
            switch result {
            case .success(let upstream):
                stream.attach(upstream, head: head)
            case .failure(let error):
                if (error as? HTTP1UpstreamError) == .poolExhausted { stream.context.metrics.limitHit(.upstreamPool) }
                stream.context.logger.debug("local app unreachable", metadata: ["target": "\(target)", "error": "\(error)"])
                stream.fail(.connectFailure, detail: "\(target)")
            }
        }
    }

    private func attach(_ upstream: HTTP1UpstreamConnection, head: HTTPRequestHead) {
        guard !finished else {
            upstream.abandon()
            return
        }
        self.upstream = upstream
        upstream.start(head, receiver: self)
        let parts = pending
        pending.removeAll()
        for part in parts { write(part, to: upstream) }
        if requestEnded && parts.isEmpty { upstream.sendEnd(nil) }
        upstream.flush()
        consumeIfWritable()
    }

    private func deliver(_ part: HTTPClientRequestPart) {
        if case .end = part { requestEnded = true }
        guard let upstream else {
            pending.append(part)
            return
        }
        write(part, to: upstream)
        upstream.flush()
        consumeIfWritable()
    }

    private func write(_ part: HTTPClientRequestPart, to upstream: HTTP1UpstreamConnection) {
        switch part {
        case .head: break
        case .body(.byteBuffer(let buffer)): upstream.sendBody(buffer)
        case .body: break
        case .end(let trailers): upstream.sendEnd(trailers)
        }
    }

    /// Reopens the sender's window for what the app socket has taken.
    private func consumeIfWritable() {
        guard unconsumed > 0, upstream?.isWritable ?? false else { return }
        connection.consume(streamID: streamID, bytes: unconsumed)
        unconsumed = 0
    }

    // MARK: HTTP1ResponseReceiver

    func receiveHead(_ head: HTTPResponseHead) {
        guard !finished else { return }
        let fields = MeshTranslation.upgradeResponse(head)
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
        upstream = nil
        finishIfClean()
    }

    func receiveFailure(_ error: Error) {
        guard !finished else { return }
        upstream = nil
        if responseStarted {
            abort()
        } else {
            fail(.upstreamReset, detail: "\(error)")
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
        upstream?.abandon()
        upstream = nil
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
