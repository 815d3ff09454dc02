#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// One side of a TCP relay: bytes read on this channel are written to the
/// partner's channel, and the partner's to this one.
///
/// Sits alone at the end of each of the two pipelines. Invariants:
/// - Backpressure: a side only reads while its partner is writable; a held
///   `read` is released when the partner's writability comes back.
/// - Half-close: EOF on one side shuts down the partner's output once every
///   byte before it is written; NIO closes a channel whose both halves are done.
/// - Reset: a reset on one side resets the partner (`SO_LINGER` 0).
/// Both channels live on the same event loop, so the pair shares no locks.
final class RelayHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: RelayHandler?
    private var context: ChannelHandlerContext?
    private var readHeld = false
    private var outputShutdownRequested = false
    private let onClose: (_ bytesRead: Int, _ bytesWritten: Int, _ reset: Bool) -> Void

    /// Bytes read from this side's peer / written to it.
    private var bytesRead = 0
    private var bytesWritten = 0
    private var sawReset = false
    /// Set once this handler has left its pipeline (its channel is gone).
    private var isGone = false
    /// Whether this side's connection was ever established. An upstream
    /// whose connect failed reports nothing to its partner: the connect
    /// failure path answers the app (with a reset), not a clean close.
    private var wasActive = false
    /// Bytes the app sent before this relay existed (read while detecting
    /// its protocol): written first, once this side connects, before any
    /// byte the partner reads from then on.
    var firstBytes: ByteBuffer?
    /// Read while the partner was still connecting (at most one read: reads
    /// are held until the partner is writable); written once it is.
    private var heldForPartner: [ByteBuffer] = []

    private init(onClose: @escaping (Int, Int, Bool) -> Void) {
        self.onClose = onClose
    }

    /// Two handlers wired to each other. `onClose` runs once per side when
    /// its handler leaves the pipeline.
    static func pair(
        downstreamClosed: @escaping (Int, Int, Bool) -> Void,
        upstreamClosed: @escaping (Int, Int, Bool) -> Void = { _, _, _ in }
    ) -> (downstream: RelayHandler, upstream: RelayHandler) {
        let downstream = RelayHandler(onClose: downstreamClosed)
        let upstream = RelayHandler(onClose: upstreamClosed)
        downstream.partner = upstream
        upstream.partner = downstream
        return (downstream, upstream)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        wasActive = context.channel.isActive
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        isGone = true
        partner = nil
        onClose(bytesRead, bytesWritten, sawReset)
    }

    // MARK: events from this side's channel

    /// The upstream became connected; if the app's side went away while
    /// the connect was pending, there is nobody to relay for.
    func channelActive(context: ChannelHandlerContext) {
        wasActive = true
        context.fireChannelActive()
        if partner == nil || partner?.isGone == true {
            context.close(promise: nil)
        } else {
            if let firstBytes, firstBytes.readableBytes > 0 {
                bytesWritten += firstBytes.readableBytes
                context.writeAndFlush(wrapOutboundOut(firstBytes), promise: nil)
            }
            firstBytes = nil
            if let partner, !partner.heldForPartner.isEmpty {
                let held = partner.heldForPartner
                partner.heldForPartner = []
                for buffer in held { writeFromPartner(buffer) }
                context.flush()
            }
            // The partner may have held a read while we were connecting.
            partner?.partnerBecameWritable()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        bytesRead += buffer.readableBytes
        if let partner, !partner.wasActive {
            heldForPartner.append(buffer)
            return
        }
        partner?.writeFromPartner(buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.flushFromPartner()
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            partner?.shutdownOutputFromPartner()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if wasActive { partner?.partnerClosed() }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard wasActive else {
            context.close(promise: nil)
            return
        }
        if let error = error as? IOError, error.errnoCode == ECONNRESET || error.errnoCode == EPIPE {
            sawReset = true
            partner?.resetFromPartner()
        } else {
            partner?.partnerClosed()
        }
        context.close(promise: nil)
    }

    // MARK: outbound operations on this side's channel

    func read(context: ChannelHandlerContext) {
        if let partner, partner.isWritable {
            context.read()
        } else {
            readHeld = true
        }
    }

    // MARK: requests from the partner

    private var isWritable: Bool { context?.channel.isWritable ?? false }

    private func writeFromPartner(_ buffer: ByteBuffer) {
        bytesWritten += buffer.readableBytes
        context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func flushFromPartner() {
        context?.flush()
    }

    private func partnerBecameWritable() {
        guard readHeld, let context else { return }
        readHeld = false
        context.read()
    }

    /// The partner's peer finished sending: finish ours once queued bytes are out.
    private func shutdownOutputFromPartner() {
        guard let context, !outputShutdownRequested else { return }
        outputShutdownRequested = true
        // Writes complete in order, so an empty write's completion means every
        // byte queued before it reached the socket.
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(mode: .output, promise: nil)
        }
    }

    /// The partner's channel is gone: write out what is queued, then close.
    /// After a clean half-close both ways NIO has usually closed us already,
    /// and this close is a no-op.
    private func partnerClosed() {
        guard let context else { return }
        outputShutdownRequested = true
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    /// The partner's peer reset: reset ours too instead of a clean FIN.
    private func resetFromPartner() {
        guard let context else { return }
        sawReset = true
        outputShutdownRequested = true
        Self.reset(context.channel)
    }
}

extension RelayHandler {
    /// Resets a connection (RST rather than FIN): how a refused or failed
    /// TCP connection is reported to the app.
    static func reset(_ channel: Channel) {
        if let provider = channel as? SocketOptionProvider {
            provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
                channel.close(promise: nil)
            }
        } else {
            channel.close(promise: nil)
        }
    }
}
