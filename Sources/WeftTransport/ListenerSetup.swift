import NIOCore
import NIOPosix

extension ServerBootstrap {
    /// IPv6 listeners take IPv6 only, so that an IPv4 socket on the same
    /// port can coexist; the option does not exist on IPv4 sockets.
    public func ipv6OnlyIfNeeded(for address: SocketAddress) -> ServerBootstrap {
        address.protocol == .inet6
            ? serverChannelOption(ChannelOptions.Types.SocketOption(level: .ipv6, name: .ipv6_v6only), value: 1)
            : self
    }
}
