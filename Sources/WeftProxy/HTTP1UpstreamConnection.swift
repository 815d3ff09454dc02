import NIOCore
import NIOHTTP1
import WeftMesh

/// Receives one response from an HTTP/1.1 upstream.
protocol HTTP1ResponseReceiver: AnyObject {
    /// A 1xx informational head, or the final head (once).
    func receiveHead(_ head: HTTP1ResponseHead)
    func receiveBody(_ buffer: ByteBuffer)
    func receiveEnd(_ trailers: HTTPHeaders?)
    /// The connection failed or closed before the response ended.
    func receiveFailure(_ error: Error)
    /// The upstream socket can take more request body (or cannot).
    func upstreamWritabilityChanged(_ writable: Bool)
    /// One read of the upstream socket is handled: a moment to flush what
    /// was passed on, once per read rather than once per part.
    func receiveBatchEnded()
}

extension HTTP1ResponseReceiver {
    func receiveBatchEnded() {}
}

public enum HTTP1UpstreamError: Error, Equatable {
    /// The upstream closed before its response ended.
    case closedEarly
    /// The pool refused another connection to this target.
    case poolExhausted

    /// Whether `error` says the upstream's bytes broke HTTP/1.1 (RFC 9112
    /// framing or field rules, or a response nobody asked for), rather than
    /// merely stopping: answered `502 bad_response`, never replayed.
    static func isMalformedResponse(_ error: Error) -> Bool {
        error is HTTP1ParseError
    }
}

/// One keep-alive HTTP/1.1 connection to an upstream (a local app, or a
/// plain endpoint): carries one exchange at a time.
///
/// The only handler of its channel: it writes requests as bytes
/// (`HTTP1RequestWriter`) and reads responses from bytes
/// (`HTTP1ResponseParser`, 1xx forwarded), with no codec handlers or
/// wrapped parts between. It hands response parts to the current receiver
/// and tells the pool when the connection can carry the next request: only
/// once both the request and the response ended cleanly and neither side
/// asked to close.
final class HTTP1UpstreamConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let target: TargetKey
    private(set) var channel: Channel?
    private var context: ChannelHandlerContext?
    private weak var pool: HTTP1UpstreamPool?
    private var receiver: HTTP1ResponseReceiver?
    private var writer = HTTP1RequestWriter()
    /// The channel's allocator, taken once (asking the channel each time
    /// goes through its pipeline).
    private var allocator = ByteBufferAllocator()
    private var parser = HTTP1ResponseParser()
    private var requestEnded = false
    private var responseEnded = false
    private var reusable = true
    /// Whether the response is read (autoRead); changed only when it changes.
    private var reading = true
    /// Bytes were written since the last flush: a flush with none written
    /// is skipped (each costs a trip through the pipeline and the socket's
    /// checks, and the request's head, end and last part each ask for one).
    private var unflushed = false
    /// When the connection went idle (for the pool's idle timeout).
    var idleSince = NIODeadline.now()
    /// How long the upstream keeps an idle connection, as its last
    /// response said (`Keep-Alive: timeout=N`); nil when it did not say.
    private(set) var keepAliveTimeout: TimeAmount?
    /// Whether the connection carried an exchange before the current one.
    private(set) var reused = false

    /// The loop's buffers for request heads (the pool's).
    private let headBuffers: RecycledBuffers

    init(target: TargetKey, pool: HTTP1UpstreamPool) {
        self.target = target
        self.pool = pool
        headBuffers = pool.headBuffers
    }

    var isActive: Bool { context?.channel.isActive ?? false }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    // MARK: the exchange

    /// Starts an exchange: writes the request head, unflushed; the caller
    /// flushes (at once when no body part follows right away, so the app
    /// can answer `Expect: 100-continue`).
    func start(_ head: HTTPRequestHead, receiver: HTTP1ResponseReceiver) {
        start(AppRequestHead(head), receiver: receiver)
    }

    func start(_ head: AppRequestHead, receiver: HTTP1ResponseReceiver) {
        if self.receiver == nil && (requestEnded || responseEnded) { reused = true }
        self.receiver = receiver
        requestEnded = false
        responseEnded = false
        if !head.isPersistent { reusable = false }
        guard let context else { return }
        parser.expectResponse(toHEAD: head.method.isHEAD)
        let plan = writer.plan(head)
        var bytes = headBuffers.take(capacity: plan.bytes, allocator: allocator)
        writer.write(head, plan, into: &bytes)
        headBuffers.keep(bytes)
        write(bytes, context)
    }

    func sendBody(_ buffer: ByteBuffer) {
        guard let context, buffer.readableBytes > 0 else { return }
        guard let prefix = writer.chunkPrefix(count: buffer.readableBytes, allocator: allocator) else {
            return write(buffer, context)
        }
        write(prefix, context)
        write(buffer, context)
        write(HTTP1RequestWriter.chunkEnd, context)
    }

    private func write(_ bytes: ByteBuffer, _ context: ChannelHandlerContext) {
        unflushed = true
        context.write(wrapOutboundOut(bytes), promise: nil)
    }

    /// Flushes what was written since the last flush, if anything was.
    func flush() {
        guard unflushed, let context else { return }
        unflushed = false
        context.flush()
    }

    /// Stops (or resumes) reading the response: backpressure from the mesh
    /// stream the response is sent on.
    func setReading(_ reading: Bool) {
        guard reading != self.reading, let channel = context?.channel else { return }
        self.reading = reading
        if let options = channel.syncOptions {
            try? options.setOption(.autoRead, value: reading)
        } else {
            channel.setOption(.autoRead, value: reading).whenFailure { _ in }
        }
    }

    func sendEnd(_ trailers: HTTPHeaders?) {
        requestEnded = true
        if let context {
            if writer.isChunked {
                var bytes = allocator.buffer(capacity: 5)
                writer.writeEnd(trailers, into: &bytes)
                write(bytes, context)
            }
            flush()
        }
        finishIfDone()
    }

    /// Gives up on the exchange (the mesh stream was reset): the connection
    /// cannot be reused, since the app may still be mid-response.
    func abandon() {
        receiver = nil
        reusable = false
        context?.close(promise: nil)
    }

    private func finishIfDone() {
        guard requestEnded, responseEnded else { return }
        receiver = nil
        setReading(true)
        if reusable, isActive {
            idleSince = .now()
            pool?.release(self)
        } else {
            context?.close(promise: nil)
        }
    }

    /// Whether the upstream is still expected to keep the idle connection
    /// open: a connection it may be closing right now is not reused (the
    /// request would race its close). A second's margin, or half the
    /// timeout when that is shorter.
    var isFresh: Bool {
        guard let keepAliveTimeout else { return true }
        let margin = min(TimeAmount.seconds(1), .nanoseconds(keepAliveTimeout.nanoseconds / 2))
        return NIODeadline.now() < idleSince + keepAliveTimeout - margin
    }

    /// `timeout=N` (seconds) of a `Keep-Alive` header value.
    static func timeout(inKeepAlive value: String) -> TimeAmount? {
        func trimmed(_ text: Substring) -> Substring {
            var text = text
            while text.first == " " || text.first == "\t" { text = text.dropFirst() }
            while text.last == " " || text.last == "\t" { text = text.dropLast() }
            return text
        }
        for parameter in value.split(separator: ",") {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, trimmed(pair[0]).lowercased() == "timeout",
                  let seconds = Int64(trimmed(pair[1])), seconds >= 0 else { continue }
            return .seconds(min(seconds, 86_400))
        }
        return nil
    }

    // MARK: channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        channel = context.channel
        allocator = context.channel.allocator
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        do {
            while let event = try parser.next(&bytes) {
                // Bytes past a response's end would answer a request not
                // sent yet: the parser refuses them next, and the
                // connection must not go back to the pool meanwhile.
                if case .end = event, bytes.readableBytes > 0 { reusable = false }
                handle(event, context: context)
            }
        } catch {
            refuse(error, context: context)
        }
    }

    private func handle(_ event: HTTP1ResponseParser.Event, context: ChannelHandlerContext) {
        switch event {
        case .head(let head):
            if !head.connection.isPersistent(version: head.version) { reusable = false }
            if let value = head.fields.first(lowercaseName: "keep-alive") {
                keepAliveTimeout = Self.timeout(inKeepAlive: value)
            }
            receiver?.receiveHead(head)
        case .body(let buffer):
            receiver?.receiveBody(buffer)
        case .end(let trailers):
            responseEnded = true
            let current = receiver
            if !requestEnded {
                // The app answered before the request body was complete:
                // the connection cannot carry another request safely.
                reusable = false
                receiver = nil
                current?.receiveEnd(trailers)
                context.close(promise: nil)
                return
            }
            current?.receiveEnd(trailers)
            finishIfDone()
        }
    }

    /// The upstream's bytes are not an HTTP/1.1 response (or not one that
    /// was asked for): the framing is lost, so is the connection.
    private func refuse(_ error: HTTP1ParseError, context: ChannelHandlerContext) {
        pool?.logger.warning("app response refused, connection closed",
                             metadata: ["target": "\(target.endpoint)", "error": "\(error)"])
        fail(error, context: context)
    }

    private func fail(_ error: Error, context: ChannelHandlerContext) {
        reusable = false
        if let receiver, !responseEnded {
            self.receiver = nil
            receiver.receiveFailure(error)
        }
        context.close(promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        receiver?.receiveBatchEnded()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        receiver?.upstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        reusable = false
        switch parser.inputEnded() {
        case .success(let event?):
            // A body that runs until the close has ended.
            handle(event, context: context)
        case .success(nil):
            break
        case .failure(let error):
            if let receiver, !responseEnded {
                self.receiver = nil
                receiver.receiveFailure(error)
            }
        }
        if let receiver, !responseEnded {
            self.receiver = nil
            receiver.receiveFailure(HTTP1UpstreamError.closedEarly)
        }
        pool?.remove(self)
        context.fireChannelInactive()
    }

    /// A socket error (a reset, say): the exchange fails with it.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error, context: context)
    }
}
