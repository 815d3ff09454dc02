@testable import WeftIPTables

/// Builds ``InterceptionFlags`` from command-line style arguments, so tests
/// read like the `weft init` invocations they stand for.
func flags(_ arguments: [String]) -> InterceptionFlags {
    var flags = InterceptionFlags()
    var index = 0
    func value() -> String {
        index += 1
        return index < arguments.count ? arguments[index] : ""
    }
    while index < arguments.count {
        switch arguments[index] {
        case "--proxy-uid": flags.proxyUID = value()
        case "--proxy-gid": flags.proxyGID = value()
        case "--outbound-port": flags.outboundPort = value()
        case "--inbound-port": flags.inboundPort = value()
        case "--mesh-port": flags.meshPort = value()
        case "--admin-port": flags.adminPort = value()
        case "--health-port": flags.healthPort = value()
        case "--exclude-inbound-ports": flags.excludeInboundPorts.append(value())
        case "--include-inbound-ports": flags.includeInboundPorts.append(value())
        case "--exclude-outbound-ports": flags.excludeOutboundPorts.append(value())
        case "--exclude-outbound-cidrs": flags.excludeOutboundCIDRs.append(value())
        case "--include-outbound-cidrs": flags.includeOutboundCIDRs.append(value())
        case "--exclude-uids": flags.excludeUIDs.append(value())
        case "--capture-dns": flags.captureDNS = true
        case "--dns-port": flags.dnsPort = value()
        case "--backend": flags.backend = value()
        case "--ipv6": flags.ipv6 = value()
        default: preconditionFailure("unknown test flag \(arguments[index])")
        }
        index += 1
    }
    return flags
}

/// Parsed, validated options for `arguments`.
func options(_ arguments: [String]) throws -> InterceptionOptions {
    try InterceptionOptions(flags: flags(arguments))
}
