/// `clusters[].health_check` (SPEC §5, Endpoint health): an active check
/// of every endpoint, from each node.
public struct HealthCheck: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        /// A GET of `path`; any 2xx passes.
        case http
        /// A TCP connect passes.
        case tcp
    }

    public var kind: Kind
    /// `protocol: http`: the path asked for.
    public var path: String
    /// Time between checks of one endpoint (each jittered by up to 10%).
    public var interval: Duration
    /// A check with no answer within this fails.
    public var timeout: Duration
    /// Passes in a row that make a failing endpoint healthy again.
    public var healthy: Int
    /// Failures in a row that make an endpoint unhealthy.
    public var unhealthy: Int

    public init(kind: Kind, path: String = "/", interval: Duration = .seconds(5), timeout: Duration = .seconds(1),
                healthy: Int = 2, unhealthy: Int = 3) {
        self.kind = kind
        self.path = path
        self.interval = interval
        self.timeout = timeout
        self.healthy = healthy
        self.unhealthy = unhealthy
    }
}

/// `clusters[].outlier_detection` (SPEC §5, Endpoint health): ejection of
/// endpoints that fail the requests sent to them, passive (no extra traffic).
public struct OutlierDetection: Sendable, Equatable {
    /// 5xx answers (and gateway errors) in a row that eject; 0: off.
    public var consecutive5xx: Int
    /// Gateway errors in a row that eject: 502, 503, 504, and failures to
    /// connect, resets and timeouts; 0: off.
    public var consecutiveGatewayErrors: Int
    /// The period by which an endpoint's ejection count is forgiven: one
    /// less for each interval it spends back in service.
    public var interval: Duration
    /// The n-th ejection lasts `baseEjection × n` (at most `maxEjection`).
    public var baseEjection: Duration
    public var maxEjection: Duration
    /// At most this share of the cluster's endpoints is ejected at once
    /// (always at least one may be).
    public var maxEjectionPercent: Int

    public init(consecutive5xx: Int = 5, consecutiveGatewayErrors: Int = 5, interval: Duration = .seconds(10),
                baseEjection: Duration = .seconds(30), maxEjection: Duration = .seconds(300),
                maxEjectionPercent: Int = 10) {
        self.consecutive5xx = consecutive5xx
        self.consecutiveGatewayErrors = consecutiveGatewayErrors
        self.interval = interval
        self.baseEjection = baseEjection
        self.maxEjection = maxEjection
        self.maxEjectionPercent = maxEjectionPercent
    }
}

/// `clusters[].retries` (SPEC §5, Retries): when an HTTP request is tried
/// again, on another endpoint when there is one.
public struct RetryPolicy: Sendable, Equatable {
    /// What makes a try worth another.
    public enum Condition: Sendable, Hashable {
        /// The endpoint could not be connected to.
        case connectFailure
        /// The connection or stream broke before a response.
        case reset
        /// The peer node refused the stream (never processed).
        case refusedStream
        /// Any 5xx answer, and a try that timed out.
        case serverError
        /// 502, 503 or 504, and a try that timed out.
        case gatewayError
        /// This status.
        case status(Int)
    }

    /// Tries after the first (Istio's `attempts`).
    public var attempts: Int
    public var conditions: Set<Condition>
    /// One try's limit; nil: only `timeouts.request`, which bounds them all.
    public var perTryTimeout: Duration?
    /// Retries stay under this share of the cluster's recent requests
    /// (10 s), with 3 retries always allowed.
    public var budgetPercent: Int

    public init(attempts: Int = 2, conditions: Set<Condition> = [.connectFailure, .reset, .refusedStream],
                perTryTimeout: Duration? = nil, budgetPercent: Int = 20) {
        self.attempts = attempts
        self.conditions = conditions
        self.perTryTimeout = perTryTimeout
        self.budgetPercent = budgetPercent
    }
}

/// `clusters[].circuit_breakers` (SPEC §5): bounds on what one node sends
/// to the cluster at once; over a bound, 503 `weft-reason: overflow`.
public struct CircuitBreakers: Sendable, Equatable {
    /// TCP connections relayed to the cluster (opaque TCP, CONNECT, upgrades).
    public var maxConnections: Int
    /// HTTP requests waiting for a connection to an endpoint.
    public var maxPending: Int
    /// HTTP requests in flight.
    public var maxRequests: Int
    /// Retries in flight.
    public var maxRetries: Int

    public init(maxConnections: Int = 1024, maxPending: Int = 1024, maxRequests: Int = 1024, maxRetries: Int = 3) {
        self.maxConnections = maxConnections
        self.maxPending = maxPending
        self.maxRequests = maxRequests
        self.maxRetries = maxRetries
    }
}

/// `clusters[].rate_limit` (SPEC §5): a token bucket per cluster per node.
public struct RateLimit: Sendable, Equatable {
    /// Tokens added per second: the sustained rate.
    public var perSecond: Int
    /// Tokens the bucket holds: the burst allowed above the rate.
    public var burst: Int

    public init(perSecond: Int, burst: Int) {
        self.perSecond = perSecond
        self.burst = burst
    }
}
