import Logging
import NIOCore
import NIOHTTP1

/// Answers an app request that NIOHTTP1 cannot parse (malformed, or past
/// the decoder's header size limit) with `400` and closes, counting and
/// logging it. Sits after `HTTPServerPipelineHandler`, before the handler
/// that serves requests, so those never see a broken one.
final class HTTPRequestErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let metrics: ProxyMetrics
    private let logger: Logger
    private var responseInFlight = false

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
        metrics.countErrorResponse(.badRequest)
        logger.warning("bad HTTP request from app", metadata: ["error": "\(error)"])
        if responseInFlight {
            context.close(promise: nil)
            return
        }
        let headers = HTTPHeaders([("content-length", "0"), ("connection", "close"), (MeshTranslation.reasonHeader, ErrorReason.badRequest.rawValue)])
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .badRequest, headers: headers))),
                      promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head: responseInFlight = true
        case .end: responseInFlight = false
        case .body: break
        }
        context.write(data, promise: promise)
    }
}
