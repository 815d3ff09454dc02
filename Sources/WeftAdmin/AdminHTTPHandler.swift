import NIOCore
import NIOHTTP1

/// Sits after NIOHTTP1's server codec and answers each request from the
/// router once its end arrives. Request bodies are read and dropped (admin
/// routes take their arguments in the query string).
final class AdminHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let router: AdminRouter
    private var request: HTTPRequestHead?

    init(router: @escaping AdminRouter) {
        self.router = router
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(context: context, to: head)
        }
    }

    private func respond(context: ChannelHandlerContext, to head: HTTPRequestHead) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        router(AdminRequest(method: head.method, uri: head.uri), context.eventLoop)
            .hop(to: context.eventLoop)
            .whenComplete { result in
                let (handler, context) = bound.value
                let answer = (try? result.get()) ?? AdminResponse(status: .internalServerError, body: "internal error\n")
                handler.write(answer, to: head, context: context)
            }
    }

    private func write(_ answer: AdminResponse, to head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        var buffer = context.channel.allocator.buffer(capacity: answer.body.utf8.count)
        buffer.writeString(answer.body)
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: answer.contentType)
        headers.add(name: "content-length", value: String(buffer.readableBytes))
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "connection", value: "close") }
        let responseHead = HTTPResponseHead(version: head.version, status: answer.status, headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
