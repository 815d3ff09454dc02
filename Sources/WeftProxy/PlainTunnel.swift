import Logging
import NIOCore
import NIOPosix
import WeftCore
import WeftObservability
import WeftTransport
import WeftUpstream

/// An HTTP/1.1 Upgrade (WebSocket) to a plain endpoint: weft connects to
/// the endpoint, sends the request head as raw bytes, and from then on the
/// app connection is a TCP relay (`RelayHandler` pair); the endpoint's
/// `101` comes back as relayed bytes.
///
/// The app's reads are held until the relay is in place, and its HTTP
/// handler leaves only then, handing the relay the bytes the app sent
/// after the request (its partner is connected by that time).
enum PlainTunnel {
    static func open(on channel: Channel, connector: any Connector, lease: Lease, head: ByteBuffer,
                     timeout: TimeAmount, logger: Logger, metrics: ProxyMetrics, cluster: String,
                     removeHTTPHandlers: @escaping (Channel) -> Void,
                     failed: @escaping () -> Void) {
        let held = NIOLoopBound(HeldLease(lease), eventLoop: channel.eventLoop)
        let startedAt = NIODeadline.now()
        let endpoint = lease.endpoint
        let (downstream, upstream) = RelayHandler.pair(downstreamClosed: { received, sent, _ in
            held.value.finish(.success)
            metrics.record(.session(.outbound, cluster: cluster, endpoint: endpoint, startedAt: startedAt,
                                    received: received, sent: sent))
        })
        let relays = NIOLoopBound((downstream, upstream), eventLoop: channel.eventLoop)
        let remove = NIOLoopBound(removeHTTPHandlers, eventLoop: channel.eventLoop)
        let fail = NIOLoopBound(failed, eventLoop: channel.eventLoop)
        connector.connect(to: lease.endpoint, on: channel.eventLoop, timeout: timeout, halfClosure: true) { upstreamChannel in
                try upstreamChannel.pipeline.syncOperations.addHandler(relays.value.1)
            }
            .whenComplete { result in
                switch result {
                case .success(let upstreamChannel):
                    guard channel.isActive else {
                        held.value.finish(.success)
                        upstreamChannel.close(promise: nil)
                        return
                    }
                    upstreamChannel.writeAndFlush(head, promise: nil)
                    do {
                        try channel.pipeline.syncOperations.addHandler(relays.value.0)
                    } catch {
                        upstreamChannel.close(promise: nil)
                        channel.close(promise: nil)
                        return
                    }
                    remove.value(channel)
                    channel.setOption(.autoRead, value: true).whenFailure { _ in channel.close(promise: nil) }
                    channel.read()
                case .failure(let error):
                    logger.debug("plain endpoint unreachable for upgrade", metadata: ["error": "\(error)"])
                    held.value.finish(.failure)
                    fail.value()
                }
            }
    }
}
