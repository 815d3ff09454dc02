import NIOCore
import NIOPosix
import WeftCore
import WeftNetfilter

/// Opens every upstream connection weft makes: to a peer node's mesh port,
/// to a plain endpoint, to the local app. One door, so that TLS (later) and
/// connect accounting have a single place, and tests could swap the
/// transport.
public protocol Connector: Sendable {
    /// Connects to `target` from `loop` (the loop of the connection that
    /// needs it). `initialize` adds the new channel's handlers, on the
    /// loop, before it connects. `halfClosure`: the channel reports the
    /// peer's FIN as an event instead of closing (relays and tunnels).
    func connect(to target: IPEndpoint, on loop: EventLoop, timeout: TimeAmount, halfClosure: Bool,
                 initialize: @escaping @Sendable (Channel) throws -> Void) -> EventLoopFuture<Channel>
}

/// Plain TCP (`TCP_NODELAY` on), each outcome told to `observe`.
public struct TCPConnector: Connector {
    /// How a connect ended: `true` connected, `false` failed or timed out.
    public typealias Observer = @Sendable (_ target: IPEndpoint, _ connected: Bool) -> Void
    private let observe: Observer

    public init(observe: @escaping Observer = { _, _ in }) {
        self.observe = observe
    }

    public func connect(to target: IPEndpoint, on loop: EventLoop, timeout: TimeAmount, halfClosure: Bool,
                        initialize: @escaping @Sendable (Channel) throws -> Void) -> EventLoopFuture<Channel> {
        let observe = self.observe
        let future = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.allowRemoteHalfClosure, value: halfClosure)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try initialize(channel) }
            }
            .connect(to: SocketAddress(target))
        future.whenComplete { result in
            if case .success = result { observe(target, true) } else { observe(target, false) }
        }
        return future
    }
}
