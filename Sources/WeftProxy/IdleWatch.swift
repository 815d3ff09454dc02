import Logging
import NIOCore
import WeftObservability

/// The rule of the cluster's `timeouts.idle` (SPEC §5) for one app
/// connection: it closes after carrying no byte either way for `timeout`,
/// whatever rides it (a TCP relay, a CONNECT tunnel, HTTP). Whoever sees
/// the connection's bytes says so (`note()`); a check every quarter of the
/// timeout closes the connection after four quiet quarters in a row, so it
/// goes between `timeout` and 1.25 × `timeout` after its last byte.
/// Closing the app side ends the relay or tunnel behind it.
///
/// The clock outlives the handler that notes for it: `IdleWatch` does, and
/// an HTTP/1 app connection's handler takes it over (one handler fewer on
/// every read, write and flush), handing it back to an `IdleWatch` when a
/// tunnel takes the connection over. The checks stop when the connection
/// closes.
final class IdleClock {
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

    /// Something passed, either way.
    @inline(__always)
    func note() { busy = true }

    /// Starts the checks of `channel`'s idleness, once.
    func start(_ channel: Channel) {
        guard check == nil else { return }
        let quarter = TimeAmount.nanoseconds(max(timeout.nanoseconds / 4, 1_000_000))
        let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
        check = channel.eventLoop.scheduleRepeatedTask(initialDelay: quarter, delay: quarter) { _ in
            bound.value.tick(channel)
        }
        // The task holds the clock until it is cancelled.
        channel.closeFuture.whenComplete { _ in bound.value.stop() }
    }

    private func stop() {
        check?.cancel()
        check = nil
    }

    private func tick(_ channel: Channel) {
        if busy {
            busy = false
            quietQuarters = 0
            return
        }
        quietQuarters += 1
        guard quietQuarters >= 4 else { return }
        stop()
        metrics.idleTimeouts.wrappingIncrement(ordering: .relaxed)
        logger.debug("idle connection closed", metadata: ["idle": "\(timeout)"])
        channel.close(promise: nil)
    }
}

/// The first handler of an app connection's pipeline: notes for the
/// connection's `IdleClock` that something passed.
final class IdleWatch: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    let clock: IdleClock

    init(clock: IdleClock) {
        self.clock = clock
    }

    func handlerAdded(context: ChannelHandlerContext) {
        clock.start(context.channel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        clock.note()
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        clock.note()
        context.write(data, promise: promise)
    }
}
