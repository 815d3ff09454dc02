import Logging
import NIOCore
import NIOHTTP1
import WeftObservability

/// The exchange an `HTTP1Dispatch` works for: hears the response, and
/// whether a connection could be had when none was idle.
protocol HTTP1DispatchOwner: HTTP1ResponseReceiver {
    /// A new connection is open: call `HTTP1Dispatch.attach` with it.
    func dispatchConnected(_ connection: HTTP1UpstreamConnection)
    /// No connection could be had (the target is unreachable, or the pool
    /// is at its limit): answer with `reason`.
    func dispatchFailed(_ reason: ErrorReason)
}

/// The pipeline's HTTP/1.1 dispatch stage: one request over a pooled
/// keep-alive connection, on the sending node to a plain endpoint and on
/// the receiving node to the local app. Takes an idle connection when
/// there is one, else opens one, holding the request's parts meanwhile
/// (their source is paused, so that is at most a read's worth):
///
///     if !dispatch.start(head, to: target, pool: pool, receiver: self) {
///         HTTP1Dispatch.connect(to: target, pool: pool, ..., owner: self)
///     }
///
/// A value inside its exchange, so a request costs no extra object.
struct HTTP1Dispatch {
    private(set) var connection: HTTP1UpstreamConnection?
    /// The request's place in the pool's queue while a connection is
    /// opened for it.
    var waiting: HTTP1UpstreamPool.Waiter?
    /// The head, until a connection takes it.
    private var head: AppRequestHead?
    private var held: [HTTPClientRequestPart] = []
    /// A request sent on a reused keep-alive connection, kept (up to
    /// `replayLimit` of body) until its response starts: if the upstream
    /// closes that connection first, it closed an idle connection as the
    /// request arrived (the "503 UC" race), and the request goes once more
    /// on a fresh connection.
    private var sent: SentRequest?
    static let replayLimit = 64 * 1024

    /// What a replay sends again. A named type, not a tuple: the compiler
    /// copies and destroys a tuple of these through its runtime metadata,
    /// several times the cost, and `sent` is set and cleared every request.
    private struct SentRequest {
        var head: AppRequestHead
        var body: [ByteBuffer] = []
        var bytes = 0
        /// The end, once sent (with its trailers, if any).
        var end: HTTPHeaders??
    }

    /// Sends `head` on an idle pooled connection to `target` if there is
    /// one (true); else holds it and gives false: then call `connect`.
    mutating func start(_ head: HTTPRequestHead, to target: TargetKey, pool: HTTP1UpstreamPool,
                        receiver: HTTP1ResponseReceiver) -> Bool {
        start(AppRequestHead(head), to: target, pool: pool, receiver: receiver)
    }

    mutating func start(_ head: AppRequestHead, to target: TargetKey, pool: HTTP1UpstreamPool,
                        receiver: HTTP1ResponseReceiver) -> Bool {
        guard let idle = pool.idleConnection(target) else {
            self.head = head
            return false
        }
        run(head, on: idle, receiver: receiver)
        return true
    }

    /// Opens a new connection to `target` and tells `owner` (on the pool's
    /// loop, perhaps before returning) `dispatchConnected` or
    /// `dispatchFailed`. Static, so that the owner's dispatch is free to
    /// change when it is told.
    /// Returns the request's place in the pool's queue (nil when the owner
    /// was already told): keep it in `waiting`, so that `abandon` leaves
    /// the queue. `fresh`: a replay, which must not go out on a reused
    /// connection again.
    @discardableResult
    static func connect<Owner: HTTP1DispatchOwner>(to target: TargetKey, pool: HTTP1UpstreamPool,
                                                   connectTimeout: TimeAmount, metrics: ProxyMetrics, logger: Logger,
                                                   fresh: Bool = false, owner: Owner) -> HTTP1UpstreamPool.Waiter? {
        let bound = NIOLoopBound(owner, eventLoop: pool.eventLoop)
        return pool.acquire(target, connectTimeout: connectTimeout, fresh: fresh) { result in
            switch result {
            case .success(let connection):
                bound.value.dispatchConnected(connection)
            case .failure(let error):
                if (error as? HTTP1UpstreamError) == .poolExhausted {
                    metrics.limitHit(.upstreamPool)
                    logger.warning("upstream pool full", metadata: ["target": "\(target.endpoint)"])
                } else {
                    logger.debug("upstream unreachable", metadata: ["target": "\(target.endpoint)", "error": "\(error)"])
                }
                bound.value.dispatchFailed(.connectFailure)
            }
        }
    }

    /// Starts the held request on `connection` (one that just opened) and
    /// sends what was held with it.
    mutating func attach(_ connection: HTTP1UpstreamConnection, receiver: HTTP1ResponseReceiver) {
        waiting = nil
        // Moved out, not copied: the head is a large value.
        guard let head = head.take() else { return connection.abandon() }
        run(head, on: connection, receiver: receiver)
    }

    /// Writes `head` and any held body parts to `connection`, keeping the
    /// head for a replay when the connection is a reused one.
    private mutating func run(_ head: AppRequestHead, on connection: HTTP1UpstreamConnection,
                              receiver: HTTP1ResponseReceiver) {
        self.connection = connection
        connection.start(head, receiver: receiver)
        if connection.reused { sent = SentRequest(head: head) }
        let parts = held
        held.removeAll()
        for part in parts { write(part, to: connection) }
        connection.flush()
    }

    /// Sends a request part now, or holds it until the connection is there.
    mutating func send(_ part: HTTPClientRequestPart) {
        guard let connection else { return held.append(part) }
        write(part, to: connection)
        connection.flush()
    }

    /// Whether the connection can take more of the request now (false
    /// while there is none yet).
    var isWritable: Bool { connection?.isWritable ?? false }

    /// Stops or resumes reading the response (backpressure from whoever
    /// the response goes to).
    func setReading(_ reading: Bool) {
        connection?.setReading(reading)
    }

    /// The response began: the request reached the upstream; no replay.
    mutating func responded() {
        sent = nil
    }

    /// The connection failed before any response: when it was a reused one
    /// that the upstream closed under the request, gets ready to send the
    /// request again (true; then call `connect`). Once per request: the
    /// next connection is a fresh one.
    mutating func prepareReplay() -> Bool {
        guard let request = sent else { return false }
        sent = nil
        connection = nil
        head = request.head
        held = request.body.map { .body(.byteBuffer($0)) }
        if let end = request.end { held.append(.end(end)) }
        return true
    }

    /// The response ended: the connection goes back to the pool by itself.
    mutating func finished() {
        connection = nil
        sent = nil
    }

    /// The exchange broke off: the connection may be mid-exchange, so it
    /// is closed rather than reused. Nothing held is sent.
    mutating func abandon() {
        waiting?.cancel()
        waiting = nil
        connection?.abandon()
        connection = nil
        head = nil
        held.removeAll()
        sent = nil
    }

    private mutating func write(_ part: HTTPClientRequestPart, to connection: HTTP1UpstreamConnection) {
        switch part {
        case .head: break
        case .body(.byteBuffer(let buffer)):
            if var request = sent {
                sent = nil  // no copy of the array while it grows
                request.bytes += buffer.readableBytes
                if request.bytes <= Self.replayLimit {
                    request.body.append(buffer)
                    sent = request
                }
            }
            connection.sendBody(buffer)
        case .body: break
        case .end(let trailers):
            sent?.end = .some(trailers)
            connection.sendEnd(trailers)
        }
    }
}
