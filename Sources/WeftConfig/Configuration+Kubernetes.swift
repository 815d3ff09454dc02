import WeftCore

/// `kubernetes_api`: the API server `discovery: kubernetes` watches, for
/// nodes outside a pod (VM hosts, tests). Without it, a node in a pod uses
/// the in-cluster environment (SPEC §7).
public struct KubernetesAPISettings: Sendable, Equatable {
    public var server: KubernetesServerURL
    /// The bearer token's file, re-read for each request (tokens rotate);
    /// nil sends none (e.g. `kubectl proxy`).
    public var tokenFile: String?
    /// The CA the server's certificate must chain to (https).
    public var caFile: String?

    public init(server: KubernetesServerURL, tokenFile: String? = nil, caFile: String? = nil) {
        self.server = server
        self.tokenFile = tokenFile
        self.caFile = caFile
    }
}

/// An API server's base URL: `https://host[:port][/prefix]`, or `http://`
/// for a local `kubectl proxy`.
public struct KubernetesServerURL: Sendable, Equatable, CustomStringConvertible {
    public var tls: Bool
    /// A DNS name or an IP address (without brackets).
    public var host: String
    public var port: UInt16
    /// A path the API sits under (a proxy's), without the trailing slash; "" for none.
    public var pathPrefix: String

    public init(tls: Bool, host: String, port: UInt16, pathPrefix: String = "") {
        self.tls = tls
        self.host = host
        self.port = port
        self.pathPrefix = pathPrefix
    }

    /// Parses `text`; nil with the reason when it is not such a URL.
    public static func parse(_ text: String) -> Result<KubernetesServerURL, KubernetesServerURLError> {
        let tls: Bool
        var rest: Substring
        if text.hasPrefix("https://") {
            tls = true
            rest = text.dropFirst(8)
        } else if text.hasPrefix("http://") {
            tls = false
            rest = text.dropFirst(7)
        } else {
            return .failure(.init("must start with https:// (or http:// for a local proxy)"))
        }
        var prefix = ""
        if let slash = rest.firstIndex(of: "/") {
            prefix = String(rest[slash...])
            rest = rest[..<slash]
            while prefix.hasSuffix("/") { prefix.removeLast() }
            guard prefix.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }) else {
                return .failure(.init("has a path that is not a plain path"))
            }
        }
        var host = rest
        var port: UInt16 = tls ? 443 : 80
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return .failure(.init("has an unclosed [")) }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let number = portNumber(after.dropFirst()) else {
                    return .failure(.init("has a bad port"))
                }
                port = number
            }
            guard case .v6 = IPAddress(String(host)) else { return .failure(.init("has a bad IPv6 address")) }
        } else if let colon = rest.firstIndex(of: ":") {
            host = rest[..<colon]
            guard let number = portNumber(rest[rest.index(after: colon)...]) else {
                // Also an IPv6 address without brackets: ambiguous.
                return .failure(.init("has a bad port (an IPv6 address goes in brackets)"))
            }
            port = number
        }
        guard !host.isEmpty else { return .failure(.init("has no host")) }
        if IPAddress(String(host)) == nil, ConfigNames.dnsName(String(host)) == nil {
            return .failure(.init("has a host that is neither a DNS name nor an IP address"))
        }
        return .success(KubernetesServerURL(tls: tls, host: String(host), port: port, pathPrefix: prefix))
    }

    /// Digits only (no sign), 1-65535.
    private static func portNumber(_ text: Substring) -> UInt16? {
        guard !text.isEmpty, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
              let number = UInt16(text), number > 0 else { return nil }
        return number
    }

    /// The host is this machine (a local `kubectl proxy`).
    public var isLoopback: Bool {
        if host == "localhost" { return true }
        switch IPAddress(host) {
        case .v4(let value): return value >> 24 == 127
        case .v6(let high, let low): return high == 0 && low == 1
        case nil: return false
        }
    }

    public var description: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "\(tls ? "https" : "http")://\(shownHost):\(port)\(pathPrefix)"
    }
}

public struct KubernetesServerURLError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// A `discovery: kubernetes` cluster's `kubernetes: { service, namespace, port }`.
public struct KubernetesServiceRef: Sendable, Equatable {
    public var service: String
    /// Nil: the namespace of the node's own pod (its service account's),
    /// else `default`.
    public var namespace: String?
    /// The Service port's name, or its number as text.
    public var port: String

    public init(service: String, namespace: String? = nil, port: String) {
        self.service = service
        self.namespace = namespace
        self.port = port
    }

    /// A name as Services, namespaces and ports have them (RFC 1123 label):
    /// lowercase letters, digits and "-", not at either end, 63 at most.
    /// They go into API request paths as they are.
    public static func isLabel(_ text: String) -> Bool {
        text.utf8.count <= 63 && !text.contains(".") && ConfigNames.dnsName(text) == text
    }
}
