import NIOCore
import NIOHTTP1
import NIOPosix
import WeftTransport

/// A small HTTP/1.1 server for the health (15020) and admin (15000)
/// listeners: read-only routes answered from a router closure.
public enum AdminServer {
    /// How long an idle admin connection stays open.
    static let idleTimeout = TimeAmount.seconds(60)

    /// Binds one listening channel per address. Every address must bind.
    public static func bind(
        group: EventLoopGroup,
        addresses: [SocketAddress],
        router: @escaping AdminRouter
    ) -> EventLoopFuture<[Channel]> {
        let futures = addresses.map { address in
            bootstrap(group: group, router: router)
                .ipv6OnlyIfNeeded(for: address)
                .bind(to: address)
        }
        return EventLoopFuture.whenAllSucceed(futures, on: group.next())
    }

    private static func bootstrap(group: EventLoopGroup, router: @escaping AdminRouter) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(IdleCloseHandler())
                    try channel.pipeline.syncOperations.addHandler(AdminHTTPHandler(router: router))
                }
            }
    }
}

/// Closes a connection when `IdleStateHandler` reports it idle.
final class IdleCloseHandler: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
