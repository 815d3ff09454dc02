/// An IP address and a TCP/UDP port: a listener, a VIP, an endpoint, an
/// original destination.
public struct IPEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// One word for an IPv4 endpoint, three for IPv6: pools and balancers
    /// look endpoints up per request, and each word fed to the hasher costs.
    public func hash(into hasher: inout Hasher) {
        switch address {
        case .v4(let value):
            hasher.combine(UInt64(value) << 16 | UInt64(port))
        case .v6(let high, let low):
            hasher.combine(high)
            hasher.combine(low)
            hasher.combine(port)
        }
    }

    /// Parses `1.2.3.4:80` or `[2001:db8::1]:80`. The port must be 1...65535.
    public init?(_ text: some StringProtocol) {
        var string = String(text)  // a String: no copy
        guard let endpoint = string.withUTF8(Self.parseIPv4) ?? Self.parseAny(string) else { return nil }
        self = endpoint
    }

    /// The same from UTF-8 bytes (a field's value, as it came): the usual
    /// `a.b.c.d:port` read in place, anything else as text.
    public init?(utf8 bytes: UnsafeRawBufferPointer) {
        guard let endpoint = bytes.withMemoryRebound(to: UInt8.self, Self.parseIPv4)
            ?? Self.parseAny(String(decoding: bytes, as: UTF8.self)) else { return nil }
        self = endpoint
    }

    /// Either family, through `IPAddress`'s parser (inet_pton).
    static func parseAny(_ text: some StringProtocol) -> IPEndpoint? {
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
        return IPEndpoint(address: address, port: port)
    }

    /// `a.b.c.d:port` read byte by byte: the form of every `weft-dst` a
    /// node reads per request, where the general path (Strings, Characters,
    /// inet_pton) cost about 16,000 instructions. Accepts exactly what that
    /// path accepts for this form (no leading zero in an octet, as
    /// inet_pton; a port of up to 5 digits in 1...65535); nil for anything
    /// else, which the general path then reads.
    /// Bytes, not a generic collection: the generic form was not
    /// specialized across modules, and cost a witness call per byte.
    static func parseIPv4(_ bytes: UnsafeBufferPointer<UInt8>) -> IPEndpoint? {
        var address: UInt32 = 0, octet: UInt32 = 0, digits = 0, dots = 0
        var port: UInt32 = 0, portDigits = 0, inPort = false
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let digit = UInt32(byte - UInt8(ascii: "0"))
                if inPort {
                    port = port * 10 + digit
                    portDigits += 1
                    guard portDigits <= 5 else { return nil }
                } else {
                    guard !(digits == 1 && octet == 0) else { return nil }  // a leading zero
                    octet = octet * 10 + digit
                    digits += 1
                    guard octet <= 255 else { return nil }
                }
            case UInt8(ascii: "."):
                guard !inPort, digits > 0, dots < 3 else { return nil }
                address = address << 8 | octet
                (octet, digits, dots) = (0, 0, dots + 1)
            case UInt8(ascii: ":"):
                guard !inPort, digits > 0, dots == 3 else { return nil }
                address = address << 8 | octet
                inPort = true
            default:
                return nil
            }
        }
        guard inPort, portDigits > 0, (1...65535).contains(port) else { return nil }
        return IPEndpoint(address: .v4(address), port: UInt16(port))
    }

    /// A decimal port in 1...65535, no sign, no spaces.
    public static func parsePort(_ text: some StringProtocol) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }),
              let value = Int(text), (1...65535).contains(value) else { return nil }
        return UInt16(value)
    }

    /// `1.2.3.4:80` or `[2001:db8::1]:80`.
    public var description: String {
        var text = ""
        withText { text = String(decoding: $0, as: UTF8.self) }
        return text
    }

    /// Calls `body` with `description`'s UTF-8 bytes, written to a
    /// temporary buffer: no String, no heap buffer (it is on the
    /// per-request path as `weft-dst`). Not generic, so that callers in
    /// other modules need no metadata for it.
    public func withText(_ body: (UnsafeRawBufferPointer) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: IPAddress.textRoom) { text in
            var count = 0
            if case .v6 = address {
                text[0] = UInt8(ascii: "[")
                count = 1
            }
            count += address.write(to: UnsafeMutableBufferPointer(rebasing: text[count...]))
            if case .v6 = address {
                text[count] = UInt8(ascii: "]")
                count += 1
            }
            text[count] = UInt8(ascii: ":")
            count += 1
            count += IPAddress.writeDecimal(port, to: text, at: count)
            body(UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: text[..<count])))
        }
    }
}
