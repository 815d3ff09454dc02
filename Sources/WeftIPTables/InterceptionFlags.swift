/// The text of `weft init`'s flags, as typed, before validation.
///
/// `nil` means the flag was not given. List flags hold one string per
/// occurrence; each may carry several comma-separated values.
public struct InterceptionFlags: Equatable, Sendable {
    public var proxyUID: String?
    public var proxyGID: String?
    public var outboundPort: String?
    public var inboundPort: String?
    public var meshPort: String?
    public var adminPort: String?
    public var healthPort: String?
    public var excludeInboundPorts: [String] = []
    /// Empty: not given (all ports). `[""]`: given empty (no port).
    public var includeInboundPorts: [String] = []
    public var excludeOutboundPorts: [String] = []
    public var excludeOutboundCIDRs: [String] = []
    /// Empty: not given (all destinations). `[""]`: given empty (none).
    public var includeOutboundCIDRs: [String] = []
    public var excludeUIDs: [String] = []
    public var captureDNS = false
    public var dnsPort: String?
    public var backend: String?
    public var ipv6: String?

    public init() {}
}
