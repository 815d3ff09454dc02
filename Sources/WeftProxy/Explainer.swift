import NIOCore
import WeftConfig
import WeftCore
import WeftObservability
import WeftRouting
import WeftUpstream

/// `/explain` (SPEC §6): how the node would handle an app's connection to
/// a destination, and an HTTP request on it, now. Every verdict comes from
/// the data path's own decisions on the live state: the outbound router
/// (refuse, cluster, passthrough), the route stage (`MeshRoute.target`),
/// the route table's matching, the endpoint states the balancer reads, and
/// the locality shares it draws from. Nothing here decides anything itself.
enum Explainer {
    static func explain(destination: IPEndpoint, host: String?, path: String?, snapshot: RuntimeSnapshot,
                        identity: NodeIdentity) -> Explanation {
        let listeners = snapshot.configuration.listeners
        var answer = Explanation(destination: "\(destination)", host: host, path: path,
                                 configVersion: snapshot.version,
                                 listener: "outbound (127.0.0.1:\(listeners.outbound.port))")
        if identity.addresses.contains(destination.address) && !destination.address.isLoopback {
            answer.summary.append("\(destination.address) is this node's own address: from other pods, connections "
                                  + "to it arrive on the inbound listener (:\(listeners.inbound.port)) and go to "
                                  + "127.0.0.1:\(destination.port). Below: an app on this node calling it.")
        }
        let router = OutboundRouter(snapshot: snapshot, identity: identity,
                                    passthroughConnectTimeout: TimeAmount(ClusterTimeouts().connect))
        let listener = IPEndpoint(address: .loopbackV4, port: listeners.outbound.port)
        switch router.decide(originalDestination: destination, localAddress: listener, snapshot: snapshot) {
        case .refuse(let reason):
            answer.verdict = "refused"
            answer.refusal = reason.rawValue
            answer.summary.append(refusalText(reason, destination: destination, snapshot: snapshot))
        case .relay(let target, _, _):
            answer.verdict = "passthrough"
            answer.summary.append("No cluster has \(destination) and outbound_policy is allow_any: the connection is "
                                  + "relayed as TCP to \(target) unchanged, with no policy.")
        case .cluster(let decision):
            explainCluster(decision, destination: destination, host: host, path: path, snapshot: snapshot,
                           into: &answer)
        }
        return answer
    }

    private static func refusalText(_ reason: RefusalReason, destination: IPEndpoint,
                                    snapshot: RuntimeSnapshot) -> String {
        switch reason {
        case .loop, .notRedirected:
            "\(destination) is one of weft's own listeners on this node: relaying would loop, so the connection is "
                + "reset (weft_connections_refused_total{reason=\"\(reason.rawValue)\"})."
        case .registryOnly:
            "No cluster has \(destination) and outbound_policy is registry_only: the connection is reset "
                + "(weft_connections_refused_total{reason=\"registry_only\"})."
        case .noEndpoint:
            "The cluster for \(destination) has no endpoint and carries TCP: the connection is reset."
        default:
            "The connection is refused: \(reason.rawValue)."
        }
    }

    private static func explainCluster(_ decision: ClusterDecision, destination: IPEndpoint, host: String?,
                                       path: String?, snapshot: RuntimeSnapshot, into answer: inout Explanation) {
        let route = MeshRoute(cluster: decision.cluster, balancer: LoopBalancer(cluster: decision.cluster),
                              fixedEndpoint: decision.fixedEndpoint, meshPort: snapshot.configuration.listeners.mesh.port,
                              snapshot: snapshot, isPassthrough: decision.isPassthrough)
        let isHTTP = host != nil || path != nil
        var target = route.target(of: decision.cluster, balancer: route.balancer, timeout: nil)
        var matchedBy = decision.fixedEndpoint != nil
            ? "endpoint: the app called one of its endpoints directly (kept, not balanced)"
            : "address \(destination)"
        if isHTTP {
            target = route.target(authority: host, path: path ?? "/", header: { _ in nil })
            if decision.fixedEndpoint == nil {
                let upTo = target.rule ?? snapshot.routes.routes.count
                for compiled in snapshot.routes.routes where compiled.index < upTo {
                    guard let miss = RouteTable.mismatch(compiled.match, authority: host, path: path ?? "/",
                                                         header: { _ in nil }) else { continue }
                    answer.rulesNotMatched.append(.init(rule: compiled.index, why: missText(miss, compiled.match)))
                }
            }
            if let rule = target.rule {
                let configured = snapshot.configuration.routes[rule]
                answer.rule = rule
                answer.routeClusters = configured.clusters.map { .init(name: $0.name, weight: $0.weight) }
                answer.routeTimeout = configured.timeout.map(ConfigDump.format)
                matchedBy = "route rule \(rule)"
            } else if target.cluster !== decision.cluster {
                matchedBy = "hostname \(host ?? "")"
            }
        }
        if decision.isPassthrough && target.cluster === decision.cluster {
            answer.verdict = target.noRoute ? "refused" : "passthrough"
            answer.summary.append(isHTTP
                ? "No cluster has \(destination), and no rule or hostname matches the request: it goes to \(destination) as sent."
                : "No cluster has \(destination): HTTP requests whose Host names a cluster (hostnames) go there, "
                    + "any other traffic to \(destination) as sent.")
            return
        }
        let cluster = target.cluster
        let config = cluster.config
        answer.cluster = .init(name: config.name, matchedBy: matchedBy, protocol: config.protocol.rawValue,
                               mesh: config.mesh, lb: config.lb.rawValue)
        answer.endpoints = verdicts(cluster, fixed: decision.fixedEndpoint)
        answer.policies = policies(cluster, requestTimeout: target.requestTimeout, meshPort: route.meshPort,
                                   meshTLS: snapshot.configuration.listeners.mesh.tls != nil)
        answer.summary.append(clusterSummary(answer, cluster: cluster))
    }

    private static func missText(_ miss: RouteTable.Mismatch, _ match: RouteMatch) -> String {
        switch miss {
        case .host: "host is not \(match.host ?? "")"
        case .path: "path is not \(match.path ?? "")"
        case .pathPrefix: "path does not start with \(match.pathPrefix ?? "")"
        case .header(let name): "header \(name) is not \(match.headers[name] ?? "")"
        }
    }

    /// Each endpoint as the balancer sees it now: usable or why not, and
    /// its locality tier's share (the balancer's own arithmetic).
    private static func verdicts(_ cluster: UpstreamCluster, fixed: IPEndpoint?) -> [Explanation.EndpointVerdict] {
        var shareOf: [ObjectIdentifier: Double] = [:]
        if !cluster.tiers.isEmpty {
            var health = SIMD3<Double>(repeating: 0)
            for (index, tier) in cluster.tiers.prefix(3).enumerated() {
                health[index] = LocalityTiers.health(usable: tier.health.filter(\.isUsable).count,
                                                     total: tier.health.count)
            }
            let shares = LocalityTiers.shares(health)
            for (index, tier) in cluster.tiers.prefix(3).enumerated() {
                for state in tier.health { shareOf[ObjectIdentifier(state)] = shares?[index] ?? (index == 0 ? 1 : 0) }
            }
        }
        let panic = !cluster.health.contains(where: \.isUsable)
        return zip(cluster.plan.endpoints, cluster.health).compactMap { endpoint, state in
            if let fixed, endpoint.address != fixed { return nil }
            let share = shareOf[ObjectIdentifier(state)]
            var why: String?
            if state.isFailingHealthCheck {
                why = "failing its active health check"
            } else if state.isEjected {
                why = "ejected by outlier detection (ejected \(state.ejectionCount) time\(state.ejectionCount == 1 ? "" : "s"))"
            } else if let share, share == 0 {
                why = "its locality tier takes no traffic now: nearer endpoints are healthy enough"
            }
            let getsTraffic = fixed != nil || panic || why == nil
            if panic { why = why.map { $0 + "; but no endpoint is usable, so panic mode uses it anyway" } }
            let locality = endpoint.locality.map { [$0.region, $0.zone].compactMap { $0 }.joined(separator: "/") }
            return .init(address: "\(endpoint.address)", usable: state.isUsable, getsTraffic: getsTraffic,
                         why: why, locality: locality, tierShare: share)
        }
    }

    private static func policies(_ cluster: UpstreamCluster, requestTimeout: Duration,
                                 meshPort: UInt16, meshTLS: Bool) -> [Explanation.Policy] {
        let config = cluster.config
        let format = ConfigDump.format
        var list: [Explanation.Policy] = []
        list.append(.init(name: "protocol", value: config.protocol == .auto
            ? "detected per connection (HTTP/1.x, HTTP/2 or TCP)" : config.protocol.rawValue))
        list.append(.init(name: "mesh", value: cluster.hasMeshedEndpoints
            ? "HTTP rides HTTP/2 streams to each endpoint's node on port \(meshPort) "
                + (meshTLS ? "(mTLS: TLS 1.3, both nodes verified against the mesh CA)"
                           : "(plaintext h2c; listeners.mesh.tls turns on mTLS)")
            : "endpoints are reached directly (HTTP/1.1 pool, h2c or TCP)"))
        list.append(.init(name: "lb", value: config.lb.rawValue))
        list.append(.init(name: "timeouts", value: "connect \(format(config.timeouts.connect)), request "
                          + "\(format(requestTimeout)), idle \(format(config.timeouts.idle))"))
        if let retries = config.retries {
            let on = retries.conditions.map(conditionName).sorted().joined(separator: ", ")
            list.append(.init(name: "retries", value: "\(retries.attempts) more on \(on)"
                              + (retries.perTryTimeout.map { ", \(format($0)) per try" } ?? "")
                              + ", budget \(retries.budgetPercent)%"))
        }
        if let breakers = config.circuitBreakers, let admission = cluster.admission {
            let parts = [(ClusterAdmission.Limit.connections, breakers.maxConnections),
                         (.pending, breakers.maxPending), (.requests, breakers.maxRequests),
                         (.retries, breakers.maxRetries)].map { limit, bound in
                let used = admission.inUse(limit)
                return "\(limit.name) \(used)/\(bound)" + (used >= bound ? " (open: 503 overflow)" : "")
            }
            list.append(.init(name: "circuit_breakers", value: parts.joined(separator: ", ")))
        }
        if let limit = config.rateLimit {
            list.append(.init(name: "rate_limit", value: "\(limit.perSecond)/s, burst \(limit.burst): over it, 429"))
        }
        if let check = config.healthCheck {
            list.append(.init(name: "health_check", value: "\(check.kind.rawValue)"
                              + (check.kind == .http ? " GET \(check.path)" : "") + " every \(format(check.interval)), "
                              + "\(check.unhealthy) failures out, \(check.healthy) passes back"))
        }
        if let outlier = config.outlierDetection {
            list.append(.init(name: "outlier_detection", value: "\(outlier.consecutive5xx) 5xx or "
                              + "\(outlier.consecutiveGatewayErrors) gateway errors in a row eject for "
                              + "\(format(outlier.baseEjection)) × n, at most \(outlier.maxEjectionPercent)% ejected"))
        }
        list.append(.init(name: "identity", value: meshTLS
            ? "mTLS on: each peer node proves its SPIFFE ID (listeners.mesh.tls)"
            : "mTLS off: peer nodes are not authenticated (set listeners.mesh.tls)"))
        return list
    }

    private static func conditionName(_ condition: RetryPolicy.Condition) -> String {
        switch condition {
        case .connectFailure: "connect-failure"
        case .reset: "reset"
        case .refusedStream: "refused-stream"
        case .serverError: "5xx"
        case .gatewayError: "gateway-error"
        case .status(let status): "\(status)"
        }
    }

    private static func clusterSummary(_ answer: Explanation, cluster: UpstreamCluster) -> String {
        let name = cluster.name
        let total = answer.endpoints.count
        let serving = answer.endpoints.filter(\.getsTraffic)
        var text = "Cluster \(name) (\(answer.cluster?.matchedBy ?? "")): "
        if total == 0 { return text + "it has no endpoint: HTTP requests get 503 no_healthy_endpoint, TCP is reset." }
        if answer.endpoints.allSatisfy({ !$0.usable }) {
            return text + "none of its \(total) endpoints is usable: panic mode balances over all of them."
        }
        text += "\(serving.count) of \(total) endpoints get traffic (\(answer.cluster?.lb ?? ""))"
        let others = answer.endpoints.filter { !$0.getsTraffic }
        if !others.isEmpty { text += "; not " + others.map { "\($0.address): \($0.why ?? "")" }.joined(separator: "; ") }
        if answer.routeClusters.count > 1 {
            text += ". Rule \(answer.rule ?? 0) splits requests: "
                + answer.routeClusters.map { "\($0.name) weight \($0.weight)" }.joined(separator: ", ")
                + " (endpoints shown are \(name)'s)"
        }
        return text + "."
    }
}
