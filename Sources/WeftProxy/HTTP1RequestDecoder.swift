import NIOCore
import NIOHTTP1

/// An app connection's bytes as request parts, read by
/// `HTTP1RequestParser`: every part a read holds is passed on in that read.
/// A parse error goes down the pipeline (to `HTTPRequestErrorHandler`),
/// after which nothing more is read. The app finishing its input inside a
/// request is the error `truncated`.
///
/// After a request that opens a tunnel, the bytes that follow are kept,
/// and passed on as bytes when this handler leaves the pipeline (to the
/// tunnel that replaced the HTTP handlers).
final class HTTP1RequestDecoder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = HTTPServerRequestPart

    private var parser = HTTP1RequestParser()
    private var failed = false
    /// Inside `channelRead`'s loop: a close now is the handlers' own doing
    /// (an answer that closes), not the app cutting a request short.
    private var decoding = false
    /// Bytes after a tunnelling request, for the tunnel.
    private var tunnelBytes: ByteBuffer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        guard !failed else { return }
        if parser.isTunnelling {
            keepForTunnel(&buffer)
            return
        }
        decoding = true
        defer { decoding = false }
        do {
            while let event = try parser.next(&buffer) {
                // Kept before the end goes on: the handler it reaches may
                // remove this one at once.
                if parser.isTunnelling { keepForTunnel(&buffer) }
                switch event {
                case .head(let head): context.fireChannelRead(wrapInboundOut(.head(head)))
                case .body(let body): context.fireChannelRead(wrapInboundOut(.body(body)))
                case .end(let trailers): context.fireChannelRead(wrapInboundOut(.end(trailers)))
                }
            }
        } catch {
            failed = true
            context.fireErrorCaught(error)
        }
    }

    private func keepForTunnel(_ buffer: inout ByteBuffer) {
        guard buffer.readableBytes > 0 else { return }
        if tunnelBytes == nil {
            tunnelBytes = buffer
        } else {
            tunnelBytes?.writeBuffer(&buffer)
        }
        buffer.moveReaderIndex(to: buffer.writerIndex)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let tunnelBytes, tunnelBytes.readableBytes > 0 {
            self.tunnelBytes = nil
            context.fireChannelRead(NIOAny(tunnelBytes))
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event { inputEnded(context: context) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        inputEnded(context: context)
        context.fireChannelInactive()
    }

    private func inputEnded(context: ChannelHandlerContext) {
        guard !failed else { return }
        do {
            try parser.inputEnded()
        } catch {
            guard !decoding else { return }
            failed = true
            context.fireErrorCaught(error)
        }
    }
}
