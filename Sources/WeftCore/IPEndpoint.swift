/// An IP address and a TCP/UDP port: a listener, a VIP, an endpoint, an
/// original destination.
public struct IPEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `1.2.3.4:80` or `[2001:db8::1]:80`. The port must be 1...65535.
    public init?(_ text: some StringProtocol) {
        let string = String(text)
        let hostPart: Substring
        let portPart: Substring
        if string.hasPrefix("[") {
            guard let close = string.firstIndex(of: "]") else { return nil }
            hostPart = string[string.index(after: string.startIndex)..<close]
            let rest = string[string.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portPart = rest.dropFirst()
        } else {
            guard let colon = string.lastIndex(of: ":") else { return nil }
            hostPart = string[..<colon]
            // An unbracketed IPv6 address is ambiguous: refuse it.
            guard !hostPart.contains(":") else { return nil }
            portPart = string[string.index(after: colon)...]
        }
        guard let address = IPAddress(hostPart),
              let port = Self.parsePort(portPart) else { return nil }
        if string.hasPrefix("["), address.family != .ipv6 { return nil }
        self.init(address: address, port: port)
    }

    /// A decimal port in 1...65535, no sign, no spaces.
    public static func parsePort(_ text: some StringProtocol) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }),
              let value = Int(text), (1...65535).contains(value) else { return nil }
        return UInt16(value)
    }

    /// `1.2.3.4:80` or `[2001:db8::1]:80`.
    public var description: String {
        switch address {
        case .v4: return address.description + ":" + String(port)
        case .v6: return "[\(address)]:\(port)"
        }
    }
}
