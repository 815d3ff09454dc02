import Foundation
import WeftCore

extension InterceptionOptions {
    /// Parses and validates command-line text; throws an
    /// ``InterceptionOptionError`` for the first bad value.
    public init(flags: InterceptionFlags) throws {
        self.init()
        if let text = flags.proxyUID { proxyUID = try Self.id(text, flag: "--proxy-uid", what: "uid") }
        if let text = flags.proxyGID { proxyGID = try Self.id(text, flag: "--proxy-gid", what: "gid") }
        if let text = flags.outboundPort { outboundPort = try Self.port(text, flag: "--outbound-port") }
        if let text = flags.inboundPort { inboundPort = try Self.port(text, flag: "--inbound-port") }
        if let text = flags.meshPort { meshPort = try Self.port(text, flag: "--mesh-port") }
        if let text = flags.adminPort { adminPort = try Self.port(text, flag: "--admin-port") }
        if let text = flags.healthPort { healthPort = try Self.port(text, flag: "--health-port") }
        if let text = flags.dnsPort { dnsPort = try Self.port(text, flag: "--dns-port") }

        excludeInboundPorts = try Self.items(flags.excludeInboundPorts).map { try Self.port($0, flag: "--exclude-inbound-ports") }
        excludeOutboundPorts = try Self.items(flags.excludeOutboundPorts).map { try Self.port($0, flag: "--exclude-outbound-ports") }
        excludeOutboundCIDRs = try Self.items(flags.excludeOutboundCIDRs).map { try Self.cidr($0, flag: "--exclude-outbound-cidrs") }
        excludeUIDs = try Self.items(flags.excludeUIDs).map { try Self.id($0, flag: "--exclude-uids", what: "uid") }
        if !flags.includeInboundPorts.isEmpty {
            let items = Self.items(flags.includeInboundPorts)
            includeInboundPorts = items.contains("*") ? nil
                : try items.map { try Self.port($0, flag: "--include-inbound-ports") }
        }
        if !flags.includeOutboundCIDRs.isEmpty {
            let items = Self.items(flags.includeOutboundCIDRs)
            includeOutboundCIDRs = items.contains("*") ? nil
                : try items.map { try Self.cidr($0, flag: "--include-outbound-cidrs") }
        }

        excludeInboundPorts = Self.unique(excludeInboundPorts)
        includeInboundPorts = includeInboundPorts.map(Self.unique)
        excludeOutboundPorts = Self.unique(excludeOutboundPorts)
        excludeOutboundCIDRs = Self.unique(excludeOutboundCIDRs)
        includeOutboundCIDRs = includeOutboundCIDRs.map(Self.unique)
        excludeUIDs = Self.unique(excludeUIDs)

        captureDNS = flags.captureDNS
        if let text = flags.backend {
            guard let value = BackendChoice(rawValue: text) else {
                throw InterceptionOptionError.invalid("--backend", text, "backend (auto, legacy, nft)")
            }
            backend = value
        }
        if let text = flags.ipv6 {
            guard let value = IPv6Mode(rawValue: text) else {
                throw InterceptionOptionError.invalid("--ipv6", text, "mode (auto, on, off)")
            }
            ipv6 = value
        }
        try validate()
    }

    /// Comma-separated values of every occurrence, blanks dropped.
    static func items(_ occurrences: [String]) -> [String] {
        occurrences.flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }

    static func port(_ text: String, flag: String) throws -> UInt16 {
        guard let port = IPEndpoint.parsePort(text) else { throw InterceptionOptionError.invalid(flag, text, "port (1-65535)") }
        return port
    }

    /// A numeric uid or gid, 0...2^32-1.
    static func id(_ text: String, flag: String, what: String) throws -> UInt32 {
        guard !text.isEmpty, text.count <= 10, text.allSatisfy({ $0.isASCII && $0.isNumber }),
              let value = UInt32(text) else {
            throw InterceptionOptionError.invalid(flag, text, "\(what) (0-4294967295)")
        }
        return value
    }

    static func cidr(_ text: String, flag: String) throws -> CIDR {
        guard let cidr = CIDR(text) else { throw InterceptionOptionError.invalid(flag, text, "CIDR") }
        return cidr
    }

    /// First occurrence of each value, order kept.
    static func unique<T: Hashable>(_ values: [T]) -> [T] {
        var seen = Set<T>()
        return values.filter { seen.insert($0).inserted }
    }
}
