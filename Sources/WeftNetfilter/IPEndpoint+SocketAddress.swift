#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import WeftCore

extension IPEndpoint {
    /// Converts a NIO socket address without going through text.
    /// IPv4-mapped IPv6 addresses become IPv4. Unix sockets give nil.
    public init?(_ socketAddress: SocketAddress) {
        switch socketAddress {
        case .v4(let v4):
            self.init(address: .v4(UInt32(bigEndian: v4.address.sin_addr.s_addr)),
                      port: UInt16(bigEndian: v4.address.sin_port))
        case .v6(let v6):
            var raw = v6.address.sin6_addr
            let bytes = withUnsafeBytes(of: &raw) { Array($0) }
            guard let address = IPAddress(bytes: bytes) else { return nil }
            self.init(address: address.unmappingIPv4, port: UInt16(bigEndian: v6.address.sin6_port))
        case .unixDomainSocket:
            return nil
        }
    }
}

extension SocketAddress {
    /// The NIO form of an endpoint, built without resolving text.
    public init(_ endpoint: IPEndpoint) {
        switch endpoint.address {
        case .v4(let value):
            var raw = sockaddr_in()
            raw.sin_family = sa_family_t(AF_INET)
            raw.sin_port = endpoint.port.bigEndian
            raw.sin_addr.s_addr = value.bigEndian
            self.init(raw, host: "")
        case .v6:
            var raw = sockaddr_in6()
            raw.sin6_family = sa_family_t(AF_INET6)
            raw.sin6_port = endpoint.port.bigEndian
            let bytes = endpoint.address.bytes
            withUnsafeMutableBytes(of: &raw.sin6_addr) { target in
                target.copyBytes(from: bytes)
            }
            self.init(raw, host: "")
        }
    }
}
