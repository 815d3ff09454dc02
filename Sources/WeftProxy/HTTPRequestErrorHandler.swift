import Logging
import NIOCore
import NIOHTTP1
import WeftObservability

/// Answers an app request that `HTTP1RequestDecoder` cannot parse with
/// `400` (`431` past the parser's head size limit) and closes, counting and
/// logging it. Sits between the decoder and the handler that serves
/// requests, so that one never sees a broken request. The `400` comes in
/// order: after the responses to the requests parsed before it.
///
/// A request whose head was already passed on can still break in its body
/// (a bad chunk size, a chunk longer than it said): then the handler
/// serving it gets ``RequestBroken`` and answers or closes, since only it
/// knows whether a response has started.
final class HTTPRequestErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let metrics: ProxyMetrics
    private let logger: Logger
    /// Requests passed on whose response has not ended yet.
    private var unanswered = 0
    /// A request failed to parse while others were unanswered.
    private var badRequestPending = false
    /// A head was passed on and its end has not been.
    private var midRequest = false

    /// The request being received broke after its head was passed on: the
    /// serving handler must drop whatever carries it and answer 400 (or
    /// close, if its response had started).
    struct RequestBroken {}

    init(metrics: ProxyMetrics, logger: Logger) {
        self.metrics = metrics
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let error = error as? HTTP1ParseError else {
            context.fireErrorCaught(error)
            return
        }
        metrics.limitHit(.httpRequest)
        // Past the parser's head size limit: 431, as the first hop should.
        reason = error == .headTooLarge ? .headersTooLarge : .badRequest
        var record = RequestRecord(direction: .outbound)
        record.answered(by: reason)
        metrics.record(record)
        logger.warning("bad HTTP request from app", metadata: ["error": "\(error.description)"])
        if midRequest {
            midRequest = false
            context.fireUserInboundEventTriggered(RequestBroken())
        } else if unanswered > 0 {
            badRequestPending = true
        } else {
            answerBadRequest(context: context)
        }
    }

    private var reason = ErrorReason.badRequest

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            unanswered += 1
            midRequest = true
        case .end:
            midRequest = false
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    private func answerBadRequest(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(ErrorResponder.head(reason, version: .http1_1, keepAlive: false))),
                      promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ErrorResponder.body(reason)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else { return context.write(data, promise: promise) }
        unanswered = max(0, unanswered - 1)
        context.write(data, promise: promise)
        if badRequestPending && unanswered == 0 {
            badRequestPending = false
            answerBadRequest(context: context)
        }
    }
}
