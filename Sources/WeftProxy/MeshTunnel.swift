import Logging
import NIOCore
import WeftCore
import WeftHTTP2
import WeftMesh
import WeftObservability
import WeftUpstream

/// Opens a CONNECT stream for an app connection that is not (or is no
/// longer) HTTP: opaque TCP to a meshed endpoint, or an HTTP/1.1 upgrade
/// such as WebSocket (SPEC §4).
enum MeshTunnel {
    /// Installs a `MeshTunnelBridge` last in `channel`'s pipeline and opens
    /// the stream to `lease`'s endpoint, which the tunnel holds until the
    /// app connection closes. `initialBytes` (already read from the app) go
    /// first. If the peer cannot be reached the app connection is reset.
    /// When the app connection closes, its session is recorded for
    /// `cluster` (`metrics`, and the access log).
    static func open(on channel: Channel, pool: MeshConnectionPool, peer: IPEndpoint,
                     lease: Lease, initialBytes: ByteBuffer?, logger: Logger, metrics: ProxyMetrics, cluster: String,
                     installed: ((Channel) -> Void)? = nil) {
        let destination = lease.endpoint
        let held = NIOLoopBound(HeldLease(lease), eventLoop: channel.eventLoop)
        let startedAt = NIODeadline.now()
        let headers: HTTP2Fields = [
            HTTP2Header(":method", "CONNECT"),
            HTTP2Header(":authority", destination.description),
            HTTP2Header(MeshTranslation.destinationHeader, destination.description),
        ]
        // The bridge goes in first, so no byte read from now on is lost:
        // it buffers and holds reads until the stream is ready.
        let bridge = MeshTunnelBridge(connection: nil, logger: logger)
        if let initialBytes { bridge.prepend(initialBytes) }
        let counted = NIOLoopBound(bridge, eventLoop: channel.eventLoop)
        channel.closeFuture.whenComplete { _ in
            held.value.finish(.success)
            let bridge = counted.value
            metrics.record(.session(.outbound, cluster: cluster, endpoint: destination, startedAt: startedAt,
                                    received: bridge.bytesFromSocket, sent: bridge.bytesToSocket))
        }
        do {
            try channel.pipeline.syncOperations.addHandler(bridge)
        } catch {
            RelayHandler.reset(channel)
            return
        }
        installed?(channel)
        let boundBridge = NIOLoopBound(bridge, eventLoop: channel.eventLoop)
        pool.connection(to: peer).whenComplete { result in
            guard channel.isActive else { return }
            let bridge = boundBridge.value
            switch result {
            case .success(let connection):
                do {
                    let streamID = try connection.openStream(headers: headers, endStream: false, handler: bridge)
                    bridge.streamOpened(streamID, on: connection)
                    channel.setOption(.autoRead, value: true).whenFailure { _ in channel.close(promise: nil) }
                } catch {
                    logger.debug("mesh CONNECT not opened", metadata: ["error": "\(error)"])
                    RelayHandler.reset(channel)
                }
            case .failure(let error):
                logger.debug("mesh peer unreachable", metadata: ["peer": "\(peer)", "error": "\(error)"])
                held.value.finish(.failure)
                RelayHandler.reset(channel)
            }
        }
    }
}
