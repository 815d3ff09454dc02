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
            let future: EventLoopFuture<sockaddr_in> =
                provider.unsafeGetSocketOption(level: SocketOptionLevel(IPPROTO_IP), name: optionName)
            return future.flatMapThrowing { raw in
                guard let endpoint = IPEndpoint(SocketAddress(raw)) else {
                    throw OriginalDestinationError.unexpectedFamily
                }
                return endpoint
            }
        case .v6:
            let future: EventLoopFuture<sockaddr_in6> =
                provider.unsafeGetSocketOption(level: SocketOptionLevel(IPPROTO_IPV6), name: optionName)
            return future.flatMapThrowing { raw in
                guard let endpoint = IPEndpoint(SocketAddress(raw)) else {
                    throw OriginalDestinationError.unexpectedFamily
                }
                return endpoint
            }
        default:
            return channel.eventLoop.makeFailedFuture(OriginalDestinationError.notASocket)
        }
    }
}

public enum OriginalDestinationError: Error, Equatable {
    /// The channel is not an IPv4/IPv6 socket.
    case notASocket
    /// The kernel answered with an address of another family.
    case unexpectedFamily
}
