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
