import NIOCore

/// Reads an outbound connection's first bytes until `ProtocolDetector`
/// decides, or `timeout` passes (then it is TCP, SPEC §4 `detect_timeout`),
/// and hands the verdict and every byte read so far to `decided`. Removes
/// itself first, so the next handlers see the connection from its start.
final class ProtocolDetectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let timeout: TimeAmount
    private let decided: (ChannelHandlerContext, DetectedProtocol, ByteBuffer) -> Void
    private var buffered: ByteBuffer?
    private var timer: Scheduled<Void>?
    private var done = false
    /// The most we buffer before calling it TCP.
    static let maximumProbe = ProtocolDetector.maximumRequestLineProbe

    init(timeout: TimeAmount, decided: @escaping (ChannelHandlerContext, DetectedProtocol, ByteBuffer) -> Void) {
        self.timeout = timeout
        self.decided = decided
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            handler.decide(context, .tcp)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffered == nil { buffered = incoming } else { buffered?.writeBuffer(&incoming) }
        guard let buffered else { return }
        if let verdict = ProtocolDetector.detect(buffered) {
            decide(context, verdict)
        } else if buffered.readableBytes >= Self.maximumProbe {
            decide(context, .tcp)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The app finished sending before we could tell: it is not HTTP.
        // The handlers installed for the verdict must hear of the EOF too,
        // and this handler has left the pipeline by then: fire it anew.
        if let channelEvent = event as? ChannelEvent, case .inputClosed = channelEvent, !done {
            let pipeline = context.pipeline
            decide(context, .tcp)
            pipeline.fireUserInboundEventTriggered(event)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        done = true
        context.fireChannelInactive()
    }

    private func decide(_ context: ChannelHandlerContext, _ verdict: DetectedProtocol) {
        guard !done else { return }
        done = true
        timer?.cancel()
        let bytes = buffered ?? context.channel.allocator.buffer(capacity: 0)
        buffered = nil
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        decided(context, verdict, bytes)
    }
}
