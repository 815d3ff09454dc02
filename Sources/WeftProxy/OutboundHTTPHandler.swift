import Logging
import NIOCore
import NIOHTTP1
import WeftCore
import WeftHTTP2
import WeftRouting

/// Where an app connection's HTTP requests go: a meshed cluster, with the
/// endpoint chosen per request when the app called the VIP.
struct MeshRoute {
    let cluster: RoutedCluster
    /// The endpoint the app itself named, if it called one directly.
    let fixedEndpoint: IPEndpoint?
    let meshPort: UInt16

    func pickEndpoint() -> IPEndpoint? { fixedEndpoint ?? cluster.balancer.pick() }
}

/// Serves one app connection speaking HTTP/1.x to a meshed cluster: each
/// request becomes a stream on the pooled mesh connection to the chosen
/// endpoint's node (SPEC §4, the upgrade side).
///
/// Pipeline: `HTTPResponseEncoder`, `HTTPRequestDecoder`,
/// `HTTPServerPipelineHandler` (one request at a time, pipelined ones wait
/// their turn), then this handler. Reads of the app socket stop while the
/// current stream cannot take more body, or while its stream is being set up.
final class OutboundHTTPHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let route: MeshRoute
    private let pool: MeshConnectionPool
    private let metrics: ProxyMetrics
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var exchange: MeshOutboundExchange?
    private var readHeld = false
    private(set) var readsPaused = false

    init(route: MeshRoute, pool: MeshConnectionPool, metrics: ProxyMetrics, logger: Logger) {
        self.route = route
        self.pool = pool
        self.metrics = metrics
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard let endpoint = route.pickEndpoint() else {
                respondWithError(.serviceUnavailable, reason: "no_endpoint", keepAlive: head.isKeepAlive)
                return
            }
            let peer = IPEndpoint(address: endpoint.address, port: route.meshPort)
            let exchange = MeshOutboundExchange(handler: self, head: head, destination: endpoint,
                                                cluster: route.cluster.name, logger: logger)
            self.exchange = exchange
            exchange.start(pool: pool, peer: peer)
        case .body(let buffer):
            exchange?.sendBody(buffer)
        case .end(let trailers):
            exchange?.sendEnd(trailers)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.appBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        exchange?.appClosed()
        exchange = nil
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

    func setReadsPaused(_ paused: Bool) {
        readsPaused = paused
        if !paused, readHeld, let context {
            readHeld = false
            context.read()
        }
    }

    // MARK: responses, called by the exchange

    var appIsWritable: Bool { context?.channel.isWritable ?? false }

    func writeHead(_ head: HTTPResponseHead) {
        context?.writeAndFlush(wrapOutboundOut(.head(head)), promise: nil)
    }

    func writeBody(_ buffer: ByteBuffer) {
        context?.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    }

    func writeEnd(_ trailers: HTTPHeaders?, close: Bool, exchange finished: MeshOutboundExchange) {
        guard let context else { return }
        if exchange === finished { exchange = nil }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(trailers))).whenComplete { _ in
            if close { channel.close(promise: nil) }
        }
        setReadsPaused(false)
    }

    /// The response had started and the stream broke: the app learns by
    /// the connection closing, the only signal HTTP/1.1 has left.
    func abortResponse() {
        exchange = nil
        context?.close(promise: nil)
    }

    /// An error response weft generates itself (SPEC §4: 502, 503, 504),
    /// with `weft-reason` saying why.
    func respondWithError(_ status: HTTPResponseStatus, reason: String, keepAlive: Bool,
                          version: HTTPVersion = .http1_1, finished: MeshOutboundExchange? = nil) {
        metrics.countErrorResponse(status: Int(status.code))
        let body = ByteBuffer(string: "\(status.code) \(status.reasonPhrase): \(reason)\n")
        var headers = HTTPHeaders([
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", String(body.readableBytes)),
            ("weft-reason", reason),
        ])
        if !keepAlive { headers.add(name: "connection", value: "close") }
        writeHead(HTTPResponseHead(version: version, status: status, headers: headers))
        writeBody(body)
        if let finished {
            writeEnd(nil, close: !keepAlive, exchange: finished)
        } else {
            let channel = context?.channel
            context?.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { channel?.close(promise: nil) }
            }
        }
    }
}
