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
public final class LoopBalancer {
    public private(set) var plan: BalancerPlan
    /// Parallel to `plan.endpoints`.
    public private(set) var loads: [EndpointLoad]
    private var cursor: Int
    private var random: SplitMix64
    private let clock: () -> UInt64

    public init(plan: BalancerPlan, random: SplitMix64 = SplitMix64(),
                clock: @escaping () -> UInt64 = LoopBalancer.monotonicNanoseconds) {
        self.plan = plan
        self.clock = clock
        self.random = random
        loads = plan.endpoints.map { EndpointLoad(address: $0.address, clock: clock) }
        // Loops (and nodes) start at different places in the schedule, so
        // they do not all send their first requests to the same endpoint.
        cursor = plan.schedule.isEmpty ? 0 : self.random.below(plan.schedule.count)
    }

    public var now: UInt64 { clock() }

    /// Moves to a new plan, keeping the load of every endpoint that stays.
    public func update(_ plan: BalancerPlan) {
        guard plan !== self.plan else { return }
        var kept: [IPEndpoint: EndpointLoad] = [:]
        for load in loads { kept[load.address] = load }
        loads = plan.endpoints.map { kept[$0.address] ?? EndpointLoad(address: $0.address, clock: clock) }
        if !plan.schedule.isEmpty { cursor %= plan.schedule.count }
        self.plan = plan
    }

    /// A lease on the endpoint the policy picks; nil when there is none.
    /// `hash` is the request's key for `ring_hash`/`maglev` (nil: random).
    public func pick(hash: UInt64? = nil) -> Lease? {
        guard let index = pickIndex(hash: hash) else { return nil }
        return Lease(load: loads[index])
    }

    /// A lease on the endpoint the app named itself (a direct call to a pod
    /// IP): no choice, but its load is still counted.
    public func lease(on endpoint: IPEndpoint) -> Lease {
        let load = loads.first { $0.address == endpoint } ?? EndpointLoad(address: endpoint, clock: clock)
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
            return twoChoices { load, weight in Double(load.inFlight) / weight }
        case .peakEWMA:
            let now = clock()
            return twoChoices { load, weight in load.cost(now: now) / weight }
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
        let ring = plan.ring
        var low = 0, high = ring.count
        while low < high {
            let middle = (low + high) / 2
            if ring[middle].hash < hash { low = middle + 1 } else { high = middle }
        }
        return Int(ring[low == ring.count ? 0 : low].index)
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    public static func monotonicNanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}
