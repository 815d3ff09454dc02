import Logging
import NIOCore
import NIOHTTP1
import WeftCore
import WeftHTTP2
import WeftMesh
import WeftObservability
import WeftUpstream

/// One app request carried as one mesh stream, and its response carried
/// back: the sending node's half of SPEC §4.
///
/// Flow control couples the two sockets: response bytes are consumed on
/// the stream (reopening the peer's window) only once the app socket took
/// them, and request body reads stop while the stream's queue is full.
final class MeshOutboundExchange: MeshStreamHandler, OutboundExchange {
    /// Strong until the exchange is done, then dropped (`letGo`): the
    /// handler holds the exchange until its response ends, so the two
    /// point at each other only while it runs. (A weak reference gave the
    /// handler a side table, and every retain and release of it the slow
    /// path.) Once done, stream events still on their way find nobody.
    private var handler: (any ExchangeResponder)?
    private let head: HTTP1RequestHead
    /// What the head's `Connection` fields said.
    private let connectionOptions: ConnectionOptions
    private let destination: IPEndpoint
    /// The balancer's claim on `destination`, finished when the exchange ends.
    private var lease: Lease?
    /// How the attempt went for the endpoint, as far as known.
    /// No verdict until the endpoint answers (or fails).
    private var outcome = LeaseOutcome.abandoned
    /// What the request came to, recorded when it ends.
    private var record: RequestRecord
    private let metrics: ProxyMetrics
    private let cluster: String
    private let logger: Logger
    private var connection: MeshConnection?
    private var streamID: Int32?
    /// Body parts that arrived before the stream was open (bounded: reads
    /// are paused until it is).
    private var pendingBody: [ByteBuffer] = []
    /// Held while the request waits for a mesh connection.
    private var pending = PendingSlot()
    private var pendingEnd: HTTPHeaders??
    private var unconsumed = 0
    private var responseStarted = false
    private var keepAlive: Bool
    /// The request has no body (RFC 9112 §6.3): its stream ends with its
    /// HEADERS, so that the receiving node writes no body framing, and a
    /// stream that goes on is one whose body the app must get framed.
    private let headOnly: Bool
    private var done = false
    /// When the response head must have arrived (SPEC §4 `timeouts.request`);
    /// nil once it has, or once the exchange is over. The app connection's
    /// handler owns the timer that checks it.
    private(set) var responseDeadline: NIODeadline?

    init(handler: any ExchangeResponder, head: HTTP1RequestHead, connection: ConnectionOptions, lease: Lease,
         cluster: String, logger: Logger) {
        self.handler = handler
        self.head = head
        self.connectionOptions = connection
        self.destination = lease.endpoint
        self.lease = lease
        self.record = RequestRecord(direction: .outbound, cluster: cluster, endpoint: lease.endpoint)
        record.describe(head, for: handler.metrics)
        self.metrics = handler.metrics
        self.cluster = cluster
        self.logger = logger
        self.keepAlive = connection.isPersistent(version: head.version)
        self.headOnly = !head.declaresBody
    }

    /// Starts the exchange; without a response head by `deadline` (checked
    /// by `timedOut()`) the app gets a 504 and the stream is cancelled.
    func start(pool: MeshConnectionPool, peer: IPEndpoint, deadline: NIODeadline) {
        responseDeadline = deadline
        start(pool: pool, peer: peer)
    }

    /// The response deadline passed: a 504, unless the head came meanwhile.
    func timedOut() {
        guard !responseStarted else { return }
        fail(.requestTimeout)
    }

    private func start(pool: MeshConnectionPool, peer: IPEndpoint) {
        let headers: HTTP2Fields
        do {
            headers = try MeshTranslation.upgradeRequest(method: head.method, uri: head.uri, version: head.version,
                                                         fields: head.fields, destination: destination,
                                                         connection: connectionOptions)
        } catch {
            keepAlive = false
            record.status = ErrorReason.badRequestTarget.status
            record.reason = .badRequestTarget
            // Recorded before the answer, as every ending does (a retry
            // stage records its own when it gives up on the answer).
            done = true
            end()
            handler?.respondWithError(.badRequestTarget, keepAlive: false, version: head.version, finished: self)
            letGo()
            return
        }
        if let ready = pool.readyConnection(to: peer) {
            return open(on: ready, headers: headers, pool: pool, peer: peer, retried: false)
        }
        guard pending.take(for: lease) else { return fail(.overflow) }
        handler?.setReadsPaused(true)
        let bound = NIOLoopBound(self, eventLoop: pool.eventLoop)
        pool.connection(to: peer).whenComplete { result in
            let exchange = bound.value
            exchange.pending.release()
            guard !exchange.done else { return }
            switch result {
            case .success(let connection):
                exchange.open(on: connection, headers: headers, pool: pool, peer: peer, retried: false)
            case .failure:
                exchange.fail(.connectFailure)
            }
        }
    }

    private func open(on connection: MeshConnection, headers: HTTP2Fields, pool: MeshConnectionPool,
                      peer: IPEndpoint, retried: Bool) {
        do {
            streamID = try connection.openStream(headers: headers, endStream: headOnly, handler: self)
            self.connection = connection
        } catch {
            // The connection filled up or went away between the pool's
            // answer and now: one more try on a fresh pick.
            guard !retried else { return fail(.meshOverloaded) }
            let bound = NIOLoopBound(self, eventLoop: pool.eventLoop)
            pool.connection(to: peer).whenComplete { result in
                let exchange = bound.value
                guard !exchange.done else { return }
                switch result {
                case .success(let next): exchange.open(on: next, headers: headers, pool: pool, peer: peer, retried: true)
                case .failure: exchange.fail(.connectFailure)
                }
            }
            return
        }
        let parts = pendingBody
        pendingBody.removeAll()
        for part in parts { sendBody(part) }
        if let end = pendingEnd {
            pendingEnd = nil
            sendEnd(end)
        }
        updateReads()
    }

    // MARK: request, from the app

    func sendBody(_ buffer: ByteBuffer) {
        record.bytesIn += buffer.readableBytes
        guard let connection, let streamID else {
            pendingBody.append(buffer)
            return
        }
        do { try connection.sendData(streamID: streamID, buffer) } catch { return fail(.upstreamReset) }
        updateReads()
    }

    func sendEnd(_ trailers: HTTPHeaders?) {
        guard !headOnly else { return }  // the stream ended with its HEADERS
        guard let connection, let streamID else {
            pendingEnd = .some(trailers)
            return
        }
        let fields = trailers.map(MeshTranslation.trailerFields)
        do { try connection.sendEnd(streamID: streamID, trailers: fields) } catch { fail(.upstreamReset) }
    }

    private func updateReads() {
        guard let connection, let streamID else { return }
        handler?.setReadsPaused(!connection.isWritable(streamID: streamID))
    }

    // MARK: MeshStreamHandler: the response, from the peer

    func streamHeaders(_ headers: HTTP2Fields, kind: HTTP2HeadersKind, endStream: Bool) {
        switch kind {
        case .informational, .response:
            guard let status = try? MeshTranslation.responseStatus(of: headers) else { return fail(.badResponse) }
            var response = AppResponseHead(version: head.version, status: status, peerFields: headers)
            if kind == .informational {
                handler?.writeHead(response)
                return
            }
            responseStarted = true
            responseDeadline = nil
            lease?.responded()
            outcome = MeshTranslation.isPeerReportedFailure(headers)
                ? .failure : LeaseOutcome(status: Int(response.status.code))
            record.status = Int(response.status.code)
            ResponseFraming.frame(&response, for: head, keepAlive: &keepAlive, draining: handler?.draining == true)
            handler?.writeHead(response)
            if endStream { finish(trailers: nil) }
        case .trailers:
            var trailers = HTTPHeaders()
            for header in headers where !header.name.hasPrefix(":") { trailers.add(name: header.name, value: header.value) }
            finish(trailers: trailers)
        case .request:
            break
        }
    }

    func streamData(_ data: ByteBuffer, endStream: Bool) {
        unconsumed += data.readableBytes
        record.bytesOut += data.readableBytes
        if data.readableBytes > 0 { handler?.writeBody(data) }
        appBecameWritable()
        if endStream { finish(trailers: nil) }
    }

    func streamClosed(_ errorCode: HTTP2ErrorCode) {
        guard !done else { return }
        if responseStarted {
            logger.debug("mesh stream broke mid-response", metadata: ["code": "\(errorCode)"])
            done = true
            outcome = .failure
            end()
            handler?.abortResponse()
            letGo()
        } else {
            fail(errorCode == .refusedStream ? .refusedStream : .upstreamReset)
        }
    }

    func streamWritabilityChanged(_ writable: Bool) {
        handler?.setReadsPaused(!writable)
    }

    func streamBatchEnded() {
        handler?.flush()
    }

    // MARK: app side events

    /// Gives the peer's window back for what the app socket has taken.
    func appBecameWritable() {
        guard unconsumed > 0, handler?.appIsWritable == true, let connection, let streamID else { return }
        connection.consume(streamID: streamID, bytes: unconsumed)
        unconsumed = 0
    }

    func appClosed() {
        responseDeadline = nil
        guard !done else { return }
        done = true
        end()
        letGo()
        if let connection, let streamID { connection.reset(streamID: streamID, errorCode: .cancel) }
    }

    // MARK: endings

    private func finish(trailers: HTTPHeaders?) {
        responseDeadline = nil
        guard !done else { return }
        done = true
        end()
        handler?.writeEnd(trailers, close: !keepAlive, exchange: self)
        letGo()
    }

    private func fail(_ reason: ErrorReason) {
        responseDeadline = nil
        guard !done else { return }
        done = true
        if reason.isEndpointFailure { outcome = .failure } else if !responseStarted { outcome = .abandoned }
        if !responseStarted {
            record.status = reason.status
            record.reason = reason
        }
        end()
        if let connection, let streamID { connection.reset(streamID: streamID, errorCode: .cancel) }
        logger.debug("mesh request failed", metadata: ["reason": "\(reason.rawValue)", "dst": "\(destination)", "cluster": "\(cluster)"])
        if responseStarted {
            handler?.abortResponse()
        } else {
            // The request body may still be arriving: close after answering.
            handler?.respondWithError(reason, keepAlive: false, version: head.version, finished: self)
        }
        letGo()
    }

    /// The exchange is over: the balancer hears how the attempt went and
    /// the request is recorded; once.
    private func end() {
        pending.release()
        lease?.finish(outcome)
        lease = nil
        if let handler { handler.record(record) } else { metrics.record(record) }
    }

    /// The exchange is done and has said its last to the handler.
    private func letGo() {
        handler = nil
    }
}
