#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import Synchronization
import WeftConfig
import WeftCore
import WeftDiscovery
import WeftDNS
import WeftMesh
import WeftNetfilter
import WeftObservability
import WeftRouting
import WeftTLS
import WeftTransport
import WeftUpstream

/// The node: the outbound, inbound and health listeners of one process.
///
/// Accepted connections are spread over the event loops of `group`; each
/// connection's upstream is opened on that same loop. `start()` binds
/// everything and marks the node ready; `drain()` stops accepting, fails
/// `/ready`, and completes when the relayed connections are gone or the
/// drain timeout passes.
public final class ProxyServer: Sendable {
    public enum Listener: String, Sendable, CaseIterable {
        case outbound, inbound, mesh, health, admin, egress, dns
        case httpRouting = "http_routing"
    }

    public let metrics: ProxyMetrics
    /// Relayed connections one listener (outbound or inbound) carries at
    /// once by default; past it, new ones are reset and counted (`overload`).
    public static let maxConnectionsPerListener = 50_000
    private let maxConnections: Int
    private let configuration: Configuration
    let identity: NodeIdentity
    private let resolver: any OriginalDestinationResolver
    let group: any EventLoopGroup
    private let logger: Logger
    /// The configuration as loaded, the endpoints discovery found for its
    /// dynamic clusters, their sources, and the snapshot built from them
    /// that every loop was last given (loops switch on their own turn).
    struct Runtime {
        var configured: Configuration
        var discovered: [String: [Endpoint]] = [:]
        var sources: [String: any EndpointSource] = [:]
        var snapshot: RuntimeSnapshot

        /// The configuration with each dynamic cluster's endpoints filled in.
        func effective() -> Configuration {
            var configuration = configured
            for index in configuration.clusters.indices where configuration.clusters[index].discovery != .static {
                configuration.clusters[index].endpoints = discovered[configuration.clusters[index].name] ?? []
            }
            return configuration
        }
    }
    let runtime: Mutex<Runtime>
    /// Each cluster's endpoint states (health, ejections), which outlive
    /// snapshots.
    let upstreams: UpstreamRuntime
    /// Names for `discovery: dns`.
    private let hostResolver: any HostResolver
    /// Opens every upstream connection; counts each connect's outcome.
    private let connector: any Connector
    /// The port peer nodes' mesh listeners use; our own by default (every
    /// node of a mesh runs the same ports). Tests with two nodes on one
    /// host set it apart.
    private let peerMeshPort: UInt16

    struct State {
        var ready = false
        var draining = false
        var channels: [Listener: [Channel]] = [:]
        var services: LoopServiceRegistry?
        /// Active health checks, on one loop; made at start.
        var checker: NIOLoopBound<HealthChecker>?
        /// Mesh TLS credentials (mTLS on), loaded at start.
        var meshTLS: TLSCredentialFiles?
        /// Checks the mesh TLS files for rotation.
        var rotationCheck: RepeatedTask?
        /// DNS capture, when `listeners.dns` is set.
        var dns: DNSCapture?
    }
    let state = Mutex(State())

    public init(
        configuration: Configuration,
        identity: NodeIdentity,
        resolver: any OriginalDestinationResolver = KernelOriginalDestination(),
        group: any EventLoopGroup,
        logger: Logger,
        peerMeshPort: UInt16? = nil,
        maxConnectionsPerListener: Int = ProxyServer.maxConnectionsPerListener,
        hostResolver: any HostResolver = SystemResolver(),
        accessLog: AccessLog? = nil
    ) {
        self.metrics = ProxyMetrics(accessLog: accessLog, group: group)
        self.maxConnections = maxConnectionsPerListener
        self.peerMeshPort = peerMeshPort ?? configuration.listeners.mesh.port
        self.configuration = configuration
        self.identity = identity
        self.resolver = resolver
        self.group = group
        self.logger = logger
        let upstreams = UpstreamRuntime { [logger] cluster, endpoint, event in
            switch event {
            case .ejected(let time, let count):
                logger.warning("endpoint ejected", metadata: ["cluster": "\(cluster)", "endpoint": "\(endpoint)",
                                                              "for": "\(time)", "ejections": "\(count)"])
            case .ejectionSkipped:
                logger.warning("endpoint not ejected: max_ejection_percent reached",
                               metadata: ["cluster": "\(cluster)", "endpoint": "\(endpoint)"])
            case .returned:
                logger.info("endpoint back from ejection", metadata: ["cluster": "\(cluster)", "endpoint": "\(endpoint)"])
            }
        }
        self.upstreams = upstreams
        self.runtime = Mutex(Runtime(configured: configuration,
                                     snapshot: RuntimeSnapshot(configuration: configuration, runtime: upstreams)))
        self.hostResolver = hostResolver
        let metrics = self.metrics
        self.connector = TCPConnector { _, connected in metrics.countConnect(connected) }
    }

    /// Opens one listening channel on `address` (the health listener's
    /// server, which lives outside this module).
    public typealias ListenerBinder = @Sendable (SocketAddress) -> EventLoopFuture<Channel>

    /// Binds every listener (the health and admin ones with `health` and
    /// `admin`, when given), then reports ready. Throws if an IPv4 listener cannot bind; an IPv6
    /// one that cannot (IPv6 off) is logged and skipped.
    public func start(health: ListenerBinder? = nil, admin: ListenerBinder? = nil) throws {
        let listeners = configuration.listeners
        let meshTLS = try listeners.mesh.tls.map {
            try TLSCredentialFiles(certificate: $0.cert, key: $0.key, ca: $0.ca)
        }
        if let meshTLS {
            state.withLock { $0.meshTLS = meshTLS }
            watchForRotation(meshTLS)
            logger.info("mesh mTLS on", metadata: [
                "identity": "\(meshTLS.context.identity)",
                "certificate_expires_in_s": "\(meshTLS.context.secondsLeftAtLoad)",
            ])
        }
        let services = try makeServices(meshTLS: meshTLS)
        let checkerLoop = group.next()
        let (connector, metrics, logger) = (self.connector, self.metrics, self.logger)
        let checker = try checkerLoop.submit {
            NIOLoopBound(HealthChecker(loop: checkerLoop, connector: connector, metrics: metrics, logger: logger),
                         eventLoop: checkerLoop)
        }.wait()
        state.withLock {
            $0.services = services
            $0.checker = checker
        }
        let snapshot = runtime.withLock { $0.snapshot }
        checkerLoop.execute { checker.value.update(snapshot) }
        let outbound = OutboundRouter(snapshot: snapshot, identity: identity,
                                      passthroughConnectTimeout: TimeAmount(ClusterTimeouts().connect))
        let inbound = InboundRouter(settings: listeners.inbound, identity: identity,
                                    connectTimeout: TimeAmount(ClusterTimeouts().connect))
        try bind(.outbound, port: listeners.outbound.port, hosts: [.loopbackV4, .loopbackV6]) { address in
            self.relayListenerBootstrap(router: outbound, address: address, services: services).bind(to: address)
        }
        try bind(.inbound, port: listeners.inbound.port, hosts: [.v4(0), .v6(high: 0, low: 0)]) { address in
            self.relayListenerBootstrap(router: inbound, address: address, services: nil).bind(to: address)
        }
        try bind(.mesh, port: listeners.mesh.port, hosts: [.v4(0), .v6(high: 0, low: 0)]) { address in
            self.meshListenerBootstrap(address: address, services: services, tls: meshTLS).bind(to: address)
        }
        // Explicit local ports (SPEC §5): loopback only, never redirected;
        // the destination is the listener, so nothing asks the kernel.
        for egress in listeners.egress {
            let router = EgressRouter(cluster: egress.cluster, snapshot: snapshot)
            try bind(.egress, port: egress.port, hosts: [.loopbackV4]) { address in
                self.relayListenerBootstrap(router: router, address: address, services: services,
                                            resolver: LocalDestination()).bind(to: address)
            }
        }
        if let routing = listeners.httpRouting {
            let router = HTTPRoutingRouter(snapshot: snapshot)
            try bind(.httpRouting, port: routing.port, hosts: [.loopbackV4]) { address in
                self.relayListenerBootstrap(router: router, address: address, services: services,
                                            resolver: LocalDestination()).bind(to: address)
            }
        }
        if let dns = listeners.dns {
            try startDNS(dns, snapshot: snapshot)
        }
        if let health {
            try bind(.health, port: listeners.health.port, hosts: [.v4(0), .v6(high: 0, low: 0)], health)
        }
        if let admin {
            try bind(.admin, port: listeners.admin.port, hosts: [listeners.admin.address], admin)
        }
        state.withLock { $0.ready = true }
        reconcileSources()
        logger.info("node ready", metadata: [
            "node": "\(identity.id)", "clusters": "\(snapshot.upstreams.count)", "version": "\(snapshot.version)",
            "addresses": "\(identity.addresses.map(String.init(describing:)).sorted().joined(separator: ","))",
        ])
    }

    /// How a reload went.
    public enum ReloadResult: Equatable, Sendable {
        /// The new configuration is in force, as `version`.
        case applied(version: Int)
        /// It is the configuration already in force.
        case unchanged(version: Int)
    }

    /// Puts a new, validated configuration in force without dropping
    /// connections or requests: each loop switches to the new snapshot on
    /// its next turn; a connection keeps the snapshot it was accepted
    /// under, balancer state of clusters and endpoints that stay carries
    /// over, and idle connections to endpoints that left are closed.
    /// Listener and node settings cannot change while running: they keep
    /// their values (logged) until a restart.
    @discardableResult
    public func reload(_ next: Configuration) -> ReloadResult {
        let result: (ReloadResult, RuntimeSnapshot?, [String]) = runtime.withLock { runtime in
            var next = next
            var kept: [String] = []
            if next.listeners != runtime.configured.listeners { kept.append("listeners") }
            if next.node != runtime.configured.node { kept.append("node") }
            if next.drainTimeout != runtime.configured.drainTimeout { kept.append("drain_timeout") }
            if next.accessLog != runtime.configured.accessLog { kept.append("access_log") }
            next.listeners = runtime.configured.listeners
            next.node = runtime.configured.node
            next.drainTimeout = runtime.configured.drainTimeout
            next.accessLog = runtime.configured.accessLog
            guard next != runtime.configured else { return (.unchanged(version: runtime.snapshot.version), nil, kept) }
            runtime.configured = next
            let snapshot = RuntimeSnapshot(configuration: runtime.effective(), version: runtime.snapshot.version + 1,
                                           runtime: upstreams)
            runtime.snapshot = snapshot
            return (.applied(version: snapshot.version), snapshot, kept)
        }
        let (outcome, snapshot, kept) = result
        if !kept.isEmpty {
            logger.warning("configuration reload: these settings take effect on restart",
                           metadata: ["kept": "\(kept.joined(separator: ","))"])
        }
        switch outcome {
        case .applied(let version):
            metrics.configReloaded(.success)
            if let snapshot { publish(snapshot) }
            reconcileSources()
            logger.info("configuration reloaded", metadata: [
                "version": "\(version)", "clusters": "\(snapshot?.upstreams.count ?? 0)",
                "routes": "\(snapshot?.configuration.routes.count ?? 0)",
            ])
        case .unchanged(let version):
            metrics.configReloaded(.unchanged)
            logger.info("configuration unchanged", metadata: ["version": "\(version)"])
        }
        return outcome
    }

    /// DNS capture on 127.0.0.1 (where `weft init --capture-dns` sends it),
    /// UDP and TCP.
    private func startDNS(_ listener: DNSListener, snapshot: RuntimeSnapshot) throws {
        let resolvConf = ResolvConf(text: (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? "")
        let upstream = try DNSCapture.upstream(listener.upstream, resolvConf: resolvConf)
        let capture = DNSCapture(upstream: upstream, followsOriginal: listener.upstream == .original,
                                 searchDomains: resolvConf.search, configuration: snapshot.configuration,
                                 metrics: metrics, logger: logger)
        state.withLock { $0.dns = capture }
        try bind(.dns, port: listener.port, hosts: [.loopbackV4]) { capture.bindUDP(group: group, at: $0) }
        try bind(.dns, port: listener.port, hosts: [.loopbackV4]) { capture.bindTCP(group: group, at: $0) }
        logger.info("DNS capture", metadata: ["upstream": "\(upstream)", "search": "\(resolvConf.search.joined(separator: ","))"])
    }

    /// Hands a snapshot to every loop.
    private func publish(_ snapshot: RuntimeSnapshot) {
        state.withLock { $0.dns }?.update(snapshot.configuration)
        let (services, checker) = state.withLock { ($0.services, $0.checker) }
        services?.forEach { $0.publish(snapshot) }
        if let checker { checker.eventLoop.execute { checker.value.update(snapshot) } }
    }

    /// Starts a source for each dynamic cluster that has none with the same
    /// settings, and stops those of clusters that left or changed; a
    /// cluster whose source stays keeps its discovered endpoints.
    private func reconcileSources() {
        let (logger, metrics) = (self.logger, self.metrics)
        let (started, stopped): ([(String, any EndpointSource)], [any EndpointSource]) = runtime.withLock { runtime in
            var started: [(String, any EndpointSource)] = []
            var stopped: [any EndpointSource] = []
            var wanted: [String: any EndpointSource] = [:]
            for cluster in runtime.configured.clusters {
                let name = cluster.name
                guard let source = EndpointSources.make(for: cluster, resolver: hostResolver, eventLoops: group,
                                                       kubernetesAPI: runtime.configured.kubernetesAPI,
                                                       onProblem: { problem in
                    metrics.endpointDiscoveryProblems.wrappingIncrement(ordering: .relaxed)
                    logger.warning("endpoint discovery: keeping the last endpoints", metadata: [
                        "cluster": "\(name)", "problem": "\(problem)",
                    ])
                }) else { continue }
                if let running = runtime.sources[name], running.settings == source.settings {
                    wanted[name] = running
                } else {
                    wanted[name] = source
                    started.append((name, source))
                }
            }
            for (name, source) in runtime.sources where wanted[name] !== source {
                stopped.append(source)
                if wanted[name] == nil { runtime.discovered[name] = nil }
            }
            runtime.sources = wanted
            return (started, stopped)
        }
        for source in stopped { source.stop() }
        for (name, source) in started {
            // A stopped source may still report what it had queued: only the
            // cluster's running source is heard.
            let id = ObjectIdentifier(source)
            source.start { [weak self] endpoints in self?.endpointsDiscovered(endpoints, cluster: name, source: id) }
        }
    }

    /// A source reported its cluster's endpoints: a new snapshot with them,
    /// published to every loop (the configuration version stays).
    func endpointsDiscovered(_ endpoints: [Endpoint], cluster name: String, source: ObjectIdentifier) {
        let snapshot: RuntimeSnapshot? = runtime.withLock { runtime in
            guard runtime.sources[name].map(ObjectIdentifier.init) == source,
                  runtime.configured.clusters.contains(where: { $0.name == name }) else { return nil }
            guard runtime.discovered[name] != endpoints else { return nil }
            runtime.discovered[name] = endpoints
            let snapshot = RuntimeSnapshot(configuration: runtime.effective(), version: runtime.snapshot.version,
                                           runtime: upstreams)
            runtime.snapshot = snapshot
            return snapshot
        }
        guard let snapshot else { return }
        metrics.endpointUpdates.wrappingIncrement(ordering: .relaxed)
        publish(snapshot)
        logger.info("endpoints updated", metadata: [
            "cluster": "\(name)", "endpoints": "\(endpoints.map(\.address.description).joined(separator: ","))",
        ])
    }

    /// A reload that could not be applied (the file was invalid): counted;
    /// the configuration in force stays.
    public func reloadFailed(_ problems: [String]) {
        metrics.configReloaded(.failure)
        let version = runtime.withLock { $0.snapshot.version }
        logger.error("configuration reload refused, keeping the one in force", metadata: [
            "version": "\(version)", "problems": "\(problems.joined(separator: "; "))",
        ])
    }

    /// The version of the configuration in force.
    public var configurationVersion: Int { runtime.withLock { $0.snapshot.version } }

    /// The endpoints a cluster has in the configuration in force.
    public func endpoints(of cluster: String) -> [IPEndpoint] {
        runtime.withLock { $0.snapshot.upstream(named: cluster)?.plan.endpoints.map(\.address) ?? [] }
    }

    /// The addresses a listener is bound to (the real ports when the
    /// configuration asked for port 0).
    public func boundAddresses(_ listener: Listener) -> [SocketAddress] {
        state.withLock { $0.channels[listener] ?? [] }.compactMap(\.localAddress)
    }

    public var isReady: Bool { state.withLock { $0.ready && !$0.draining } }

    /// The node's metrics as Prometheus text; the request counts are
    /// gathered from every event loop (hence the future, on `loop`).
    public func metricsText(on loop: EventLoop) -> EventLoopFuture<String> {
        metrics.requestTotals(on: loop).map { totals in
            var text = ""
            self.metrics.render(into: &text)
            ProxyMetrics.render(totals, into: &text)
            self.renderEndpointStates(into: &text)
            return text
        }
    }

    /// Endpoint health and ejections, the outlier and panic counts, circuit
    /// breakers and rate limits, by cluster (label values from the
    /// configuration and discovery only).
    private func renderEndpointStates(into text: inout String) {
        let registries = upstreams.all
        let states = registries.map { ($0.name, $0.endpoints) }
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(String, Int)]) {
            ProxyMetrics.family(name, type, help, samples, into: &text)
        }
        func perEndpoint(_ value: (EndpointHealth) -> Bool) -> [(String, Int)] {
            states.flatMap { cluster, endpoints in
                endpoints.map { ("cluster=\"\(cluster)\",endpoint=\"\($0.address)\"", value($0) ? 1 : 0) }
            }
        }
        family("weft_endpoint_healthy", "gauge", "1 while the endpoint passes its active health check (or has none).",
               perEndpoint { !$0.isFailingHealthCheck })
        family("weft_endpoint_ejected", "gauge", "1 while outlier detection keeps the endpoint out.",
               perEndpoint(\.isEjected))
        family("weft_outlier_ejections_total", "counter", "Endpoints ejected by outlier detection, by cluster.",
               registries.map { ("cluster=\"\($0.name)\"", $0.ejections.load(ordering: .relaxed)) })
        family("weft_panic_picks_total", "counter",
               "Requests balanced over every endpoint because none was usable (panic mode), by cluster.",
               registries.map { ("cluster=\"\($0.name)\"", $0.panics.load(ordering: .relaxed)) })
        func perLimit(_ value: (ClusterAdmission, ClusterAdmission.Limit) -> Int) -> [(String, Int)] {
            registries.flatMap { registry in
                ClusterAdmission.Limit.allCases.map {
                    ("cluster=\"\(registry.name)\",limit=\"\($0.name)\"", value(registry.admission, $0))
                }
            }
        }
        family("weft_overflows_total", "counter",
               "Requests and connections refused with overflow by a circuit breaker, by cluster and limit.",
               perLimit { $0.overflows($1) })
        family("weft_circuit_breaker_in_use", "gauge", "What each circuit breaker counts now, by cluster and limit.",
               perLimit { $0.inUse($1) })
        family("weft_retries_total", "counter",
               "HTTP request retries, by cluster and result (made, or refused by the retry budget).",
               registries.flatMap { registry in [
                   ("cluster=\"\(registry.name)\",result=\"retried\"", registry.retries.load(ordering: .relaxed)),
                   ("cluster=\"\(registry.name)\",result=\"over_budget\"",
                    registry.retriesOverBudget.load(ordering: .relaxed)),
               ] })
        family("weft_rate_limited_total", "counter", "Requests and connections refused by the token bucket, by cluster.",
               registries.map { ("cluster=\"\($0.name)\"", $0.admission.rateLimited) })
    }

    /// Stops accepting on the data-path listeners, fails `/ready`, and
    /// completes once no relayed connection is left or `timeout` passed.
    public func drain(timeout: Duration) -> EventLoopFuture<Void> {
        let (listeners, services): ([Channel], LoopServiceRegistry?) = state.withLock { state in
            state.draining = true
            let dataPath: [Listener] = [.outbound, .inbound, .mesh, .egress, .httpRouting]
            return (dataPath.flatMap { state.channels[$0] ?? [] }, state.services)
        }
        // Peers move new streams elsewhere; open ones finish.
        services?.forEach { $0.drain() }
        logger.info("draining", metadata: ["active": "\(metrics.activeConnections)"])
        let loop = group.next()
        let closed = EventLoopFuture.andAllComplete(listeners.map { $0.close() }, on: loop)
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        let promise = loop.makePromise(of: Void.self)
        let metrics = self.metrics
        @Sendable func check() {
            if metrics.activeConnections + metrics.openMeshConnections == 0 || NIODeadline.now() >= deadline {
                promise.succeed(())
            } else {
                loop.scheduleTask(in: .milliseconds(50)) { check() }
            }
        }
        closed.whenComplete { _ in check() }
        return promise.futureResult
    }

    /// Closes every listener, the health listener included, and stops
    /// endpoint discovery.
    public func close() -> EventLoopFuture<Void> {
        let sources = runtime.withLock { runtime in
            defer { runtime.sources = [:] }
            return Array(runtime.sources.values)
        }
        sources.forEach { $0.stop() }
        if let checker = state.withLock({ $0.checker }) { checker.eventLoop.execute { checker.value.stop() } }
        state.withLock { $0.rotationCheck?.cancel() }
        let all = state.withLock { state in
            state.ready = false
            return state.channels.values.flatMap { $0 }
        }
        return EventLoopFuture.andAllComplete(all.map { $0.close() }, on: group.next())
    }

    // MARK: - Listeners

    /// One pool of upstream and mesh connections per event loop.
    private func makeServices(meshTLS: TLSCredentialFiles?) throws -> LoopServiceRegistry {
        let metrics = self.metrics
        let logger = self.logger
        let identity = self.identity
        let delivery = configuration.listeners.inbound.deliverTo
        let connectTimeout = TimeAmount(ClusterTimeouts().connect)
        let snapshot = runtime.withLock { $0.snapshot }
        let connector = self.connector
        let peerMeshPort = self.peerMeshPort
        let meshConnector: any Connector = meshTLS.map { credentials in
            TLSConnector(over: connector, credentials: credentials) { peer, event in
                Self.observe(event, asServer: false, peer: "\(peer)", metrics: metrics, logger: logger)
            }
        } ?? connector
        return try LoopServiceRegistry(group: group) { loop in
            let upstream = HTTP1UpstreamPool(eventLoop: loop, connector: connector, logger: logger)
            let appHTTP2 = MeshConnectionPool(eventLoop: loop, metrics: metrics, logger: logger,
                                              connectTimeout: connectTimeout, countsAsMesh: false, connector: connector)
            return LoopServices(
                snapshot: snapshot,
                upstreamPool: upstream,
                meshPool: MeshConnectionPool(eventLoop: loop, metrics: metrics, logger: logger,
                                             connectTimeout: connectTimeout, connector: meshConnector),
                meshListener: MeshListenerContext(identity: identity, delivery: delivery, pool: upstream,
                                                  http2Pool: appHTTP2, metrics: metrics, logger: logger,
                                                  connectTimeout: connectTimeout, connector: connector,
                                                  meshPort: peerMeshPort))
        }
    }

    /// Counts and logs what a mesh TLS connection went through.
    static func observe(_ event: TLSHandler.Event, asServer: Bool, peer: String, metrics: ProxyMetrics, logger: Logger) {
        switch event {
        case .established(let tlsPeer):
            metrics.tlsHandshake(asServer: asServer, resumed: tlsPeer.resumed)
        case .refused(let failure):
            metrics.tlsRefusal(asServer: asServer, failure.reason)
            logger.warning(asServer ? "mesh TLS peer refused" : "mesh TLS connect refused", metadata: [
                "peer": "\(peer)", "reason": "\(failure.reason.rawValue)", "detail": "\(failure.detail)",
            ])
        case .broken(let failure):
            logger.info("mesh TLS connection broke", metadata: [
                "peer": "\(peer)", "reason": "\(failure.reason.rawValue)", "detail": "\(failure.detail)",
            ])
        }
    }

    /// Re-reads the mesh TLS files every 2 s; new connections take a new
    /// context, open ones keep theirs.
    private func watchForRotation(_ files: TLSCredentialFiles) {
        let logger = self.logger
        let task = group.next().scheduleRepeatedTask(initialDelay: .seconds(2), delay: .seconds(2)) { _ in
            switch files.reloadIfChanged() {
            case .unchanged:
                break
            case .reloaded(let context):
                logger.info("mesh TLS files reloaded", metadata: [
                    "identity": "\(context.identity)", "certificate_expires_in_s": "\(context.secondsLeftAtLoad)",
                ])
            case .refused(let message):
                logger.error("mesh TLS files changed but do not load; the previous ones stay in force",
                             metadata: ["error": "\(message)"])
            }
        }
        state.withLock { $0.rotationCheck = task }
    }

    /// The mesh listener: HTTP/2 with prior knowledge from peer nodes,
    /// inside TLS when `tls` is set.
    private func meshListenerBootstrap(address: SocketAddress, services: LoopServiceRegistry,
                                       tls: TLSCredentialFiles?) -> ServerBootstrap {
        let metrics = self.metrics
        let logger = self.logger
        return ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .ipv6OnlyIfNeeded(for: address)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let loopServices = services.services(on: channel.eventLoop) else {
                        throw ChannelError.ioOnClosedChannel
                    }
                    let listener = loopServices.meshListener
                    let connection = MeshConnection(role: .server, metrics: metrics, logger: logger) { connection, streamID, headers in
                        switch MeshTranslation.streamKind(of: headers) {
                        case .tunnel: return MeshConnectStream(connection: connection, streamID: streamID, context: listener)
                        case .http2App: return listener.http2Stream(on: connection, streamID: streamID)
                        case .http1App: return MeshInboundStream(connection: connection, streamID: streamID, context: listener)
                        }
                    }
                    if let tls {
                        let peer = channel.remoteAddress.flatMap(IPEndpoint.init).map { "\($0)" } ?? "?"
                        let session = try TLSConnection(context: tls.context, role: .server, allocator: channel.allocator)
                        try channel.pipeline.syncOperations.addHandler(TLSHandler(connection: session) { event in
                            Self.observe(event, asServer: true, peer: peer, metrics: metrics, logger: logger)
                        })
                    }
                    try channel.pipeline.syncOperations.addHandler(connection)
                    loopServices.track(connection)
                }
            }
    }

    private func relayListenerBootstrap(router: any ConnectionRouter, address: SocketAddress,
                                        services: LoopServiceRegistry?,
                                        resolver: (any OriginalDestinationResolver)? = nil) -> ServerBootstrap {
        let resolver = resolver ?? self.resolver
        let metrics = self.metrics
        let logger = self.logger
        let meshPort = peerMeshPort
        let detectTimeout = TimeAmount(configuration.detectTimeout)
        let maxConnections = self.maxConnections
        let connector = self.connector
        return ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .ipv6OnlyIfNeeded(for: address)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionSetupHandler(router: router, resolver: resolver, metrics: metrics, logger: logger,
                                               services: services, meshPort: meshPort, detectTimeout: detectTimeout,
                                               maxConnections: maxConnections, connector: connector))
                }
            }
    }

    private func bind(_ listener: Listener, port: UInt16, hosts: [IPAddress],
                      _ bindOne: (SocketAddress) -> EventLoopFuture<Channel>) throws {
        var channels: [Channel] = []
        for host in hosts {
            let address = SocketAddress(IPEndpoint(address: host, port: port))
            do {
                let channel = try bindOne(address).wait()
                channels.append(channel)
                logger.info("listening", metadata: [
                    "listener": "\(listener.rawValue)",
                    "address": "\(channel.localAddress.flatMap(IPEndpoint.init).map(String.init(describing:)) ?? "?")",
                ])
            } catch where host.family == .ipv6 {
                logger.warning("IPv6 listener not bound", metadata: [
                    "listener": "\(listener.rawValue)", "error": "\(error)",
                ])
            }
        }
        state.withLock { $0.channels[listener, default: []] += channels }
    }
}
