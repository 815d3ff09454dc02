import NIOCore
import NIOHTTP1
import NIOPosix
import WeftCore
import WeftNetfilter

/// Identifies an upstream: where to connect.
struct TargetKey: Hashable {
    var endpoint: IPEndpoint
}

/// Keep-alive HTTP/1.1 connections to upstreams, for one event loop.
///
/// Connections are opened on this loop, so a request and the upstream it
/// uses never cross threads. Idle connections are reused newest first (the
/// warmest socket), capped per target, and closed after `idleTimeout`.
final class HTTP1UpstreamPool {
    struct Limits {
        /// Connections (busy or idle) per target on this loop.
        var maxConnectionsPerTarget = 1024
        /// Idle connections kept per target.
        var maxIdlePerTarget = 64
        var idleTimeout = TimeAmount.seconds(60)
        var decoder = NIOHTTPDecoderLimitConfiguration()
    }

    let eventLoop: EventLoop
    let limits: Limits
    private var idle: [TargetKey: [HTTP1UpstreamConnection]] = [:]
    private var open: [TargetKey: Int] = [:]
    private var sweepTask: Scheduled<Void>?

    init(eventLoop: EventLoop, limits: Limits = Limits()) {
        self.eventLoop = eventLoop
        self.limits = limits
    }

    /// An idle connection to `target`, or a new one.
    func acquire(_ target: TargetKey, connectTimeout: TimeAmount) -> EventLoopFuture<HTTP1UpstreamConnection> {
        eventLoop.assertInEventLoop()
        while let connection = idle[target]?.popLast() {
            if connection.isActive { return eventLoop.makeSucceededFuture(connection) }
        }
        guard open[target, default: 0] < limits.maxConnectionsPerTarget else {
            return eventLoop.makeFailedFuture(HTTP1UpstreamError.poolExhausted)
        }
        open[target, default: 0] += 1
        let connection = HTTP1UpstreamConnection(target: target, pool: self)
        let bound = NIOLoopBound(connection, eventLoop: eventLoop)
        let decoderLimits = limits.decoder
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let decoder = HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes,
                                                      informationalResponseStrategy: .forward,
                                                      limitConfiguration: decoderLimits)
                    try channel.pipeline.syncOperations.addHandlers([
                        HTTPRequestEncoder(), ByteToMessageHandler(decoder), bound.value,
                    ])
                }
            }
            .connect(to: SocketAddress(target.endpoint))
            .map { _ in bound.value }
            .flatMapErrorThrowing { [weak self] error in
                self?.open[target, default: 1] -= 1
                throw error
            }
    }

    /// A connection finished an exchange cleanly and may carry another.
    func release(_ connection: HTTP1UpstreamConnection) {
        eventLoop.assertInEventLoop()
        var list = idle[connection.target, default: []]
        if list.count >= limits.maxIdlePerTarget {
            connection.channel?.close(promise: nil)
            return
        }
        list.append(connection)
        idle[connection.target] = list
        scheduleSweep()
    }

    /// A connection closed: forget it.
    func remove(_ connection: HTTP1UpstreamConnection) {
        eventLoop.assertInEventLoop()
        open[connection.target, default: 1] -= 1
        if open[connection.target] == 0 { open[connection.target] = nil }
        if var list = idle[connection.target], let index = list.firstIndex(where: { $0 === connection }) {
            list.remove(at: index)
            idle[connection.target] = list.isEmpty ? nil : list
        }
    }

    /// Connections open to `target` on this loop, busy or idle.
    func openCount(_ target: TargetKey) -> Int { open[target, default: 0] }

    /// Closes idle connections older than the idle timeout, then reschedules
    /// while any idle connection remains.
    private func scheduleSweep() {
        guard sweepTask == nil else { return }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        sweepTask = eventLoop.scheduleTask(in: .nanoseconds(limits.idleTimeout.nanoseconds / 2)) {
            let pool = bound.value
            pool.sweepTask = nil
            let cutoff = NIODeadline.now() - pool.limits.idleTimeout
            for (_, list) in pool.idle {
                for connection in list where connection.idleSince <= cutoff {
                    connection.channel?.close(promise: nil)
                }
            }
            if !pool.idle.isEmpty { pool.scheduleSweep() }
        }
    }
}
