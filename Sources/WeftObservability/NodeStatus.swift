/// What the admin API's `/clusters` says of one cluster (SPEC §6): its
/// settings and, for each endpoint, the node's view of it. Encoded as JSON
/// with snake_case keys.
public struct ClusterStatus: Encodable, Sendable {
    public var name: String
    public var `protocol`: String
    public var mesh: Bool
    public var lb: String
    public var discovery: String
    public var endpoints: [EndpointStatus]
    /// What each circuit breaker counts now (by limit name), when the
    /// cluster has circuit breakers.
    public var circuitBreakersInUse: [String: Int]?

    public init(name: String, protocol: String, mesh: Bool, lb: String, discovery: String,
                endpoints: [EndpointStatus], circuitBreakersInUse: [String: Int]?) {
        self.name = name
        self.protocol = `protocol`
        self.mesh = mesh
        self.lb = lb
        self.discovery = discovery
        self.endpoints = endpoints
        self.circuitBreakersInUse = circuitBreakersInUse
    }
}

/// One endpoint in `/clusters`: health, ejection and the request counts
/// of every event loop added up.
public struct EndpointStatus: Encodable, Sendable {
    public var address: String
    public var weight: Int
    public var mesh: Bool
    public var region: String?
    public var zone: String?
    /// Passes its active health check (or has none).
    public var healthy: Bool
    /// Kept out by outlier detection now.
    public var ejected: Bool
    /// Times ejected so far.
    public var ejections: Int
    /// Requests (or TCP connections) to it in flight now.
    public var inFlight: Int
    /// Requests (or TCP connections) finished, and those that failed.
    public var requests: Int
    public var errors: Int

    public init(address: String, weight: Int, mesh: Bool, region: String?, zone: String?, healthy: Bool,
                ejected: Bool, ejections: Int, inFlight: Int, requests: Int, errors: Int) {
        self.address = address
        self.weight = weight
        self.mesh = mesh
        self.region = region
        self.zone = zone
        self.healthy = healthy
        self.ejected = ejected
        self.ejections = ejections
        self.inFlight = inFlight
        self.requests = requests
        self.errors = errors
    }
}

/// One listener in `/listeners`: its name and the addresses it is bound to.
public struct ListenerStatus: Encodable, Sendable {
    public var name: String
    public var addresses: [String]

    public init(name: String, addresses: [String]) {
        self.name = name
        self.addresses = addresses
    }
}
