import WeftCore

/// A validated cluster and where its values came from, for the cross checks.
struct ClusterSource {
    var cluster: Cluster
    var nameValue: ConfigValue?
    var addresses: [(IPEndpoint, ConfigValue)] = []
    var hostnames: [(String, ConfigValue)] = []
    var endpoints: [(IPEndpoint, ConfigValue)] = []
}

/// `clusters[]` (SPEC §5).
extension ConfigValidator {
    mutating func cluster(_ value: ConfigValue) -> ClusterSource {
        var source = ClusterSource(cluster: Cluster(name: ""))
        guard let fields = mapping(
            value,
            keys: ["name", "addresses", "hostnames", "protocol", "mesh", "discovery", "lb", "hash_on",
                   "endpoints", "dns_refresh", "file", "kubernetes", "timeouts", "health_check", "outlier_detection", "retries",
                   "circuit_breakers", "rate_limit"]
        ) else { return source }

        if let name = required(fields, "name"), let text = string(name) {
            if ConfigNames.isClusterName(text) {
                source.cluster.name = text
                source.nameValue = name
            } else {
                report(name, "\(quoted(text)) is not a valid cluster name "
                    + "(lowercase letters, digits, \"-\", \".\" and \"_\", starting and ending with a letter or digit)")
            }
        }
        for item in list(fields["addresses"]) ?? [] {
            guard let vip = ipEndpoint(item) else { continue }
            source.cluster.addresses.append(vip)
            source.addresses.append((vip, item))
        }
        for item in list(fields["hostnames"]) ?? [] {
            guard let text = string(item) else { continue }
            guard let hostname = ConfigNames.dnsName(text) else {
                report(item, "\(quoted(text)) is not a valid DNS name")
                continue
            }
            source.cluster.hostnames.append(hostname)
            source.hostnames.append((hostname, item))
        }
        source.cluster.protocol = choice(fields["protocol"], as: ClusterProtocol.self) ?? .auto
        source.cluster.mesh = bool(fields["mesh"]) ?? false
        let discovery = fields["discovery"] == nil
            ? DiscoveryKind.static
            : choice(fields["discovery"], as: DiscoveryKind.self)
        source.cluster.discovery = discovery ?? .static
        discoverySettings(fields, discovery: discovery, into: &source.cluster)
        source.cluster.lb = choice(fields["lb"], as: LoadBalancerPolicy.self) ?? .roundRobin
        source.cluster.hashOn = hashOn(fields["hash_on"])
        if source.cluster.lb.isConsistentHash, fields["hash_on"] == nil {
            report(value.path.key("hash_on"), near: fields["lb"]?.node ?? value.node,
                   "lb \(source.cluster.lb.rawValue) needs hash_on ({ header: NAME }, { cookie: NAME } or { source_ip: true })")
        } else if !source.cluster.lb.isConsistentHash, let given = fields["hash_on"] {
            report(given, "hash_on applies only to lb ring_hash and maglev (this cluster uses \(source.cluster.lb.rawValue))")
        }
        if let timeouts = mapping(fields["timeouts"], keys: ["connect", "request", "idle"]) {
            source.cluster.timeouts.connect = duration(timeouts["connect"]) ?? source.cluster.timeouts.connect
            source.cluster.timeouts.request = duration(timeouts["request"]) ?? source.cluster.timeouts.request
            source.cluster.timeouts.idle = duration(timeouts["idle"]) ?? source.cluster.timeouts.idle
        }

        source.cluster.healthCheck = healthCheck(fields["health_check"])
        source.cluster.outlierDetection = outlierDetection(fields["outlier_detection"])
        source.cluster.retries = retryPolicy(fields["retries"])
        source.cluster.circuitBreakers = circuitBreakers(fields["circuit_breakers"])
        source.cluster.rateLimit = rateLimit(fields["rate_limit"])

        let items = list(fields["endpoints"])
        if discovery == .file, let given = fields["endpoints"] {
            report(given, "a file cluster takes its endpoints from its file, not from endpoints")
        } else if discovery == .kubernetes, let given = fields["endpoints"] {
            report(given, "a kubernetes cluster takes its endpoints from the Service's EndpointSlices, not from endpoints")
        } else if discovery == .dns {
            for item in items ?? [] {
                if let named = namedEndpoint(item) { source.cluster.namedEndpoints.append(named) }
            }
        } else {
            for item in items ?? [] {
                guard let (endpoint, address) = endpoint(item) else { continue }
                source.cluster.endpoints.append(endpoint)
                source.endpoints.append((endpoint.address, address))
            }
        }
        // A list of the wrong type has been reported already.
        if discovery == .static || discovery == .dns, fields["endpoints"] == nil || items?.isEmpty == true {
            report(value.path.key("endpoints"), near: fields["endpoints"]?.node ?? value.node,
                   "a \(discovery?.rawValue ?? "static") cluster needs at least one endpoint")
        }
        return source
    }

    /// `dns_refresh` belongs to dns clusters, `file` to file clusters.
    private mutating func discoverySettings(_ fields: Fields, discovery: DiscoveryKind?, into cluster: inout Cluster) {
        if let refresh = fields["dns_refresh"] {
            if discovery == .dns {
                if let every = duration(refresh) {
                    // Resolving every few milliseconds would load the DNS
                    // server and the node for nothing.
                    if every < .milliseconds(100) {
                        report(refresh, "dns_refresh must be at least 100ms")
                    } else {
                        cluster.dnsRefresh = every
                    }
                }
            } else {
                report(refresh, "dns_refresh applies only to discovery: dns")
            }
        }
        if let file = fields["file"] {
            if discovery == .file {
                cluster.file = absolutePath(file) ?? cluster.file
            } else {
                report(file, "file applies only to discovery: file")
            }
        } else if discovery == .file {
            report(fields.path.key("file"), near: fields.node, "a file cluster needs file (the path of its endpoint list)")
        }
        if let given = fields["kubernetes"] {
            if discovery == .kubernetes {
                cluster.kubernetes = kubernetesService(given)
            } else {
                report(given, "kubernetes applies only to discovery: kubernetes")
            }
        } else if discovery == .kubernetes {
            report(fields.path.key("kubernetes"), near: fields.node,
                   "a kubernetes cluster needs kubernetes: { service, port } (namespace: the node's own)")
        }
    }

    /// `kubernetes: { service, namespace, port }`: names as Kubernetes
    /// spells them (DNS labels), the port by name or number.
    private mutating func kubernetesService(_ value: ConfigValue) -> KubernetesServiceRef? {
        guard let fields = mapping(value, keys: ["service", "namespace", "port"]) else { return nil }
        func label(_ key: String) -> String? {
            guard let given = fields[key], let text = string(given) else { return nil }
            guard KubernetesServiceRef.isLabel(text) else {
                report(given, "\(quoted(text)) is not a valid \(key) name (a DNS label: lowercase letters, digits and \"-\")")
                return nil
            }
            return text
        }
        let service = required(fields, "service").flatMap { _ in label("service") }
        let namespace = label("namespace")
        var port: String?
        if let given = required(fields, "port") {
            if let number = given.node.scalarText.flatMap({ UInt16($0) }), number > 0 {
                port = String(number)
            } else if let name = label("port") {
                // A port name (IANA_SVC_NAME) has a letter; "0" is no port.
                if name.contains(where: \.isLetter) {
                    port = name
                } else {
                    report(given, "\(quoted(name)) is neither a port number (1-65535) nor a port name")
                }
            }
        }
        guard let service, let port else { return nil }
        return KubernetesServiceRef(service: service, namespace: namespace, port: port)
    }

    /// A `dns` cluster's endpoint: `host:port` (a DNS name, or an IP).
    private mutating func namedEndpoint(_ value: ConfigValue) -> NamedEndpoint? {
        guard let fields = mapping(value, keys: ["address", "weight", "mesh", "locality"]),
              let addressValue = required(fields, "address") else { return nil }
        let weight = integer(fields["weight"], in: 1...10_000) ?? 1
        let mesh = bool(fields["mesh"])
        let locality = self.locality(fields["locality"])
        guard let text = string(addressValue) else { return nil }
        if let endpoint = IPEndpoint(text) {
            return NamedEndpoint(host: endpoint.address.description, port: endpoint.port, weight: weight, mesh: mesh,
                                 locality: locality)
        }
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0,
              let host = ConfigNames.dnsName(String(text[..<colon])) else {
            report(addressValue, "\(quoted(text)) is not a valid host:port")
            return nil
        }
        return NamedEndpoint(host: host, port: port, weight: weight, mesh: mesh, locality: locality)
    }

    /// `hash_on`: exactly one of `header`, `cookie` or `source_ip: true`.
    private mutating func hashOn(_ value: ConfigValue?) -> HashOn? {
        guard let value, let fields = mapping(value, keys: ["header", "cookie", "source_ip"]) else { return nil }
        guard fields.entries.count == 1 else {
            // An unknown key alone has been reported already.
            if case .mapping(let all) = value.node, all.count == fields.entries.count || fields.entries.count > 1 {
                report(value, "hash_on takes exactly one of header, cookie or source_ip")
            }
            return nil
        }
        if let header = fields["header"], let name = string(header) {
            guard ConfigNames.isHeaderName(name) else {
                report(header, "\(quoted(name)) is not a valid header name")
                return nil
            }
            return .header(name.lowercased())
        }
        if let cookie = fields["cookie"], let name = string(cookie) {
            guard ConfigNames.isHeaderName(name) else {
                report(cookie, "\(quoted(name)) is not a valid cookie name")
                return nil
            }
            return .cookie(name)
        }
        if let sourceIP = fields["source_ip"], let on = bool(sourceIP) {
            guard on else {
                report(sourceIP, "source_ip: false hashes on nothing; name a header or a cookie instead")
                return nil
            }
            return .sourceIP
        }
        return nil
    }

    /// The endpoint and its `address` value. A bad weight has been reported
    /// and is taken as 1, so that the address still gets its cross checks.
    mutating func endpoint(_ value: ConfigValue) -> (Endpoint, ConfigValue)? {
        guard let fields = mapping(value, keys: ["address", "weight", "mesh", "locality"]),
              let addressValue = required(fields, "address") else { return nil }
        let weight = integer(fields["weight"], in: 1...10_000) ?? 1
        let mesh = bool(fields["mesh"])
        let locality = self.locality(fields["locality"])
        guard let address = ipEndpoint(addressValue) else { return nil }
        return (Endpoint(address: address, weight: weight, mesh: mesh, locality: locality), addressValue)
    }

    /// `{ region, zone }`, either optional (node and endpoints alike).
    mutating func locality(_ value: ConfigValue?) -> Locality? {
        guard let fields = mapping(value, keys: ["region", "zone"]) else { return nil }
        return Locality(region: string(fields["region"]), zone: string(fields["zone"]))
    }
}
