import Atomics
import NIOConcurrencyHelpers
import WeftConfig
import WeftCore

/// One cluster's endpoint states on this node (SPEC §5, Endpoint health),
/// and its outlier detection: kept across reloads and discovery changes,
/// so an endpoint that stays keeps its health, ejection and history.
///
/// Ejection follows Envoy's rules: consecutive 5xx or gateway errors eject
/// an endpoint for `base_ejection × n` (n: its ejections, forgiven by one
/// for each `interval` back in service), never more than
/// `max_ejection_percent` of the endpoints at once (but at least one). An
/// ejection ends at the first pick after its time, so no timer is needed.
public final class EndpointRegistry: @unchecked Sendable {
    /// What happened to an endpoint, for the log.
    public enum Event: Sendable {
        case ejected(for: Duration, ejections: Int)
        /// Ejection was due but `max_ejection_percent` were out already.
        case ejectionSkipped
        case returned
    }
    public typealias Observer = @Sendable (_ cluster: String, _ endpoint: IPEndpoint, _ event: Event) -> Void

    public let name: String
    private let lock = NIOLock()
    /// Guarded by `lock`.
    private var byAddress: [IPEndpoint: EndpointHealth] = [:]
    private var detection: OutlierDetection?
    private var ejectedNow = 0
    private let observe: Observer
    /// The cluster's token bucket and circuit breakers on this node.
    public let admission = ClusterAdmission()
    /// Retries made, and retries the budget refused.
    public let retries = ManagedAtomic<Int>(0)
    public let retriesOverBudget = ManagedAtomic<Int>(0)
    /// Ejections so far, and picks made with no usable endpoint (panic mode).
    public let ejections = ManagedAtomic<Int>(0)
    public let panics = ManagedAtomic<Int>(0)

    public init(name: String, observe: @escaping Observer = { _, _, _ in }) {
        self.name = name
        self.observe = observe
    }

    /// The states of `endpoints`, in order: kept for endpoints already
    /// known, new for the others. Endpoints not listed are forgotten.
    /// `detection` is the outlier detection in force (nil: none, and any
    /// ejection ends).
    public func update(endpoints: [IPEndpoint], detection: OutlierDetection?) -> [EndpointHealth] {
        lock.withLock {
            self.detection = detection
            var next: [IPEndpoint: EndpointHealth] = [:]
            let states = endpoints.map { address in
                let state = next[address] ?? byAddress[address] ?? EndpointHealth(address: address, registry: self)
                next[address] = state
                return state
            }
            for (address, state) in byAddress where next[address] == nil && state.isEjected {
                state.setEjected(false)
                ejectedNow -= 1
            }
            byAddress = next
            if detection == nil {
                for state in next.values where state.isEjected { endEjection(state, now: 0) }
            }
            return states
        }
    }

    /// Every endpoint state, by address order.
    public var endpoints: [EndpointHealth] {
        lock.withLock { byAddress.values.sorted { $0.address.description < $1.address.description } }
    }

    /// Endpoints ejected right now (as far as picks have noticed).
    public var ejectedCount: Int { lock.withLock { ejectedNow } }

    /// An endpoint failed an attempt: eject it when its run of failures
    /// reaches a threshold.
    func failed(_ state: EndpointHealth, consecutive5xx: Int, consecutiveGatewayErrors: Int, now: UInt64) {
        let event: Event? = lock.withLock {
            guard let detection, byAddress[state.address] === state, !state.isEjected else { return nil }
            let tripped = (detection.consecutive5xx > 0 && consecutive5xx >= detection.consecutive5xx)
                || (detection.consecutiveGatewayErrors > 0 && consecutiveGatewayErrors >= detection.consecutiveGatewayErrors)
            guard tripped else { return nil }
            for other in byAddress.values where other.isEjected && now >= other.ejectedUntil.load(ordering: .relaxed) {
                endEjection(other, now: now)
            }
            state.consecutive5xx.store(0, ordering: .relaxed)
            state.consecutiveGatewayErrors.store(0, ordering: .relaxed)
            let allowed = detection.maxEjectionPercent == 0
                ? 0 : max(1, byAddress.count * detection.maxEjectionPercent / 100)
            guard ejectedNow < allowed else { return .ejectionSkipped }
            state.ejections = forgiven(state, now: now, detection: detection) + 1
            let time = min(detection.baseEjection * state.ejections, detection.maxEjection)
            state.ejectedUntil.store(now &+ UInt64(time.nanoseconds), ordering: .relaxed)
            state.setEjected(true)
            ejectedNow += 1
            ejections.wrappingIncrement(ordering: .relaxed)
            return .ejected(for: time, ejections: state.ejections)
        }
        if let event { observe(name, state.address, event) }
    }

    /// Ends `state`'s ejection if its time is up; whether it is usable
    /// after (it may still fail its health check).
    func endEjectionIfDue(_ state: EndpointHealth, now: UInt64) -> Bool {
        let ended: Bool = lock.withLock {
            guard state.isEjected, now >= state.ejectedUntil.load(ordering: .relaxed) else { return false }
            endEjection(state, now: now)
            return true
        }
        if ended { observe(name, state.address, .returned) }
        return state.isUsable
    }

    func ejectionCount(of state: EndpointHealth) -> Int {
        lock.withLock {
            guard let detection, !state.isEjected else { return state.ejections }
            return forgiven(state, now: LoopBalancer.monotonicNanoseconds(), detection: detection)
        }
    }

    /// Under `lock`.
    private func endEjection(_ state: EndpointHealth, now: UInt64) {
        state.setEjected(false)
        state.returnedAt = now
        ejectedNow -= 1
    }

    /// Under `lock`: `state`'s ejection count less one per interval spent
    /// back in service since its last ejection ended.
    private func forgiven(_ state: EndpointHealth, now: UInt64, detection: OutlierDetection) -> Int {
        guard state.ejections > 0, now > state.returnedAt else { return state.ejections }
        let intervals = (now - state.returnedAt) / UInt64(max(detection.interval.nanoseconds, 1))
        return max(0, state.ejections - Int(min(intervals, UInt64(Int.max))))
    }
}

/// Every cluster's registry on this node, by name: what outlives snapshots.
public final class UpstreamRuntime: @unchecked Sendable {
    private let lock = NIOLock()
    private var registries: [String: EndpointRegistry] = [:]
    private let observe: EndpointRegistry.Observer

    public init(observe: @escaping EndpointRegistry.Observer = { _, _, _ in }) {
        self.observe = observe
    }

    /// The registry of the cluster `name` (made on first use).
    public func registry(named name: String) -> EndpointRegistry {
        lock.withLock {
            if let registry = registries[name] { return registry }
            let registry = EndpointRegistry(name: name, observe: observe)
            registries[name] = registry
            return registry
        }
    }

    /// Forgets the clusters not in `names` (a reload removed them).
    public func retain(_ names: Set<String>) {
        lock.withLock { registries = registries.filter { names.contains($0.key) } }
    }

    /// Every registry, by cluster name.
    public var all: [EndpointRegistry] {
        lock.withLock { registries.values.sorted { $0.name < $1.name } }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds.multipliedReportingOverflow(by: 1_000_000_000).overflow
            ? Int64.max : seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
