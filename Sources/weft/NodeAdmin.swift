import Dispatch
import Logging
import NIOCore
import Synchronization
import WeftAdmin
import WeftCore
import WeftObservability
import WeftProxy

/// Draining and stopping the node, each at most once, whoever asks first:
/// a signal or the admin API.
final class NodeLifecycle: Sendable {
    private let server: ProxyServer
    private let drainTimeout: Duration
    private let stage = Mutex<(draining: EventLoopFuture<Void>?, stopping: Bool)>((nil, false))
    /// Signalled once the node is stopped.
    let stopped = DispatchSemaphore(value: 0)

    init(server: ProxyServer, drainTimeout: Duration) {
        self.server = server
        self.drainTimeout = drainTimeout
    }

    /// Starts draining (or returns the drain under way): completes once no
    /// relayed connection is left or `drain_timeout` passed.
    @discardableResult
    func drain() -> EventLoopFuture<Void> {
        stage.withLock { stage in
            if let draining = stage.draining { return draining }
            let draining = server.drain(timeout: drainTimeout)
            stage.draining = draining
            return draining
        }
    }

    /// Drains, closes every listener, then lets `weft proxy` exit.
    func stop() {
        let first = stage.withLock { stage in
            defer { stage.stopping = true }
            return !stage.stopping
        }
        guard first else { return }
        let (server, stopped) = (self.server, self.stopped)
        drain().flatMap { server.close() }.whenComplete { _ in stopped.signal() }
    }
}

/// The node as the admin listener sees it (WeftAdmin's `AdminNode`): the
/// server's state, and the process's lifecycle and log level.
final class NodeAdmin: AdminNode {
    private let server: ProxyServer
    private let lifecycle: NodeLifecycle
    private let logger: Logger

    init(server: ProxyServer, lifecycle: NodeLifecycle, logger: Logger) {
        self.server = server
        self.lifecycle = lifecycle
        self.logger = logger
    }

    var isReady: Bool { server.isReady }
    func metricsText(on loop: EventLoop) -> EventLoopFuture<String> { server.metricsText(on: loop) }
    func clusters(on loop: EventLoop) -> EventLoopFuture<[ClusterStatus]> { server.clusterStatuses(on: loop) }
    func configDump() -> String { server.configDump() }
    func listeners() -> [ListenerStatus] { server.listenerStatuses() }

    func explain(destination: String, host: String?, path: String?) -> Explanation? {
        guard let endpoint = IPEndpoint(destination) else { return nil }
        return server.explain(destination: endpoint, host: host.flatMap { $0.isEmpty ? nil : $0 },
                              path: path.flatMap { $0.isEmpty ? nil : $0 })
    }

    func drain() {
        logger.info("drain asked on the admin API")
        lifecycle.drain()
    }

    func quit() {
        logger.info("exit asked on the admin API, draining first")
        lifecycle.stop()
    }

    var logLevel: String { LogLevelControl.shared.level.rawValue }

    func setLogLevel(_ name: String) -> Bool {
        guard let level = Logger.Level(rawValue: name) else { return false }
        LogLevelControl.shared.level = level
        logger.notice("log level set on the admin API", metadata: ["level": "\(name)"])
        return true
    }
}
