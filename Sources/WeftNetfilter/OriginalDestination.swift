#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import WeftCore

/// The destination a connection had before iptables REDIRECT rewrote it.
///
/// `SO_ORIGINAL_DST` (IPv4, `linux/netfilter_ipv4.h`) and
/// `IP6T_SO_ORIGINAL_DST` (IPv6, `linux/netfilter_ipv6/ip6_tables.h`) are
/// both option 80, read at `SOL_IP` / `SOL_IPV6` on the accepted socket; the
/// kernel answers from the connection's conntrack entry.
public enum OriginalDestination {
    static let optionName: SocketOptionName = 80

    /// Looks up the original destination of an accepted TCP connection.
    ///
    /// A connection that was not redirected answers with its own local
    /// address (or fails when conntrack has no entry for it): callers must
    /// compare the result with `channel.localAddress` and refuse that case,
    /// or the node would connect to itself.
    public static func lookup(_ channel: Channel) -> EventLoopFuture<IPEndpoint> {
        guard let provider = channel as? SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(OriginalDestinationError.notASocket)
        }
        switch channel.localAddress {
        case .v4:
            return read(sockaddr_in.self, level: Int32(IPPROTO_IP), from: provider).flatMapThrowing(endpoint)
        case .v6:
            return read(sockaddr_in6.self, level: Int32(IPPROTO_IPV6), from: provider).flatMapThrowing(endpoint)
        default:
            return channel.eventLoop.makeFailedFuture(OriginalDestinationError.notASocket)
        }
    }

    /// Reads option 80 at `level` as the socket address type of that family.
    private static func read<Raw: Sendable>(_ type: Raw.Type, level: Int32,
                                            from provider: SocketOptionProvider) -> EventLoopFuture<Raw> {
        provider.unsafeGetSocketOption(level: SocketOptionLevel(level), name: optionName)
    }

    private static func endpoint(_ raw: sockaddr_in) throws -> IPEndpoint {
        try endpoint(SocketAddress(raw))
    }

    private static func endpoint(_ raw: sockaddr_in6) throws -> IPEndpoint {
        try endpoint(SocketAddress(raw))
    }

    private static func endpoint(_ address: SocketAddress) throws -> IPEndpoint {
        guard let endpoint = IPEndpoint(address) else { throw OriginalDestinationError.unexpectedFamily }
        return endpoint
    }
}

public enum OriginalDestinationError: Error, Equatable {
    /// The channel is not an IPv4/IPv6 socket.
    case notASocket
    /// The kernel answered with an address of another family.
    case unexpectedFamily
}
