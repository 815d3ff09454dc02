import Logging
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
///
/// A request that finds no idle connection waits in its target's queue
/// while a connection is opened for it. Connects in flight per target are
/// bounded (`maxConnectsInFlightPerTarget`), and a waiter that gives up
/// (its stream was reset) leaves the queue: a flood of requests cancelled
/// at once costs the upstream a few connections, not one each. A new
/// connection goes to the first waiter; one nobody waits for any more
/// becomes idle, and an idle one serves a waiter before a new one is opened.
final class HTTP1UpstreamPool {
    struct Limits {
        /// Connections (busy or idle) per target on this loop.
        var maxConnectionsPerTarget = 1024
        /// Connects in flight at once per target on this loop.
        var maxConnectsInFlightPerTarget = 16
        /// Idle connections kept per target.
        var maxIdlePerTarget = 64
        var idleTimeout = TimeAmount.seconds(60)
    }

    /// A request waiting for a connection (`acquire`). `cancel` withdraws
    /// it; it is told at most once.
    final class Waiter {
        fileprivate let target: TargetKey
        /// Only a connection opened for it will do (a replay after a
        /// reused connection closed under the request).
        fileprivate let fresh: Bool
        fileprivate var deliver: ((Result<HTTP1UpstreamConnection, Error>) -> Void)?
        fileprivate weak var pool: HTTP1UpstreamPool?

        fileprivate init(target: TargetKey, fresh: Bool, pool: HTTP1UpstreamPool,
                         deliver: @escaping (Result<HTTP1UpstreamConnection, Error>) -> Void) {
            self.target = target
            self.fresh = fresh
            self.pool = pool
            self.deliver = deliver
        }

        /// The request no longer wants a connection (it was cancelled).
        func cancel() {
            guard deliver != nil else { return }
            deliver = nil
            pool?.forget(self)
        }

        fileprivate func tell(_ result: Result<HTTP1UpstreamConnection, Error>) {
            let deliver = self.deliver
            self.deliver = nil
            deliver?(result)
        }
    }

    /// One target's connections on this loop. A class, so a request
    /// looks it up (a dictionary read) and changes it in place, instead of
    /// mutating through the dictionary on every request.
    private final class Target {
        /// Idle connections, the most recently used last.
        var idle: [HTTP1UpstreamConnection] = []
        /// Connections open (busy or idle), including ones still connecting.
        var open = 0
        var connecting = 0
        var waiters = CircularBuffer<Waiter>()
        var serveScheduled = false
    }

    let eventLoop: EventLoop
    let limits: Limits
    private let connector: any Connector
    private var targets: [TargetKey: Target] = [:]
    private var sweepTask: Scheduled<Void>?

    /// For what the pool's connections see go wrong with an upstream.
    let logger: Logger

    /// The loop's buffers for the HTTP/1 heads its connections write,
    /// requests here and, through `LoopServices`, responses to apps.
    let headBuffers = RecycledBuffers()

    init(eventLoop: EventLoop, limits: Limits = Limits(), connector: any Connector = TCPConnector(),
         logger: Logger = Logger(label: "weft")) {
        self.eventLoop = eventLoop
        self.connector = connector
        self.limits = limits
        self.logger = logger
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

    /// Tells `deliver` of an idle connection to `target` at once (nil
    /// returned), or queues the request until a connection is opened (or
    /// freed) for it and returns its place in the queue, to `cancel` if the
    /// request goes away first. `fresh`: only a newly opened connection.
    /// At `maxConnectionsPerTarget` with nothing connecting, it fails at
    /// once with `poolExhausted`.
    @discardableResult
    func acquire(_ target: TargetKey, connectTimeout: TimeAmount, fresh: Bool = false,
                 _ deliver: @escaping (Result<HTTP1UpstreamConnection, Error>) -> Void) -> Waiter? {
        if !fresh, let connection = idleConnection(target) {
            deliver(.success(connection))
            return nil
        }
        let entry = self.entry(target)
        guard entry.connecting > 0 || entry.open < limits.maxConnectionsPerTarget else {
            deliver(.failure(HTTP1UpstreamError.poolExhausted))
            return nil
        }
        let waiter = Waiter(target: target, fresh: fresh, pool: self, deliver: deliver)
        entry.waiters.append(waiter)
        connectIfNeeded(target, entry, timeout: connectTimeout)
        return waiter
    }

    /// Opens connections while waiters outnumber the connects in flight,
    /// within the bounds.
    private func connectIfNeeded(_ target: TargetKey, _ entry: Target, timeout: TimeAmount) {
        while entry.connecting < min(entry.waiters.count, limits.maxConnectsInFlightPerTarget),
              entry.open < limits.maxConnectionsPerTarget {
            entry.open += 1
            entry.connecting += 1
            let connection = HTTP1UpstreamConnection(target: target, pool: self)
            let bound = NIOLoopBound(connection, eventLoop: eventLoop)
            let pool = NIOLoopBound(self, eventLoop: eventLoop)
            connector.connect(to: target.endpoint, on: eventLoop, timeout: timeout, halfClosure: false) { channel in
                    try channel.pipeline.syncOperations.addHandler(bound.value)
                }
                .whenComplete { result in
                    pool.value.connected(result.map { _ in bound.value }, target: target, timeout: timeout)
                }
        }
    }

    /// A connect ended: its connection goes to the first waiter, or
    /// becomes idle when nobody waits; a failure is every waiter's that the
    /// connects still in flight cannot serve.
    private func connected(_ result: Result<HTTP1UpstreamConnection, Error>, target: TargetKey, timeout: TimeAmount) {
        guard let entry = targets[target] else {
            if case .success(let connection) = result { connection.channel?.close(promise: nil) }
            return
        }
        entry.connecting -= 1
        switch result {
        case .success(let connection):
            if let waiter = entry.waiters.popFirst() {
                waiter.tell(.success(connection))
            } else {
                release(connection)
            }
            connectIfNeeded(target, entry, timeout: timeout)
        case .failure(let error):
            // The target is unreachable now: every waiter that no connect
            // still in flight can serve fails with it, rather than queueing
            // for connects of its own one after another, each as slow as
            // this one (a hang, behind an unanswering target).
            entry.open -= 1
            while entry.waiters.count > entry.connecting, let waiter = entry.waiters.popFirst() {
                waiter.tell(.failure(error))
            }
            forgetIfUnused(target, entry)
        }
    }

    /// A waiter that gave up leaves its queue.
    fileprivate func forget(_ waiter: Waiter) {
        guard let entry = targets[waiter.target],
              let index = entry.waiters.firstIndex(where: { $0 === waiter }) else { return }
        entry.waiters.remove(at: index)
    }

    /// A connection finished an exchange cleanly and may carry another:
    /// it becomes idle, and serves a waiter on the loop's next turn (not
    /// inside the exchange that just ended).
    func release(_ connection: HTTP1UpstreamConnection) {
        eventLoop.assertInEventLoop()
        let entry = self.entry(connection.target)
        if entry.idle.count >= limits.maxIdlePerTarget {
            connection.channel?.close(promise: nil)
            return
        }
        entry.idle.append(connection)
        scheduleSweep()
        if entry.waiters.contains(where: { !$0.fresh }) && !entry.serveScheduled {
            entry.serveScheduled = true
            let pool = NIOLoopBound(self, eventLoop: eventLoop)
            let target = connection.target
            eventLoop.execute { pool.value.serveWaiters(target) }
        }
    }

    /// Idle connections to the waiters that take any connection.
    private func serveWaiters(_ target: TargetKey) {
        guard let entry = targets[target] else { return }
        entry.serveScheduled = false
        var index = entry.waiters.startIndex
        while index != entry.waiters.endIndex {
            guard !entry.waiters[index].fresh else {
                index = entry.waiters.index(after: index)
                continue
            }
            guard let connection = idleConnection(target) else { return }
            entry.waiters.remove(at: index).tell(.success(connection))
            index = entry.waiters.startIndex
        }
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
    /// a target with none left and nobody waiting is forgotten.
    private func closed(_ target: TargetKey) {
        guard let entry = targets[target] else { return }
        entry.open -= 1
        forgetIfUnused(target, entry)
    }

    private func forgetIfUnused(_ target: TargetKey, _ entry: Target) {
        if entry.open <= 0 && entry.waiters.isEmpty { targets[target] = nil }
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
