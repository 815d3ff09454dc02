import NIOCore
import NIOHTTP1
import WeftCore

/// The request side of weft's HTTP/1.1 upstream connections: a request's
/// head, body and end as bytes, framed (RFC 9112 §6) the way the app
/// expects:
/// - a `Content-Length` frames the body, and any `Transfer-Encoding` goes;
/// - else a POST, PUT or PATCH over HTTP/1.1 is sent chunked (a mesh
///   request's length is not known until its stream ends);
/// - else the head's own `Transfer-Encoding: chunked` (a relayed request)
///   is kept, and anything else has no body framing;
/// - a TRACE never has a body (RFC 9110 §9.3.8).
public struct HTTP1RequestWriter {
    /// What follows each chunk's data.
    public static let chunkEnd: ByteBuffer = {
        var buffer = ByteBuffer()
        buffer.writeStaticString("\r\n")
        return buffer
    }()

    /// Whether the request being written has a chunked body.
    public private(set) var isChunked = false

    public init() {}

    /// Writes the request line and fields of `head`, and chooses the body's
    /// framing.
    public mutating func writeHead(_ head: HTTPRequestHead, into buffer: inout ByteBuffer) {
        var hasLength = false, hasChunked = false
        var bytes = head.uri.utf8.count + 32
        for (name, value) in head.headers {
            bytes += name.utf8.count + value.utf8.count + 4
            if name.utf8.count == 14 && name.equalsASCIICaseInsensitive("content-length") {
                hasLength = true
            } else if !hasChunked && name.utf8.count == 17 && name.equalsASCIICaseInsensitive("transfer-encoding") {
                hasChunked = value.equalsASCIICaseInsensitive("chunked")
            }
        }
        let http11 = head.version.major == 1 && head.version.minor >= 1
        let keepLength: Bool, keepCoding: Bool, addChunked: Bool
        switch head.method {
        case .TRACE:
            (keepLength, keepCoding, addChunked, isChunked) = (false, false, false, false)
        case _ where hasLength:
            (keepLength, keepCoding, addChunked, isChunked) = (true, false, false, false)
        case .POST, .PUT, .PATCH:
            (keepLength, keepCoding, addChunked, isChunked) = (true, false, http11, http11)
        default:
            (keepLength, keepCoding, addChunked, isChunked) = (true, true, false, http11 && hasChunked)
        }

        buffer.reserveCapacity(minimumWritableBytes: bytes + (addChunked ? 28 : 0))
        buffer.writeString(head.method.rawValue)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(head.uri)
        buffer.writeStaticString(head.version.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n")
        buffer.writeHTTPFields(head.headers, keepingLength: keepLength, keepingCoding: keepCoding)
        if addChunked { buffer.writeStaticString("transfer-encoding: chunked\r\n") }
        buffer.writeStaticString("\r\n")
    }

    /// What goes before a body part of `count` bytes (a chunk's size line;
    /// `chunkEnd` goes after it), or nil when the body is sent as it is.
    public func chunkPrefix(count: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        isChunked ? Self.chunkSizeLine(count, allocator: allocator) : nil
    }

    /// A chunk's size line for `count` bytes, or nil for none (an empty
    /// part is no chunk: it would end the body). Both writers' chunks.
    static func chunkSizeLine(_ count: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard count > 0 else { return nil }
        var line = allocator.buffer(capacity: 20)
        line.writeString(String(count, radix: 16))
        line.writeStaticString("\r\n")
        return line
    }

    /// Writes what ends a chunked body: the last chunk and the trailers.
    /// Nothing for a body sent as it is (its length ends it).
    public func writeEnd(_ trailers: HTTPHeaders?, into buffer: inout ByteBuffer) {
        guard isChunked else { return }
        buffer.writeLastChunk(trailers)
    }
}

/// The response side of the app-facing HTTP/1.1 connection: a response's
/// head and end as bytes, framed as NIO's `HTTPResponseEncoder` frames
/// them:
/// - no body in a 1xx, 204 or 304: `Content-Length` and
///   `Transfer-Encoding` go;
/// - else a `Content-Length` frames the body, and any `Transfer-Encoding`
///   goes;
/// - else HTTP/1.1 bodies are chunked, and HTTP/1.0 ones end with the
///   connection.
struct HTTP1ResponseWriter {
    /// Whether the response being written has a chunked body.
    private(set) var isChunked = false

    /// Writes the status line and fields of `head`, and chooses the body's
    /// framing. A response to HEAD keeps the framing fields a GET's would
    /// have (RFC 9110 §9.3.2), but has no body, so no chunks.
    mutating func writeHead(_ head: HTTPResponseHead, toHEAD: Bool = false, into buffer: inout ByteBuffer) {
        var hasLength = false
        var bytes = 64
        for (name, value) in head.headers {
            bytes += name.utf8.count + value.utf8.count + 4
            if name.utf8.count == 14 && name.equalsASCIICaseInsensitive("content-length") { hasLength = true }
        }
        let http11 = head.version.major == 1 && head.version.minor >= 1
        let keepLength: Bool, keepCoding: Bool
        if !head.status.mayHaveResponseBody {
            (keepLength, keepCoding, isChunked) = (false, false, false)
        } else if hasLength {
            (keepLength, keepCoding, isChunked) = (true, false, false)
        } else {
            (keepLength, keepCoding, isChunked) = (true, !http11, http11)
        }
        buffer.reserveCapacity(minimumWritableBytes: bytes + (isChunked ? 28 : 0))
        buffer.writeStaticString(head.version.minor == 0 && head.version.major == 1 ? "HTTP/1.0 " : "HTTP/1.1 ")
        buffer.writeString(String(head.status.code))
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(head.status.reasonPhrase)
        buffer.writeStaticString("\r\n")
        buffer.writeHTTPFields(head.headers, keepingLength: keepLength, keepingCoding: keepCoding)
        if isChunked { buffer.writeStaticString("transfer-encoding: chunked\r\n") }
        buffer.writeStaticString("\r\n")
        if toHEAD { isChunked = false }
    }

    /// What goes before a body part of `count` bytes (a chunk's size line;
    /// `HTTP1RequestWriter.chunkEnd` goes after it), or nil when the body
    /// is sent as it is.
    func chunkPrefix(count: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        isChunked ? HTTP1RequestWriter.chunkSizeLine(count, allocator: allocator) : nil
    }

    /// Writes what ends a chunked body; nothing for another.
    func writeEnd(_ trailers: HTTPHeaders?, into buffer: inout ByteBuffer) {
        guard isChunked else { return }
        buffer.writeLastChunk(trailers)
    }
}

/// Writes app responses as HTTP/1.1 bytes (`HTTP1ResponseWriter`), in place
/// of NIO's `HTTPResponseEncoder`, with one write per part.
///
/// The handler serving requests tells it each request's method before the
/// response (`RequestMethod`, an outbound user event, so it stays in order
/// with the writes): a response to HEAD is written without a body, whatever
/// is written as one (weft's own error responses have one).
final class HTTP1ResponseEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = ByteBuffer

    /// The method of the request the next final response answers.
    struct RequestMethod {
        let method: HTTPMethod
    }

    private var writer = HTTP1ResponseWriter()
    /// The next final response answers a HEAD request.
    private var nextIsToHEAD = false
    /// The response being written answers a HEAD request: no body.
    private var bodiless = false

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let request = event as? RequestMethod else {
            return context.triggerUserOutboundEvent(event, promise: promise)
        }
        nextIsToHEAD = request.method == .HEAD
        promise?.succeed(())
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            // A 1xx comes before the final response and answers nothing.
            if head.status.code >= 200 || head.status.code == 101 {
                bodiless = nextIsToHEAD
                nextIsToHEAD = false
            }
            var bytes = context.channel.allocator.buffer(capacity: 0)
            writer.writeHead(head, toHEAD: bodiless, into: &bytes)
            context.write(wrapOutboundOut(bytes), promise: promise)
        case .body where bodiless:
            promise?.succeed(())
        case .body(let body):
            let part: ByteBuffer
            switch body {
            case .byteBuffer(let buffer): part = buffer
            case .fileRegion:
                // Nothing in weft sends a file; refused rather than dropped.
                promise?.fail(ChannelError.operationUnsupported)
                return
            }
            if let prefix = writer.chunkPrefix(count: part.readableBytes, allocator: context.channel.allocator) {
                context.write(wrapOutboundOut(prefix), promise: nil)
                context.write(wrapOutboundOut(part), promise: nil)
                context.write(wrapOutboundOut(HTTP1RequestWriter.chunkEnd), promise: promise)
            } else {
                context.write(wrapOutboundOut(part), promise: promise)
            }
        case .end(let trailers):
            bodiless = false
            guard writer.isChunked else {
                // Nothing to write; an empty write keeps the promise in order.
                if let promise { context.write(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise) }
                return
            }
            var bytes = context.channel.allocator.buffer(capacity: 5)
            writer.writeEnd(trailers, into: &bytes)
            context.write(wrapOutboundOut(bytes), promise: promise)
        }
    }
}

extension ByteBuffer {
    /// `name: value` CRLF for each field, but `content-length` and
    /// `transfer-encoding` only when kept; each field one copy of its
    /// bytes, into capacity reserved once.
    mutating func writeHTTPFields(_ headers: HTTPHeaders, keepingLength: Bool = true, keepingCoding: Bool = true) {
        for (name, value) in headers {
            switch name.utf8.count {
            case 14 where !keepingLength && name.equalsASCIICaseInsensitive("content-length"): continue
            case 17 where !keepingCoding && name.equalsASCIICaseInsensitive("transfer-encoding"): continue
            default: writeHTTPField(name: name, value: value)
            }
        }
    }

    mutating func writeHTTPField(name: String, value: String) {
        var name = name, value = value
        name.withUTF8 { nameBytes in
            value.withUTF8 { valueBytes in
                let count = nameBytes.count + valueBytes.count + 4
                writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
                    guard let base = out.baseAddress else { return 0 }  // never: at least 4 bytes
                    var at = 0
                    if let source = nameBytes.baseAddress { (base + at).copyMemory(from: source, byteCount: nameBytes.count) }
                    at += nameBytes.count
                    base.storeBytes(of: UInt8(ascii: ":"), toByteOffset: at, as: UInt8.self)
                    base.storeBytes(of: UInt8(ascii: " "), toByteOffset: at + 1, as: UInt8.self)
                    at += 2
                    if let source = valueBytes.baseAddress { (base + at).copyMemory(from: source, byteCount: valueBytes.count) }
                    at += valueBytes.count
                    base.storeBytes(of: UInt8(ascii: "\r"), toByteOffset: at, as: UInt8.self)
                    base.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: at + 1, as: UInt8.self)
                    return count
                }
            }
        }
    }

    /// The last chunk of a chunked body, its trailers, and the empty line.
    mutating func writeLastChunk(_ trailers: HTTPHeaders?) {
        writeStaticString("0\r\n")
        if let trailers { writeHTTPFields(trailers) }
        writeStaticString("\r\n")
    }
}
