import WeftConfig

/// The L7 rules (SPEC §5 `routes`) compiled for matching: first match wins,
/// and a matched rule splits requests over its clusters by weight. Pure
/// matching, rebuilt per configuration, shared by every event loop.
public final class RouteTable: Sendable {
    /// A rule with its clusters resolved to configuration indices.
    public struct CompiledRoute: Sendable {
        public let index: Int
        public let match: RouteMatch
        /// (cluster index, running weight sum), in the configured order.
        let split: [(cluster: Int, upTo: Int)]
        public let timeout: Duration?

        /// The cluster for a request, given a uniform draw in `0..<totalWeight`.
        public func cluster(draw: Int) -> Int {
            split.first { draw < $0.upTo }?.cluster ?? split[split.count - 1].cluster
        }

        public var totalWeight: Int { split.last?.upTo ?? 0 }
        public var isSplit: Bool { split.count > 1 }
    }

    public let routes: [CompiledRoute]

    public init(configuration: Configuration) {
        var index: [String: Int] = [:]
        for (position, cluster) in configuration.clusters.enumerated() where index[cluster.name] == nil {
            index[cluster.name] = position
        }
        routes = configuration.routes.enumerated().compactMap { position, route in
            var sum = 0
            let split: [(cluster: Int, upTo: Int)] = route.clusters.compactMap { weighted in
                guard let cluster = index[weighted.name], weighted.weight > 0 else { return nil }
                sum += weighted.weight
                return (cluster, sum)
            }
            // Validation refuses rules without a usable cluster.
            guard !split.isEmpty else { return nil }
            return CompiledRoute(index: position, match: route.match, split: split, timeout: route.timeout)
        }
    }

    public var isEmpty: Bool { routes.isEmpty }

    /// The first rule the request matches. `authority` is `Host` or
    /// `:authority` as sent (a port is ignored); `path` may carry a query;
    /// `header` finds a request header by lowercase name.
    public func match(authority: String?, path: String, header: (String) -> String?) -> CompiledRoute? {
        guard !routes.isEmpty else { return nil }
        let host = authority.map(Self.hostPart)
        let pathOnly = path.firstIndex(of: "?").map { path[..<$0] } ?? Substring(path)
        for route in routes where Self.matches(route.match, host: host, path: pathOnly, header: header) {
            return route
        }
        return nil
    }

    static func matches(_ match: RouteMatch, host: Substring?, path: Substring, header: (String) -> String?) -> Bool {
        mismatch(match, host: host, path: path, header: header) == nil
    }

    /// What of a rule's match a request fails.
    public enum Mismatch: Equatable, Sendable {
        case host, path, pathPrefix
        case header(String)
    }

    /// The first condition of `match` the request fails; nil when it
    /// matches. Arguments as for `match(authority:path:header:)`.
    public static func mismatch(_ match: RouteMatch, authority: String?, path: String,
                                header: (String) -> String?) -> Mismatch? {
        let pathOnly = path.firstIndex(of: "?").map { path[..<$0] } ?? Substring(path)
        return mismatch(match, host: authority.map(hostPart), path: pathOnly, header: header)
    }

    static func mismatch(_ match: RouteMatch, host: Substring?, path: Substring,
                         header: (String) -> String?) -> Mismatch? {
        if let expected = match.host {
            guard let host, host.count == expected.count, host.lowercased() == expected else { return .host }
        }
        if let exact = match.path, path != exact { return .path }
        if let prefix = match.pathPrefix, !path.hasPrefix(prefix) { return .pathPrefix }
        for (name, value) in match.headers where header(name) != value { return .header(name) }
        return nil
    }

    /// `backend:9090` → `backend`, `[2001:2::1]:80` → `[2001:2::1]`, and a
    /// trailing dot dropped.
    public static func hostPart(_ authority: String) -> Substring {
        var host = Substring(authority)
        if host.hasPrefix("[") {
            if let close = host.firstIndex(of: "]") { host = host[...close] }
        } else if let colon = host.lastIndex(of: ":") {
            host = host[..<colon]
        }
        if host.hasSuffix(".") { host = host.dropLast() }
        return host
    }
}
