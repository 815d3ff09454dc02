import NIOCore
import WeftConfig
import WeftCore
import WeftObservability
import WeftUpstream

/// What the admin API reads of the node (SPEC §6).
extension ProxyServer {
    /// Each cluster in force with its endpoints: health and ejection from
    /// the node's endpoint states, in-flight, request and error counts of
    /// every event loop added up (each loop is asked on its own turn).
    public func clusterStatuses(on loop: EventLoop) -> EventLoopFuture<[ClusterStatus]> {
        let snapshot = runtime.withLock { $0.snapshot }
        guard let services = state.withLock({ $0.services }) else {
            return loop.makeSucceededFuture(Self.statuses(of: snapshot, counts: [:]))
        }
        return services.gather(on: loop) { $0.endpointCounts() }.map { perLoop in
            var total: [String: [IPEndpoint: EndpointCounts]] = [:]
            for counts in perLoop {
                for (cluster, endpoints) in counts {
                    for (address, count) in endpoints { total[cluster, default: [:]][address, default: EndpointCounts()] += count }
                }
            }
            return Self.statuses(of: snapshot, counts: total)
        }
    }

    static func statuses(of snapshot: RuntimeSnapshot,
                         counts: [String: [IPEndpoint: EndpointCounts]]) -> [ClusterStatus] {
        snapshot.upstreams.map { upstream in
            let config = upstream.config
            let endpoints = zip(upstream.plan.endpoints, upstream.health).map { endpoint, health in
                let count = counts[config.name]?[endpoint.address] ?? EndpointCounts()
                return EndpointStatus(address: "\(endpoint.address)", weight: endpoint.weight,
                                      mesh: upstream.isMeshed(endpoint.address),
                                      region: endpoint.locality?.region, zone: endpoint.locality?.zone,
                                      healthy: !health.isFailingHealthCheck, ejected: health.isEjected,
                                      ejections: health.ejectionCount, inFlight: count.inFlight,
                                      requests: count.finished, errors: count.failures)
            }
            let breakers = config.circuitBreakers.map { _ in
                Dictionary(uniqueKeysWithValues: ClusterAdmission.Limit.allCases.map {
                    ($0.name, upstream.registry.admission.inUse($0))
                })
            }
            return ClusterStatus(name: config.name, protocol: config.protocol.rawValue, mesh: config.mesh,
                                 lb: config.lb.rawValue, discovery: config.discovery.rawValue,
                                 endpoints: endpoints, circuitBreakersInUse: breakers)
        }
    }

    /// The configuration in force (dynamic clusters' endpoints as
    /// discovered) and its version, as JSON.
    public func configDump() -> String {
        let snapshot = runtime.withLock { $0.snapshot }
        return ConfigDump.json(snapshot.configuration, version: snapshot.version)
    }

    /// Each listener and the addresses it is bound to (none once closed).
    public func listenerStatuses() -> [ListenerStatus] {
        let channels = state.withLock { $0.channels }
        return Listener.allCases.compactMap { listener in
            guard let bound = channels[listener], !bound.isEmpty else { return nil }
            let addresses = bound.filter(\.isActive).compactMap { $0.localAddress.flatMap(IPEndpoint.init) }
            return ListenerStatus(name: listener.rawValue, addresses: addresses.map { "\($0)" })
        }
    }

    /// How an app's connection to `destination` (and an HTTP request for
    /// `host` and `path` on it) would be handled now (`/explain`).
    public func explain(destination: IPEndpoint, host: String?, path: String?) -> Explanation {
        let snapshot = runtime.withLock { $0.snapshot }
        return Explainer.explain(destination: destination, host: host, path: path, snapshot: snapshot,
                                 identity: identity)
    }
}
