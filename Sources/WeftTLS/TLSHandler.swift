import NIOCore

/// Puts a ``TLSConnection`` on a channel: ciphertext below, plaintext
/// above. Writes made before the handshake completes wait for it; at a
/// flush, small writes are gathered into records of up to 16 KiB, so an
/// HTTP/2 session's many small frames cost few records. Once the peer is
/// verified, ``Established`` goes up the pipeline as a user event.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// The user event sent up the pipeline when the peer is verified.
    public struct Established: Sendable {
        public let peer: TLSPeer
    }

    /// What happened to the connection, told to the owner (metrics, logs).
    public enum Event {
        case established(TLSPeer)
        /// The handshake failed, or the peer was not acceptable.
        case refused(TLSFailure)
        /// An established connection broke (a bad record, an alert).
        case broken(TLSFailure)
    }

    /// The largest plaintext in one TLS record.
    static let recordSize = 16 * 1024

    private enum State { case handshaking, established, closed }

    private let connection: TLSConnection
    private let onEvent: (Event) -> Void
    private var state = State.handshaking
    private var pending: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    /// The writes a flush is encrypting (swapped with `pending`).
    private var encrypting: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    /// Small writes gathered into one record.
    private var record = ByteBuffer()
    private var flushRequested = false
    private var outputWaiting = false
    private var handshakePromise: EventLoopPromise<TLSPeer>?
    private let handshakeTimeout: TimeAmount
    private var handshakeTimer: Scheduled<Void>?

    /// - Parameter handshakeTimeout: a peer that has not completed the
    ///   handshake this long after the connection opened is refused.
    public init(connection: TLSConnection, handshakeTimeout: TimeAmount = .seconds(10),
                onEvent: @escaping (Event) -> Void = { _ in }) {
        self.connection = connection
        self.handshakeTimeout = handshakeTimeout
        self.onEvent = onEvent
    }

    /// Succeeds with the verified peer, fails with the ``TLSFailure``; set
    /// once the handler is in a pipeline.
    public private(set) var handshakeResult: EventLoopFuture<TLSPeer>?

    public func handlerAdded(context: ChannelHandlerContext) {
        record = context.channel.allocator.buffer(capacity: Self.recordSize)
        let promise = context.eventLoop.makePromise(of: TLSPeer.self)
        handshakePromise = promise
        handshakeResult = promise.futureResult
        if context.channel.isActive { start(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        handshakePromise?.fail(TLSFailure(.handshake, "the TLS handler was removed"))
        handshakePromise = nil
        failPending(ChannelError.ioOnClosedChannel)
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard state == .handshaking, handshakeTimer == nil else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let timeout = handshakeTimeout
        handshakeTimer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            handler.refuse(context: context, TLSFailure(.handshake, "no handshake within \(timeout.nanoseconds / 1_000_000) ms"),
                           close: true)
        }
        if connection.role == .client { advanceHandshake(context: context) }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.receive(unwrapInboundIn(data))
        if state == .handshaking { advanceHandshake(context: context) }
        guard state == .established else { return }
        do {
            switch try connection.readPlaintext(allocator: context.channel.allocator) {
            case .data(let plaintext):
                if let plaintext { context.fireChannelRead(wrapInboundOut(plaintext)) }
            case .closed(let last):
                if let last { context.fireChannelRead(wrapInboundOut(last)) }
                context.close(promise: nil)
                return
            }
        } catch {
            broke(context: context, error)
            return
        }
        outputWaiting = true  // tickets, key updates: sent at read complete
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if outputWaiting { writeOutput(context: context, promise: nil, flush: true) }
        context.fireChannelReadComplete()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if state == .handshaking {
            refuse(context: context, TLSFailure(.handshake, "the connection closed during the handshake"), close: false)
        }
        state = .closed
        failPending(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard state != .closed else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        pending.append((unwrapOutboundIn(data), promise))
    }

    public func flush(context: ChannelHandlerContext) {
        flushRequested = true
        if state == .established { encryptPending(context: context) }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .all, state == .established {
            encryptPending(context: context)
            connection.shutdown()
            writeOutput(context: context, promise: nil, flush: true)
        }
        if mode == .all { state = .closed }
        context.close(mode: mode, promise: promise)
    }

    // MARK: - Steps

    private func advanceHandshake(context: ChannelHandlerContext) {
        do {
            let done = try connection.handshake()
            writeOutput(context: context, promise: nil, flush: true)
            guard done, let peer = connection.peer else { return }
            state = .established
            handshakeTimer?.cancel()
            handshakeTimer = nil
            onEvent(.established(peer))
            handshakePromise?.succeed(peer)
            handshakePromise = nil
            context.fireUserInboundEventTriggered(Established(peer: peer))
            if flushRequested { encryptPending(context: context) }
        } catch {
            let failure = error as? TLSFailure ?? TLSFailure(.handshake, "\(error)")
            refuse(context: context, failure, close: true)
        }
    }

    /// Encrypts the pending writes, small ones gathered into full records.
    /// The write list and the record buffer are kept between flushes, so a
    /// flush allocates neither.
    private func encryptPending(context: ChannelHandlerContext) {
        flushRequested = false
        guard !pending.isEmpty else { return }
        swap(&pending, &encrypting)
        var promises: [EventLoopPromise<Void>] = []
        do {
            record.clear()
            for (buffer, promise) in encrypting {
                if let promise { promises.append(promise) }
                if record.readableBytes + buffer.readableBytes > Self.recordSize { try writeRecord() }
                if buffer.readableBytes >= Self.recordSize {
                    try connection.write(buffer)
                } else {
                    record.writeImmutableBuffer(buffer)
                }
            }
            try writeRecord()
        } catch {
            encrypting.removeAll(keepingCapacity: true)
            promises.forEach { $0.fail(error) }
            broke(context: context, error)
            return
        }
        // Emptied before the ciphertext goes down the pipeline: a write made
        // from there (a handler told its channel is writable again) can
        // flush here again, and must not find these writes once more.
        encrypting.removeAll(keepingCapacity: true)
        let promise: EventLoopPromise<Void>?
        switch promises.count {
        case 0: promise = nil
        case 1: promise = promises[0]
        default:
            promise = context.eventLoop.makePromise()
            promise?.futureResult.whenComplete { result in promises.forEach { $0.completeWith(result) } }
        }
        writeOutput(context: context, promise: promise, flush: true)
    }

    /// Encrypts what `record` gathered, then empties it (keeping its storage).
    private func writeRecord() throws {
        guard record.readableBytes > 0 else { return }
        try connection.write(record)
        record.clear()
    }

    private func writeOutput(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?, flush: Bool) {
        outputWaiting = false
        if let output = connection.takeOutput() {
            context.write(wrapOutboundOut(output), promise: promise)
        } else {
            promise?.succeed(())
        }
        if flush { context.flush() }
    }

    private func refuse(context: ChannelHandlerContext, _ failure: TLSFailure, close: Bool) {
        guard state == .handshaking else { return }
        state = .closed
        handshakeTimer?.cancel()
        handshakeTimer = nil
        onEvent(.refused(failure))
        handshakePromise?.fail(failure)
        handshakePromise = nil
        failPending(failure)
        if close {
            writeOutput(context: context, promise: nil, flush: true)  // the alert, if any
            context.close(promise: nil)
        }
    }

    private func broke(context: ChannelHandlerContext, _ error: Error) {
        guard state != .closed else { return }
        state = .closed
        onEvent(.broken(error as? TLSFailure ?? TLSFailure(.handshake, "\(error)")))
        failPending(error)
        writeOutput(context: context, promise: nil, flush: true)
        context.close(promise: nil)
    }

    private func failPending(_ error: Error) {
        let writes = pending
        pending.removeAll()
        for (_, promise) in writes { promise?.fail(error) }
    }
}
