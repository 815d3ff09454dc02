import Logging
import NIOCore
import NIOPosix
import WeftCore
import WeftHTTP2
import WeftMesh
import WeftNetfilter
import WeftObservability

/// A CONNECT stream arriving on the mesh listener: opaque TCP (or an
/// upgraded HTTP/1.1 connection) for a local app port. Connects to the app,
/// answers 200, and hands the stream to a `MeshTunnelBridge`.
final class MeshConnectStream: MeshStreamHandler {
    private let connection: MeshConnection
    private let streamID: Int32
    private let context: MeshListenerContext
    private var bridge: MeshTunnelBridge?

    init(connection: MeshConnection, streamID: Int32, context: MeshListenerContext) {
        self.connection = connection
        self.streamID = streamID
        self.context = context
    }

    func streamHeaders(_ headers: HTTP2Fields, kind: HTTP2HeadersKind, endStream: Bool) {
        guard kind == .request, bridge == nil else { return }
        let authority = headers.first { $0.name == ":authority" }?.value
        let destinationText = headers.first { $0.name == MeshTranslation.destinationHeader }?.value ?? authority
        guard let destination = destinationText.flatMap(IPEndpoint.init) else {
            return refuse(.badMeshRequest)
        }
        let target: IPEndpoint
        switch context.localTarget(for: destination, from: connection.peerIdentity) {
        case .success(let local): target = local
        case .failure(let reason): return refuse(reason)
        }
        let bridge = MeshTunnelBridge(connection: connection, logger: context.logger)
        self.bridge = bridge
        if endStream { bridge.streamData(ByteBuffer(), endStream: true) }
        let boundBridge = NIOLoopBound(bridge, eventLoop: context.pool.eventLoop)
        let bound = NIOLoopBound(self, eventLoop: context.pool.eventLoop)
        context.connector.connect(to: target, on: context.pool.eventLoop, timeout: context.connectTimeout,
                                  halfClosure: true) { channel in
                try channel.pipeline.syncOperations.addHandler(boundBridge.value)
            }
            .whenComplete { result in
                let stream = bound.value
                switch result {
                case .success(let appChannel):
                    let startedAt = NIODeadline.now()
                    let metrics = stream.context.metrics
                    let counted = NIOLoopBound(boundBridge.value, eventLoop: appChannel.eventLoop)
                    let peer = stream.connection.peerIdentity
                    appChannel.closeFuture.whenComplete { _ in
                        let bridge = counted.value
                        var session = RequestRecord.session(.inbound, cluster: nil, endpoint: target, startedAt: startedAt,
                                                            received: bridge.bytesToSocket, sent: bridge.bytesFromSocket)
                        session.peerIdentity = peer
                        metrics.record(session)
                    }
                    do {
                        try stream.connection.respond(streamID: stream.streamID,
                                                      headers: [HTTP2Header(":status", "200")], endStream: false)
                        stream.bridge?.streamReady(stream.streamID)
                    } catch {
                        stream.connection.reset(streamID: stream.streamID, errorCode: .internalError)
                    }
                case .failure:
                    stream.refuse(.connectFailure)
                }
            }
    }

    // Until the app socket exists the bridge buffers; after, it handles all.
    func streamData(_ data: ByteBuffer, endStream: Bool) { bridge?.streamData(data, endStream: endStream) }
    func streamClosed(_ errorCode: HTTP2ErrorCode) { bridge?.streamClosed(errorCode) }
    func streamWritabilityChanged(_ writable: Bool) { bridge?.streamWritabilityChanged(writable) }

    private func refuse(_ reason: ErrorReason) {
        context.logger.debug("mesh CONNECT failed", metadata: ["reason": "\(reason.rawValue)"])
        var record = RequestRecord(direction: .inbound)
        record.peerIdentity = connection.peerIdentity
        record.status = reason.status
        record.reason = reason
        context.metrics.record(record)
        ErrorResponder.respond(reason, on: connection, streamID: streamID)
        bridge = nil
    }
}
