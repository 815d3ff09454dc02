#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import Synchronization
import WeftConfig
import WeftDiscovery
import WeftProxy

/// Re-reads the config file on SIGHUP and when the file changes (SPEC §5,
/// Reload), and hands a valid one to the server. The file is polled once a
/// second by its identity (device, inode, size, modification time) after
/// following symlinks, which also catches a Kubernetes ConfigMap's atomic
/// symlink swap that inotify on the path would miss.
///
/// `@unchecked Sendable`: its state is the last seen identity (behind a
/// mutex), a signal source and a `RepeatingTimer`, which are thread-safe and only ever
/// started and cancelled.
final class ConfigReloader: @unchecked Sendable {
    private let path: String
    private let server: ProxyServer
    private let logger: Logger
    private let queue = DispatchQueue(label: "weft.config-reload")
    private let hangup: any DispatchSourceSignal
    private let poll: RepeatingTimer
    private let lastSeen = Mutex<FileIdentity?>(nil)

    init(path: String, server: ProxyServer, logger: Logger) {
        self.path = path
        self.server = server
        self.logger = logger
        hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: queue)
        poll = RepeatingTimer(queue: queue)
    }

    func start() {
        lastSeen.withLock { $0 = FileIdentity(path: path) }
        signal(SIGHUP, SIG_IGN)
        hangup.setEventHandler { [self] in
            logger.info("SIGHUP received, reloading configuration")
            lastSeen.withLock { $0 = FileIdentity(path: path) }
            reload()
        }
        poll.start(every: .seconds(1)) { [self] in
            let now = FileIdentity(path: path)
            let changed = lastSeen.withLock { seen -> Bool in
                defer { seen = now }
                return now != nil && now != seen
            }
            if changed {
                logger.info("configuration file changed, reloading", metadata: ["path": "\(path)"])
                reload()
            }
        }
        hangup.resume()
    }

    func stop() {
        hangup.cancel()
        poll.cancel()
    }

    /// Loads and validates the file; a valid one goes to the server, an
    /// invalid one is counted and logged with every problem.
    private func reload() {
        do {
            server.reload(try ConfigLoader.load(path: path))
        } catch {
            server.reloadFailed(error.problems.map(\.description))
        }
    }
}
