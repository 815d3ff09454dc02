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
