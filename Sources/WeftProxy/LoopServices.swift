import NIOCore
import WeftCore
import WeftMesh
import WeftTransport
import WeftUpstream

/// The pools one event loop owns: upstream HTTP/1.1 connections to local
/// apps, and mesh connections to peer nodes. Only touched on that loop.
final class LoopServices {
    let upstreamPool: HTTP1UpstreamPool
    let meshPool: MeshConnectionPool
    /// h2c connections to HTTP/2 apps and plain endpoints (not the mesh).
    var appHTTP2Pool: MeshConnectionPool { meshListener.http2Pool }
    /// The loop's buffers for HTTP/1 heads, shared by its app connections
    /// and its upstream connections (kept by the upstream pool).
    var headBuffers: RecycledBuffers { upstreamPool.headBuffers }
    let meshListener: MeshListenerContext
    /// Opens every upstream connection this loop makes.
    var connector: any Connector { meshListener.connector }
    /// Mesh connections peers opened to this loop, told to GOAWAY on drain.
    private var accepted: [ObjectIdentifier: MeshConnection] = [:]

    func track(_ connection: MeshConnection) {
        accepted[ObjectIdentifier(connection)] = connection
        let previous = connection.onUnusable
        connection.onUnusable = { [weak self] unusable in
            previous?(unusable)
            self?.accepted[ObjectIdentifier(unusable)] = nil
        }
    }

    /// The configuration in force on this loop: published by the server at
    /// start and on every reload; a connection keeps the one it was
    /// accepted under.
    var snapshot: RuntimeSnapshot

    /// This loop's balancer of each cluster, by name: kept across
    /// snapshots, so endpoint loads outlive reloads.
    private var balancers: [String: LoopBalancer] = [:]

    /// The loop's balancer for `cluster`. Its plan follows the loop's
    /// snapshot (moved by `publish`), never a connection's older one: a
    /// connection accepted before a reload must not move the balancer back.
    func balancer(for cluster: UpstreamCluster) -> LoopBalancer {
        if let balancer = balancers[cluster.name] { return balancer }
        let balancer = LoopBalancer(cluster: snapshot.upstream(named: cluster.name) ?? cluster)
        balancers[cluster.name] = balancer
        return balancer
    }

    /// This loop's counts of each endpoint it balanced to, by cluster
    /// name and endpoint.
    func endpointCounts() -> [String: [IPEndpoint: EndpointCounts]] {
        balancers.mapValues { balancer in
            Dictionary(balancer.loads.map { ($0.address, $0.counts) }, uniquingKeysWith: { first, _ in first })
        }
    }

    /// Draws for weighted route splits.
    var random = SplitMix64()

    /// A uniform draw in `0..<bound` (bound > 0).
    func drawRouteWeight(below bound: Int) -> Int { random.below(bound) }

    /// App connections speaking HTTP/1 to meshed clusters on this loop.
    private var appConnections: [ObjectIdentifier: OutboundHTTPHandler] = [:]
    private(set) var draining = false

    func track(_ handler: OutboundHTTPHandler) {
        appConnections[ObjectIdentifier(handler)] = handler
    }

    func untrack(_ handler: OutboundHTTPHandler) {
        appConnections[ObjectIdentifier(handler)] = nil
    }

    /// Drain: every mesh connection, both roles, stops taking new streams
    /// and lets open ones finish; app HTTP/1 connections close when idle
    /// (at once, or after the response in flight, which says
    /// `Connection: close`).
    func drain() {
        draining = true
        meshPool.shutdownGracefully()
        for connection in Array(accepted.values) { connection.shutdownGracefully() }
        for handler in Array(appConnections.values) { handler.drain() }
    }

    /// A new snapshot is in force: balancers move to the new plans (keeping
    /// the load of endpoints that stay), clusters that left lose theirs, and
    /// idle pooled connections to endpoints that left are closed.
    func publish(_ next: RuntimeSnapshot) {
        let previous = snapshot
        snapshot = next
        meshListener.authorization = MeshListenerContext.rules(of: next.configuration)
        meshListener.extAuthz = next.configuration.extAuthz
        let names = Set(next.upstreams.map(\.name))
        balancers = balancers.filter { names.contains($0.key) }
        // Connections already open balance over the new endpoints at once.
        for upstream in next.upstreams { balancers[upstream.name]?.update(upstream) }
        let gone = previous.endpoints.subtracting(next.endpoints)
        guard !gone.isEmpty else { return }
        upstreamPool.closeIdle { gone.contains($0.endpoint) }
        let stillMeshed = Set(next.endpoints.map(\.address))
        meshPool.retire { !stillMeshed.contains($0.address) }
    }

    init(snapshot: RuntimeSnapshot, upstreamPool: HTTP1UpstreamPool, meshPool: MeshConnectionPool,
         meshListener: MeshListenerContext) {
        self.snapshot = snapshot
        self.upstreamPool = upstreamPool
        self.meshPool = meshPool
        self.meshListener = meshListener
        meshListener.authorization = MeshListenerContext.rules(of: snapshot.configuration)
        meshListener.extAuthz = snapshot.configuration.extAuthz
        meshListener.services = self
    }
}

/// Finds the calling event loop's `LoopServices`. Built once at start,
/// read-only after, so lookups take no lock.
struct LoopServiceRegistry: Sendable {
    private let byLoop: [ObjectIdentifier: NIOLoopBound<LoopServices>]

    /// Creates one `LoopServices` on each loop of `group`.
    init(group: EventLoopGroup, make: @escaping @Sendable (EventLoop) -> LoopServices) throws {
        var byLoop: [ObjectIdentifier: NIOLoopBound<LoopServices>] = [:]
        for loop in group.makeIterator() {
            byLoop[ObjectIdentifier(loop)] = try loop.submit { NIOLoopBound(make(loop), eventLoop: loop) }.wait()
        }
        self.byLoop = byLoop
    }

    /// The services of `loop`; call on that loop.
    func services(on loop: EventLoop) -> LoopServices? {
        byLoop[ObjectIdentifier(loop)]?.value
    }

    /// Runs `body` on every loop with its services and gathers what each
    /// returned.
    func gather<T: Sendable>(on loop: EventLoop, _ body: @escaping @Sendable (LoopServices) -> T)
        -> EventLoopFuture<[T]> {
        let futures = byLoop.values.map { bound in bound.eventLoop.submit { body(bound.value) } }
        return EventLoopFuture.whenAllSucceed(futures, on: loop)
    }

    /// Runs `body` on every loop with its services.
    func forEach(_ body: @escaping @Sendable (LoopServices) -> Void) {
        for (_, bound) in byLoop {
            bound.eventLoop.execute { body(bound.value) }
        }
    }
}
