import Atomics
import NIOCore
import WeftTLS

/// Why the node refused a connection. Each reason is a label value of
/// `weft_outbound_refused_total` / `weft_inbound_refused_total`.
public enum RefusalReason: String, Sendable, CaseIterable {
    /// Arrived at the listener without an iptables redirect (its original
    /// destination is the listener itself).
    case notRedirected = "not_redirected"
    /// The original destination is one of weft's own listeners.
    case loop
    /// No cluster matched and `outbound_policy` is `registry_only`.
    case registryOnly = "registry_only"
    /// The cluster matched but has no endpoint.
    case noEndpoint = "no_endpoint"
    /// The kernel had no original destination for the connection.
    case noOriginalDestination = "no_original_destination"
    /// Plaintext inbound while `inbound.plaintext: deny`.
    case plaintextDenied = "plaintext_denied"
    /// The node is draining and no longer takes new connections.
    case draining
    /// The listener already relays its maximum number of connections.
    case overload
    /// The cluster's token bucket is empty (`rate_limit`).
    case rateLimited = "rate_limited"
    /// The cluster's `circuit_breakers.max_connections` is reached.
    case overflow
}

/// A protective limit that was hit; each is a label value of
/// `weft_limit_hits_total`.
public enum LimitKind: String, Sendable, CaseIterable {
    /// Relayed connections per listener (`ProxyServer.maxConnectionsPerListener`).
    case connections
    /// A mesh or app HTTP/2 stream whose header list broke the size or count cap.
    case headerList = "header_list"
    /// An app's HTTP/1 request that could not be parsed or was too large.
    case httpRequest = "http_request"
    /// The HTTP/1 upstream pool's connections per target.
    case upstreamPool = "upstream_pool"
    /// Requests waiting for a stream slot to one peer (`MeshConnectionPool.maxWaitersPerPeer`).
    case meshQueue = "mesh_queue"
    /// Connections to one peer (`MeshConnectionPool.maxConnectionsPerPeer`).
    case meshConnections = "mesh_connections"
    /// An HTTP/2 connection (mesh or app) ended for flooding: frames that
    /// carry nothing, too many CONTINUATIONs, replies it would not read, or
    /// streams reset before their answer (`HTTP2FrameBudget`, nghttp2's caps).
    case http2Flood = "http2_flood"
    /// A peer opened more HTTP/2 streams at once than the node's
    /// SETTINGS_MAX_CONCURRENT_STREAMS (1024): the stream is refused, or the
    /// connection ended if the peer had acknowledged the limit.
    case http2Streams = "http2_streams"
    /// DNS queries forwarded to the upstream at once (`DNSCapture.maxForwardsInFlight`).
    case dnsForwards = "dns_forwards"
}

/// Which end opened a connection between nodes (or with an HTTP/2 app):
/// `client`, this node; `server`, the peer, to this node's listener.
public enum ConnectionRole: String, Sendable {
    case client, server
}

/// Which listener a connection came through.
public enum Direction: String, Sendable, CaseIterable {
    case outbound, inbound
}

/// Counters for the data path, updated with relaxed atomics: once per
/// connection, never per byte or per read.
public final class ProxyMetrics: Sendable {
    public struct DirectionCounters: Sendable {
        public let opened = ManagedAtomic<Int>(0)
        public let active = ManagedAtomic<Int>(0)
        public let connectFailures = ManagedAtomic<Int>(0)
        public let resets = ManagedAtomic<Int>(0)
        public let bytesReceived = ManagedAtomic<Int>(0)
        public let bytesSent = ManagedAtomic<Int>(0)
        public let refused: [RefusalReason: ManagedAtomic<Int>] =
            Dictionary(uniqueKeysWithValues: RefusalReason.allCases.map { ($0, ManagedAtomic<Int>(0)) })
    }

    public let outbound = DirectionCounters()
    public let inbound = DirectionCounters()
    public let passthrough = ManagedAtomic<Int>(0)

    /// Mesh HTTP/2 connections and streams, by role (client: this node
    /// opened it; server: a peer opened it to our mesh listener).
    public let meshConnections = (client: ManagedAtomic<Int>(0), server: ManagedAtomic<Int>(0))
    public let meshStreams = (client: ManagedAtomic<Int>(0), server: ManagedAtomic<Int>(0))

    /// Mesh TLS handshakes completed, by side (client: this node connected)
    /// and whether the session was resumed.
    public let tlsHandshakes = (client: (full: ManagedAtomic<Int>(0), resumed: ManagedAtomic<Int>(0)),
                                server: (full: ManagedAtomic<Int>(0), resumed: ManagedAtomic<Int>(0)))
    /// Mesh TLS peers refused, by side and reason.
    public let tlsRefused = (client: TLSFailure.Reason.counters(), server: TLSFailure.Reason.counters())

    public func tlsHandshake(asServer: Bool, resumed: Bool) {
        let side = asServer ? tlsHandshakes.server : tlsHandshakes.client
        (resumed ? side.resumed : side.full).wrappingIncrement(ordering: .relaxed)
    }

    public func tlsRefusal(asServer: Bool, _ reason: TLSFailure.Reason) {
        (asServer ? tlsRefused.server : tlsRefused.client)[reason]?.wrappingIncrement(ordering: .relaxed)
    }

    /// `ext_authz` checks by outcome: allowed, denied (the service's own
    /// answer went back), failed (403), failed_open (delivered anyway).
    public let extAuthz = (allowed: ManagedAtomic<Int>(0), denied: ManagedAtomic<Int>(0),
                           failed: ManagedAtomic<Int>(0), failedOpen: ManagedAtomic<Int>(0))

    /// Captured DNS queries: answered by weft (a cluster hostname),
    /// forwarded and answered upstream, failed upstream (no answer in
    /// time), dropped (too many forwards at once).
    public let dnsQueries = (answered: ManagedAtomic<Int>(0), forwarded: ManagedAtomic<Int>(0),
                             failed: ManagedAtomic<Int>(0), dropped: ManagedAtomic<Int>(0))

    public let limitHits: [LimitKind: ManagedAtomic<Int>] =
        Dictionary(uniqueKeysWithValues: LimitKind.allCases.map { ($0, ManagedAtomic<Int>(0)) })

    public func limitHit(_ kind: LimitKind) {
        limitHits[kind]?.wrappingIncrement(ordering: .relaxed)
    }

    /// Upstream connects (every connection weft opens), by outcome.
    public let connects = (succeeded: ManagedAtomic<Int>(0), failed: ManagedAtomic<Int>(0))

    public func countConnect(_ connected: Bool) {
        (connected ? connects.succeeded : connects.failed).wrappingIncrement(ordering: .relaxed)
    }

    /// App connections closed after `timeouts.idle` without a byte.
    public let idleTimeouts = ManagedAtomic<Int>(0)

    /// Requests sent again on a fresh connection because the reused
    /// keep-alive connection they went out on closed before any response.
    public let replays = ManagedAtomic<Int>(0)

    public func countReplay() {
        replays.wrappingIncrement(ordering: .relaxed)
    }

    /// Active health checks, by result.
    public let healthChecks = (passed: ManagedAtomic<Int>(0), failed: ManagedAtomic<Int>(0))

    public func countHealthCheck(passed: Bool) {
        (passed ? healthChecks.passed : healthChecks.failed).wrappingIncrement(ordering: .relaxed)
    }

    /// Endpoint lists that discovery changed.
    public let endpointUpdates = ManagedAtomic<Int>(0)
    /// Discovery answers that could not be had (the last endpoints stayed).
    public let endpointDiscoveryProblems = ManagedAtomic<Int>(0)

    /// Configuration reloads, by result.
    public enum ReloadOutcome: String, CaseIterable, Sendable {
        case success, failure, unchanged
    }
    public let configReloads: [ReloadOutcome: ManagedAtomic<Int>] =
        Dictionary(uniqueKeysWithValues: ReloadOutcome.allCases.map { ($0, ManagedAtomic<Int>(0)) })

    public func configReloaded(_ outcome: ReloadOutcome) {
        configReloads[outcome]?.wrappingIncrement(ordering: .relaxed)
    }

    public func configReloadCount(_ outcome: ReloadOutcome) -> Int {
        configReloads[outcome]?.load(ordering: .relaxed) ?? 0
    }

    /// Mesh connections closed because a PING went unanswered.
    public let meshKeepaliveTimeouts = ManagedAtomic<Int>(0)

    /// Mesh requests refused because `weft-dst` is not this node (no open relay).
    public let meshRefused = ManagedAtomic<Int>(0)
    /// Error responses weft itself generated, by reason (SPEC §4).
    public let errorResponses: [ErrorReason: ManagedAtomic<Int>] =
        Dictionary(uniqueKeysWithValues: ErrorReason.allCases.map { ($0, ManagedAtomic<Int>(0)) })

    public func countErrorResponse(_ reason: ErrorReason) {
        errorResponses[reason]?.wrappingIncrement(ordering: .relaxed)
    }

    /// Error responses generated with `status`, over every reason.
    public func errorResponseCount(status: Int) -> Int {
        ErrorReason.allCases.filter { $0.status == status }
            .reduce(0) { $0 + (errorResponses[$1]?.load(ordering: .relaxed) ?? 0) }
    }

    public func meshConnectionOpened(_ role: ConnectionRole) {
        (role == .client ? meshConnections.client : meshConnections.server).wrappingIncrement(ordering: .relaxed)
    }

    public func meshConnectionClosed(_ role: ConnectionRole) {
        (role == .client ? meshConnections.client : meshConnections.server).wrappingDecrement(ordering: .relaxed)
    }

    public func meshStreamOpened(_ role: ConnectionRole) {
        (role == .client ? meshStreams.client : meshStreams.server).wrappingIncrement(ordering: .relaxed)
    }

    /// Where finished requests and sessions are also written, when the
    /// configuration has `access_log`.
    public let accessLog: AccessLog?
    /// Finished requests and sessions by direction, cluster, status class
    /// and reason, counted per event loop of the node's group.
    let stats: RequestStats

    /// `group`: the node's event loops, each of which counts on its own
    /// (nil: every record is counted under one lock, as in tests).
    public init(accessLog: AccessLog? = nil, group: EventLoopGroup? = nil) {
        self.accessLog = accessLog
        stats = RequestStats(group: group)
    }

    /// Every loop's request and session counts, added up.
    public func requestTotals(on loop: EventLoop) -> EventLoopFuture<[StatsKey: Tally]> {
        stats.totals(on: loop)
    }

    public func counters(_ direction: Direction) -> DirectionCounters {
        direction == .outbound ? outbound : inbound
    }

    public func refused(_ direction: Direction, _ reason: RefusalReason) {
        counters(direction).refused[reason]?.wrappingIncrement(ordering: .relaxed)
    }

    public func opened(_ direction: Direction) {
        counters(direction).opened.wrappingIncrement(ordering: .relaxed)
        counters(direction).active.wrappingIncrement(ordering: .relaxed)
    }

    /// A relayed connection ended; bytes are from the app's point of view
    /// on this side: received from the downstream peer, sent back to it.
    public func closed(_ direction: Direction, received: Int, sent: Int) {
        let counters = counters(direction)
        counters.active.wrappingDecrement(ordering: .relaxed)
        counters.bytesReceived.wrappingIncrement(by: received, ordering: .relaxed)
        counters.bytesSent.wrappingIncrement(by: sent, ordering: .relaxed)
    }

    /// Bytes of a relay whose connection is counted elsewhere.
    public func countBytes(_ direction: Direction, received: Int, sent: Int) {
        let counters = counters(direction)
        counters.bytesReceived.wrappingIncrement(by: received, ordering: .relaxed)
        counters.bytesSent.wrappingIncrement(by: sent, ordering: .relaxed)
    }

    /// Mesh connections currently open, both roles.
    public var openMeshConnections: Int {
        meshConnections.client.load(ordering: .relaxed) + meshConnections.server.load(ordering: .relaxed)
    }

    /// Connections currently open on either side.
    public var activeConnections: Int {
        outbound.active.load(ordering: .relaxed) + inbound.active.load(ordering: .relaxed)
    }

    public func refusedCount(_ direction: Direction, _ reason: RefusalReason) -> Int {
        counters(direction).refused[reason]?.load(ordering: .relaxed) ?? 0
    }

    /// One metric family in Prometheus text exposition (version 0.0.4):
    /// its HELP and TYPE lines, then a sample per label set ("" for none).
    public static func family(_ name: String, _ type: String, _ help: String, _ samples: [(String, Int)],
                              into text: inout String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        for (labels, value) in samples {
            text += labels.isEmpty ? "\(name) \(value)\n" : "\(name){\(labels)} \(value)\n"
        }
    }

    /// The per-cluster request and session families from `totals`
    /// (`requestTotals`): counts, the latency histogram, session bytes.
    public static func render(_ totals: [StatsKey: Tally], into text: inout String) {
        let requests = totals.filter { !$0.key.isSession }.sorted { $0.key.sortText < $1.key.sortText }
        let sessions = totals.filter { $0.key.isSession }.sorted { $0.key.sortText < $1.key.sortText }
        func labels(_ key: StatsKey) -> String {
            "direction=\"\(key.direction.rawValue)\",cluster=\"\(escape(key.cluster))\""
                + (key.isSession ? "" : ",status_class=\"\(key.statusClassLabel)\",reason=\"\(key.reason?.rawValue ?? "none")\"")
        }
        family("weft_requests_total", "counter",
               "HTTP requests finished, by direction, cluster, status class and reason (none: the app answered).",
               requests.map { (labels($0.key), $0.value.count) }, into: &text)
        let name = "weft_request_duration_seconds"
        text += "# HELP \(name) HTTP request durations, from the request head to the end of the response.\n"
        text += "# TYPE \(name) histogram\n"
        for (key, tally) in requests {
            let base = labels(key)
            var cumulative = 0
            for (index, bound) in Tally.bounds.enumerated() {
                cumulative += tally.buckets[index]
                text += "\(name)_bucket{\(base),le=\"\(bound)\"} \(cumulative)\n"
            }
            text += "\(name)_bucket{\(base),le=\"+Inf\"} \(tally.count)\n"
            text += "\(name)_sum{\(base)} \(tally.seconds)\n"
            text += "\(name)_count{\(base)} \(tally.count)\n"
        }
        family("weft_request_bytes_total", "counter",
               "HTTP body bytes, by direction, cluster, status class, reason and flow (in: from the client, out: to it).",
               requests.flatMap { [("\(labels($0.key)),flow=\"in\"", $0.value.bytesIn),
                                   ("\(labels($0.key)),flow=\"out\"", $0.value.bytesOut)] }, into: &text)
        family("weft_tcp_sessions_total", "counter",
               "TCP sessions finished (relayed connections and tunnels), by direction and cluster.",
               sessions.map { (labels($0.key), $0.value.count) }, into: &text)
        family("weft_tcp_session_bytes_total", "counter",
               "Bytes of finished TCP sessions, by direction, cluster and flow (in: from the client, out: to it).",
               sessions.flatMap { [("\(labels($0.key)),flow=\"in\"", $0.value.bytesIn),
                                   ("\(labels($0.key)),flow=\"out\"", $0.value.bytesOut)] }, into: &text)
    }

    /// A label value as the text format wants it: `\`, `"` and newlines escaped.
    public static func escape(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        return value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Prometheus text exposition (version 0.0.4).
    public func render(into text: inout String) {
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(String, Int)]) {
            Self.family(name, type, help, samples, into: &text)
        }
        func perDirection(_ value: (DirectionCounters) -> ManagedAtomic<Int>) -> [(String, Int)] {
            Direction.allCases.map { ("direction=\"\($0.rawValue)\"", value(counters($0)).load(ordering: .relaxed)) }
        }
        family("weft_tcp_connections_total", "counter", "TCP connections accepted and relayed.",
               perDirection { $0.opened })
        if let accessLog {
            family("weft_access_log_lines_total", "counter",
                   "Access log lines written, and dropped because the writer fell behind.",
                   [("result=\"written\"", accessLog.writtenLines), ("result=\"dropped\"", accessLog.droppedLines)])
        }
        family("weft_tcp_connections_active", "gauge", "TCP connections currently relayed.",
               perDirection { $0.active })
        family("weft_tcp_received_bytes_total", "counter", "Bytes received from downstream peers.",
               perDirection { $0.bytesReceived })
        family("weft_tcp_sent_bytes_total", "counter", "Bytes sent to downstream peers.",
               perDirection { $0.bytesSent })
        family("weft_upstream_connect_failures_total", "counter", "Upstream connects that failed or timed out.",
               perDirection { $0.connectFailures })
        family("weft_tcp_resets_total", "counter", "Connections ended by a reset that was propagated.",
               perDirection { $0.resets })
        family("weft_passthrough_connections_total", "counter",
               "Outbound connections relayed to a destination with no cluster.",
               [("", passthrough.load(ordering: .relaxed))])
        family("weft_mesh_connections", "gauge", "Open mesh HTTP/2 connections, by role.", [
            ("role=\"client\"", meshConnections.client.load(ordering: .relaxed)),
            ("role=\"server\"", meshConnections.server.load(ordering: .relaxed)),
        ])
        family("weft_mesh_streams_total", "counter", "Mesh HTTP/2 streams opened, by role.", [
            ("role=\"client\"", meshStreams.client.load(ordering: .relaxed)),
            ("role=\"server\"", meshStreams.server.load(ordering: .relaxed)),
        ])
        family("weft_limit_hits_total", "counter", "Protective limits that were hit, by limit.",
               LimitKind.allCases.map { ("limit=\"\($0.rawValue)\"", limitHits[$0]?.load(ordering: .relaxed) ?? 0) })
        family("weft_dns_queries_total", "counter",
               "Captured DNS queries: answered (a cluster hostname), forwarded (upstream answered), failed, dropped.", [
                   ("result=\"answered\"", dnsQueries.answered.load(ordering: .relaxed)),
                   ("result=\"forwarded\"", dnsQueries.forwarded.load(ordering: .relaxed)),
                   ("result=\"failed\"", dnsQueries.failed.load(ordering: .relaxed)),
                   ("result=\"dropped\"", dnsQueries.dropped.load(ordering: .relaxed)),
               ])
        family("weft_ext_authz_total", "counter",
               "ext_authz checks of inbound requests, by result (failed_open: no answer, delivered by failure_mode_allow).", [
                   ("result=\"allowed\"", extAuthz.allowed.load(ordering: .relaxed)),
                   ("result=\"denied\"", extAuthz.denied.load(ordering: .relaxed)),
                   ("result=\"failed\"", extAuthz.failed.load(ordering: .relaxed)),
                   ("result=\"failed_open\"", extAuthz.failedOpen.load(ordering: .relaxed)),
               ])
        family("weft_tls_handshakes_total", "counter",
               "Mesh TLS handshakes completed, by side (client: this node connected) and session (full or resumed).", [
                   ("side=\"client\",session=\"full\"", tlsHandshakes.client.full.load(ordering: .relaxed)),
                   ("side=\"client\",session=\"resumed\"", tlsHandshakes.client.resumed.load(ordering: .relaxed)),
                   ("side=\"server\",session=\"full\"", tlsHandshakes.server.full.load(ordering: .relaxed)),
                   ("side=\"server\",session=\"resumed\"", tlsHandshakes.server.resumed.load(ordering: .relaxed)),
               ])
        family("weft_tls_refused_total", "counter",
               "Mesh TLS peers refused (or that refused this node), by side and reason.",
               [("client", tlsRefused.client), ("server", tlsRefused.server)].flatMap { side, counters in
                   TLSFailure.Reason.allCases.map {
                       ("side=\"\(side)\",reason=\"\($0.rawValue)\"", counters[$0]?.load(ordering: .relaxed) ?? 0)
                   }
               })
        family("weft_mesh_keepalive_timeouts_total", "counter",
               "Mesh connections closed because the peer did not answer a PING.",
               [("", meshKeepaliveTimeouts.load(ordering: .relaxed))])
        family("weft_mesh_refused_total", "counter",
               "Mesh requests refused because weft-dst is not one of this node's addresses.",
               [("", meshRefused.load(ordering: .relaxed))])
        family("weft_error_responses_total", "counter", "Error responses generated by weft, by status and reason.",
               ErrorReason.allCases.map {
                   ("status=\"\($0.status)\",reason=\"\($0.rawValue)\"", errorResponses[$0]?.load(ordering: .relaxed) ?? 0)
               })
        family("weft_upstream_connects_total", "counter",
               "Connections weft opened (to peer nodes, plain endpoints and local apps), by result.", [
                   ("result=\"success\"", connects.succeeded.load(ordering: .relaxed)),
                   ("result=\"failure\"", connects.failed.load(ordering: .relaxed)),
               ])
        family("weft_idle_timeouts_total", "counter",
               "App connections closed because no byte went either way for the cluster's timeouts.idle.",
               [("", idleTimeouts.load(ordering: .relaxed))])
        family("weft_keepalive_replays_total", "counter",
               "Requests sent again on a fresh connection because the reused keep-alive connection they went out on "
                   + "closed before any response.", [("", replays.load(ordering: .relaxed))])
        family("weft_health_checks_total", "counter", "Active health checks of endpoints, by result.", [
            ("result=\"passed\"", healthChecks.passed.load(ordering: .relaxed)),
            ("result=\"failed\"", healthChecks.failed.load(ordering: .relaxed)),
        ])
        family("weft_endpoint_updates_total", "counter", "Endpoint lists changed by discovery (file, dns, kubernetes).",
               [("", endpointUpdates.load(ordering: .relaxed))])
        family("weft_endpoint_discovery_problems_total", "counter",
               "Discovery problems (a failed lookup, an unreadable file, an API server error); the last endpoints stayed.",
               [("", endpointDiscoveryProblems.load(ordering: .relaxed))])
        family("weft_config_reloads_total", "counter", "Configuration reloads, by result.",
               ReloadOutcome.allCases.map { ("result=\"\($0.rawValue)\"", configReloadCount($0)) })
        for direction in Direction.allCases {
            let name = "weft_\(direction.rawValue)_refused_total"
            family(name, "counter", "Connections refused on the \(direction.rawValue) listener, by reason.",
                   RefusalReason.allCases.map {
                       ("reason=\"\($0.rawValue)\"", counters(direction).refused[$0]?.load(ordering: .relaxed) ?? 0)
                   })
        }
    }
}

extension StatsKey {
    /// A stable order for the exposition.
    var sortText: String {
        "\(direction.rawValue) \(cluster) \(statusClass) \(reason?.rawValue ?? "") \(isSession)"
    }
}

extension TLSFailure.Reason {
    /// One zeroed counter per reason.
    static func counters() -> [TLSFailure.Reason: ManagedAtomic<Int>] {
        Dictionary(uniqueKeysWithValues: allCases.map { ($0, ManagedAtomic<Int>(0)) })
    }
}
