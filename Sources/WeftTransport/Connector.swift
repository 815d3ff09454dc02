import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import WeftCore
import WeftNetfilter
import WeftTLS

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

/// Connects to servers inside this process over socket pairs: no network,
/// no addresses, real event loops and real backpressure. For tests of
/// everything above the Connector (pools, dispatch, the pipeline). Each
/// endpoint is served by an initializer that sets up the server end's
/// pipeline; an endpoint nobody serves is refused, as a closed port is.
public final class LocalPairConnector: Connector, @unchecked Sendable {
    public typealias Server = @Sendable (Channel) throws -> Void
    private let lock = NIOLock()
    private var servers: [IPEndpoint: Server] = [:]
    private var connects: [IPEndpoint: Int] = [:]
    private var attempts: [IPEndpoint: Int] = [:]

    public init() {}

    /// Serves connections to `endpoint` with `initialize` (replacing any
    /// server it had).
    public func serve(_ endpoint: IPEndpoint, _ initialize: @escaping Server) {
        lock.withLock { servers[endpoint] = initialize }
    }

    /// Stops serving `endpoint`: later connects to it are refused.
    public func stopServing(_ endpoint: IPEndpoint) {
        lock.withLock { _ = servers.removeValue(forKey: endpoint) }
    }

    /// Connections made to `endpoint` so far.
    public func connectCount(_ endpoint: IPEndpoint) -> Int {
        lock.withLock { connects[endpoint] ?? 0 }
    }

    /// Connects tried to `endpoint` so far, refused ones included.
    public func attemptCount(_ endpoint: IPEndpoint) -> Int {
        lock.withLock { attempts[endpoint] ?? 0 }
    }

    /// Completes on a later turn of `loop`, never inside the call, as a
    /// TCP connect does.
    public func connect(to target: IPEndpoint, on loop: EventLoop, timeout: TimeAmount, halfClosure: Bool,
                        initialize: @escaping @Sendable (Channel) throws -> Void) -> EventLoopFuture<Channel> {
        loop.flatSubmit { self.pair(to: target, on: loop, halfClosure: halfClosure, initialize: initialize) }
    }

    private func pair(to target: IPEndpoint, on loop: EventLoop, halfClosure: Bool,
                      initialize: @escaping @Sendable (Channel) throws -> Void) -> EventLoopFuture<Channel> {
        let server: Server? = lock.withLock {
            attempts[target, default: 0] += 1
            let server = servers[target]
            if server != nil { connects[target, default: 0] += 1 }
            return server
        }
        guard let server else { return loop.makeFailedFuture(LocalPairError.refused(target)) }
        var descriptors: [CInt] = [0, 0]
        guard socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &descriptors) == 0 else {
            return loop.makeFailedFuture(LocalPairError.socketPair(errno))
        }
        let serverEnd = ClientBootstrap(group: loop)
            .channelOption(.allowRemoteHalfClosure, value: halfClosure)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try server(channel) } }
            .withConnectedSocket(descriptors[1])
        let clientDescriptor = descriptors[0]
        return serverEnd.flatMapError { error in
            close(clientDescriptor)
            return loop.makeFailedFuture(error)
        }.flatMap { serverChannel in
            ClientBootstrap(group: loop)
                .channelOption(.allowRemoteHalfClosure, value: halfClosure)
                .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try initialize(channel) } }
                .withConnectedSocket(clientDescriptor)
                .flatMapError { error in
                    serverChannel.close(promise: nil)
                    return loop.makeFailedFuture(error)
                }
        }
    }
}

public enum LocalPairError: Error, Equatable {
    /// Nobody serves the endpoint.
    case refused(IPEndpoint)
    case socketPair(CInt)
}

/// TLS on top of another connector: the mesh hop with mTLS on. The
/// connection counts as made once the peer is verified; a refused
/// handshake fails the connect (with the ``TLSFailure``), so the pool backs
/// off as from a refused TCP connect. Each connect takes the context in
/// force at that moment (rotation).
public struct TLSConnector: Connector {
    public typealias Observer = @Sendable (_ target: IPEndpoint, _ event: TLSHandler.Event) -> Void
    private let base: any Connector
    private let credentials: TLSCredentialFiles
    private let observe: Observer

    public init(over base: any Connector, credentials: TLSCredentialFiles, observe: @escaping Observer = { _, _ in }) {
        self.base = base
        self.credentials = credentials
        self.observe = observe
    }

    public func connect(to target: IPEndpoint, on loop: EventLoop, timeout: TimeAmount, halfClosure: Bool,
                        initialize: @escaping @Sendable (Channel) throws -> Void) -> EventLoopFuture<Channel> {
        let context = credentials.context
        let observe = self.observe
        return base.connect(to: target, on: loop, timeout: timeout, halfClosure: halfClosure) { channel in
            let connection = try TLSConnection(context: context, role: .client, peerKey: "\(target)",
                                               allocator: channel.allocator)
            let handler = TLSHandler(connection: connection, handshakeTimeout: timeout) { observe(target, $0) }
            try channel.pipeline.syncOperations.addHandler(handler)
            try initialize(channel)
        }.flatMap { channel in
            let handshake = channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.handler(type: TLSHandler.self).handshakeResult
            }
            return handshake.flatMap { result in
                guard let result else { return channel.eventLoop.makeFailedFuture(ChannelError.inappropriateOperationForState) }
                return result.map { _ in channel }
            }
        }
    }
}
