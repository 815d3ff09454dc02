#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import WeftCore

/// One endpoint's load as one event loop sees it: requests (or TCP
/// connections) in flight, a peak-EWMA of its latency, and counts. Owned by
/// that loop's balancer and kept while the endpoint stays in the cluster,
/// through endpoint changes and reloads.
public final class EndpointLoad {
    public let address: IPEndpoint
    /// Leases taken and not yet finished.
    public internal(set) var inFlight = 0
    /// Leases finished, and those that finished with a failure.
    public internal(set) var finished = 0
    public internal(set) var failures = 0
    var latency: PeakEWMA
    /// The endpoint's health, shared by every loop.
    public internal(set) var health: EndpointHealth
    /// The balancer's clock (monotonic nanoseconds; a fake one in tests).
    let clock: () -> UInt64

    init(health: EndpointHealth, clock: @escaping () -> UInt64) {
        self.address = health.address
        self.health = health
        self.clock = clock
        latency = PeakEWMA(now: clock())
    }

    /// Linkerd's cost: the latency estimate, scaled by the work waiting.
    func cost(now: UInt64) -> Double {
        latency.estimate(at: now) * Double(inFlight + 1)
    }
}

/// One endpoint's counts as one loop has them, to be added up across
/// loops (the admin API's `/clusters`).
public struct EndpointCounts: Sendable, Equatable {
    public var inFlight = 0
    public var finished = 0
    public var failures = 0

    public init() {}

    public static func += (total: inout EndpointCounts, more: EndpointCounts) {
        total.inFlight += more.inFlight
        total.finished += more.finished
        total.failures += more.failures
    }
}

extension EndpointLoad {
    public var counts: EndpointCounts {
        var counts = EndpointCounts()
        counts.inFlight = inFlight
        counts.finished = finished
        counts.failures = failures
        return counts
    }
}

/// A latency estimate that jumps up to a slow observation at once and
/// decays back towards fast ones with time constant `decay` (linkerd's and
/// Finagle's peak EWMA): a slowing endpoint is avoided immediately and
/// forgiven gradually.
struct PeakEWMA {
    /// Nanoseconds.
    private(set) var value: Double
    private var stamp: UInt64
    /// The estimate of an endpoint never heard from (linkerd's default RTT).
    static let initial: Double = 30_000_000
    static let decay: Double = 10_000_000_000

    init(now: UInt64) {
        value = Self.initial
        stamp = now
    }

    /// Records a latency sample. The old value first decays for the time
    /// since the last sample (as a read would see it), then a slower sample
    /// replaces it outright and a faster one pulls it down by the same
    /// time-weighted share.
    mutating func observe(_ nanoseconds: UInt64, at now: UInt64) {
        let sample = Double(nanoseconds)
        let weight = Self.weight(elapsed: now &- stamp)
        let current = value * weight
        value = sample > current ? sample : current * weight + sample * (1 - weight)
        stamp = now
    }

    /// The estimate now, without recording anything: a pick's input. An
    /// endpoint not heard from decays towards zero, so one that was slow is
    /// tried again after a while instead of being starved for good.
    func estimate(at now: UInt64) -> Double {
        value * Self.weight(elapsed: now &- stamp)
    }

    /// exp(-elapsed/decay): the share the old value keeps.
    private static func weight(elapsed: UInt64) -> Double {
        guard elapsed < UInt64(1) << 62 else { return 1 }  // a clock that went back
        return exp(-Double(elapsed) / decay)
    }
}
