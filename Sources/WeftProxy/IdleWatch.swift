import Logging
import NIOCore
import WeftObservability

/// Closes an app connection that carried no byte either way for the
/// cluster's `timeouts.idle` (SPEC §5), whatever rides it: a TCP relay, a
/// CONNECT tunnel, HTTP. The first handler of the connection's pipeline,
/// it only notes that something passed; a check every quarter of the
/// timeout closes the connection after four quiet quarters in a row, so
/// it goes between `timeout` and 1.25 × `timeout` after its last byte.
/// Closing the app side ends the relay or tunnel behind it.
final class IdleWatch: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private let timeout: TimeAmount
    private let metrics: ProxyMetrics
    private let logger: Logger
    private var busy = false
    private var quietQuarters = 0
    private var check: RepeatedTask?

    init(timeout: TimeAmount, metrics: ProxyMetrics, logger: Logger) {
        self.timeout = timeout
        self.metrics = metrics
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let quarter = TimeAmount.nanoseconds(max(timeout.nanoseconds / 4, 1_000_000))
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        check = context.eventLoop.scheduleRepeatedTask(initialDelay: quarter, delay: quarter) { _ in
            let (watch, context) = bound.value
            watch.tick(context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        busy = true
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        busy = true
        context.write(data, promise: promise)
    }

    private func tick(_ context: ChannelHandlerContext) {
        if busy {
            busy = false
            quietQuarters = 0
            return
        }
        quietQuarters += 1
        guard quietQuarters >= 4 else { return }
        check?.cancel()
        check = nil
        metrics.idleTimeouts.wrappingIncrement(ordering: .relaxed)
        logger.debug("idle connection closed", metadata: ["idle": "\(timeout)"])
        context.close(promise: nil)
    }
}
