import Logging
import NIOCore
import NIOHTTP1
import WeftCore
import WeftHTTP2
import WeftMesh
import WeftObservability
import WeftUpstream

/// Serves one app connection speaking HTTP/1.x to a meshed cluster: each
/// request becomes a stream on the pooled mesh connection to the chosen
/// endpoint's node (SPEC §4, the upgrade side).
///
/// The connection's only HTTP handler: it reads the app's bytes with
/// `HTTP1RequestParser` and writes responses with `HTTP1ResponseOutput`,
/// with no codec handlers between (each would cost every part a trip
/// through the pipeline). It serves one request at a time: a pipelined
/// request waits (with reads of the app socket stopped) until the response
/// before it has ended. Reads also stop while the current stream cannot
/// take more body, or while it is being set up.
///
/// Bytes that are not HTTP/1.x are answered `400` (`431` for a head past
/// the parser's limit) after the responses to the requests before them,
/// and the connection closes; a request that breaks after its head was
/// served stops whatever carries it (``requestBroken``).
///
/// NIO's `HTTPServerPipelineHandler` would do the waiting too, but it stops
/// reading after every request, which costs two `epoll_ctl` calls per
/// request on a keep-alive connection that never pipelines.
final class OutboundHTTPHandler: ChannelDuplexHandler, RemovableChannelHandler, ExchangeResponder {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let route: MeshRoute
    private let services: LoopServices
    let metrics: ProxyMetrics
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var exchange: (any OutboundExchange)?
    /// The request timeout's one timer for this connection, not one per
    /// request: each exchange only records its deadline, and the timer,
    /// when it fires, re-arms itself for the exchange now in flight.
    private var deadlineTimer: Scheduled<Void>?
    /// Parts of pipelined requests, in order, waiting for the response
    /// before them to end. Reads stop while any wait, so this holds at
    /// most what one read of the socket decoded to.
    private var waiting = CircularBuffer<HTTP1RequestParser.Event>(initialCapacity: 0)
    private var parser = HTTP1RequestParser()
    private var output: HTTP1ResponseOutput
    /// The channel's allocator, taken once (asking the channel each time
    /// goes through its pipeline).
    private var allocator = ByteBufferAllocator()
    /// The connection's `timeouts.idle`, noted here for every read and
    /// write (handed to an `IdleWatch` when a tunnel takes over).
    private let idle: IdleClock?
    /// Bytes were written to the app since the last flush: a flush with
    /// none written is skipped (the exchange asks for one after each mesh
    /// read, and the response's end flushes already).
    private var unflushed = false
    /// The app's bytes stopped being HTTP (answered, or to be): the rest
    /// is not read.
    private var unreadable = false
    /// A request's head was received and its end was not.
    private var receivingRequest = false
    /// Inside `channelRead`'s loop: a close now is weft's own doing (an
    /// answer that closes), not the app cutting a request short.
    private var reading = false
    /// The request being answered is a HEAD: its response has no body.
    private var answeringHEAD = false
    /// Bytes after a tunnelling request, for the tunnel that replaces this
    /// handler.
    private var tunnelBytes: ByteBuffer?
    /// The app half-closed: close once every request it sent is answered.
    private var appDoneSending = false
    /// The current stream cannot take more body (or is not open yet).
    private var streamFull = false
    private var readHeld = false
    /// The connection is becoming a tunnel: the HTTP handlers are leaving.
    private var tunnelling = false
    /// Reads stop, too, once a tunnelling request was read (the bytes after
    /// it wait for the tunnel) and once an answer closes the connection.
    private var readsPaused: Bool {
        streamFull || upgrade != nil || tunnelling || !waiting.isEmpty || parser.isTunnelling || closing
    }
    /// An answer that closes the connection went out: nothing after it is
    /// served (a request queued behind it must not reach an upstream).
    private var closing = false
    /// The node is draining, or the app has finished sending: the response
    /// in flight says `Connection: close` and the connection closes after it.
    private(set) var draining = false

    /// Close now if idle, else after the response in flight.
    func drain() {
        draining = true
        if exchange == nil, upgrade == nil { context?.close(promise: nil) }
    }

    /// An HTTP/1.1 Upgrade (WebSocket) or CONNECT request waiting for its
    /// end, after which the connection becomes a CONNECT tunnel (holding
    /// the lease).
    private var upgrade: (head: HTTP1RequestHead, target: RequestTarget, lease: Lease)?

    init(route: MeshRoute, services: LoopServices, metrics: ProxyMetrics, logger: Logger, idle: IdleClock? = nil) {
        self.idle = idle
        self.route = route
        self.services = services
        output = HTTP1ResponseOutput(buffers: services.headBuffers)
        self.metrics = metrics
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        allocator = context.channel.allocator
    }
    func handlerRemoved(context: ChannelHandlerContext) {
        deadlineTimer?.cancel()
        deadlineTimer = nil
        self.context = nil
        if let tunnelBytes, tunnelBytes.readableBytes > 0 {
            self.tunnelBytes = nil
            context.fireChannelRead(NIOAny(tunnelBytes))
            // The tunnel's relay flushes what it read at a read's end.
            context.fireChannelReadComplete()
        }
    }

    // MARK: requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        idle?.note()
        var bytes = unwrapInboundIn(data)
        if parser.isTunnelling { return keepForTunnel(&bytes) }
        guard !unreadable, !closing else { return }
        reading = true
        defer { reading = false }
        do {
            while !closing, let part = try parser.next(&bytes) {
                // Kept before the request's end is served: serving it may
                // put the tunnel in this handler's place at once.
                if parser.isTunnelling { keepForTunnel(&bytes) }
                receive(part, context: context)
            }
        } catch {
            requestUnreadable(error, context: context)
        }
    }

    /// Parts are moved, not copied, down to `serve`: a head's fields are
    /// then only the head's, and adding one does not copy them.
    private func receive(_ part: consuming HTTP1RequestParser.Event, context: ChannelHandlerContext) {
        switch part {
        case .head: receivingRequest = true
        case .end: receivingRequest = false
        case .body: break
        }
        if waiting.isEmpty && canServe(part) {
            serve(part, context: context)
        } else {
            waiting.append(part)
        }
    }

    private func keepForTunnel(_ bytes: inout ByteBuffer) {
        guard bytes.readableBytes > 0 else { return }
        if tunnelBytes == nil {
            tunnelBytes = bytes
        } else {
            tunnelBytes?.writeBuffer(&bytes)
        }
        bytes.moveReaderIndex(to: bytes.writerIndex)
    }

    /// The app's bytes broke HTTP/1.x: counted, logged, and answered in
    /// order, after the responses to the requests before them.
    private func requestUnreadable(_ error: HTTP1ParseError, context: ChannelHandlerContext) {
        unreadable = true
        let reason = noteUnreadable(error)
        if receivingRequest {
            receivingRequest = false
            return requestBroken(context: context)
        }
        if exchange != nil || upgrade != nil || !waiting.isEmpty {
            brokenRequestQueued = reason
            return
        }
        answeringHEAD = false  // no method was read
        respondWithError(reason, keepAlive: false)
    }

    /// Counts and logs unreadable bytes from the app; the answer they get
    /// (`431` past the head limit, as the first hop should, else `400`).
    private func noteUnreadable(_ error: HTTP1ParseError) -> ErrorReason {
        metrics.limitHit(.httpRequest)
        let reason: ErrorReason = error == .headTooLarge ? .headersTooLarge : .badRequest
        var record = RequestRecord(direction: .outbound)
        record.answered(by: reason)
        metrics.record(record)
        logger.warning("bad HTTP request from app", metadata: ["error": "\(error.description)"])
        return reason
    }

    /// No request, and no answer to a broken one, waits its turn.
    private var nothingWaits: Bool { waiting.isEmpty && brokenRequestQueued == nil }

    /// A request head waits while the response before it is pending; the
    /// body and end of the request being received never wait.
    private func canServe(_ part: HTTP1RequestParser.Event) -> Bool {
        if case .head = part { return exchange == nil && upgrade == nil && !closing }
        return true
    }

    /// Serves the requests that waited, once the response before them ended.
    private func serveWaiting() {
        guard let context else { return }
        while !draining, let part = waiting.first, canServe(part) {
            waiting.removeFirst()
            serve(part, context: context)
        }
        if waiting.isEmpty && exchange == nil, let reason = brokenRequestQueued {
            brokenRequestQueued = nil
            answeringHEAD = false  // the request it answers was never served
            return respondWithError(reason, keepAlive: false)
        }
        if nothingWaits && appDoneSending && !draining { drain() }
        resumeReadsIfAllowed()
    }

    private func serve(_ part: consuming HTTP1RequestParser.Event, context: ChannelHandlerContext) {
        switch consume part {
        case .head(var head, let facts):
            responseStarted = false
            answeringHEAD = head.method.isHEAD
            let connection = facts.connection
            if let violation = HTTP1RequestRules.violation(of: head, facts: facts) {
                logger.debug("request refused", metadata: ["reason": "\(violation.rawValue)"])
                return refuse(head, violation.reason, cluster: route.cluster.name, keepAlive: false)
            }
            // The edge of the mesh: a request without an id gets one, which
            // every hop and the app then see (SPEC §6).
            if !head.fields.contains(lowercaseName: "x-request-id") {
                services.withRequestID { head.fields.append(lowercaseName: .init("x-request-id"), value: $0) }
            }
            let target = route.target(for: head)
            let lease: Lease
            switch target.lease(header: { head.fields.first(name: $0) }) {
            case .success(let leased): lease = leased
            case .failure(let reason):
                logger.debug("request refused", metadata: ["cluster": "\(target.name)", "reason": "\(reason.rawValue)"])
                // A refused tunnel closes: the bytes after it are the
                // tunnel's, not HTTP.
                return refuse(head, reason, cluster: target.name,
                              keepAlive: connection.isPersistent(version: head.version)
                                  && !head.opensTunnel(connection: connection))
            }
            if head.opensTunnel(connection: connection) {
                upgrade = (head, target, lease)
                return
            }
            let deadline = NIODeadline.now() + TimeAmount(target.requestTimeout)
            if let policy = target.cluster.config.retries {
                let retrying = RetryingExchange(handler: self, head: head, connection: connection, target: target,
                                                policy: policy, services: services, logger: logger, deadline: deadline)
                exchange = retrying
                retrying.start(lease: lease)
                return
            }
            OutboundDispatch.start(head, connection: connection, lease: lease, target: target, responder: self,
                                   services: services, logger: logger, deadline: deadline) { exchange = $0 }
            armDeadlineTimer(context: context, at: deadline)
        case .body(let buffer):
            exchange?.sendBody(buffer)
        case .end(let trailers):
            if let upgrade {
                self.upgrade = nil
                startTunnel(context: context, head: upgrade.head, target: upgrade.target, lease: upgrade.lease)
                return
            }
            exchange?.sendEnd(trailers)
        }
    }


    /// Carries an Upgrade or CONNECT request, and whatever the connection becomes: on a
    /// CONNECT stream to a meshed endpoint's node, or as a TCP relay to a
    /// plain endpoint. The request head goes first as raw bytes, the app's
    /// `101` comes back the same way. Once the tunnel is in place this
    /// handler leaves, handing the tunnel the bytes the app sent after the
    /// request.
    private func startTunnel(context: ChannelHandlerContext, head: HTTP1RequestHead, target: RequestTarget, lease: Lease) {
        // The head as it came, but for names lower-cased and `x-request-id`.
        var text = ByteBuffer(string: "\(head.method.rawValue) \(head.uri) HTTP/\(head.version.major).\(head.version.minor)\r\n")
        head.fields.forEach { name, value in
            text.writeBytes(name)
            text.writeStaticString(": ")
            text.writeBytes(value)
            text.writeStaticString("\r\n")
        }
        text.writeStaticString("\r\n")
        tunnelling = true
        let channel = context.channel
        let idle = self.idle
        let removeHTTPHandlers = { (channel: Channel) in
            // The tunnel's bytes pass an IdleWatch again.
            if let idle { try? channel.pipeline.syncOperations.addHandler(IdleWatch(clock: idle), position: .first) }
            channel.pipeline.syncOperations.removeHandler(self, promise: nil)
        }
        if target.isMeshed(lease.endpoint) {
            MeshTunnel.open(on: channel, pool: services.meshPool, peer: target.meshPeer(of: lease.endpoint), lease: lease,
                            initialBytes: text, logger: logger, metrics: metrics,
                            cluster: target.name, installed: removeHTTPHandlers)
        } else {
            PlainTunnel.open(on: channel, connector: services.connector, lease: lease, head: text,
                             timeout: TimeAmount(target.cluster.config.timeouts.connect), logger: logger,
                             metrics: metrics, cluster: target.name,
                             removeHTTPHandlers: removeHTTPHandlers) { [weak self] in
                self?.refuse(head, .connectFailure, cluster: target.name, endpoint: lease.endpoint, keepAlive: false)
            }
        }
    }

    /// Makes sure the request timer fires by `deadline` (an attempt's own
    /// deadline, which may be earlier than the request's).
    func watchDeadline(_ deadline: NIODeadline) {
        guard let context else { return }
        deadlineTimer?.cancel()
        deadlineTimer = nil
        armDeadlineTimer(context: context, at: deadline)
    }

    /// Requests on one connection share a timeout and start one after the
    /// other, so a timer already armed fires no later than `deadline`.
    private func armDeadlineTimer(context: ChannelHandlerContext, at deadline: NIODeadline) {
        guard deadlineTimer == nil else { return }
        deadlineTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.deadlineTimerFired()
        }
    }

    private func deadlineTimerFired() {
        deadlineTimer = nil
        guard let context, let exchange, let deadline = exchange.responseDeadline else { return }
        if deadline <= .now() {
            exchange.timedOut()
        } else {
            armDeadlineTimer(context: context, at: deadline)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.appBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    /// The app finished sending: answer what is in flight and what waits,
    /// then close, instead of leaving the socket in CLOSE-WAIT.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            if !unreadable {
                do {
                    try parser.inputEnded()
                } catch {
                    requestUnreadable(error, context: context)
                }
            }
            appDoneSending = true
            if nothingWaits { drain() }  // else `serveWaiting` does, after the last one
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// A final response (not a 1xx) for the current exchange was written.
    private var responseStarted = false
    /// A pipelined request broke while queued (or bytes after the requests
    /// queued were not HTTP): answered so after the responses before it.
    private var brokenRequestQueued: ErrorReason?

    /// The request being received broke after its head was passed on (its
    /// framing is lost, so no request can follow it on this connection).
    private func requestBroken(context: ChannelHandlerContext) {
        if let head = waiting.lastIndex(where: { if case .head = $0 { true } else { false } }) {
            // Still queued behind the response in flight.
            waiting.removeSubrange(head..<waiting.endIndex)
            brokenRequestQueued = .badRequest
            return
        }
        if let exchange {
            // Whatever carries it stops: the upstream must not take a
            // request cut short for a whole one.
            exchange.appClosed()
            self.exchange = nil
            if responseStarted { return abortResponse() }
            return respondWithError(.badRequest, keepAlive: false)
        }
        if let upgrade {
            self.upgrade = nil
            upgrade.lease.finish(.abandoned)
            return respondWithError(.badRequest, keepAlive: false)
        }
        // Already answered (refused, or answered before its body ended).
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !unreadable {
            do {
                try parser.inputEnded()  // and nothing more is read
            } catch where !reading {
                unreadable = true
                _ = noteUnreadable(error)  // nobody is left to answer
            } catch {}
        }
        exchange?.appClosed()
        exchange = nil
        upgrade?.lease.finish(.abandoned)
        upgrade = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("app connection error", metadata: ["error": "\(error)"])
        exchange?.appClosed()
        exchange = nil
        context.close(promise: nil)
    }

    // MARK: reads (backpressure towards the app)

    func read(context: ChannelHandlerContext) {
        if readsPaused { readHeld = true } else { context.read() }
    }

    /// Backpressure from the current stream (or its setup).
    func setReadsPaused(_ paused: Bool) {
        streamFull = paused
        resumeReadsIfAllowed()
    }

    private func resumeReadsIfAllowed() {
        if !readsPaused, readHeld, let context {
            readHeld = false
            context.read()
        }
    }

    // MARK: responses, called by the exchange

    var appIsWritable: Bool { context?.channel.isWritable ?? false }

    /// Head and body parts are gathered (a large body part is written
    /// unflushed); the exchange flushes once per mesh read (`flush()`), and
    /// the end flushes.
    func writeHead(_ head: AppResponseHead) {
        guard let context else { return }
        if head.status.code >= 200 { responseStarted = true }
        output.writeHead(head, toHEAD: answeringHEAD, allocator: allocator)
    }

    func writeBody(_ buffer: ByteBuffer) {
        guard let context else { return }
        output.writeBody(buffer, allocator: allocator) { bytes in write(bytes, context) }
    }

    func flush() {
        guard let context else { return }
        if let bytes = output.take() { write(bytes, context) }
        flushWritten(context)
    }

    /// Writes `bytes` to the app, unflushed, noted for the idle clock.
    private func write(_ bytes: ByteBuffer, _ context: ChannelHandlerContext) {
        unflushed = true
        idle?.note()
        context.write(wrapOutboundOut(bytes), promise: nil)
    }

    /// Flushes what was written since the last flush, if anything was.
    private func flushWritten(_ context: ChannelHandlerContext) {
        guard unflushed else { return }
        unflushed = false
        context.flush()
    }

    /// Ends the response: what was gathered goes out, flushed; then the
    /// connection closes if `close`.
    private func writeEndAndFlush(_ trailers: HTTPHeaders?, close: Bool, context: ChannelHandlerContext) {
        output.writeEnd(trailers, allocator: allocator)
        let bytes = output.take()
        if close {
            closing = true
            unflushed = false
            idle?.note()
            let channel = context.channel
            let written = context.writeAndFlush(wrapOutboundOut(bytes ?? channel.allocator.buffer(capacity: 0)))
            written.whenComplete { _ in channel.close(promise: nil) }
        } else {
            if let bytes { write(bytes, context) }
            flushWritten(context)
        }
    }

    func writeEnd(_ trailers: HTTPHeaders?, close: Bool, exchange finished: any OutboundExchange) {
        guard let context else { return }
        // Draining since the head went out (it said keep-alive): the
        // connection still closes after this response.
        let close = close || draining
        responseStarted = false
        if exchange === finished {
            exchange = nil
            if (!waiting.isEmpty || brokenRequestQueued != nil) && !close {
                // Not from inside the stream's callbacks: on the next turn.
                context.eventLoop.assumeIsolated().execute { self.serveWaiting() }
            }
        }
        writeEndAndFlush(trailers, close: close, context: context)
        setReadsPaused(false)
    }

    /// The response had started and the stream broke: the app learns by
    /// the connection closing, the only signal HTTP/1.1 has left.
    func abortResponse() {
        exchange = nil
        context?.close(promise: nil)
    }

    /// An error response weft generates itself (SPEC §4: 502, 503, 504),
    /// with `weft-reason` saying why. The caller records the request.
    func record(_ record: RequestRecord) {
        metrics.record(record)
    }

    /// Answers `head` with weft's error for `reason`, recorded as the
    /// request's outcome.
    private func refuse(_ head: HTTP1RequestHead, _ reason: ErrorReason, cluster: String, endpoint: IPEndpoint? = nil,
                        keepAlive: Bool) {
        var record = RequestRecord(direction: .outbound, cluster: cluster, endpoint: endpoint)
        record.answered(by: reason)
        record.describe(head, for: metrics)
        metrics.record(record)
        respondWithError(reason, keepAlive: keepAlive, version: head.version)
    }

    func respondWithError(_ reason: ErrorReason, keepAlive: Bool,
                          version: HTTPVersion = .http1_1, finished: (any OutboundExchange)? = nil) {
        writeHead(AppResponseHead(ErrorResponder.head(reason, version: version, keepAlive: keepAlive)))
        writeBody(ErrorResponder.body(reason))
        if let finished {
            writeEnd(nil, close: !keepAlive, exchange: finished)
        } else if let context {
            writeEndAndFlush(nil, close: !keepAlive, context: context)
        }
    }
}
