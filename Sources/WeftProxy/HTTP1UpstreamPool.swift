import NIOCore
import NIOHTTP1
import NIOPosix
import WeftCore
import WeftNetfilter
import WeftTransport

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

    /// One target's connections on this loop. A class, so a request
    /// looks it up (a dictionary read) and changes it in place, instead of
    /// mutating through the dictionary on every request.
    private final class Target {
        /// Idle connections, the most recently used last.
        var idle: [HTTP1UpstreamConnection] = []
        /// Connections open (busy or idle), including ones still connecting.
        var open = 0
    }

    let eventLoop: EventLoop
    let limits: Limits
    private let connector: any Connector
    private var targets: [TargetKey: Target] = [:]
    private var sweepTask: Scheduled<Void>?

    init(eventLoop: EventLoop, limits: Limits = Limits(), connector: any Connector = TCPConnector()) {
        self.eventLoop = eventLoop
        self.connector = connector
        self.limits = limits
    }

    /// An idle connection to `target`, if one is still open: the common
    /// case, answered without a future.
    func idleConnection(_ target: TargetKey) -> HTTP1UpstreamConnection? {
        eventLoop.assertInEventLoop()
        guard let entry = targets[target] else { return nil }
        while let connection = entry.idle.popLast() {
            guard connection.isActive else { continue }
            if connection.isFresh { return connection }
            // The upstream may be closing it as we speak: do not race it.
            connection.channel?.close(promise: nil)
        }
        return nil
    }

    /// An idle connection to `target`, or a new one.
    func acquire(_ target: TargetKey, connectTimeout: TimeAmount) -> EventLoopFuture<HTTP1UpstreamConnection> {
        if let connection = idleConnection(target) { return eventLoop.makeSucceededFuture(connection) }
        let entry = self.entry(target)
        guard entry.open < limits.maxConnectionsPerTarget else {
            return eventLoop.makeFailedFuture(HTTP1UpstreamError.poolExhausted)
        }
        entry.open += 1
        let connection = HTTP1UpstreamConnection(target: target, pool: self)
        let bound = NIOLoopBound(connection, eventLoop: eventLoop)
        let decoderLimits = limits.decoder
        return connector.connect(to: target.endpoint, on: eventLoop, timeout: connectTimeout, halfClosure: false) { channel in
                let decoder = HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes,
                                                  informationalResponseStrategy: .forward,
                                                  limitConfiguration: decoderLimits)
                try channel.pipeline.syncOperations.addHandlers([
                    HTTPRequestEncoder(), ByteToMessageHandler(decoder), bound.value,
                ])
            }
            .map { _ in bound.value }
            .flatMapErrorThrowing { [weak self] error in
                self?.closed(target)
                throw error
            }
    }

    /// A connection finished an exchange cleanly and may carry another.
    func release(_ connection: HTTP1UpstreamConnection) {
        eventLoop.assertInEventLoop()
        let entry = self.entry(connection.target)
        if entry.idle.count >= limits.maxIdlePerTarget {
            connection.channel?.close(promise: nil)
            return
        }
        entry.idle.append(connection)
        scheduleSweep()
    }

    /// A connection closed: forget it.
    func remove(_ connection: HTTP1UpstreamConnection) {
        eventLoop.assertInEventLoop()
        if let entry = targets[connection.target], let index = entry.idle.firstIndex(where: { $0 === connection }) {
            entry.idle.remove(at: index)
        }
        closed(connection.target)
    }

    /// Closes the idle connections to targets `matching` says (endpoints
    /// that left the configuration); busy ones finish their exchange and
    /// are not reused after it only if they too become idle and swept.
    func closeIdle(matching: (TargetKey) -> Bool) {
        eventLoop.assertInEventLoop()
        for (key, entry) in targets where matching(key) {
            let idle = entry.idle
            entry.idle.removeAll()
            for connection in idle { connection.channel?.close(promise: nil) }
        }
    }

    /// Connections open to `target` on this loop, busy or idle.
    func openCount(_ target: TargetKey) -> Int { targets[target]?.open ?? 0 }

    private func entry(_ target: TargetKey) -> Target {
        if let entry = targets[target] { return entry }
        let entry = Target()
        targets[target] = entry
        return entry
    }

    /// One connection to `target` is gone (closed, or never connected);
    /// a target with none left is forgotten.
    private func closed(_ target: TargetKey) {
        guard let entry = targets[target] else { return }
        entry.open -= 1
        if entry.open <= 0 { targets[target] = nil }
    }

    /// Closes idle connections older than the idle timeout, then reschedules
    /// while any idle connection remains.
    private func scheduleSweep() {
        guard sweepTask == nil else { return }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        sweepTask = eventLoop.scheduleTask(in: .nanoseconds(limits.idleTimeout.nanoseconds / 2)) {
            let pool = bound.value
            pool.sweepTask = nil
            let cutoff = NIODeadline.now() - pool.limits.idleTimeout
            var anyIdle = false
            for (_, entry) in pool.targets {
                for connection in entry.idle where connection.idleSince <= cutoff {
                    connection.channel?.close(promise: nil)
                }
                anyIdle = anyIdle || !entry.idle.isEmpty
            }
            if anyIdle { pool.scheduleSweep() }
        }
    }
}
