#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address, stored as raw network-order bytes.
///
/// A plain value type so that configuration, routing and rule rendering can
/// compare and hash addresses without touching sockets.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// Four bytes, network order.
    case v4(UInt32)
    /// Sixteen bytes, network order, as two big-endian halves.
    case v6(high: UInt64, low: UInt64)

    public enum Family: String, Sendable { case ipv4, ipv6 }

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (no brackets, no zone).
    public init?(_ text: some StringProtocol) {
        let string = String(text)
        guard !string.isEmpty, string.utf8.count <= 45 else { return nil }
        var v4 = in_addr()
        if string.withCString({ inet_pton(AF_INET, $0, &v4) }) == 1 {
            self = .v4(UInt32(bigEndian: v4.s_addr))
            return
        }
        var v6 = in6_addr()
        if string.withCString({ inet_pton(AF_INET6, $0, &v6) }) == 1 {
            self.init(v6Bytes: withUnsafeBytes(of: &v6) { Array($0) })
            return
        }
        return nil
    }

    /// Builds an address from 4 or 16 network-order bytes.
    public init?(bytes: some Collection<UInt8>) {
        let array = Array(bytes)
        switch array.count {
        case 4: self = .v4(array.reduce(0) { $0 << 8 | UInt32($1) })
        case 16: self.init(v6Bytes: array)
        default: return nil
        }
    }

    private init(v6Bytes bytes: [UInt8]) {
        let high = bytes[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let low = bytes[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        self = .v6(high: high, low: low)
    }

    public var family: Family {
        switch self {
        case .v4: return .ipv4
        case .v6: return .ipv6
        }
    }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let value):
            return (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) }
        case .v6(let high, let low):
            return (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
                + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
        }
    }

    public var isLoopback: Bool {
        switch self {
        case .v4(let value): return value >> 24 == 127
        case .v6(let high, let low): return high == 0 && low == 1
        }
    }

    /// `::ffff:a.b.c.d` unwrapped to `a.b.c.d`; any other address unchanged.
    public var unmappingIPv4: IPAddress {
        if case .v6(let high, let low) = self, high == 0, low >> 32 == 0xffff {
            return .v4(UInt32(truncatingIfNeeded: low))
        }
        return self
    }

    public static let loopbackV4 = IPAddress.v4(0x7f00_0001)
    public static let loopbackV6 = IPAddress.v6(high: 0, low: 1)

    /// Canonical text: dotted quad, or RFC 5952 compressed IPv6.
    public var description: String {
        var text = ""
        withText { text = String(decoding: $0, as: UTF8.self) }
        return text
    }

    /// Calls `body` with the canonical text's UTF-8 bytes, written to a
    /// temporary buffer: no String, no heap buffer. Not generic, so that
    /// callers in other modules need no metadata for it.
    public func withText(_ body: (UnsafeRawBufferPointer) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.textRoom) { text in
            body(UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: text[..<write(to: text)])))
        }
    }

    /// Room for an endpoint's text: "[", an IPv6 address and its NUL
    /// (`INET6_ADDRSTRLEN`), "]:" and a port.
    static let textRoom = Int(INET6_ADDRSTRLEN) + 8

    /// Writes the canonical text at the start of `text` (room for
    /// a full IPv6 address, `INET6_ADDRSTRLEN`); returns its length.
    func write(to text: UnsafeMutableBufferPointer<UInt8>) -> Int {
        switch self {
        case .v4(let value):
            var count = 0
            for index in 0..<4 {
                if index > 0 {
                    text[count] = UInt8(ascii: ".")
                    count += 1
                }
                count += Self.writeDecimal(UInt16(truncatingIfNeeded: value >> (24 - 8 * UInt32(index))) & 0xFF,
                                           to: text, at: count)
            }
            return count
        case .v6(let high, let low):
            var raw = (high.bigEndian, low.bigEndian)
            let ok = withUnsafeMutableBytes(of: &raw) { bytes in
                text.withMemoryRebound(to: CChar.self) { chars in
                    inet_ntop(AF_INET6, bytes.baseAddress, chars.baseAddress, socklen_t(chars.count)) != nil
                }
            }
            guard ok else {
                text[0] = UInt8(ascii: "?")
                return 1
            }
            return text.firstIndex(of: 0) ?? 0
        }
    }

    /// Writes `value` in decimal at `offset`; returns how many digits.
    static func writeDecimal(_ value: UInt16, to text: UnsafeMutableBufferPointer<UInt8>, at offset: Int) -> Int {
        let digits = value >= 10_000 ? 5 : value >= 1_000 ? 4 : value >= 100 ? 3 : value >= 10 ? 2 : 1
        var rest = value, position = offset + digits
        repeat {
            position -= 1
            text[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
            rest /= 10
        } while rest > 0
        return digits
    }
}
