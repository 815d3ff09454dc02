import WeftCore

/// A validated node configuration (SPEC §5). Built only by `ConfigLoader`,
/// so every value here has passed validation.
public struct Configuration: Sendable, Equatable {
    public var node: NodeSettings
    public var listeners: Listeners
    public var outboundPolicy: OutboundPolicy
    /// How long protocol detection waits for the client's first bytes.
    public var detectTimeout: Duration
    /// Ports where the server speaks first: detection is skipped.
    public var opaquePorts: Set<UInt16>
    public var clusters: [Cluster]
    /// L7 rules for HTTP requests, first match wins (SPEC §5 `routes`).
    public var routes: [Route]
    /// How long a SIGTERM drain waits for in-flight connections.
    public var drainTimeout: Duration
    /// One line per request or TCP session (SPEC §6); nil: none.
    public var accessLog: AccessLogSettings?
    /// Which mesh identities may reach each local port (SPEC §8); a port
    /// with no rule takes every authenticated peer.
    public var authorization: [AuthorizationRule] = []
    /// Ask an authorization service before delivering each inbound mesh
    /// HTTP request (SPEC §8); nil: no such call.
    public var extAuthz: ExtAuthzSettings?
    /// The API server for `discovery: kubernetes`; nil: the in-cluster one.
    public var kubernetesAPI: KubernetesAPISettings?

    public init(
        node: NodeSettings = NodeSettings(),
        listeners: Listeners = Listeners(),
        outboundPolicy: OutboundPolicy = .allowAny,
        detectTimeout: Duration = .seconds(1),
        opaquePorts: Set<UInt16> = Configuration.defaultOpaquePorts,
        clusters: [Cluster] = [],
        routes: [Route] = [],
        drainTimeout: Duration = .seconds(20),
        accessLog: AccessLogSettings? = nil
    ) {
        self.node = node
        self.listeners = listeners
        self.outboundPolicy = outboundPolicy
        self.detectTimeout = detectTimeout
        self.opaquePorts = opaquePorts
        self.clusters = clusters
        self.routes = routes
        self.drainTimeout = drainTimeout
        self.accessLog = accessLog
    }

    public static let defaultOpaquePorts: Set<UInt16> = [25, 587, 3306, 4444, 5432, 6379, 9300, 11211]
}

/// `authorization[]`: inbound requests over the mesh to local `port` are
/// allowed only from the `allow`ed peer identities (403 `unauthorized`).
public struct AuthorizationRule: Sendable, Equatable {
    public var port: UInt16
    public var allow: [SPIFFEID]
    public init(port: UInt16, allow: [SPIFFEID]) {
        self.port = port
        self.allow = allow
    }
}

/// `ext_authz`: before an inbound request is delivered, `POST <path>` to
/// `cluster` with the request's method, path and headers; a 2xx lets it
/// through with `forwardHeaders` copied from the answer, anything else is
/// the caller's answer; no answer within `timeout` (or none at all) is 403
/// unless `failureModeAllow`.
public struct ExtAuthzSettings: Sendable, Equatable {
    public var cluster: String
    public var path: String
    public var timeout: Duration
    /// Lowercase names of the answer's headers that go on to the app.
    public var forwardHeaders: [String]
    public var failureModeAllow: Bool

    public init(cluster: String, path: String = "/", timeout: Duration = .milliseconds(200),
                forwardHeaders: [String] = [], failureModeAllow: Bool = false) {
        self.cluster = cluster
        self.path = path
        self.timeout = timeout
        self.forwardHeaders = forwardHeaders
        self.failureModeAllow = failureModeAllow
    }
}

public struct NodeSettings: Sendable, Equatable {
    /// Defaults to the host name.
    public var id: String?
    /// The node's own addresses; `.auto` reads them from the interfaces.
    public var addresses: NodeAddresses
    public var proxyUID: UInt32
    /// Where this node runs; empty when not configured.
    public var locality: Locality

    public init(id: String? = nil, addresses: NodeAddresses = .auto, proxyUID: UInt32 = 1337,
                locality: Locality = Locality()) {
        self.id = id
        self.addresses = addresses
        self.proxyUID = proxyUID
        self.locality = locality
    }
}

/// A node's region and zone (`node.locality`), both optional.
public struct Locality: Sendable, Equatable {
    public var region: String?
    public var zone: String?

    public init(region: String? = nil, zone: String? = nil) {
        self.region = region
        self.zone = zone
    }
}

public enum NodeAddresses: Sendable, Equatable {
    case auto
    case list([IPAddress])
}

public struct Listeners: Sendable, Equatable {
    public var outbound: PortListener
    public var inbound: InboundListener
    public var mesh: MeshListener
    public var admin: AddressListener
    public var health: PortListener
    /// Explicit local ports, each carrying everything to one cluster.
    public var egress: [EgressListener]
    /// An explicit local port for HTTP, routed by Host.
    public var httpRouting: PortListener?
    /// DNS capture's listener (`weft init --capture-dns`); nil: none.
    public var dns: DNSListener?

    public init(
        outbound: PortListener = PortListener(port: 15001),
        inbound: InboundListener = InboundListener(),
        mesh: MeshListener = MeshListener(port: 15008),
        admin: AddressListener = AddressListener(address: .loopbackV4, port: 15000),
        health: PortListener = PortListener(port: 15020),
        egress: [EgressListener] = [],
        httpRouting: PortListener? = nil
    ) {
        self.outbound = outbound
        self.inbound = inbound
        self.mesh = mesh
        self.admin = admin
        self.health = health
        self.egress = egress
        self.httpRouting = httpRouting
    }

    /// Every port weft itself listens on: traffic to these is never proxied.
    public var ownPorts: Set<UInt16> {
        Set(namedPorts.map(\.port))
    }
}

/// `listeners.egress[]` (SPEC §5): `127.0.0.1:port` carries everything to
/// `cluster` (the seeds' explicit port per external service).
public struct EgressListener: Sendable, Equatable {
    public var port: UInt16
    public var cluster: String
    public init(port: UInt16, cluster: String) {
        self.port = port
        self.cluster = cluster
    }
}

public struct PortListener: Sendable, Equatable {
    public var port: UInt16
    public init(port: UInt16) { self.port = port }
}

/// `listeners.dns`: where captured DNS arrives (127.0.0.1, UDP and TCP) and
/// where queries weft does not answer go.
public struct DNSListener: Sendable, Equatable {
    public var port: UInt16
    public var upstream: DNSUpstream
    public init(port: UInt16 = 15053, upstream: DNSUpstream = .auto) {
        self.port = port
        self.upstream = upstream
    }
}

/// `listeners.dns.upstream`: `auto` (the first nameserver of
/// /etc/resolv.conf), `original` (where the app sent each query, found in
/// conntrack; `auto`'s server when that is unknown) or `ip[:port]` (port 53
/// when left out).
public enum DNSUpstream: Sendable, Equatable, CustomStringConvertible {
    case auto
    case original
    case address(IPEndpoint)
    public var description: String {
        switch self {
        case .auto: "auto"
        case .original: "original"
        case .address(let endpoint): "\(endpoint)"
        }
    }
}

/// `listeners.mesh`: the port peer nodes connect to, and mTLS when `tls`
/// is set (SPEC §8).
public struct MeshListener: Sendable, Equatable {
    public var port: UInt16
    public var tls: MeshTLSFiles?
    public init(port: UInt16, tls: MeshTLSFiles? = nil) {
        self.port = port
        self.tls = tls
    }
}

/// `listeners.mesh.tls`: PEM files of the node certificate, its key and
/// the mesh CA. They are re-read when they change (rotation).
public struct MeshTLSFiles: Sendable, Equatable {
    /// The node certificate (named as in the file, for `/config_dump`).
    public var cert: String
    public var key: String
    public var ca: String
    public init(cert: String, key: String, ca: String) {
        self.cert = cert
        self.key = key
        self.ca = ca
    }
}

public struct AddressListener: Sendable, Equatable {
    public var address: IPAddress
    public var port: UInt16
    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }
}

public struct InboundListener: Sendable, Equatable {
    public var port: UInt16
    public var deliverTo: InboundDelivery
    public var plaintext: PlaintextPolicy

    public init(port: UInt16 = 15006, deliverTo: InboundDelivery = .loopback, plaintext: PlaintextPolicy = .allow) {
        self.port = port
        self.deliverTo = deliverTo
        self.plaintext = plaintext
    }
}

/// Where the inbound side hands connections to the local app.
public enum InboundDelivery: String, Sendable, Equatable, CaseIterable {
    /// `127.0.0.1:<port>` (or `[::1]:<port>` for IPv6 connections).
    case loopback
    /// The pod address the connection was sent to.
    case podIP = "pod_ip"
}

public enum PlaintextPolicy: String, Sendable, Equatable, CaseIterable {
    case allow, deny
}

public enum OutboundPolicy: String, Sendable, Equatable, CaseIterable {
    /// Unknown destinations are relayed as TCP to where the app sent them.
    case allowAny = "allow_any"
    /// Unknown destinations are refused and counted.
    case registryOnly = "registry_only"
}

public enum ClusterProtocol: String, Sendable, Equatable, CaseIterable {
    case auto, http1, http2, tcp
}

/// Where a cluster's endpoints come from (SPEC §5, Discovery).
public enum DiscoveryKind: String, Sendable, Equatable, CaseIterable {
    /// `endpoints` in this file.
    case `static`
    /// `endpoints` name hosts, re-resolved every `dns_refresh` (A and AAAA).
    case dns
    /// A watched YAML file holding a list of endpoints (`file`).
    case file
    /// A Service's EndpointSlices, listed and watched (`kubernetes`).
    case kubernetes
}

/// A `dns` cluster's endpoint: a host name to resolve, and the port and
/// settings every address it resolves to gets.
public struct NamedEndpoint: Sendable, Equatable {
    public var host: String
    public var port: UInt16
    public var weight: Int
    public var mesh: Bool?
    public var locality: Locality?

    public init(host: String, port: UInt16, weight: Int = 1, mesh: Bool? = nil, locality: Locality? = nil) {
        self.host = host
        self.port = port
        self.weight = weight
        self.mesh = mesh
        self.locality = locality
    }
}

/// How a cluster spreads requests over its endpoints (SPEC §5, Balancing).
public enum LoadBalancerPolicy: String, Sendable, Equatable, CaseIterable {
    /// Smooth weighted round robin.
    case roundRobin = "round_robin"
    /// Power of two choices on in-flight requests, weights respected.
    case leastRequest = "least_request"
    /// Linkerd's latency-weighted power of two choices.
    case peakEWMA = "peak_ewma"
    /// Weighted random.
    case random
    /// Consistent hashing on a ring, keyed by `hash_on`.
    case ringHash = "ring_hash"
    /// Maglev consistent hashing, keyed by `hash_on`.
    case maglev

    /// The policy places requests by `hash_on`.
    public var isConsistentHash: Bool { self == .ringHash || self == .maglev }
}

/// What a consistent-hash balancer hashes (`hash_on`).
public enum HashOn: Sendable, Equatable {
    /// The value of a request header (names are case-insensitive).
    case header(String)
    /// The value of a cookie.
    case cookie(String)
    /// The client's address (the only key a TCP connection has).
    case sourceIP
}

public struct Cluster: Sendable, Equatable {
    public var name: String
    /// VIP:port pairs that mean this cluster.
    public var addresses: [IPEndpoint]
    public var hostnames: [String]
    public var `protocol`: ClusterProtocol
    /// Endpoints run weft: traffic goes to their mesh port.
    public var mesh: Bool
    public var discovery: DiscoveryKind
    public var lb: LoadBalancerPolicy
    /// The key of `ring_hash` and `maglev`; nil for the other policies.
    public var hashOn: HashOn?
    public var endpoints: [Endpoint]
    /// `discovery: dns`: the names to resolve.
    public var namedEndpoints: [NamedEndpoint]
    /// `discovery: dns`: how often names are resolved again.
    public var dnsRefresh: Duration
    /// `discovery: file`: the endpoint list's path.
    public var file: String?
    /// `discovery: kubernetes`: the Service whose EndpointSlices to follow.
    public var kubernetes: KubernetesServiceRef?
    public var timeouts: ClusterTimeouts
    /// Active checks of every endpoint; nil: none.
    public var healthCheck: HealthCheck?
    /// Ejection of endpoints that fail requests; nil: none.
    public var outlierDetection: OutlierDetection?
    /// HTTP requests tried again; nil: none (but see the keep-alive race).
    public var retries: RetryPolicy?
    /// Bounds on what one node sends at once; nil: none.
    public var circuitBreakers: CircuitBreakers?
    /// A token bucket per node; nil: none.
    public var rateLimit: RateLimit?

    public init(
        name: String,
        addresses: [IPEndpoint] = [],
        hostnames: [String] = [],
        protocol: ClusterProtocol = .auto,
        mesh: Bool = false,
        discovery: DiscoveryKind = .static,
        lb: LoadBalancerPolicy = .roundRobin,
        hashOn: HashOn? = nil,
        endpoints: [Endpoint] = [],
        namedEndpoints: [NamedEndpoint] = [],
        dnsRefresh: Duration = .seconds(5),
        file: String? = nil,
        timeouts: ClusterTimeouts = ClusterTimeouts(),
        healthCheck: HealthCheck? = nil,
        outlierDetection: OutlierDetection? = nil,
        retries: RetryPolicy? = nil,
        circuitBreakers: CircuitBreakers? = nil,
        rateLimit: RateLimit? = nil
    ) {
        self.name = name
        self.addresses = addresses
        self.hostnames = hostnames
        self.protocol = `protocol`
        self.mesh = mesh
        self.discovery = discovery
        self.lb = lb
        self.hashOn = hashOn
        self.endpoints = endpoints
        self.namedEndpoints = namedEndpoints
        self.dnsRefresh = dnsRefresh
        self.file = file
        self.timeouts = timeouts
        self.healthCheck = healthCheck
        self.outlierDetection = outlierDetection
        self.retries = retries
        self.circuitBreakers = circuitBreakers
        self.rateLimit = rateLimit
    }
}

public struct Endpoint: Sendable, Equatable {
    public var address: IPEndpoint
    public var weight: Int
    /// Overrides the cluster's `mesh` for this endpoint (a rollout mixing
    /// nodes with and without weft); nil follows the cluster.
    public var mesh: Bool?
    /// Where the endpoint runs, for locality-aware balancing.
    public var locality: Locality?

    public init(address: IPEndpoint, weight: Int = 1, mesh: Bool? = nil, locality: Locality? = nil) {
        self.address = address
        self.weight = weight
        self.mesh = mesh
        self.locality = locality
    }
}

public struct ClusterTimeouts: Sendable, Equatable {
    /// Upstream TCP connect timeout.
    public var connect: Duration
    /// HTTP/1 requests: how long to wait for the response head once the
    /// request has started (504 after it). Streaming bodies are not cut.
    public var request: Duration
    /// An app connection to the cluster with no byte either way this long
    /// is closed (Envoy's TCP proxy and connection idle timeouts).
    public var idle: Duration
    public init(connect: Duration = .seconds(5), request: Duration = .seconds(15), idle: Duration = .seconds(3600)) {
        self.connect = connect
        self.request = request
        self.idle = idle
    }
}

/// An L7 rule (SPEC §5 `routes`): requests that match go to one of its
/// clusters, chosen per request by weight.
public struct Route: Sendable, Equatable {
    public var match: RouteMatch
    public var clusters: [WeightedCluster]
    /// Overrides the chosen cluster's `timeouts.request`.
    public var timeout: Duration?

    public init(match: RouteMatch = RouteMatch(), clusters: [WeightedCluster], timeout: Duration? = nil) {
        self.match = match
        self.clusters = clusters
        self.timeout = timeout
    }
}

/// What a request must carry to match; every given condition must hold.
public struct RouteMatch: Sendable, Equatable {
    /// The request's host (`Host` or `:authority`, without a port), lowercase.
    public var host: String?
    public var pathPrefix: String?
    /// The whole path, query excluded.
    public var path: String?
    /// Header name (lowercase) → exact value.
    public var headers: [String: String]

    public init(host: String? = nil, pathPrefix: String? = nil, path: String? = nil, headers: [String: String] = [:]) {
        self.host = host
        self.pathPrefix = pathPrefix
        self.path = path
        self.headers = headers
    }
}

public struct WeightedCluster: Sendable, Equatable {
    public var name: String
    public var weight: Int

    public init(name: String, weight: Int = 1) {
        self.name = name
        self.weight = weight
    }
}

/// `access_log` (SPEC §6): where the lines go and how they read.
public struct AccessLogSettings: Sendable, Equatable {
    public enum Format: String, Sendable, CaseIterable {
        case text, json
    }

    public var format: Format
    /// A file (appended to, created 0644 if missing) or `stdout`.
    public var path: String

    public init(format: Format = .text, path: String = "stdout") {
        self.format = format
        self.path = path
    }
}
