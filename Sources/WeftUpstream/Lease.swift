import WeftCore

/// One attempt's claim on an endpoint: taken by a pick, finished once with
/// the outcome. While a lease is open the endpoint counts one more request
/// (or TCP connection) in flight on this loop; its response time feeds the
/// latency estimate. A value (no allocation per request).
public struct Lease {
    public let endpoint: IPEndpoint
    let load: EndpointLoad
    let startedAt: UInt64
    /// The circuit-breaker slot the attempt holds, given back at its end.
    public private(set) var slot: (admission: ClusterAdmission, limit: ClusterAdmission.Limit)?

    /// The lease, holding `limit`'s slot of `admission` (already taken).
    public func holding(_ limit: ClusterAdmission.Limit, of admission: ClusterAdmission) -> Lease {
        var lease = self
        lease.slot = (admission, limit)
        return lease
    }

    init(load: EndpointLoad) {
        self.endpoint = load.address
        self.load = load
        self.startedAt = load.clock()
        load.inFlight += 1
    }

    /// The response head arrived: the time to first response is the
    /// endpoint's latency sample (what peak EWMA weighs).
    public func responded() {
        let now = load.clock()
        load.latency.observe(now &- startedAt, at: now)
    }

    /// Ends the lease. Call once; the holder drops it after.
    public func finish(_ outcome: LeaseOutcome) {
        let now = load.clock()
        load.inFlight = max(0, load.inFlight - 1)
        load.finished += 1
        if outcome == .failure {
            load.failures += 1
            // A failure that came fast must not look like a fast endpoint.
            load.latency.observe(max(now &- startedAt, UInt64(PeakEWMA.initial)), at: now)
        }
        load.health.record(outcome, now: now)
        if let slot { slot.admission.release(slot.limit) }
    }
}

/// How an attempt on an endpoint ended, as the balancer and outlier
/// detection see it.
public enum LeaseOutcome: Sendable, Equatable {
    /// The endpoint answered below 500 (or a TCP session connected).
    case success
    /// The endpoint answered 5xx; `gateway`: 502, 503 or 504.
    case serverError(gateway: Bool)
    /// It could not be reached, reset, or timed out (a gateway error).
    case failure
    /// Over for reasons not the endpoint's (the client left, the peer node
    /// refused the stream): no verdict on the endpoint.
    case abandoned

    /// The outcome of an answer with `status`.
    public init(status: Int) {
        switch status {
        case 502...504: self = .serverError(gateway: true)
        case 500...599: self = .serverError(gateway: false)
        default: self = .success
        }
    }
}

/// A lease held for the life of a connection (a TCP relay or tunnel),
/// where the end is heard in a callback: finishes once, whichever end
/// comes first.
public final class HeldLease {
    private var lease: Lease?

    public init(_ lease: Lease) { self.lease = lease }

    public var endpoint: IPEndpoint? { lease?.endpoint }

    public func finish(_ outcome: LeaseOutcome) {
        lease?.finish(outcome)
        lease = nil
    }
}
