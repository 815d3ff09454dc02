import NIOHTTP1
import WeftCore
import WeftHTTP2
import WeftMesh
import WeftObservability
import WeftRouting
import WeftUpstream

/// Where an app connection's traffic goes: the route and balance stages of
/// the request pipeline for one connection. The connection's cluster comes
/// from its original destination; an HTTP request may be routed elsewhere by
/// the L7 rules (SPEC §5 `routes`), then is balanced on this loop, once per
/// attempt. A TCP connection balances once, on its own cluster.
struct MeshRoute {
    let cluster: UpstreamCluster
    /// This loop's balancer of `cluster`.
    let balancer: LoopBalancer
    /// The endpoint the app itself named, if it called one directly: no
    /// rule and no balancer overrides the app's choice.
    let fixedEndpoint: IPEndpoint?
    let meshPort: UInt16
    /// The app's address: the key of `hash_on: { source_ip: true }`.
    var source: IPAddress? = nil
    /// The configuration the connection was accepted under (its rules and
    /// the clusters they name), and the loop whose balancers serve them.
    var snapshot: RuntimeSnapshot? = nil
    var services: LoopServices? = nil
    /// `cluster` stands for the original destination (it named no
    /// cluster): a request's Host may name one by its `hostnames`.
    var isPassthrough = false
    /// An HTTP-routing listener's connection: requests that name no
    /// cluster go nowhere (404 `no_route`).
    var routingOnly = false

    /// A lease on the connection's cluster for a TCP connection (opaque
    /// TCP, CONNECT, an upgrade): rate limited and bounded by
    /// `max_connections`.
    func connectionLease() -> Result<Lease, ErrorReason> {
        target(of: cluster, balancer: balancer, timeout: nil).lease(as: .connections, header: { _ in nil })
    }

    /// The route stage: the cluster (and timeout) for one HTTP request.
    /// `authority` is `Host` or `:authority`, `path` the request target.
    func target(authority: String?, path: String, header: (String) -> String?) -> RequestTarget {
        guard fixedEndpoint == nil, let snapshot,
              let rule = snapshot.routes.match(authority: authority, path: path, header: header) else {
            // No rule: the destination's cluster; for a destination that
            // named none, the cluster whose hostname the Host is (SPEC §4).
            if isPassthrough, let snapshot, let authority,
               let named = snapshot.byHostname[RouteTable.hostPart(authority).lowercased()] {
                return target(of: named, balancer: services?.balancer(for: named) ?? LoopBalancer(cluster: named),
                              timeout: nil)
            }
            var target = target(of: cluster, balancer: balancer, timeout: nil)
            target.noRoute = routingOnly
            return target
        }
        let index = rule.isSplit ? rule.cluster(draw: services?.drawRouteWeight(below: rule.totalWeight) ?? 0)
                                 : rule.cluster(draw: 0)
        let chosen = snapshot.upstreams[index]
        let balancer = chosen === cluster ? self.balancer
            : services?.balancer(for: chosen) ?? LoopBalancer(cluster: chosen)
        var target = target(of: chosen, balancer: balancer, timeout: rule.timeout)
        target.rule = rule.index
        return target
    }

    /// The route stage for an HTTP/1 request head (absolute-form targets
    /// carry their own authority). Closures are passed as literals, never
    /// kept in a local: a kept closure would box the head on every request.
    func target(for head: HTTP1RequestHead) -> RequestTarget {
        guard hasRules else { return target(of: cluster, balancer: balancer, timeout: nil) }
        if !head.uri.hasPrefix("/"), let (authority, path) = MeshTranslation.splitAbsoluteURI(head.uri) {
            return target(authority: authority, path: path, header: { head.fields.first(name: $0) })
        }
        return target(authority: head.fields.first(name: "host"), path: head.uri,
                      header: { head.fields.first(name: $0) })
    }

    /// The route stage for an HTTP/2 request's header list.
    func target(for request: HTTP2Fields) -> RequestTarget {
        guard hasRules else { return target(of: cluster, balancer: balancer, timeout: nil) }
        return target(authority: request.first(name: ":authority"),
                      path: request.first(name: ":path") ?? "/",
                      header: { name in request.first(name: name) })
    }

    /// Whether any L7 rule (or, for a passthrough, a hostname) could apply
    /// to this connection's requests.
    private var hasRules: Bool { fixedEndpoint == nil && (isPassthrough || snapshot?.routes.isEmpty == false) }

    func target(of cluster: UpstreamCluster, balancer: LoopBalancer, timeout: Duration?) -> RequestTarget {
        RequestTarget(cluster: cluster, balancer: balancer, fixedEndpoint: fixedEndpoint, meshPort: meshPort,
                      source: source, requestTimeout: timeout ?? cluster.config.timeouts.request)
    }

    /// The mesh listener of `endpoint`'s node.
    func meshPeer(of endpoint: IPEndpoint) -> IPEndpoint {
        IPEndpoint(address: endpoint.address, port: meshPort)
    }
}

/// Where one request goes after the route stage: a cluster, balanced on
/// this loop, with the timeout that applies.
struct RequestTarget {
    let cluster: UpstreamCluster
    let balancer: LoopBalancer
    let fixedEndpoint: IPEndpoint?
    let meshPort: UInt16
    let source: IPAddress?
    /// The route's `timeout`, else the cluster's `timeouts.request`.
    let requestTimeout: Duration
    /// The index of the rule that matched, if one did.
    var rule: Int?
    /// Nothing matched on an HTTP-routing listener.
    var noRoute = false

    /// The admission and balance stages: the cluster's token bucket and
    /// circuit breaker (`limit`: what the lease holds, an HTTP request by
    /// default), then a lease on the endpoint for one attempt. `header`
    /// finds a request header by lowercase name (for `hash_on`).
    func lease(as limit: ClusterAdmission.Limit = .requests,
               header: (String) -> String?) -> Result<Lease, ErrorReason> {
        if noRoute { return .failure(.noRoute) }
        if let admission = cluster.admission {
            guard admission.takeToken(now: balancer.now) else { return .failure(.rateLimited) }
            guard admission.acquire(limit) else { return .failure(.overflow) }
            guard let lease = balance(header: header) else {
                admission.release(limit)
                return .failure(.noEndpoint)
            }
            return .success(lease.holding(limit, of: admission))
        }
        guard let lease = balance(header: header) else { return .failure(.noEndpoint) }
        return .success(lease)
    }

    private func balance(header: (String) -> String?) -> Lease? {
        if let fixedEndpoint { return balancer.lease(on: fixedEndpoint) }
        let hash = cluster.plan.hashOn.flatMap { HashKey.hash($0, header: header, source: source) }
        return balancer.pick(hash: hash)
    }

    var name: String { cluster.name }

    func isMeshed(_ endpoint: IPEndpoint) -> Bool { cluster.isMeshed(endpoint) }

    /// The mesh listener of `endpoint`'s node.
    func meshPeer(of endpoint: IPEndpoint) -> IPEndpoint {
        IPEndpoint(address: endpoint.address, port: meshPort)
    }
}
