import WeftCore
import Yams

/// The top level, `node` and `listeners` (SPEC §5).
extension ConfigValidator {
    /// The whole document; a missing or empty document is all defaults.
    mutating func configuration(from root: Node?) -> Configuration {
        var config = Configuration()
        guard let root, !root.isNull else { return config }
        guard let fields = mapping(
            ConfigValue(node: root, path: .root),
            keys: ["node", "listeners", "outbound_policy", "detect_timeout", "drain_timeout",
                   "opaque_ports", "clusters", "routes", "access_log", "authorization",
                   "ext_authz", "kubernetes_api"]
        ) else { return config }

        config.node = nodeSettings(fields["node"])
        config.listeners = listeners(fields["listeners"])
        config.outboundPolicy = choice(fields["outbound_policy"], as: OutboundPolicy.self) ?? config.outboundPolicy
        config.detectTimeout = duration(fields["detect_timeout"]) ?? config.detectTimeout
        config.drainTimeout = duration(fields["drain_timeout"]) ?? config.drainTimeout
        config.accessLog = accessLog(fields["access_log"])
        if let ports = list(fields["opaque_ports"]) {
            config.opaquePorts = Set(ports.compactMap { port($0) })
        }
        let clusters = (list(fields["clusters"]) ?? []).map { cluster($0) }
        config.clusters = clusters.map(\.cluster)
        crossCheck(clusters, listeners: config.listeners)
        let names = Set(config.clusters.map(\.name))
        for (name, value) in egressClusters where !names.contains(name) {
            report(value, "\(quoted(name)) is not a cluster defined in clusters")
        }
        config.routes = (list(fields["routes"]) ?? []).compactMap { route($0, clusters: Set(config.clusters.map(\.name))) }
        config.authorization = authorization(fields["authorization"])
        config.extAuthz = extAuthz(fields["ext_authz"], clusters: names)
        config.kubernetesAPI = kubernetesAPI(fields["kubernetes_api"])
        return config
    }

    /// `kubernetes_api: { server, token_file, ca_file }`.
    private mutating func kubernetesAPI(_ value: ConfigValue?) -> KubernetesAPISettings? {
        guard let fields = mapping(value, keys: ["server", "token_file", "ca_file"]) else { return nil }
        let tokenFile = absolutePath(fields["token_file"])
        let caFile = absolutePath(fields["ca_file"])
        guard let serverValue = required(fields, "server"), let text = string(serverValue) else { return nil }
        let server: KubernetesServerURL
        switch KubernetesServerURL.parse(text) {
        case .success(let parsed):
            server = parsed
        case .failure(let error):
            report(serverValue, "\(quoted(text)) is not an API server URL: it \(error)")
            return nil
        }
        var settings = KubernetesAPISettings(server: server, tokenFile: tokenFile, caFile: caFile)
        if server.tls, fields["ca_file"] == nil {
            report(fields.path.key("ca_file"), near: fields.node,
                   "an https server needs ca_file (the CA its certificate chains to)")
        } else if !server.tls, let given = fields["ca_file"] {
            report(given, "ca_file applies only to an https server")
            settings.caFile = nil
        }
        if !server.tls, !server.isLoopback, let given = fields["token_file"] {
            report(given, "a token is sent only over https, or over http to this machine (a kubectl proxy)")
            settings.tokenFile = nil
        }
        return settings
    }

    /// `ext_authz: { cluster, path, timeout, forward_headers, failure_mode_allow }`.
    private mutating func extAuthz(_ value: ConfigValue?, clusters: Set<String>) -> ExtAuthzSettings? {
        guard let fields = mapping(value, keys: ["cluster", "path", "timeout", "forward_headers", "failure_mode_allow"]),
              let clusterValue = required(fields, "cluster"), let cluster = string(clusterValue) else { return nil }
        guard clusters.contains(cluster) else {
            report(clusterValue, "\(quoted(cluster)) is not a cluster defined in clusters")
            return nil
        }
        var settings = ExtAuthzSettings(cluster: cluster)
        if let pathValue = fields["path"], let path = string(pathValue) {
            if path.hasPrefix("/"), path.allSatisfy({ $0.isASCII && $0 > " " && $0 != "\u{7f}" }) {
                settings.path = path
            } else {
                report(pathValue, "\(quoted(path)) must be a request path starting with /")
            }
        }
        settings.timeout = duration(fields["timeout"]) ?? settings.timeout
        for item in list(fields["forward_headers"]) ?? [] {
            guard let name = string(item) else { continue }
            if ConfigNames.isHeaderName(name) {
                settings.forwardHeaders.append(name.lowercased())
            } else {
                report(item, "\(quoted(name)) is not a header name")
            }
        }
        settings.failureModeAllow = bool(fields["failure_mode_allow"]) ?? false
        return settings
    }

    /// `authorization: [{ port: P, allow: [spiffe://...] }]`, one rule per port.
    private mutating func authorization(_ value: ConfigValue?) -> [AuthorizationRule] {
        var rules: [AuthorizationRule] = []
        for item in list(value) ?? [] {
            guard let fields = mapping(item, keys: ["port", "allow"]),
                  let portValue = required(fields, "port"), let port = port(portValue),
                  let allowValue = required(fields, "allow"), let entries = list(allowValue) else { continue }
            if rules.contains(where: { $0.port == port }) {
                report(portValue, "port \(port) already has a rule (one rule per port)")
                continue
            }
            var allow: [SPIFFEID] = []
            for entry in entries {
                guard let text = string(entry) else { continue }
                do {
                    allow.append(try SPIFFEID(parsing: text))
                } catch {
                    report(entry, "\(quoted(text)) is not a SPIFFE ID: \(error)")
                }
            }
            rules.append(AuthorizationRule(port: port, allow: allow))
        }
        return rules
    }

    /// `access_log: { format: text|json, path: FILE|stdout }`.
    private mutating func accessLog(_ value: ConfigValue?) -> AccessLogSettings? {
        guard let fields = mapping(value, keys: ["format", "path"]) else { return nil }
        var settings = AccessLogSettings()
        settings.format = choice(fields["format"], as: AccessLogSettings.Format.self) ?? settings.format
        if let pathValue = fields["path"], let path = string(pathValue) {
            if path.isEmpty || (path != "stdout" && !path.hasPrefix("/")) {
                report(pathValue, "expected stdout or an absolute file path, got \(quoted(path))")
            } else {
                settings.path = path
            }
        }
        return settings
    }

    private mutating func nodeSettings(_ value: ConfigValue?) -> NodeSettings {
        var settings = NodeSettings()
        guard let fields = mapping(value, keys: ["id", "addresses", "proxy_uid", "locality"]) else {
            return settings
        }
        settings.id = string(fields["id"])
        settings.addresses = nodeAddresses(fields["addresses"]) ?? settings.addresses
        // uid 0 would exempt every root process from interception; 2^32-1 is "no user".
        settings.proxyUID = integer(fields["proxy_uid"], in: 1...4_294_967_294).map { UInt32($0) }
            ?? settings.proxyUID
        settings.locality = locality(fields["locality"]) ?? settings.locality
        return settings
    }

    /// `auto`, or a non-empty list of IP addresses.
    private mutating func nodeAddresses(_ value: ConfigValue?) -> NodeAddresses? {
        guard let value else { return nil }
        if value.node.scalarText == "auto" { return .auto }
        guard case .sequence = value.node else {
            report(value, "expected auto or a list of IP addresses, got \(value.node.shown)")
            return nil
        }
        let items = list(value) ?? []
        guard !items.isEmpty else {
            report(value, "expected auto or at least one IP address, got an empty list")
            return nil
        }
        let addresses = items.compactMap { ipAddress($0) }
        return addresses.count == items.count ? .list(addresses) : nil
    }

    private mutating func listeners(_ value: ConfigValue?) -> Listeners {
        var result = Listeners()
        guard let fields = mapping(
            value,
            keys: ["outbound", "inbound", "mesh", "admin", "health", "egress", "http_routing", "dns"]
        ) else { return result }

        if let outbound = mapping(fields["outbound"], keys: ["port"]) {
            result.outbound.port = port(outbound["port"]) ?? result.outbound.port
        }
        if let inbound = mapping(fields["inbound"], keys: ["port", "deliver_to", "plaintext"]) {
            result.inbound.port = port(inbound["port"]) ?? result.inbound.port
            result.inbound.deliverTo = choice(inbound["deliver_to"], as: InboundDelivery.self)
                ?? result.inbound.deliverTo
            result.inbound.plaintext = choice(inbound["plaintext"], as: PlaintextPolicy.self)
                ?? result.inbound.plaintext
        }
        if let mesh = mapping(fields["mesh"], keys: ["port", "tls"]) {
            result.mesh.port = port(mesh["port"]) ?? result.mesh.port
            if let tls = mapping(mesh["tls"], keys: ["cert", "key", "ca"]) {
                let files = ["cert", "key", "ca"].map { key in required(tls, key).flatMap { absolutePath($0) } }
                if let certificate = files[0], let key = files[1], let ca = files[2] {
                    result.mesh.tls = MeshTLSFiles(cert: certificate, key: key, ca: ca)
                }
            }
        }
        if let admin = mapping(fields["admin"], keys: ["address", "port"]) {
            result.admin.address = ipAddress(admin["address"]) ?? result.admin.address
            result.admin.port = port(admin["port"]) ?? result.admin.port
        }
        if let health = mapping(fields["health"], keys: ["port"]) {
            result.health.port = port(health["port"]) ?? result.health.port
        }
        for item in list(fields["egress"]) ?? [] {
            guard let entry = mapping(item, keys: ["port", "cluster"]),
                  let portValue = required(entry, "port"), let port = port(portValue),
                  let clusterValue = required(entry, "cluster"), let cluster = string(clusterValue) else { continue }
            result.egress.append(EgressListener(port: port, cluster: cluster))
            egressClusters.append((cluster, clusterValue))
        }
        if let dns = mapping(fields["dns"], keys: ["port", "upstream"]) {
            var listener = DNSListener()
            listener.port = port(dns["port"]) ?? listener.port
            if let value = dns["upstream"], let text = string(value), text != "auto" {
                if text == "original" {
                    listener.upstream = .original
                } else if let endpoint = IPEndpoint(text) {
                    listener.upstream = .address(endpoint)
                } else if let address = IPAddress(text) {
                    listener.upstream = .address(IPEndpoint(address: address, port: 53))
                } else {
                    report(value, "expected auto, original or an IP address (with a port, or 53), got \(quoted(text))")
                }
            }
            result.dns = listener
        }
        if let routing = mapping(fields["http_routing"], keys: ["port"]) {
            if let portValue = required(routing, "port"), let port = port(portValue) {
                result.httpRouting = PortListener(port: port)
            }
        }
        checkListenerPorts(result, written: fields)
        return result
    }

    /// Every listener needs its own port. The problem goes on the port the
    /// file sets, not on a default it happens to collide with.
    private mutating func checkListenerPorts(_ listeners: Listeners, written fields: Fields) {
        let all = listeners.namedPorts
        func isWritten(_ name: String) -> Bool {
            name.hasPrefix("egress[") || fields[name].flatMap { $0.node.mapping?["port"] } != nil
        }
        for (index, listener) in all.enumerated() {
            guard let earlier = all[..<index].first(where: { $0.port == listener.port }) else { continue }
            let (blamed, other) = isWritten(listener.name) ? (listener.name, earlier.name) : (earlier.name, listener.name)
            var path = fields.path.key(blamed).key("port")
            var near = fields[blamed]?.node.mapping?["port"] ?? fields.node
            if blamed.hasPrefix("egress["), let index = Int(blamed.dropFirst(7).dropLast()) {
                path = fields.path.key("egress").index(index).key("port")
                if let items = fields["egress"]?.node.sequence.map(Array.init), index < items.count {
                    near = items[index].mapping?["port"] ?? items[index]
                }
            }
            report(path, near: near,
                   "\(listener.port) is already used by the \(other) listener")
        }
    }
}
