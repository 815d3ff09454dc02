import Atomics
import WeftConfig

/// A cluster's admission on this node (SPEC §5): its token bucket
/// (`rate_limit`) and its circuit breakers (`circuit_breakers`), shared by
/// every loop. Kept by the cluster's registry across snapshots, so the
/// counts of what is in flight survive a reload that changes the bounds.
/// Only a cluster that configures one of them pays for the atomics.
public final class ClusterAdmission: Sendable {
    /// What a circuit breaker bounds.
    public enum Limit: Int, CaseIterable, Sendable {
        case connections, pending, requests, retries

        /// The label value in metrics.
        public var name: String {
            switch self {
            case .connections: "max_connections"
            case .pending: "max_pending"
            case .requests: "max_requests"
            case .retries: "max_retries"
            }
        }
    }

    private let maxima = Limit.allCases.map { _ in ManagedAtomic<Int>(.max) }
    private let inUse = Limit.allCases.map { _ in ManagedAtomic<Int>(0) }
    private let overflowCounts = Limit.allCases.map { _ in ManagedAtomic<Int>(0) }
    /// The bucket as GCRA keeps it: one atomic, the theoretical arrival
    /// time of the next request, in nanoseconds of the node's clock.
    private let arrival = ManagedAtomic<UInt64>(0)
    /// Nanoseconds per token, and how far ahead of now `arrival` may run
    /// (the burst); 0: no rate limit.
    private let interval = ManagedAtomic<UInt64>(0)
    private let tolerance = ManagedAtomic<UInt64>(0)
    private let limitedCount = ManagedAtomic<Int>(0)

    public init() {}

    /// Takes the bounds in force (nil: unbounded).
    public func configure(breakers: CircuitBreakers?, rateLimit: RateLimit?) {
        let bounds = breakers.map { [$0.maxConnections, $0.maxPending, $0.maxRequests, $0.maxRetries] }
        for limit in Limit.allCases { maxima[limit.rawValue].store(bounds?[limit.rawValue] ?? .max, ordering: .relaxed) }
        let perToken = rateLimit.map { 1_000_000_000 / UInt64($0.perSecond) } ?? 0
        interval.store(perToken, ordering: .relaxed)
        tolerance.store(perToken * UInt64(max((rateLimit?.burst ?? 1) - 1, 0)), ordering: .relaxed)
    }

    /// Takes a token if one is there: the request may go. GCRA: a request
    /// at `now` conforms while the next theoretical arrival is no further
    /// ahead than the burst allows; each one moves it on by one interval.
    public func takeToken(now: UInt64) -> Bool {
        let step = interval.load(ordering: .relaxed)
        guard step > 0 else { return true }
        let slack = tolerance.load(ordering: .relaxed)
        var expected = arrival.load(ordering: .relaxed)
        while true {
            let base = max(expected, now)
            guard base - now <= slack else {
                limitedCount.wrappingIncrement(ordering: .relaxed)
                return false
            }
            let (exchanged, original) = arrival.compareExchange(expected: expected, desired: base + step,
                                                                ordering: .relaxed)
            if exchanged { return true }
            expected = original
        }
    }

    /// Takes one of `limit`'s slots if the bound allows (counted when not).
    public func acquire(_ limit: Limit) -> Bool {
        let count = inUse[limit.rawValue].wrappingIncrementThenLoad(ordering: .relaxed)
        guard count > maxima[limit.rawValue].load(ordering: .relaxed) else { return true }
        inUse[limit.rawValue].wrappingDecrement(ordering: .relaxed)
        overflowCounts[limit.rawValue].wrappingIncrement(ordering: .relaxed)
        return false
    }

    public func release(_ limit: Limit) {
        inUse[limit.rawValue].wrappingDecrement(ordering: .relaxed)
    }

    /// Slots of `limit` in use now.
    public func inUse(_ limit: Limit) -> Int { inUse[limit.rawValue].load(ordering: .relaxed) }
    /// Times `limit` refused a slot.
    public func overflows(_ limit: Limit) -> Int { overflowCounts[limit.rawValue].load(ordering: .relaxed) }
    /// Requests (and connections) the bucket refused.
    public var rateLimited: Int { limitedCount.load(ordering: .relaxed) }
}
