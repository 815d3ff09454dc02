#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Dispatch
import Logging
import NIOCore
import NIOPosix
import Synchronization
import WeftConfig
import WeftCore
import WeftHTTP2
import WeftNetfilter
import WeftAdmin
import WeftObservability
import WeftProxy

/// `weft proxy`: runs the node until SIGTERM (or SIGINT), then drains.
struct ProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Run the mesh node: outbound (15001), inbound (15006), mesh (15008), health (15020) and admin (127.0.0.1:15000) listeners.",
        discussion: """
            Runs as the proxy user (uid 1337) so that its own connections are not
            intercepted again. SIGHUP, or a change of the config file, reloads it:
            a valid file is put in force without dropping connections, an invalid
            one is logged and the running configuration stays. SIGTERM or SIGINT
            stops accepting, fails /ready and exits once relayed connections are
            gone or drain_timeout has passed; a second signal exits at once.
            POST /drain and POST /quitquitquit on the admin API do the same
            (the first without exiting).
            """
    )

    @Option(name: .long, help: "The YAML configuration file (see docs/configuration.md).")
    var config: String

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: LogLevel = .info

    func run() throws {
        // A closed pipe (stdout, an access log FIFO) is an error to handle,
        // not a reason to die.
        signal(SIGPIPE, SIG_IGN)
        LogLevelControl.shared.level = logLevel.level
        LoggingSystem.bootstrap { label in LogfmtLogHandler(label: label) }
        let logger = Logger(label: "weft")

        let configuration: Configuration
        do {
            configuration = try ConfigLoader.load(path: config)
        } catch {
            for problem in error.problems { printError("weft proxy: \(config): \(problem)") }
            throw ExitCode(1)
        }

        let identity = try Self.identity(for: configuration, logger: logger)
        logger.info("HTTP/2 protections", metadata: ["nghttp2": "\(HTTP2Protections.detected)"])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let accessLog: AccessLog?
        do {
            accessLog = try configuration.accessLog.map { settings in
                try AccessLog(format: settings.format == .json ? .json : .text, path: settings.path, group: group)
            }
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            try? group.syncShutdownGracefully()
            throw ExitCode(1)
        }
        let server = ProxyServer(configuration: configuration, identity: identity, group: group, logger: logger,
                                 accessLog: accessLog)
        let lifecycle = NodeLifecycle(server: server, drainTimeout: configuration.drainTimeout)
        let admin = NodeAdmin(server: server, lifecycle: lifecycle, logger: logger)
        @Sendable func serve(_ router: @escaping AdminRouter) -> ProxyServer.ListenerBinder {
            { address in
                AdminServer.bind(group: group, addresses: [address], router: router)
                    .flatMapThrowing { channels in
                        guard let channel = channels.first else { throw ChannelError.ioOnClosedChannel }
                        return channel
                    }
            }
        }
        do {
            try server.start(health: serve(HealthRoutes.router(for: server)),
                             admin: serve(AdminRoutes.router(for: admin)))
        } catch {
            logger.critical("cannot start listeners", metadata: ["error": "\(error)"])
            try? group.syncShutdownGracefully()
            throw ExitCode(1)
        }

        let reloader = ConfigReloader(path: config, server: server, logger: logger)
        reloader.start()

        let signals = Self.onTermination(logger: logger) { lifecycle.stop() }
        lifecycle.stopped.wait()
        signals.forEach { $0.cancel() }
        reloader.stop()
        accessLog?.close()
        logger.info("stopped")
        try group.syncShutdownGracefully()
    }

    /// The node's id and own addresses: configured, or read from the
    /// interfaces of this network namespace.
    static func identity(for configuration: Configuration, logger: Logger) throws -> NodeIdentity {
        let addresses: [IPAddress]
        switch configuration.node.addresses {
        case .list(let list):
            addresses = list
        case .auto:
            do {
                addresses = try InterfaceAddresses.current()
            } catch {
                logger.critical("cannot read interface addresses", metadata: ["error": "\(error)"])
                throw ExitCode(1)
            }
        }
        return NodeIdentity(id: configuration.node.id ?? hostName(),
                            addresses: addresses,
                            listenerPorts: configuration.listeners.ownPorts)
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "weft" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Runs `drain` on the first SIGTERM/SIGINT; exits at once on the second.
    static func onTermination(logger: Logger, drain: @escaping @Sendable () -> Void) -> [DispatchSourceSignal] {
        let received = Mutex(0)
        return [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                let count = received.withLock { value -> Int in
                    value += 1
                    return value
                }
                if count == 1 {
                    logger.info("signal received, draining", metadata: ["signal": "\(number)"])
                    drain()
                } else {
                    logger.warning("second signal, exiting now")
                    Glibc.exit(1)
                }
            }
            source.resume()
            return source
        }
    }
}

/// `--log-level` values, as swift-log names them.
enum LogLevel: String, ExpressibleByArgument, CaseIterable {
    case trace, debug, info, notice, warning, error, critical

    var level: Logger.Level { Logger.Level(rawValue: rawValue) ?? .info }
}

func printError(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// The health listener reads the node through WeftAdmin's view of it.
extension ProxyServer: NodeView {}
