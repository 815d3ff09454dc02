import NIOCore
import WeftCore
import WeftNetfilter

/// Recovers where a redirected connection was going.
///
/// A seam: the node uses the kernel (`SO_ORIGINAL_DST`); tests that run
/// without iptables or root plug in a fixed answer.
public protocol OriginalDestinationResolver: Sendable {
    func originalDestination(of channel: Channel) -> EventLoopFuture<IPEndpoint>
}

/// Asks the kernel's conntrack entry via `SO_ORIGINAL_DST`.
public struct KernelOriginalDestination: OriginalDestinationResolver {
    public init() {}

    public func originalDestination(of channel: Channel) -> EventLoopFuture<IPEndpoint> {
        OriginalDestination.lookup(channel)
    }
}

/// For listeners apps call directly (egress, HTTP routing): the
/// destination is the listener's own address.
public struct LocalDestination: OriginalDestinationResolver {
    public init() {}

    public func originalDestination(of channel: Channel) -> EventLoopFuture<IPEndpoint> {
        guard let local = channel.localAddress.flatMap(IPEndpoint.init) else {
            return channel.eventLoop.makeFailedFuture(ChannelError.inappropriateOperationForState)
        }
        return channel.eventLoop.makeSucceededFuture(local)
    }
}
