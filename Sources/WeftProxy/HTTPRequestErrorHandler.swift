import Logging
import NIOCore
import NIOHTTP1
import WeftObservability

/// Answers an app request that NIOHTTP1 cannot parse with `400` (`431`
/// past the decoder's header size limit) and closes, counting and
/// logging it. Sits between the decoder and the handler that serves
/// requests, so that one never sees a broken request. The `400` comes in
/// order: after the responses to the requests parsed before it.
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

    init(metrics: ProxyMetrics, logger: Logger) {
        self.metrics = metrics
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard error is HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        metrics.limitHit(.httpRequest)
        // Past the decoder's header size limit: 431, as the first hop should.
        reason = (error as? HTTPParserError) == .headerOverflow ? .headersTooLarge : .badRequest
        var record = RequestRecord(direction: .outbound)
        record.answered(by: reason)
        metrics.record(record)
        logger.warning("bad HTTP request from app", metadata: ["error": "\(error)"])
        if unanswered > 0 {
            badRequestPending = true
        } else {
            answerBadRequest(context: context)
        }
    }

    private var reason = ErrorReason.badRequest

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { unanswered += 1 }
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
