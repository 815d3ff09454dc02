import Logging
import NIOCore
import WeftHTTP2
import WeftCore
import WeftObservability
import WeftTLS

/// What one mesh stream hears from its connection. Calls arrive on the
/// connection's event loop.
public protocol MeshStreamHandler: AnyObject {
    func streamHeaders(_ headers: HTTP2Fields, kind: HTTP2HeadersKind, endStream: Bool)
    /// Body bytes; call `MeshConnection.consume` once they are written on,
    /// which is what reopens the peer's window.
    func streamData(_ data: ByteBuffer, endStream: Bool)
    /// The stream ended: `.noError` after a normal end, else the reset code.
    func streamClosed(_ errorCode: HTTP2ErrorCode)
    /// The stream's send queue crossed a watermark: stop or resume reading
    /// whatever feeds it.
    func streamWritabilityChanged(_ writable: Bool)
    /// The connection finished handling one read that touched this stream:
    /// a moment to flush what the stream wrote elsewhere, once per read
    /// rather than once per frame.
    func streamBatchEnded()
}

extension MeshStreamHandler {
    public func streamBatchEnded() {}
}

/// One HTTP/2 connection between weft nodes (SPEC §4), either role.
///
/// The only handler of its channel: bytes in go to the nghttp2 session,
/// the session's output goes out as soon as the socket can take it, and
/// stream events fan out to `MeshStreamHandler`s. Output is produced only
/// while the channel is writable, so a slow peer leaves bytes queued in
/// nghttp2's stream queues, where the producers' watermarks stop them.
public final class MeshConnection: ChannelInboundHandler, HTTP2SessionDelegate {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    public typealias Role = ConnectionRole

    public let role: Role
    public let metrics: ProxyMetrics
    /// False for HTTP/2 sessions with apps (an h2c app, a gRPC client): they
    /// use the same machinery but are not mesh connections in the metrics.
    public let countsAsMesh: Bool
    private let logger: Logger
    private var session: HTTP2Session?
    private var context: ChannelHandlerContext?
    private var streams = StreamSlots<MeshStreamHandler>()
    /// Streams that heard something during the current read (a stream's
    /// frames usually come together, so repeats in a row are skipped).
    private var touched: [MeshStreamHandler] = []
    /// The array `touched` is swapped with while a batch is told, so that
    /// neither is copied or reallocated per read.
    private var telling: [MeshStreamHandler] = []
    /// Server role: makes the handler of each new request stream, from its headers.
    private let acceptStream: ((MeshConnection, Int32, HTTP2Fields) -> MeshStreamHandler)?
    private var flushPending = false
    /// The channel's state as its events told it, so that the per-request
    /// paths do not ask the channel (each ask goes through the pipeline to
    /// the socket's lifecycle). Read activity through `isChannelActive`.
    private var channelIsActive = false
    private var channelIsWritable = true

    /// Whether the channel is active. A connect completes its promise
    /// before `channelActive` reaches the handlers, and the pool hands the
    /// connection out from that promise: until the event comes, the
    /// channel is asked.
    private var isChannelActive: Bool {
        if channelIsActive { return true }
        guard !isClosed, let context, context.channel.isActive else { return false }
        noteActive(context.channel)
        return true
    }

    /// The channel is active: from now on its events keep the flags.
    private func noteActive(_ channel: Channel) {
        channelIsActive = true
        channelIsWritable = channel.isWritable
    }
    /// The loop task that runs a scheduled flush, made once so that
    /// scheduling allocates nothing (not optional: an optional closure is
    /// re-wrapped, allocating, each time it is passed on). It holds the
    /// connection unowned; `queuedFlushHold` keeps the connection alive
    /// while the task is queued.
    private var flushTask: () -> Void = {}
    private var queuedFlushHold: MeshConnection?
    /// The output buffers array `flushNow` reuses.
    private var outputScratch: [ByteBuffer] = []
    public private(set) var goingAway = false
    public private(set) var isClosed = false
    /// The session ended with an error GOAWAY: the write side is closed,
    /// what the peer still sends is dropped, and the channel closes when
    /// the peer closes or `lingerTimeout` has passed (`closeAfterGoAway`).
    private var lingering = false
    private var lingerTask: Scheduled<Void>?
    /// How long a connection ended for the peer's error waits for the peer
    /// to close after the GOAWAY.
    static let lingerTimeout = TimeAmount.seconds(1)
    /// The peer's verified SPIFFE ID when the connection runs over mTLS
    /// (known before its first stream); nil on plaintext h2c.
    public private(set) var peerIdentity: SPIFFEID?

    /// Timings of the connection's upkeep.
    public struct Upkeep {
        /// Quiet this long (nothing read), the connection sends a PING.
        public var pingAfter: TimeAmount
        /// A PING unanswered this long means the peer is gone: close.
        public var pingTimeout: TimeAmount
        /// Client role: with no stream open this long, say GOAWAY and close.
        public var idleTimeout: TimeAmount
        /// How often the upkeep runs.
        public var tick: TimeAmount

        public init(pingAfter: TimeAmount = .seconds(30), pingTimeout: TimeAmount = .seconds(10),
                    idleTimeout: TimeAmount = .minutes(5), tick: TimeAmount = .seconds(5)) {
            self.pingAfter = pingAfter
            self.pingTimeout = pingTimeout
            self.idleTimeout = idleTimeout
            self.tick = tick
        }
    }
    public var upkeep = Upkeep()
    private var upkeepTask: RepeatedTask?
    private var lastRead = NIODeadline.now()
    private var idleSince: NIODeadline? = NIODeadline.now()
    private var pingSentAt: NIODeadline?

    /// Told (once) when the connection can take no new streams: GOAWAY,
    /// error or close. The pool stops handing it out.
    public var onUnusable: ((MeshConnection) -> Void)?
    /// Told when a stream closes, freeing a slot.
    public var onStreamSlotFreed: ((MeshConnection) -> Void)?

    /// What this end tells its peer (stream limits, windows).
    private let settings: HTTP2Settings
    /// Whether the peer's SETTINGS arrived: until then its stream limit is
    /// not known, and at most `streamsBeforeSettings` are opened.
    private var peerSettingsReceived = false
    /// HTTP/2's usual SETTINGS_MAX_CONCURRENT_STREAMS: opening more before
    /// the peer says its limit would have the excess refused.
    public static let streamsBeforeSettings = 100

    public init(role: Role, metrics: ProxyMetrics, logger: Logger, countsAsMesh: Bool = true,
                settings: HTTP2Settings = .default,
                acceptStream: ((MeshConnection, Int32, HTTP2Fields) -> MeshStreamHandler)? = nil) {
        self.settings = settings
        self.role = role
        self.metrics = metrics
        self.countsAsMesh = countsAsMesh
        self.logger = logger
        self.acceptStream = acceptStream
        flushTask = { [unowned self] in self.runQueuedFlush() }
    }

    public var eventLoop: EventLoop? { context?.eventLoop }
    public var openStreamCount: Int { streams.count }

    /// Whether a new stream may be opened now (client role).
    public var hasCapacity: Bool {
        guard let session, !goingAway, !isClosed, isChannelActive else { return false }
        let limit = Int(session.remoteMaxConcurrentStreams)
        return session.isRequestAllowed
            && streams.count < (peerSettingsReceived ? limit : min(limit, Self.streamsBeforeSettings))
    }

    // MARK: - stream operations (on the event loop)

    /// Opens a request stream (client role).
    public func openStream(headers: HTTP2Fields, endStream: Bool, handler: MeshStreamHandler) throws -> Int32 {
        guard let session, hasCapacity else { throw MeshError.noCapacity }
        let streamID = try session.submitRequest(headers: headers, endStream: endStream)
        streams[streamID] = handler
        idleSince = nil
        if countsAsMesh { metrics.meshStreamOpened(role) }
        scheduleFlush()
        return streamID
    }

    public func respond(streamID: Int32, headers: HTTP2Fields, endStream: Bool) throws {
        try session?.submitResponse(streamID: streamID, headers: headers, endStream: endStream)
        scheduleFlush()
    }

    public func sendInformational(streamID: Int32, headers: HTTP2Fields) throws {
        try session?.submitInformational(streamID: streamID, headers: headers)
        scheduleFlush()
    }

    public func sendData(streamID: Int32, _ buffer: ByteBuffer, endStream: Bool = false) throws {
        try session?.sendData(streamID: streamID, buffer, endStream: endStream)
        scheduleFlush()
    }

    public func sendEnd(streamID: Int32, trailers: HTTP2Fields? = nil) throws {
        if let trailers, !trailers.isEmpty {
            try session?.submitTrailers(streamID: streamID, headers: trailers)
        } else {
            try session?.sendEnd(streamID: streamID)
        }
        scheduleFlush()
    }

    public func isWritable(streamID: Int32) -> Bool {
        session?.isWritable(streamID: streamID) ?? false
    }

    /// Reopens the peer's window for bytes the stream has passed on.
    public func consume(streamID: Int32, bytes: Int) {
        guard bytes > 0 else { return }
        try? session?.consume(streamID: streamID, bytes: bytes)
        scheduleFlush()
    }

    public func reset(streamID: Int32, errorCode: HTTP2ErrorCode = .cancel) {
        // The handler gave up on the stream: it hears nothing more, and the
        // slot (and idleness) counts from now, not from nghttp2's close.
        guard streams.removeValue(forKey: streamID) != nil else { return }
        try? session?.resetStream(streamID: streamID, errorCode: errorCode)
        try? session?.discardUnconsumed(streamID: streamID)
        if streams.isEmpty { idleSince = now }
        scheduleFlush()
        onStreamSlotFreed?(self)
    }

    /// The handler answered the stream and wants none of the rest of the
    /// request: it hears nothing more, and the stream is reset (NO_ERROR)
    /// once the answer is out, so the peer stops sending the body but gets
    /// the whole answer.
    public func stopAfterResponse(streamID: Int32) {
        guard streams.removeValue(forKey: streamID) != nil else { return }
        session?.resetAfterSendingEnd(streamID: streamID)
        try? session?.discardUnconsumed(streamID: streamID)
        if streams.isEmpty { idleSince = now }
        scheduleFlush()
        onStreamSlotFreed?(self)
    }

    /// The loop's clock (an embedded loop's in tests).
    private var now: NIODeadline { context?.eventLoop.now ?? .now() }

    /// Stops new streams and lets open ones finish (drain).
    public func shutdownGracefully() {
        guard !goingAway else { return }
        markUnusable()
        try? session?.startGracefulShutdown()
        scheduleFlush()
    }

    // MARK: - channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        do {
            session = try HTTP2Session(role: role == .client ? .client : .server, settings: settings, delegate: self)
        } catch {
            logger.error("cannot create HTTP/2 session", metadata: ["error": "\(error)"])
            context.close(promise: nil)
            return
        }
        if context.channel.isActive { becameActive() }
    }

    /// The context points at this handler and this handler at the context:
    /// the pair (and the channel behind it) is freed only once this link is
    /// cut, when the handler leaves the pipeline.
    public func handlerRemoved(context: ChannelHandlerContext) {
        upkeepTask?.cancel()
        upkeepTask = nil
        self.context = nil
        channelIsActive = false
        session = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        becameActive()
        context.fireChannelActive()
    }

    /// Counted only once connected: a connect that fails never was a connection.
    private var counted = false

    private func becameActive() {
        if let context { noteActive(context.channel) }
        if !counted, countsAsMesh {
            counted = true
            metrics.meshConnectionOpened(role)
        }
        if upkeepTask == nil, let context {
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            upkeepTask = context.eventLoop.scheduleRepeatedTask(initialDelay: upkeep.tick, delay: upkeep.tick) { _ in
                bound.value.runUpkeep()
            }
        }
        flushNow()
    }

    /// PING when quiet, close when a PING goes unanswered (the peer or the
    /// path died without a FIN), and close client connections idle too long.
    private func runUpkeep() {
        guard let context, let session, !isClosed else { return }
        let now = self.now
        if let sent = pingSentAt {
            if now - sent >= upkeep.pingTimeout {
                logger.warning("mesh peer did not answer PING, closing", metadata: ["role": "\(role)"])
                metrics.meshKeepaliveTimeouts.wrappingIncrement(ordering: .relaxed)
                markUnusable()
                context.close(promise: nil)
                return
            }
        } else if now - lastRead >= upkeep.pingAfter {
            if (try? session.ping()) != nil {
                pingSentAt = now
                scheduleFlush()
            }
        }
        if role == .client, let idleSince, streams.isEmpty, now - idleSince >= upkeep.idleTimeout {
            logger.debug("mesh connection idle, closing")
            shutdownGracefully()
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session, !lingering else { return }
        lastRead = now
        defer { endBatch() }
        // Output the read causes (ACKs, window updates, answers written by
        // streams meanwhile) waits for `channelReadComplete`, not a task.
        flushPending = true
        do {
            try session.receive(unwrapInboundIn(data))
        } catch {
            if let error = error as? HTTP2SessionError, error.isFlood { metrics.limitHit(.http2Flood) }
            logger.warning("HTTP/2 connection closed: peer broke the protocol", metadata: ["error": "\(error)"])
            markUnusable()
            flushNow()
            closeAfterGoAway(context)
            return
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if flushPending { flushNow() }
        context.fireChannelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        channelIsWritable = context.channel.isWritable
        if channelIsWritable { flushNow() }
        context.fireChannelWritabilityChanged()
    }

    /// The peer (an HTTP/2 app, on a socket that allows half-close) sent
    /// FIN: no new streams; close once the open ones are done.
    private var closeWhenIdle = false

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let established = event as? TLSHandler.Established {
            peerIdentity = established.peer.identity
        }
        if let event = event as? ChannelEvent, case .inputClosed = event {
            if lingering { return context.close(promise: nil) }
            markUnusable()
            closeWhenIdle = true
            if streams.isEmpty { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        channelIsActive = false
        upkeepTask?.cancel()
        upkeepTask = nil
        lingerTask?.cancel()
        lingerTask = nil
        markUnusable()
        for handler in streams.removeAll() { handler.streamClosed(.connectError) }
        session = nil
        if counted { metrics.meshConnectionClosed(role) }
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("mesh connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    /// Tells each stream touched by this read that the read is handled.
    private func endBatch() {
        guard !touched.isEmpty else { return }
        swap(&touched, &telling)
        // A stream that appears twice is flushed twice: harmless, and
        // cheaper than a set per read.
        for handler in telling { handler.streamBatchEnded() }
        telling.removeAll(keepingCapacity: true)
    }

    private func touch(_ handler: MeshStreamHandler) {
        if touched.last !== handler { touched.append(handler) }
    }

    // MARK: - output

    /// Coalesces output from many stream operations in one loop tick. A
    /// read of this connection flushes at its end (`channelReadComplete`),
    /// and then the task finds nothing to do.
    private func scheduleFlush() {
        guard !flushPending, let context else { return }
        flushPending = true
        // A task still queued (a read flushed meanwhile) will find this one.
        guard queuedFlushHold == nil else { return }
        queuedFlushHold = self
        context.eventLoop.assumeIsolatedUnsafeUnchecked().execute(flushTask)
    }

    private func runQueuedFlush() {
        queuedFlushHold = nil
        if flushPending { flushNow() }
    }

    /// Writes what the session wants to send, as much as the socket takes.
    private func flushNow() {
        flushPending = false
        guard let context, let session, isChannelActive else { return }
        // The array is kept between flushes; taken out while in use, so a
        // flush re-entered from a write starts from an empty one.
        var buffers = outputScratch
        outputScratch = []
        defer {
            buffers.removeAll(keepingCapacity: true)
            outputScratch = buffers
        }
        // Written and not yet flushed.
        var unflushed = false
        let budget = 64 * 1024
        while channelIsWritable {
            buffers.removeAll(keepingCapacity: true)
            let produced: Int
            do {
                produced = try session.produceOutput(into: &buffers, maxBytes: budget)
            } catch {
                for buffer in buffers { context.write(wrapOutboundOut(buffer), promise: nil) }
                context.flush()
                context.close(promise: nil)
                return
            }
            for buffer in buffers { context.write(wrapOutboundOut(buffer), promise: nil) }
            unflushed = unflushed || !buffers.isEmpty
            // Short of the budget: the session had nothing more to send
            // (what its events submit schedules a flush of its own).
            if produced < budget { break }
            context.flush()
            unflushed = false
        }
        if unflushed { context.flush() }
        if !session.wantsRead && !session.wantsWrite {
            if session.sentErrorGoAway {
                closeAfterGoAway(context)
            } else {
                context.close(promise: nil)
            }
        }
    }

    /// Ends a connection whose session sent an error GOAWAY. Closing with
    /// the peer's bytes unread makes the kernel answer with RST, and a peer
    /// that gets RST may lose the GOAWAY before reading it (and with it the
    /// reason). So the write side closes first (FIN after the GOAWAY), what
    /// the peer still sends is read and dropped, and the channel closes
    /// when the peer closes its side or after `lingerTimeout`.
    private func closeAfterGoAway(_ context: ChannelHandlerContext) {
        guard !lingering, !isClosed else { return }
        lingering = true
        let loop = context.eventLoop.assumeIsolated()
        let halfClosed = context.eventLoop.makePromise(of: Void.self)
        // A channel that cannot close one side (a test's) closes whole.
        halfClosed.futureResult.assumeIsolated().whenFailure { [weak self] _ in self?.context?.close(promise: nil) }
        context.close(mode: .output, promise: halfClosed)
        lingerTask = loop.scheduleTask(in: Self.lingerTimeout) { [weak self] in self?.context?.close(promise: nil) }
    }

    private func markUnusable() {
        guard !goingAway else { return }
        goingAway = true
        onUnusable?(self)
    }

    // MARK: - HTTP2SessionDelegate

    public func session(_ session: HTTP2Session, didReceiveHeaders headers: HTTP2Fields,
                 kind: HTTP2HeadersKind, streamID: Int32, endStream: Bool) {
        if kind == .request, streams[streamID] == nil, let acceptStream {
            streams[streamID] = acceptStream(self, streamID, headers)
            idleSince = nil
            if countsAsMesh { metrics.meshStreamOpened(role) }
        }
        if let handler = streams[streamID] {
            touch(handler)
            handler.streamHeaders(headers, kind: kind, endStream: endStream)
        }
    }

    public func session(_ session: HTTP2Session, didReceiveData data: ByteBuffer, streamID: Int32, endStream: Bool) {
        if let handler = streams[streamID] {
            touch(handler)
            handler.streamData(data, endStream: endStream)
        } else {
            // Nobody will pass these bytes on: give the window back now.
            try? session.consume(streamID: streamID, bytes: data.readableBytes)
        }
    }

    public func session(_ session: HTTP2Session, streamClosed streamID: Int32, errorCode: HTTP2ErrorCode) {
        guard let handler = streams.removeValue(forKey: streamID) else {
            try? session.discardUnconsumed(streamID: streamID)
            return
        }
        handler.streamClosed(errorCode)
        try? session.discardUnconsumed(streamID: streamID)
        if streams.isEmpty {
            idleSince = now
            if closeWhenIdle {
                // Let the last frames go out first.
                flushNow()
                context?.close(promise: nil)
            }
        }
        onStreamSlotFreed?(self)
    }

    public func session(_ session: HTTP2Session, didReceiveGoAway lastStreamID: Int32, errorCode: HTTP2ErrorCode, debugData: String) {
        logger.debug("mesh GOAWAY received", metadata: ["last_stream": "\(lastStreamID)", "code": "\(errorCode)"])
        markUnusable()
    }

    public func session(_ session: HTTP2Session, didReceivePingAck payload: UInt64) {
        pingSentAt = nil
    }

    public func session(_ session: HTTP2Session, didReceiveSettings settings: HTTP2RemoteSettings) {
        peerSettingsReceived = true
        onStreamSlotFreed?(self)
    }

    public func session(_ session: HTTP2Session, streamWritabilityChanged streamID: Int32, isWritable: Bool) {
        streams[streamID]?.streamWritabilityChanged(isWritable)
    }

    public func session(_ session: HTTP2Session, didRejectStream streamID: Int32, reason: HTTP2StreamRejection) {
        switch reason {
        case .tooManyHeaders, .headerListTooLarge: metrics.limitHit(.headerList)
        case .tooManyStreams: metrics.limitHit(.http2Streams)
        }
        logger.warning("HTTP/2 stream refused", metadata: ["reason": "\(reason)", "stream": "\(streamID)"])
    }

    public func session(_ session: HTTP2Session, connectionError error: HTTP2SessionError) {
        logger.warning("mesh connection closed by protocol error", metadata: ["error": "\(error)"])
        markUnusable()
    }
}

public enum MeshError: Error, Equatable {
    /// The connection takes no new streams (GOAWAY, closed, or full).
    case noCapacity
    /// The peer node could not be reached.
    case connectFailed
}
