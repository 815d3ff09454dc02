/// The admin API's answer to "how would weft handle a connection to this
/// destination, and this request, now" (`/explain`, `weft explain`, SPEC
/// §6): built from the live configuration and endpoint states by the same
/// decisions the data path makes. JSON with snake_case keys; `weft explain`
/// reads it back to print it for a person.
public struct Explanation: Codable, Sendable, Equatable {
    /// The cluster the connection or request goes to, and why that one.
    public struct ClusterMatch: Codable, Sendable, Equatable {
        public var name: String
        /// How it was matched: its address (a VIP), one of its endpoints
        /// (called directly), a hostname, or a route rule.
        public var matchedBy: String
        public var `protocol`: String
        public var mesh: Bool
        public var lb: String

        public init(name: String, matchedBy: String, protocol: String, mesh: Bool, lb: String) {
            self.name = name
            self.matchedBy = matchedBy
            self.protocol = `protocol`
            self.mesh = mesh
            self.lb = lb
        }
    }

    /// A route rule (by its index in `routes`) and why it did not match.
    public struct RuleMiss: Codable, Sendable, Equatable {
        public var rule: Int
        public var why: String

        public init(rule: Int, why: String) {
            self.rule = rule
            self.why = why
        }
    }

    /// A cluster of the matched rule and its share of the requests.
    public struct WeightedCluster: Codable, Sendable, Equatable {
        public var name: String
        public var weight: Int

        public init(name: String, weight: Int) {
            self.name = name
            self.weight = weight
        }
    }

    /// One endpoint of the cluster: whether it gets requests now, and why not.
    public struct EndpointVerdict: Codable, Sendable, Equatable {
        public var address: String
        /// Healthy and not ejected.
        public var usable: Bool
        /// Would get requests now (usable, in a locality tier that takes
        /// traffic; or every endpoint, in panic mode).
        public var getsTraffic: Bool
        /// Why it gets none, when it gets none.
        public var why: String?
        public var locality: String?
        /// Its locality tier's share of the traffic now, when locality applies.
        public var tierShare: Double?

        public init(address: String, usable: Bool, getsTraffic: Bool, why: String?, locality: String?,
                    tierShare: Double?) {
            self.address = address
            self.usable = usable
            self.getsTraffic = getsTraffic
            self.why = why
            self.locality = locality
            self.tierShare = tierShare
        }
    }

    /// A policy that applies, in words (`timeouts`: `connect 5s, request 15s, idle 1h`).
    public struct Policy: Codable, Sendable, Equatable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public var destination: String
    public var host: String?
    public var path: String?
    /// The version of the configuration this was read from.
    public var configVersion: Int
    /// The listener an app's connection to the destination arrives on.
    public var listener: String
    /// `cluster`, `passthrough` (no cluster: to the destination as it is)
    /// or `refused` (reset).
    public var verdict: String
    /// Why it is refused, as counted (`weft_connections_refused_total`).
    public var refusal: String?
    public var cluster: ClusterMatch?
    /// The matched rule (nil: no rule matched, or none applies), its
    /// clusters and timeout.
    public var rule: Int?
    public var routeClusters: [WeightedCluster]
    public var routeTimeout: String?
    /// The rules tried before (and, when none matched, all of them).
    public var rulesNotMatched: [RuleMiss]
    public var endpoints: [EndpointVerdict]
    public var policies: [Policy]
    /// The whole answer in a few sentences.
    public var summary: [String]

    private enum CodingKeys: String, CodingKey {
        case destination, host, path, configVersion, listener, verdict, refusal, cluster, rule, routeClusters,
             routeTimeout, rulesNotMatched, endpoints, policies, summary
    }

    /// Every key is written, an absent value as null: readers can rely on
    /// the shape.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(destination, forKey: .destination)
        try container.encode(host, forKey: .host)
        try container.encode(path, forKey: .path)
        try container.encode(configVersion, forKey: .configVersion)
        try container.encode(listener, forKey: .listener)
        try container.encode(verdict, forKey: .verdict)
        try container.encode(refusal, forKey: .refusal)
        try container.encode(cluster, forKey: .cluster)
        try container.encode(rule, forKey: .rule)
        try container.encode(routeClusters, forKey: .routeClusters)
        try container.encode(routeTimeout, forKey: .routeTimeout)
        try container.encode(rulesNotMatched, forKey: .rulesNotMatched)
        try container.encode(endpoints, forKey: .endpoints)
        try container.encode(policies, forKey: .policies)
        try container.encode(summary, forKey: .summary)
    }

    public init(destination: String, host: String?, path: String?, configVersion: Int, listener: String) {
        self.destination = destination
        self.host = host
        self.path = path
        self.configVersion = configVersion
        self.listener = listener
        verdict = "cluster"
        routeClusters = []
        rulesNotMatched = []
        endpoints = []
        policies = []
        summary = []
    }
}
