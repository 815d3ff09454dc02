import WeftCore

/// The validated settings of `weft init` (SPEC §3), with the SPEC's defaults.
///
/// Build it from command-line text with ``init(flags:)``, which refuses bad
/// values with an ``InterceptionOptionError`` before anything is touched.
public struct InterceptionOptions: Equatable, Sendable {
    public var proxyUID: UInt32 = 1337
    public var proxyGID: UInt32 = 1337
    public var outboundPort: UInt16 = 15001
    public var inboundPort: UInt16 = 15006
    public var meshPort: UInt16 = 15008
    public var adminPort: UInt16 = 15000
    public var healthPort: UInt16 = 15020
    /// Inbound ports never redirected.
    public var excludeInboundPorts: [UInt16] = []
    /// Only these inbound ports are redirected; `nil` means all.
    public var includeInboundPorts: [UInt16]? = nil
    /// Outbound destination ports never redirected.
    public var excludeOutboundPorts: [UInt16] = []
    /// Outbound destinations never redirected.
    public var excludeOutboundCIDRs: [CIDR] = []
    /// Only these outbound destinations are redirected; `nil` means all.
    /// Per family, only the blocks of that family count: with
    /// `10.0.0.0/8` alone, no IPv6 traffic is redirected.
    public var includeOutboundCIDRs: [CIDR]? = nil
    /// Users whose outbound traffic is never redirected (besides the proxy).
    public var excludeUIDs: [UInt32] = []
    /// Redirect the app's DNS (udp and tcp port 53) to ``dnsPort`` on 127.0.0.1.
    public var captureDNS = false
    public var dnsPort: UInt16 = 15053
    public var backend: BackendChoice = .auto
    public var ipv6: IPv6Mode = .auto

    public init() {}

    /// Cross-field checks that single values cannot express.
    public func validate() throws {
        if includeInboundPorts != nil, !excludeInboundPorts.isEmpty {
            throw InterceptionOptionError.conflict("--include-inbound-ports and --exclude-inbound-ports cannot be used together")
        }
        var listeners: [(String, UInt16)] = [
            ("--outbound-port", outboundPort), ("--inbound-port", inboundPort), ("--mesh-port", meshPort),
        ]
        if captureDNS { listeners.append(("--dns-port", dnsPort)) }
        for (index, (flag, port)) in listeners.enumerated() {
            if let other = listeners[..<index].first(where: { $0.1 == port }) {
                throw InterceptionOptionError.conflict("\(flag): \(port) is already the \(other.0)")
            }
        }
    }
}
