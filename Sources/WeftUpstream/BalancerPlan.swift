import WeftConfig
import WeftCore

/// What a balancer derives from a cluster's endpoint set and policy:
/// immutable, built once per set (at start, on reload, on a discovery
/// change) and shared by every event loop's `LoopBalancer`.
///
/// Only the table the policy uses is built: the smooth round-robin
/// schedule, cumulative weights (random and the two-choice policies), the
/// hash ring, or the Maglev lookup table.
public final class BalancerPlan: Sendable {
    public let policy: LoadBalancerPolicy
    public let hashOn: HashOn?
    public let endpoints: [Endpoint]
    /// Endpoint indices in smooth weighted round-robin order.
    let schedule: [Int32]
    /// Running sums of the weights; empty when all weights are equal.
    let cumulativeWeights: [Int]
    /// Ring points sorted by hash (`ring_hash`).
    let ring: [RingPoint]
    /// Slot → endpoint index (`maglev`).
    let maglev: [Int32]

    struct RingPoint: Sendable {
        let hash: UInt64
        let index: Int32
    }

    /// The longest round-robin schedule; heavier weight sets are scaled down.
    static let maximumScheduleLength = 4096
    /// Ring points per endpoint at weight 1, and the ring's bounds (Envoy's
    /// minimum ring size is 1024).
    static let ringPointsPerEndpoint = 160
    static let ringSize = 1024...65_536

    public init(policy: LoadBalancerPolicy, hashOn: HashOn? = nil, endpoints: [Endpoint]) {
        self.policy = policy
        self.hashOn = hashOn
        self.endpoints = endpoints
        let weights = endpoints.map { max($0.weight, 1) }
        schedule = policy == .roundRobin ? Self.smoothSchedule(weights) : []
        if Set(weights).count > 1, [.random, .leastRequest, .peakEWMA].contains(policy) {
            var sum = 0
            cumulativeWeights = weights.map { sum += $0; return sum }
        } else {
            cumulativeWeights = []
        }
        ring = policy == .ringHash ? Self.ring(endpoints, weights: weights) : []
        maglev = policy == .maglev ? Self.maglevTable(endpoints, weights: weights) : []
    }

    /// A plan for the same policy over another endpoint set.
    public func with(endpoints: [Endpoint]) -> BalancerPlan {
        BalancerPlan(policy: policy, hashOn: hashOn, endpoints: endpoints)
    }

    // MARK: round robin

    /// nginx's smooth weighted round robin, unrolled into one cycle: a
    /// heavy endpoint's turns are spread out rather than bunched.
    static func smoothSchedule(_ weights: [Int]) -> [Int32] {
        guard !weights.isEmpty else { return [] }
        var weights = weights
        let divisor = weights.reduce(0) { gcd($0, $1) }
        weights = weights.map { $0 / divisor }
        let total = weights.reduce(0, +)
        if total > maximumScheduleLength {
            weights = weights.map { max(1, $0 * maximumScheduleLength / total) }
        }
        let length = weights.reduce(0, +)
        var current = [Int](repeating: 0, count: weights.count)
        var schedule: [Int32] = []
        schedule.reserveCapacity(length)
        for _ in 0..<length {
            var best = 0
            for index in weights.indices {
                current[index] += weights[index]
                if current[index] > current[best] { best = index }
            }
            current[best] -= length
            schedule.append(Int32(best))
        }
        return schedule
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    // MARK: ring hash

    /// Each endpoint owns points in proportion to its weight; a key belongs
    /// to the first point at or after its hash. Points are hashed from the
    /// endpoint's address, so every node builds the same ring.
    static func ring(_ endpoints: [Endpoint], weights: [Int]) -> [RingPoint] {
        guard !endpoints.isEmpty else { return [] }
        let totalWeight = weights.reduce(0, +)
        let size = min(max(endpoints.count * ringPointsPerEndpoint, ringSize.lowerBound), ringSize.upperBound)
        var points: [RingPoint] = []
        points.reserveCapacity(size + endpoints.count)
        for (index, endpoint) in endpoints.enumerated() {
            let count = max(1, size * weights[index] / totalWeight)
            let name = endpoint.address.description
            for replica in 0..<count {
                points.append(RingPoint(hash: StableHash.hash("\(name)_\(replica)"), index: Int32(index)))
            }
        }
        // Ties (vanishingly rare) break by address, so the order is the same
        // everywhere whatever the endpoint list's order.
        points.sort { ($0.hash, endpoints[Int($0.index)].address.description)
            < ($1.hash, endpoints[Int($1.index)].address.description) }
        return points
    }

    // MARK: maglev

    /// The lookup table's size: a prime, one size for every endpoint count
    /// (a size that followed the count would reshuffle most keys whenever
    /// the count crossed a step); 65,521 keeps the spread even up to
    /// hundreds of endpoints (the Maglev paper asks for 100 slots each).
    static let maglevSize = 65_521

    /// Maglev's population (Eisenbud et al., 2016), weighted as Envoy does:
    /// in each round an endpoint takes a turn only once its weight has
    /// caught up with the heaviest endpoint's pace.
    static func maglevTable(_ endpoints: [Endpoint], weights: [Int]) -> [Int32] {
        guard !endpoints.isEmpty else { return [] }
        let size = maglevSize
        let maxWeight = Double(weights.max() ?? 1)
        struct Entry {
            let offset: Int
            let skip: Int
            let weight: Double
            var next = 0
            var target = 0.0
        }
        // Permutations come from the address, so a key's slot does not
        // depend on the endpoints' order in the configuration.
        let order = endpoints.indices.sorted { endpoints[$0].address.description < endpoints[$1].address.description }
        var entries = order.map { index -> Entry in
            let name = endpoints[index].address.description
            return Entry(offset: Int(StableHash.hash(name, seed: 0x6d61_676c) % UInt64(size)),
                         skip: Int(StableHash.hash(name, seed: 0x736b_6970) % UInt64(size - 1)) + 1,
                         weight: Double(weights[index]) / maxWeight)
        }
        var table = [Int32](repeating: -1, count: size)
        var filled = 0
        var round = 1.0
        while filled < size {
            for position in entries.indices where filled < size {
                if round * entries[position].weight < entries[position].target { continue }
                entries[position].target += 1
                var slot = (entries[position].offset + entries[position].skip * entries[position].next) % size
                while table[slot] >= 0 {
                    entries[position].next += 1
                    slot = (entries[position].offset + entries[position].skip * entries[position].next) % size
                }
                table[slot] = Int32(order[position])
                entries[position].next += 1
                filled += 1
            }
            round += 1
        }
        return table
    }
}
