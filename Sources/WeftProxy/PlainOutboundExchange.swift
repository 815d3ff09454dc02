import Logging
import NIOCore
import NIOHTTP1
import WeftCore
import WeftMesh
import WeftObservability
import WeftUpstream

/// One app request carried to a plain endpoint (one that runs no weft)
/// over a pooled keep-alive HTTP/1.1 connection, and its response carried
/// back (SPEC §5: per-endpoint `mesh`, plain HTTP endpoints).
///
/// Backpressure couples the sockets: request body reads stop while the
/// endpoint's socket is full, and the response is read only while the app
/// socket takes it.
final class PlainOutboundExchange: OutboundExchange, HTTP1DispatchOwner {
    /// Weak: the app connection may be gone while the upstream still talks.
    private weak var handler: (any ExchangeResponder)?
    private let head: HTTP1RequestHead
    /// What the head's `Connection` fields said.
    private let connectionOptions: ConnectionOptions
    private let target: TargetKey
    private let logger: Logger
    private let metrics: ProxyMetrics
    private var lease: Lease?
    /// No verdict until the endpoint answers (or fails).
    private var outcome = LeaseOutcome.abandoned
    private var record: RequestRecord
    /// The request's way to the endpoint.
    private var dispatch = HTTP1Dispatch()
    /// Held while the request waits for a connection.
    private var pending = PendingSlot()
    private var pool: HTTP1UpstreamPool?
    private var connectTimeout = TimeAmount.seconds(5)
    private var responseStarted = false
    private var keepAlive: Bool
    private var done = false
    private(set) var responseDeadline: NIODeadline?

    init(handler: any ExchangeResponder, head: HTTP1RequestHead, connection: ConnectionOptions, lease: Lease,
         cluster: String, logger: Logger) {
        self.handler = handler
        self.head = head
        self.connectionOptions = connection
        self.target = TargetKey(endpoint: lease.endpoint)
        self.lease = lease
        self.logger = logger
        self.metrics = handler.metrics
        self.keepAlive = connection.isPersistent(version: head.version)
        self.record = RequestRecord(direction: .outbound, cluster: cluster, endpoint: lease.endpoint)
        record.describe(head, for: metrics)
    }

    /// Sends the request on an idle pooled connection, or a new one.
    func start(pool: HTTP1UpstreamPool, connectTimeout: TimeAmount, deadline: NIODeadline) {
        responseDeadline = deadline
        self.pool = pool
        self.connectTimeout = connectTimeout
        let relayed = MeshTranslation.relayRequest(head.head, endpoint: target.endpoint, connection: connectionOptions)
        if !dispatch.start(relayed, to: target, pool: pool, receiver: self) {
            guard pending.take(for: lease) else { return fail(.overflow) }
            handler?.setReadsPaused(true)
            dispatch.waiting = HTTP1Dispatch.connect(to: target, pool: pool, connectTimeout: connectTimeout,
                                                     metrics: metrics, logger: logger, owner: self)
        } else {
            handler?.setReadsPaused(!dispatch.isWritable)
        }
    }

    func dispatchConnected(_ connection: HTTP1UpstreamConnection) {
        pending.release()
        guard !done else { return connection.abandon() }
        dispatch.attach(connection, receiver: self)
        handler?.setReadsPaused(!dispatch.isWritable)
    }

    func dispatchFailed(_ reason: ErrorReason) {
        pending.release()
        fail(reason)
    }

    // MARK: request, from the app

    func sendBody(_ buffer: ByteBuffer) {
        record.bytesIn += buffer.readableBytes
        deliver(.body(.byteBuffer(buffer)))
    }

    func sendEnd(_ trailers: HTTPHeaders?) {
        deliver(.end(trailers))
    }

    private func deliver(_ part: HTTPClientRequestPart) {
        guard !done else { return }  // answered already: the connection closes
        dispatch.send(part)
        if dispatch.connection != nil { handler?.setReadsPaused(!dispatch.isWritable) }
    }

    // MARK: HTTP1ResponseReceiver: the response, from the endpoint

    func receiveHead(_ parsed: HTTP1ResponseHead) {
        guard !done else { return }
        let response = parsed.head
        dispatch.responded()
        var relayed = AppResponseHead(MeshTranslation.relayResponse(response, version: head.version,
                                                                    connection: parsed.connection))
        if response.status.code < 200 {
            // 100 Continue and friends go through as they are, unflushed.
            handler?.writeHead(relayed)
            return
        }
        responseStarted = true
        responseDeadline = nil
        lease?.responded()
        outcome = LeaseOutcome(status: Int(response.status.code))
        record.status = Int(response.status.code)
        ResponseFraming.frame(&relayed, for: head, keepAlive: &keepAlive, draining: handler?.draining == true)
        handler?.writeHead(relayed)
    }

    func receiveBody(_ buffer: ByteBuffer) {
        guard !done else { return }
        record.bytesOut += buffer.readableBytes
        handler?.writeBody(buffer)
    }

    func receiveBatchEnded() {
        guard !done else { return }
        handler?.flush()
        // The app socket is full: stop reading the endpoint until it drains.
        if handler?.appIsWritable == false { dispatch.setReading(false) }
    }

    func receiveEnd(_ trailers: HTTPHeaders?) {
        guard !done else { return }
        done = true
        dispatch.finished()
        end()
        handler?.writeEnd(trailers, close: !keepAlive, exchange: self)
    }

    func receiveFailure(_ error: Error) {
        let malformed = HTTP1UpstreamError.isMalformedResponse(error)
        if !done, !responseStarted, !malformed, let pool, dispatch.prepareReplay() {
            metrics.countReplay()
            logger.debug("keep-alive connection closed under the request: sending it again",
                         metadata: ["dst": "\(target.endpoint)"])
            dispatch.waiting = HTTP1Dispatch.connect(to: target, pool: pool, connectTimeout: connectTimeout,
                                                     metrics: metrics, logger: logger, fresh: true, owner: self)
            return
        }
        dispatch.finished()
        guard !done else { return }
        if responseStarted {
            logger.debug("plain endpoint broke mid-response", metadata: ["error": "\(error)"])
            done = true
            outcome = .failure
            end()
            handler?.abortResponse()
        } else {
            fail(malformed ? .badResponse : .upstreamReset)
        }
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        handler?.setReadsPaused(!writable)
    }

    // MARK: app side events

    func appBecameWritable() {
        dispatch.setReading(true)
    }

    func timedOut() {
        guard !responseStarted else { return }
        fail(.requestTimeout)
    }

    func appClosed() {
        responseDeadline = nil
        guard !done else { return }
        done = true
        dispatch.abandon()
        end()
    }

    // MARK: endings

    private func fail(_ reason: ErrorReason) {
        responseDeadline = nil
        guard !done else { return }
        done = true
        dispatch.abandon()
        if reason.isEndpointFailure { outcome = .failure } else if !responseStarted { outcome = .abandoned }
        logger.debug("plain request failed", metadata: ["reason": "\(reason.rawValue)", "dst": "\(target.endpoint)"])
        if responseStarted {
            end()
            handler?.abortResponse()
        } else {
            record.status = reason.status
            record.reason = reason
            end()
            // The request body may still be arriving: close after answering.
            handler?.respondWithError(reason, keepAlive: false, version: head.version, finished: self)
        }
    }

    /// The balancer hears how the attempt went and the request is
    /// recorded; once.
    private func end() {
        pending.release()
        responseDeadline = nil
        lease?.finish(outcome)
        lease = nil
        if let handler { handler.record(record) } else { metrics.record(record) }
    }
}
