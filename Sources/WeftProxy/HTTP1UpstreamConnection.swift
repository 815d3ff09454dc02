import NIOCore
import NIOHTTP1

/// Receives one response from an HTTP/1.1 upstream.
protocol HTTP1ResponseReceiver: AnyObject {
    /// A 1xx informational head, or the final head (once).
    func receiveHead(_ head: HTTPResponseHead)
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

enum HTTP1UpstreamError: Error, Equatable {
    /// The upstream closed before its response ended.
    case closedEarly
    /// The pool refused another connection to this target.
    case poolExhausted

    /// Whether `error` says the upstream's bytes broke HTTP/1.1 (RFC 9112
    /// framing or field rules, or a response nobody asked for), rather than
    /// merely stopping: answered `502 bad_response`, never replayed.
    static func isMalformedResponse(_ error: Error) -> Bool {
        if let parser = error as? HTTPParserError { return parser != .invalidEOFState }
        return error is NIOHTTPDecoderError
    }
}

/// One keep-alive HTTP/1.1 connection to an upstream (a local app, or a
/// plain endpoint): carries one exchange at a time.
///
/// Pipeline: `HTTPRequestEncoder`, `HTTPResponseDecoder` (1xx forwarded),
/// then this handler. It hands response parts to the current receiver and
/// tells the pool when the connection can carry the next request: only
/// once both the request and the response ended cleanly and neither side
/// asked to close.
final class HTTP1UpstreamConnection: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let target: TargetKey
    private(set) var channel: Channel?
    private var context: ChannelHandlerContext?
    private weak var pool: HTTP1UpstreamPool?
    private var receiver: HTTP1ResponseReceiver?
    private var requestEnded = false
    private var responseEnded = false
    private var reusable = true
    /// Whether the response is read (autoRead); changed only when it changes.
    private var reading = true
    /// When the connection went idle (for the pool's idle timeout).
    var idleSince = NIODeadline.now()
    /// How long the upstream keeps an idle connection, as its last
    /// response said (`Keep-Alive: timeout=N`); nil when it did not say.
    private(set) var keepAliveTimeout: TimeAmount?
    /// Whether the connection carried an exchange before the current one.
    private(set) var reused = false

    init(target: TargetKey, pool: HTTP1UpstreamPool) {
        self.target = target
        self.pool = pool
    }

    var isActive: Bool { context?.channel.isActive ?? false }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    // MARK: the exchange

    /// Starts an exchange: writes the request head, unflushed; the caller
    /// flushes (at once when no body part follows right away, so the app
    /// can answer `Expect: 100-continue`).
    func start(_ head: HTTPRequestHead, receiver: HTTP1ResponseReceiver) {
        if self.receiver == nil && (requestEnded || responseEnded) { reused = true }
        self.receiver = receiver
        requestEnded = false
        responseEnded = false
        if !head.isKeepAlive { reusable = false }
        context?.write(wrapOutboundOut(.head(head)), promise: nil)
    }

    func sendBody(_ buffer: ByteBuffer) {
        context?.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    }

    func flush() {
        context?.flush()
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
        context?.writeAndFlush(wrapOutboundOut(.end(trailers)), promise: nil)
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
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if !head.isKeepAlive { reusable = false }
            if let value = head.headers.first(name: "keep-alive") { keepAliveTimeout = Self.timeout(inKeepAlive: value) }
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
        if let receiver, !responseEnded {
            self.receiver = nil
            receiver.receiveFailure(HTTP1UpstreamError.closedEarly)
        }
        pool?.remove(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if HTTP1UpstreamError.isMalformedResponse(error) {
            // A response that breaks RFC 9112, or one nobody asked for (bytes
            // past the last response's framing, which would otherwise answer
            // the next request): the connection's framing is lost.
            pool?.logger.warning("app response refused, connection closed",
                                 metadata: ["target": "\(target.endpoint)", "error": "\(error)"])
        }
        reusable = false
        if let receiver, !responseEnded {
            self.receiver = nil
            receiver.receiveFailure(error)
        }
        context.close(promise: nil)
    }
}
