/// `routes[]` (SPEC §5): L7 rules, each naming clusters defined above.
extension ConfigValidator {
    mutating func route(_ value: ConfigValue, clusters known: Set<String>) -> Route? {
        guard let fields = mapping(value, keys: ["match", "clusters", "timeout"]) else { return nil }
        var route = Route(clusters: [])
        var valid = true
        if let match = mapping(fields["match"], keys: ["host", "path_prefix", "path", "headers"]) {
            if let host = match["host"], let text = string(host) {
                if let name = ConfigNames.dnsName(text) { route.match.host = name } else {
                    report(host, "\(quoted(text)) is not a valid host name")
                    valid = false
                }
            }
            for key in ["path_prefix", "path"] {
                guard let item = match[key], let text = string(item) else { continue }
                guard text.hasPrefix("/") else {
                    report(item, "\(quoted(text)) must start with \"/\"")
                    valid = false
                    continue
                }
                if key == "path" { route.match.path = text } else { route.match.pathPrefix = text }
            }
            if let headers = match["headers"], case .mapping(let pairs) = headers.node {
                for (keyNode, valueNode) in pairs {
                    guard let name = keyNode.scalarText, let expected = valueNode.scalarText else {
                        report(headers, "header names and values must be strings")
                        valid = false
                        continue
                    }
                    guard ConfigNames.isHeaderName(name) else {
                        report(headers.path.key(name), near: keyNode, "\(quoted(name)) is not a valid header name")
                        valid = false
                        continue
                    }
                    route.match.headers[name.lowercased()] = expected
                }
            } else if let headers = match["headers"] {
                report(headers, "expected a mapping of header names to values, got \(headers.node.shown)")
                valid = false
            }
        }
        if let required = required(fields, "clusters") {
            let items = list(required) ?? []
            if items.isEmpty {
                report(required, "a route needs at least one cluster")
                valid = false
            }
            for item in items {
                guard let entry = mapping(item, keys: ["name", "weight"]),
                      let nameValue = self.required(entry, "name"), let name = string(nameValue) else {
                    valid = false
                    continue
                }
                guard known.contains(name) else {
                    report(nameValue, "\(quoted(name)) is not a cluster defined in clusters")
                    valid = false
                    continue
                }
                route.clusters.append(WeightedCluster(name: name, weight: integer(entry["weight"], in: 0...10_000) ?? 1))
            }
            if !route.clusters.isEmpty, route.clusters.allSatisfy({ $0.weight == 0 }) {
                report(required, "at least one cluster needs a weight above 0")
                valid = false
            }
        } else {
            valid = false
        }
        route.timeout = duration(fields["timeout"])
        return valid ? route : nil
    }
}
