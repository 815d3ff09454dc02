import Atomics
import WeftCore

/// Picks one endpoint of a cluster for a new connection or request.
///
/// The seam for every balancing policy (round robin now; least request,
/// random, ring hash and maglev later). Implementations are shared by all
/// event loops, so they must be thread-safe without locks on the hot path.
public protocol LoadBalancer: Sendable {
    func pick() -> IPEndpoint?
}

/// Weighted round robin over a fixed schedule.
///
/// The schedule is built once with nginx's smooth weighted round robin, so
/// a heavy endpoint's turns are spread out rather than bunched; picking is
/// one relaxed atomic increment and an array index.
public final class RoundRobinBalancer: LoadBalancer {
    /// The longest schedule we build; heavier weight sets are scaled down.
    static let maximumScheduleLength = 4096

    let schedule: [IPEndpoint]
    private let next = ManagedAtomic<Int>(0)

    public init(endpoints: [(address: IPEndpoint, weight: Int)]) {
        schedule = Self.smoothSchedule(endpoints)
    }

    public func pick() -> IPEndpoint? {
        guard !schedule.isEmpty else { return nil }
        let turn = next.loadThenWrappingIncrement(ordering: .relaxed)
        return schedule[Int(UInt(bitPattern: turn) % UInt(schedule.count))]
    }

    static func smoothSchedule(_ endpoints: [(address: IPEndpoint, weight: Int)]) -> [IPEndpoint] {
        var weights = endpoints.map { max($0.weight, 1) }
        guard !weights.isEmpty else { return [] }
        let divisor = weights.reduce(0) { gcd($0, $1) }
        weights = weights.map { $0 / divisor }
        let total = weights.reduce(0, +)
        if total > maximumScheduleLength {
            weights = weights.map { max(1, $0 * maximumScheduleLength / total) }
        }
        let length = weights.reduce(0, +)
        var current = [Int](repeating: 0, count: weights.count)
        var schedule: [IPEndpoint] = []
        schedule.reserveCapacity(length)
        for _ in 0..<length {
            var best = 0
            for index in weights.indices {
                current[index] += weights[index]
                if current[index] > current[best] { best = index }
            }
            current[best] -= length
            schedule.append(endpoints[best].address)
        }
        return schedule
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}
