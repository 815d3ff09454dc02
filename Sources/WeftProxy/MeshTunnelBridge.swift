#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import WeftHTTP2
import WeftMesh

/// Joins a TCP socket and a mesh CONNECT stream (SPEC §4): bytes both
/// ways, a half-close maps to END_STREAM and back, a reset to RST_STREAM
/// and back.
///
/// Sits last in the socket's pipeline and is the stream's handler. On the
/// sending node the socket is the app's; on the receiving node it is the
/// connection to the local app. Until both ends exist, bytes wait: socket
/// reads are held, and stream bytes are not consumed (the window bounds them).
final class MeshTunnelBridge: ChannelDuplexHandler, MeshStreamHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Nil on the sending node until the stream is opened.
    private var connection: MeshConnection?
    private let logger: Logger
    private(set) var streamID: Int32?
    private var context: ChannelHandlerContext?
    /// Stream bytes that arrived before the socket was attached.
    private var pendingFromStream: [ByteBuffer] = []
    private var pendingStreamEnd = false
    /// Socket bytes that arrived before the stream was ready.
    private var pendingFromSocket: [ByteBuffer] = []
    private var pendingSocketEnd = false
    private var unconsumed = 0
    private var readHeld = false
    private var streamOpen = false
    private var finished = false
    /// END_STREAM sent (the socket's peer finished) / received (we shut the
    /// socket's output). With both, the socket closing is the clean end.
    private var sentEnd = false
    private var receivedEnd = false
    /// Bytes read from the socket, and bytes the stream brought for it.
    private(set) var bytesFromSocket = 0
    private(set) var bytesToSocket = 0

    init(connection: MeshConnection?, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// The stream is usable: the peer answered 200 (sending node) or we
    /// did (receiving node). Queued socket bytes go out now.
    func streamReady(_ streamID: Int32) {
        self.streamID = streamID
        streamOpen = true
        let queued = pendingFromSocket
        pendingFromSocket.removeAll()
        for buffer in queued { sendToStream(buffer) }
        if pendingSocketEnd {
            sentEnd = true
            try? connection?.sendEnd(streamID: streamID)
        }
        releaseReadIfPossible()
    }

    // MARK: socket side

    /// Records the stream this bridge will carry (sending node, before the
    /// peer's 200 arrives).
    func streamOpened(_ streamID: Int32, on connection: MeshConnection) {
        self.streamID = streamID
        self.connection = connection
    }

    /// Socket bytes read before the tunnel existed (detection, an upgrade
    /// request's head) go first.
    func prepend(_ buffer: ByteBuffer) {
        if buffer.readableBytes > 0 { pendingFromSocket.insert(buffer, at: 0) }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { flushPendingToSocket(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        flushPendingToSocket(context)
        context.fireChannelActive()
    }

    private func flushPendingToSocket(_ context: ChannelHandlerContext) {
        let queued = pendingFromStream
        pendingFromStream.removeAll()
        for buffer in queued { context.write(wrapOutboundOut(buffer), promise: nil) }
        context.flush()
        if pendingStreamEnd { shutdownOutputAfterWrites(context) }
        consumeIfWritable()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        bytesFromSocket += buffer.readableBytes
        if streamOpen { sendToStream(buffer) } else { pendingFromSocket.append(buffer) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            if streamOpen, let streamID {
                sentEnd = true
                try? connection?.sendEnd(streamID: streamID)
            } else {
                pendingSocketEnd = true
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { consumeIfWritable() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !finished, let streamID {
            if receivedEnd {
                // Our output was already shut, so NIO reports the peer's FIN
                // as a plain close (no `inputClosed`): the clean end. The
                // stream finishes by itself once its queued DATA is out.
                if !sentEnd {
                    sentEnd = true
                    try? connection?.sendEnd(streamID: streamID)
                }
            } else {
                finished = true
                connection?.reset(streamID: streamID, errorCode: .cancel)
            }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !finished, let streamID {
            finished = true
            let reset = (error as? IOError).map { $0.errnoCode == ECONNRESET || $0.errnoCode == EPIPE } ?? false
            connection?.reset(streamID: streamID, errorCode: reset ? .connectError : .cancel)
        }
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if streamOpen, let streamID, connection?.isWritable(streamID: streamID) == true {
            context.read()
        } else {
            readHeld = true
        }
    }

    /// Shuts the socket's output once every queued byte is written. (NIO
    /// turns an output shutdown on a socket whose input is closed into a
    /// full close that would drop queued writes; writes complete in order,
    /// so an empty write's completion marks the right moment.)
    private func shutdownOutputAfterWrites(_ context: ChannelHandlerContext) {
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(mode: .output, promise: nil)
        }
    }

    private func sendToStream(_ buffer: ByteBuffer) {
        guard let streamID else { return }
        do {
            try connection?.sendData(streamID: streamID, buffer)
        } catch {
            context?.close(promise: nil)
        }
    }

    private func releaseReadIfPossible() {
        guard readHeld, let context, let streamID, connection?.isWritable(streamID: streamID) == true else { return }
        readHeld = false
        context.read()
    }

    private func consumeIfWritable() {
        guard unconsumed > 0, let streamID, context?.channel.isWritable == true else { return }
        connection?.consume(streamID: streamID, bytes: unconsumed)
        unconsumed = 0
    }

    // MARK: stream side (MeshStreamHandler)

    /// The sending node hears the peer's answer to its CONNECT here.
    func streamHeaders(_ headers: HTTP2Fields, kind: HTTP2HeadersKind, endStream: Bool) {
        guard kind == .response, let streamID else { return }
        let status = headers.first { $0.name == ":status" }?.value
        if status == "200" {
            streamReady(streamID)
        } else {
            logger.debug("mesh CONNECT refused", metadata: ["status": "\(status ?? "?")"])
            finished = true
            connection?.reset(streamID: streamID, errorCode: .cancel)
            if let channel = context?.channel { RelayHandler.reset(channel) }
        }
    }

    func streamData(_ data: ByteBuffer, endStream: Bool) {
        unconsumed += data.readableBytes
        bytesToSocket += data.readableBytes
        if endStream { receivedEnd = true }
        if let context, context.channel.isActive {
            if data.readableBytes > 0 { context.writeAndFlush(wrapOutboundOut(data), promise: nil) }
            if endStream { shutdownOutputAfterWrites(context) }
            consumeIfWritable()
        } else {
            if data.readableBytes > 0 { pendingFromStream.append(data) }
            if endStream { pendingStreamEnd = true }
        }
    }

    func streamClosed(_ errorCode: HTTP2ErrorCode) {
        guard !finished else { return }
        finished = true
        guard let channel = context?.channel else { return }
        if errorCode == .noError {
            // Both directions ended cleanly: close once queued bytes are out.
            context?.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                channel.close(promise: nil)
            }
        } else {
            RelayHandler.reset(channel)
        }
    }

    func streamWritabilityChanged(_ writable: Bool) {
        if writable { releaseReadIfPossible() }
    }
}
