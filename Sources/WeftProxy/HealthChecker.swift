import Logging
import NIOCore
import NIOHTTP1
import WeftConfig
import WeftCore
import WeftObservability
import WeftTransport
import WeftUpstream

/// Active health checks (SPEC §5, Endpoint health): one probe per endpoint
/// of every cluster with a `health_check`, per node (not per loop), all on
/// one event loop. A probe connects (`tcp`) or asks for `path` and wants a
/// 2xx (`http`), every `interval` give or take 10% (so that nodes and
/// endpoints do not check in step); `unhealthy` failures in a row take the
/// endpoint out of balancing, `healthy` passes in a row bring it back.
///
/// The endpoint is checked at its own address: a meshed endpoint's node
/// delivers the check to its app, as it does any plain connection.
final class HealthChecker {
    private let loop: EventLoop
    private let connector: any Connector
    private let metrics: ProxyMetrics
    private let logger: Logger
    /// By endpoint state: a state that leaves (its endpoint or cluster
    /// left) stops its probe.
    private var probes: [ObjectIdentifier: Probe] = [:]

    init(loop: EventLoop, connector: any Connector, metrics: ProxyMetrics, logger: Logger) {
        self.loop = loop
        self.connector = connector
        self.metrics = metrics
        self.logger = logger
    }

    /// Starts, keeps or stops probes for the clusters of `snapshot`. On
    /// the checker's loop.
    func update(_ snapshot: RuntimeSnapshot) {
        loop.assertInEventLoop()
        var wanted: [ObjectIdentifier: (EndpointHealth, HealthCheck, String)] = [:]
        for upstream in snapshot.upstreams {
            guard let check = upstream.config.healthCheck else {
                // No checks (any more): nothing holds its endpoints out.
                for health in upstream.health { health.setFailingHealthCheck(false) }
                continue
            }
            for health in upstream.health { wanted[ObjectIdentifier(health)] = (health, check, upstream.name) }
        }
        for (key, probe) in probes where wanted[key].map({ $0.1 != probe.check }) ?? true {
            probe.stop()
            probes[key] = nil
        }
        for (key, (health, check, cluster)) in wanted where probes[key] == nil {
            let probe = Probe(health: health, check: check, cluster: cluster, checker: self)
            probes[key] = probe
            probe.start()
        }
    }

    /// Stops every probe.
    func stop() {
        for probe in probes.values { probe.stop() }
        probes.removeAll()
    }

    /// One endpoint's checks and their run of results.
    final class Probe {
        let health: EndpointHealth
        let check: HealthCheck
        let cluster: String
        private unowned let checker: HealthChecker
        private var passes = 0
        private var failures = 0
        private var next: Scheduled<Void>?
        private var stopped = false
        private var random = SplitMix64()

        init(health: EndpointHealth, check: HealthCheck, cluster: String, checker: HealthChecker) {
            self.health = health
            self.check = check
            self.cluster = cluster
            self.checker = checker
        }

        /// The first check comes within a tenth of the interval.
        func start() {
            schedule(after: jittered(fraction: 0.1))
        }

        func stop() {
            stopped = true
            next?.cancel()
            next = nil
        }

        /// `interval` × a random factor in [1 - fraction, 1 + fraction),
        /// or within `fraction` of it from zero for the first.
        private func jittered(fraction: Double, base: Bool = false) -> TimeAmount {
            let interval = TimeAmount(check.interval).nanoseconds
            let spread = Int64(Double(interval) * fraction)
            let offset = spread > 0 ? Int64(random.below(Int(2 * spread))) - spread : 0
            return .nanoseconds(base ? interval + offset : abs(offset))
        }

        private func schedule(after delay: TimeAmount) {
            guard !stopped else { return }
            let loop = checker.loop
            let bound = NIOLoopBound(self, eventLoop: loop)
            next = loop.scheduleTask(in: delay) { bound.value.run() }
        }

        private func run() {
            guard !stopped else { return }
            let loop = checker.loop
            let bound = NIOLoopBound(self, eventLoop: loop)
            let verdict = loop.makePromise(of: Bool.self)
            let deadline = loop.scheduleTask(in: TimeAmount(check.timeout)) { verdict.succeed(false) }
            let (check, address) = (check, health.address)
            checker.connector.connect(to: address, on: loop, timeout: TimeAmount(check.timeout), halfClosure: false) { channel in
                guard check.kind == .http else { return }
                let request = HTTPRequestHead(version: .http1_1, method: .GET, uri: check.path, headers: [
                    "host": address.description, "user-agent": "weft-health-check", "connection": "close",
                ])
                try channel.pipeline.syncOperations.addHandlers([
                    HTTPRequestEncoder(),
                    ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)),
                    HTTPCheckHandler(request: request, verdict: verdict),
                ])
            }.whenComplete { result in
                switch result {
                case .success(let channel):
                    if check.kind == .tcp { verdict.succeed(true) }
                    channel.closeFuture.whenComplete { _ in verdict.succeed(false) }
                    // However the check ends (even past its deadline, when
                    // the connect came late), its connection goes with it.
                    verdict.futureResult.whenComplete { _ in channel.close(promise: nil) }
                case .failure:
                    verdict.succeed(false)
                }
            }
            verdict.futureResult.whenSuccess { passed in
                deadline.cancel()
                let probe = bound.value
                probe.record(passed)
                probe.schedule(after: probe.jittered(fraction: 0.1, base: true))
            }
        }

        private func record(_ passed: Bool) {
            checker.metrics.countHealthCheck(passed: passed)
            if passed {
                passes += 1
                failures = 0
            } else {
                failures += 1
                passes = 0
            }
            let failing = health.isFailingHealthCheck
            if failing && passes >= check.healthy {
                health.setFailingHealthCheck(false)
                checker.logger.info("endpoint healthy again", metadata: [
                    "cluster": "\(cluster)", "endpoint": "\(health.address)", "passes": "\(passes)",
                ])
            } else if !failing && failures >= check.unhealthy {
                health.setFailingHealthCheck(true)
                checker.logger.warning("endpoint failed its health check", metadata: [
                    "cluster": "\(cluster)", "endpoint": "\(health.address)", "failures": "\(failures)",
                ])
            }
        }
    }
}

/// Sends the check's request once connected; a 2xx head passes, anything
/// else (another status, a close, an error) fails. The promise may be
/// completed by others first (deadline, close): it takes the first answer.
private final class HTTPCheckHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart
    private let request: HTTPRequestHead
    private let verdict: EventLoopPromise<Bool>

    init(request: HTTPRequestHead, verdict: EventLoopPromise<Bool>) {
        self.request = request
        self.verdict = verdict
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(request)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data), head.status.code >= 200 else { return }
        verdict.succeed((200..<300).contains(head.status.code))
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        verdict.succeed(false)
        context.close(promise: nil)
    }
}
