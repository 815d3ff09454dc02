#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import WeftConfig
import WeftCore

/// One cluster's balancer on one event loop (SPEC §5, Balancing): picks an
/// endpoint per attempt and hands out a `Lease` that feeds the outcome
/// back. Per loop, so picking takes no lock and no atomic; the plan (the
/// schedule, ring or table) is shared.
///
/// Loads are keyed by endpoint address and survive a new plan: an endpoint
/// that stays keeps its in-flight count and latency through reloads and
/// discovery changes.
///
/// Endpoints failing their health check or ejected are passed over; when
/// none is usable, the pick ignores health (panic mode, counted) rather
/// than failing every request.
public final class LoopBalancer {
    public private(set) var plan: BalancerPlan
    /// Parallel to `plan.endpoints`.
    public private(set) var loads: [EndpointLoad]
    private var cursor: Int
    private var random: SplitMix64
    private let clock: () -> UInt64

    /// Told of picks made in panic mode.
    private let registry: EndpointRegistry?
    /// This loop's retry budget for the cluster.
    public var retryBudget = RetryBudget()
    /// The locality tiers' balancers, nearest first, sharing this one's
    /// loads; empty when locality does not apply.
    private var tiers: [LoopBalancer] = []

    /// `health`, parallel to `plan.endpoints` (an `UpstreamCluster`'s): the
    /// node's states of the endpoints; without it, every endpoint is healthy.
    public init(plan: BalancerPlan, health: [EndpointHealth] = [], random: SplitMix64 = SplitMix64(),
                clock: @escaping () -> UInt64 = LoopBalancer.monotonicNanoseconds) {
        self.plan = plan
        self.clock = clock
        self.random = random
        let states = Self.states(for: plan, health)
        registry = states.first?.registry
        loads = states.map { EndpointLoad(health: $0, clock: clock) }
        // Loops (and nodes) start at different places in the schedule, so
        // they do not all send their first requests to the same endpoint.
        cursor = plan.schedule.isEmpty ? 0 : self.random.below(plan.schedule.count)
    }

    public var now: UInt64 { clock() }

    /// The balancer of `cluster`'s plan and endpoint states (and its
    /// locality tiers).
    public convenience init(cluster: UpstreamCluster, random: SplitMix64 = SplitMix64(),
                            clock: @escaping () -> UInt64 = LoopBalancer.monotonicNanoseconds) {
        self.init(plan: cluster.plan, health: cluster.health, random: random, clock: clock)
        makeTiers(cluster)
    }

    /// A tier's balancer: its own plan over loads its parent keeps.
    private init(plan: BalancerPlan, loads: [EndpointLoad], random: SplitMix64, clock: @escaping () -> UInt64,
                 registry: EndpointRegistry?) {
        self.plan = plan
        self.loads = loads
        self.random = random
        self.clock = clock
        self.registry = registry
        cursor = plan.schedule.isEmpty ? 0 : self.random.below(plan.schedule.count)
    }

    private func makeTiers(_ cluster: UpstreamCluster) {
        var byAddress: [IPEndpoint: EndpointLoad] = [:]
        for load in loads { byAddress[load.address] = load }
        tiers = cluster.tiers.map { tier in
            let loads = zip(tier.plan.endpoints, tier.health).map { endpoint, health in
                byAddress[endpoint.address] ?? EndpointLoad(health: health, clock: clock)
            }
            return LoopBalancer(plan: tier.plan, loads: loads, random: SplitMix64(seed: random.next()), clock: clock,
                                registry: registry)
        }
    }

    /// Moves to a new plan, keeping the load of every endpoint that stays.
    public func update(_ plan: BalancerPlan, health: [EndpointHealth] = []) {
        guard plan !== self.plan else { return }
        var kept: [IPEndpoint: EndpointLoad] = [:]
        for load in loads { kept[load.address] = load }
        loads = Self.states(for: plan, health).map { state in
            guard let load = kept[state.address] else { return EndpointLoad(health: state, clock: clock) }
            load.health = state
            return load
        }
        if !plan.schedule.isEmpty { cursor %= plan.schedule.count }
        self.plan = plan
        tiers = []  // `update(_ cluster:)` makes the new plan's
    }

    public func update(_ cluster: UpstreamCluster) {
        guard cluster.plan !== plan else { return }
        update(cluster.plan, health: cluster.health)
        makeTiers(cluster)
    }

    private static func states(for plan: BalancerPlan, _ health: [EndpointHealth]) -> [EndpointHealth] {
        guard health.count != plan.endpoints.count else { return health }
        return plan.endpoints.map { EndpointHealth(address: $0.address, registry: nil) }
    }

    /// A lease on the endpoint the policy picks among the usable ones; nil
    /// when the cluster has none. `hash` is the request's key for
    /// `ring_hash`/`maglev` (nil: random).
    public func pick(hash: UInt64? = nil) -> Lease? {
        if !tiers.isEmpty { return tiers[chooseTier()].pick(hash: hash) }
        guard let first = pickIndex(hash: hash) else { return nil }
        if isUsable(first) { return Lease(load: loads[first]) }
        if let other = usableAlternative(to: first, hash: hash) { return Lease(load: loads[other]) }
        // Panic mode: nothing is usable, so everything is.
        registry?.panics.wrappingIncrement(ordering: .relaxed)
        return Lease(load: loads[first])
    }

    /// The locality tier for this pick, drawn by the tiers' shares; the
    /// nearest when none is healthy (its balancer then panics).
    private func chooseTier() -> Int {
        var health = SIMD3<Double>(repeating: 0)
        for index in 0..<min(tiers.count, 3) {
            let tier = tiers[index]
            var usable = 0
            for load in tier.loads where load.health.isUsable { usable += 1 }
            health[index] = LocalityTiers.health(usable: usable, total: tier.loads.count)
        }
        guard let shares = LocalityTiers.shares(health) else { return 0 }
        var draw = Double(random.below(1 << 24)) / Double(1 << 24)
        for index in 0..<min(tiers.count, 3) {
            if draw < shares[index] { return index }
            draw -= shares[index]
        }
        return min(tiers.count, 3) - 1
    }

    /// Whether the endpoint at `index` may get a request: healthy and not
    /// ejected. An ejection whose time is up ends here.
    private func isUsable(_ index: Int) -> Bool {
        let health = loads[index].health
        if health.isUsable { return true }
        guard health.isEjected, let registry = health.registry,
              clock() >= health.ejectedUntil.load(ordering: .relaxed) else { return false }
        return registry.endEjectionIfDue(health, now: clock())
    }

    /// Another endpoint when the policy's choice is not usable: the next
    /// one in its schedule, ring or table for the ordered policies, a new
    /// draw for the random ones; nil when none is usable.
    private func usableAlternative(to first: Int, hash: UInt64?) -> Int? {
        let count = loads.count
        guard (0..<count).contains(where: isUsable) else { return nil }
        switch plan.policy {
        case .roundRobin:
            for _ in 0..<plan.schedule.count {
                let index = Int(plan.schedule[cursor])
                cursor += 1
                if cursor == plan.schedule.count { cursor = 0 }
                if isUsable(index) { return index }
            }
        case .ringHash where hash != nil:
            let ring = plan.ring
            let start = ringPosition(hash ?? 0)
            for step in 1..<ring.count {
                let index = Int(ring[(start + step) % ring.count].index)
                if isUsable(index) { return index }
            }
        case .maglev where hash != nil:
            let table = plan.maglev
            let start = Int((hash ?? 0) % UInt64(table.count))
            for step in 1..<table.count {
                let index = Int(table[(start + step) % table.count])
                if isUsable(index) { return index }
            }
        default:
            for _ in 0..<3 {
                if let index = pickIndex(hash: nil), isUsable(index) { return index }
            }
        }
        // Rare: a usable endpoint the walk or draws missed. Any will do.
        let start = random.below(count)
        return (0..<count).lazy.map { (start + $0) % count }.first(where: isUsable)
    }

    /// A lease on the endpoint the app named itself (a direct call to a pod
    /// IP): no choice, but its load is still counted.
    public func lease(on endpoint: IPEndpoint) -> Lease {
        let load = loads.first { $0.address == endpoint }
            ?? EndpointLoad(health: EndpointHealth(address: endpoint, registry: nil), clock: clock)
        return Lease(load: load)
    }

    // MARK: policies

    private func pickIndex(hash: UInt64?) -> Int? {
        let count = loads.count
        guard count > 0 else { return nil }
        if count == 1 { return 0 }
        switch plan.policy {
        case .roundRobin:
            let index = Int(plan.schedule[cursor])
            cursor += 1
            if cursor == plan.schedule.count { cursor = 0 }
            return index
        case .random:
            return weightedRandom()
        case .leastRequest:
            return twoChoices { load, weight in
                load.health.isUsable ? Double(load.inFlight) / weight : .infinity
            }
        case .peakEWMA:
            let now = clock()
            return twoChoices { load, weight in load.health.isUsable ? load.cost(now: now) / weight : .infinity }
        case .ringHash:
            guard let hash else { return weightedRandom() }
            return ringLookup(hash)
        case .maglev:
            guard let hash else { return weightedRandom() }
            return Int(plan.maglev[Int(hash % UInt64(plan.maglev.count))])
        }
    }

    private func weightedRandom() -> Int {
        let sums = plan.cumulativeWeights
        guard let total = sums.last else { return random.below(loads.count) }
        let target = random.below(total)
        // First running sum above the target.
        var low = 0, high = sums.count - 1
        while low < high {
            let middle = (low + high) / 2
            if sums[middle] > target { high = middle } else { low = middle + 1 }
        }
        return low
    }

    /// Power of two choices: two distinct endpoints drawn by weight, the one
    /// with the lower cost (already divided by its weight) wins; ties go to
    /// the first drawn, so idle endpoints share by weight.
    private func twoChoices(cost: (EndpointLoad, Double) -> Double) -> Int {
        let first = weightedRandom()
        var second = weightedRandom()
        if second == first {
            // Another draw, then the neighbour: two distinct candidates
            // without looping on a heavy endpoint.
            second = weightedRandom()
            if second == first { second = (first + 1 + random.below(loads.count - 1)) % loads.count }
        }
        let weights = plan.endpoints
        let a = cost(loads[first], Double(max(weights[first].weight, 1)))
        let b = cost(loads[second], Double(max(weights[second].weight, 1)))
        return b < a ? second : first
    }

    private func ringLookup(_ hash: UInt64) -> Int {
        Int(plan.ring[ringPosition(hash)].index)
    }

    /// The first ring point at or after `hash` (wrapping).
    private func ringPosition(_ hash: UInt64) -> Int {
        let ring = plan.ring
        var low = 0, high = ring.count
        while low < high {
            let middle = (low + high) / 2
            if ring[middle].hash < hash { low = middle + 1 } else { high = middle }
        }
        return low == ring.count ? 0 : low
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    public static func monotonicNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}
