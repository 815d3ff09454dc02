/// An address block such as `10.0.0.0/8` or `2001:db8::/32`.
///
/// The stored address is normalised to the network address (host bits
/// cleared), so `10.1.2.3/8` and `10.0.0.0/8` compare equal.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    public init?(network: IPAddress, prefixLength: Int) {
        let bits = network.family == .ipv4 ? 32 : 128
        guard (0...bits).contains(prefixLength) else { return nil }
        self.network = Self.mask(network, prefixLength)
        self.prefixLength = prefixLength
    }

    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a host route).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(parts[0]) else { return nil }
        let bits = address.family == .ipv4 ? 32 : 128
        var length = bits
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 3,
                  digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let value = Int(digits) else { return nil }
            length = value
        }
        self.init(network: address, prefixLength: length)
    }

    public var family: IPAddress.Family { network.family }

    public func contains(_ address: IPAddress) -> Bool {
        address.family == family && Self.mask(address, prefixLength) == network
    }

    public var description: String { "\(network)/\(prefixLength)" }

    private static func mask(_ address: IPAddress, _ length: Int) -> IPAddress {
        switch address {
        case .v4(let value):
            let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << (32 - length)
            return .v4(value & mask)
        case .v6(let high, let low):
            let highMask: UInt64 = length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << (64 - length))
            let lowMask: UInt64 = length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << (128 - length))
            return .v6(high: high & highMask, low: low & lowMask)
        }
    }
}
