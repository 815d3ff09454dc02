/// Retries kept under a share of a cluster's recent requests (SPEC §5,
/// Retries: `budget_percent`), so that retries cannot multiply the load on
/// a struggling cluster (a retry storm). Per event loop, like the balancer
/// it lives in: each loop keeps the ratio over its own traffic, without
/// atomics. "Recent" is the last 5 to 10 seconds (two windows of 5 s).
public struct RetryBudget {
    private var window: UInt64 = 0
    private var current = (requests: 0, retries: 0)
    private var previous = (requests: 0, retries: 0)
    static let windowLength: UInt64 = 5_000_000_000
    /// Retries allowed whatever the ratio, so a quiet cluster can retry.
    public static let minimumRetries = 3

    public init() {}

    /// A request (a first try) to the cluster.
    public mutating func recordRequest(now: UInt64) {
        advance(to: now)
        current.requests += 1
    }

    /// Whether one more retry fits in `percent` of the recent requests;
    /// counted when it does.
    public mutating func allowRetry(now: UInt64, percent: Int) -> Bool {
        advance(to: now)
        let requests = current.requests + previous.requests
        let retries = current.retries + previous.retries
        guard retries < max(Self.minimumRetries, requests * percent / 100) else { return false }
        current.retries += 1
        return true
    }

    private mutating func advance(to now: UInt64) {
        let index = now / Self.windowLength
        guard index != window else { return }
        previous = index == window + 1 ? current : (0, 0)
        current = (0, 0)
        window = index
    }
}
