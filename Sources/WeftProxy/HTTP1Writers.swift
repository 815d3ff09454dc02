import NIOCore
import NIOHTTP1
import WeftCore
import WeftMesh

/// The request side of weft's HTTP/1.1 upstream connections: a request's
/// head, body and end as bytes, framed (RFC 9112 §6) the way the app
/// expects:
/// - a `Content-Length` frames the body, and any `Transfer-Encoding` goes;
/// - else a POST, PUT or PATCH over HTTP/1.1 is sent chunked (a mesh
///   request's length is not known until its stream ends), and so is any
///   request a body follows (`AppRequestHead.bodyFollows`: a GET's, say);
/// - else the head's own `Transfer-Encoding: chunked` (a relayed request)
///   is kept, and anything else has no body framing;
/// - a TRACE has no body (RFC 9110 §9.3.8) unless one follows.
///
/// A body is never written after a head that does not frame it: the app
/// would read it as the start of another request.
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

    /// How a head goes out: the framing fields kept or added, and the
    /// bytes it takes (so that its buffer is allocated once, with room).
    public struct HeadPlan {
        public let bytes: Int
        let keepLength: Bool, keepCoding: Bool, addChunked: Bool
    }

    /// Writes the request line and fields of `head`, and chooses the body's
    /// framing.
    public mutating func writeHead(_ head: HTTPRequestHead, into buffer: inout ByteBuffer) {
        let plan = plan(head)
        buffer.reserveCapacity(minimumWritableBytes: plan.bytes)
        write(head, plan, into: &buffer)
    }

    /// Chooses the body's framing for `head` (see the type's rules).
    public mutating func plan(_ head: HTTPRequestHead) -> HeadPlan {
        plan(AppRequestHead(head))
    }

    mutating func plan(_ request: AppRequestHead) -> HeadPlan {
        var hasLength = false, hasChunked = false
        // A peer's target and Host are its `:path` and `:authority` (twice
        // in absolute form): its block's size (32 a field besides the
        // bytes) has room for them and every field line.
        var bytes = (request.uri?.utf8.count ?? 0) + 32
        if let peer = request.peer { bytes += peer.fields.listSize * (peer.absoluteForm ? 2 : 1) }
        for (name, value) in request.headers {
            bytes += name.utf8.count + value.utf8.count + 4
            if name.utf8.count == 14 && name.equalsASCIICaseInsensitive("content-length") {
                hasLength = true
            } else if !hasChunked && name.utf8.count == 17 && name.equalsASCIICaseInsensitive("transfer-encoding") {
                hasChunked = value.equalsASCIICaseInsensitive("chunked")
            }
        }
        // A peer's names are lower case; HTTP/2 carries no Transfer-Encoding.
        request.forEachPeerField { name, _ in
            if name.count == 14 && name.equals("content-length") { hasLength = true }
        }
        let http11 = request.version.major == 1 && request.version.minor >= 1
        let keepLength: Bool, keepCoding: Bool, addChunked: Bool
        switch request.method {
        case .TRACE where !request.bodyFollows:
            (keepLength, keepCoding, addChunked, isChunked) = (false, false, false, false)
        case _ where hasLength:
            (keepLength, keepCoding, addChunked, isChunked) = (true, false, false, false)
        case .POST, .PUT, .PATCH:
            (keepLength, keepCoding, addChunked, isChunked) = (true, false, http11, http11)
        case _ where request.bodyFollows && !hasChunked:
            (keepLength, keepCoding, addChunked, isChunked) = (true, false, http11, http11)
        default:
            (keepLength, keepCoding, addChunked, isChunked) = (true, true, false, http11 && hasChunked)
        }

        return HeadPlan(bytes: bytes + (addChunked ? 28 : 0), keepLength: keepLength, keepCoding: keepCoding,
                        addChunked: addChunked)
    }

    /// Writes `head` as `plan` (from `plan(_:)`) says.
    public func write(_ head: HTTPRequestHead, _ plan: HeadPlan, into buffer: inout ByteBuffer) {
        write(AppRequestHead(head), plan, into: &buffer)
    }

    func write(_ request: AppRequestHead, _ plan: HeadPlan, into buffer: inout ByteBuffer) {
        buffer.writeHead(room: plan.bytes) { text in
            text.append(method: request.method)
            text.append(byte: UInt8(ascii: " "))
            if let uri = request.uri {
                text.append(string: uri)
            } else {
                request.peer?.forEachTargetPart { text.append(bytes: $0) }
            }
            text.append(request.version.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n")
            request.forEachPeerField { name, value in
                text.append(fieldBytes: name, value, keepingLength: plan.keepLength, keepingCoding: plan.keepCoding)
            }
            text.append(fields: request.headers, keepingLength: plan.keepLength, keepingCoding: plan.keepCoding)
            request.peer?.withHost { host in
                text.append("host: ")
                text.append(bytes: host)
                text.append("\r\n")
            }
            if plan.addChunked { text.append("transfer-encoding: chunked\r\n") }
            text.append("\r\n")
        }
    }

    /// What goes before a body part of `count` bytes (a chunk's size line;
    /// `chunkEnd` goes after it), or nil when the body is sent as it is.
    public func chunkPrefix(count: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        isChunked ? Self.chunkSizeLine(count, allocator: allocator) : nil
    }

    /// A chunk's size line for `count` bytes, or nil for none (an empty
    /// part is no chunk: it would end the body).
    static func chunkSizeLine(_ count: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard count > 0 else { return nil }
        var line = allocator.buffer(capacity: 20)
        line.writeChunkSizeLine(count)
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

    /// How a head goes out: the framing fields kept, the bytes it takes,
    /// and the body length it declares.
    struct HeadPlan {
        let bytes: Int
        let keepLength: Bool, keepCoding: Bool
        /// `Transfer-Encoding: chunked` is added (a HEAD's response says
        /// it too, and has no body).
        let addsChunked: Bool
        let declaredLength: Int?
    }

    /// Chooses the body's framing for `head`. A response to HEAD keeps the
    /// framing fields a GET's would have (RFC 9110 §9.3.2), but has no
    /// body, so no chunks.
    mutating func plan(_ head: HTTPResponseHead, toHEAD: Bool = false) -> HeadPlan {
        plan(AppResponseHead(head), toHEAD: toHEAD)
    }

    mutating func plan(_ head: AppResponseHead, toHEAD: Bool = false) -> HeadPlan {
        var hasLength = false
        var declaredLength: Int?
        var bytes = 32 + head.status.reasonPhrase.utf8.count
        for (name, value) in head.headers {
            bytes += name.utf8.count + value.utf8.count + 4
            if name.utf8.count == 14 && name.equalsASCIICaseInsensitive("content-length") {
                hasLength = true
                declaredLength = Int(value)
            }
        }
        head.forEachPeerField { name, value in
            bytes += name.count + value.count + 4
            if name.count == 14 && name.equals("content-length") {
                hasLength = true
                declaredLength = Int(String(decoding: value, as: UTF8.self))
            }
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
        let addsChunked = isChunked
        if toHEAD { isChunked = false }
        return HeadPlan(bytes: bytes + (addsChunked ? 28 : 0), keepLength: keepLength, keepCoding: keepCoding,
                        addsChunked: addsChunked, declaredLength: toHEAD ? nil : declaredLength)
    }

    /// Writes the status line and fields of `head` as `plan` (from
    /// `plan(_:toHEAD:)`) says.
    func write(_ head: HTTPResponseHead, _ plan: HeadPlan, into buffer: inout ByteBuffer) {
        write(AppResponseHead(head), plan, into: &buffer)
    }

    func write(_ head: AppResponseHead, _ plan: HeadPlan, into buffer: inout ByteBuffer) {
        buffer.writeHead(room: plan.bytes) { text in
            text.append(head.version.minor == 0 && head.version.major == 1 ? "HTTP/1.0 " : "HTTP/1.1 ")
            text.append(decimal: Int(head.status.code))
            text.append(byte: UInt8(ascii: " "))
            text.append(string: head.status.reasonPhrase)
            text.append("\r\n")
            text.append(fields: head.headers, keepingLength: plan.keepLength, keepingCoding: plan.keepCoding)
            head.forEachPeerField { name, value in
                text.append(fieldBytes: name, value, keepingLength: plan.keepLength, keepingCoding: plan.keepCoding)
            }
            if plan.addsChunked { text.append("transfer-encoding: chunked\r\n") }
            text.append("\r\n")
        }
    }

    /// Writes what ends a chunked body; nothing for another.
    func writeEnd(_ trailers: HTTPHeaders?, into buffer: inout ByteBuffer) {
        guard isChunked else { return }
        buffer.writeLastChunk(trailers)
    }
}

/// An app connection's response bytes (`HTTP1ResponseWriter`), gathered
/// so that a small response reaches the socket in one write: its head, body
/// parts of up to `copyLimit` bytes and its end are copied into one buffer
/// (`take`). A larger part goes out as it is (`emit`), after what was
/// gathered before it, so a body is never copied whole.
///
/// A final response to HEAD has no body, whatever is written as one
/// (weft's own error responses have one).
struct HTTP1ResponseOutput {
    /// Body parts up to this size are copied; larger ones are not.
    static let copyLimit = 4 * 1024
    /// Past this many gathered bytes, they go out before anything else is
    /// gathered.
    static let gatherLimit = 16 * 1024

    private var writer = HTTP1ResponseWriter()
    private var gathered: ByteBuffer?
    /// Where heads are written: the loop's recycled buffers.
    private let recycled: RecycledBuffers

    init(buffers: RecycledBuffers = RecycledBuffers()) {
        recycled = buffers
    }
    /// The response being written answers HEAD: no body.
    private var bodiless = false

    /// Starts a response (a 1xx, then the final one, for each request).
    mutating func writeHead(_ head: AppResponseHead, toHEAD: Bool, allocator: ByteBufferAllocator) {
        // A 1xx comes before the final response and answers nothing.
        if head.status.code >= 200 || head.status.code == 101 { bodiless = toHEAD }
        let plan = writer.plan(head, toHEAD: bodiless)
        // Room for the head and a small body it announces: one allocation.
        let room = plan.bytes + min(max(plan.declaredLength ?? 0, 0), Self.copyLimit)
        var buffer = gathered ?? recycled.take(capacity: room, allocator: allocator)
        gathered = nil  // so that `buffer` is the storage's only owner
        buffer.reserveCapacity(minimumWritableBytes: room)
        writer.write(head, plan, into: &buffer)
        gathered = buffer
    }

    /// A body part: gathered when small, else passed to `emit` after what
    /// was gathered.
    mutating func writeBody(_ part: ByteBuffer, allocator: ByteBufferAllocator, emit: (ByteBuffer) -> Void) {
        guard !bodiless, part.readableBytes > 0 else { return }
        var buffer = gathered ?? allocator.buffer(capacity: 0)
        gathered = nil
        if buffer.readableBytes + part.readableBytes > Self.gatherLimit, buffer.readableBytes > 0 {
            emit(buffer)
            buffer = allocator.buffer(capacity: 0)
        }
        if writer.isChunked { buffer.writeChunkSizeLine(part.readableBytes) }
        if part.readableBytes <= Self.copyLimit {
            buffer.writeImmutableBuffer(part)
        } else {
            if buffer.readableBytes > 0 { emit(buffer) }
            emit(part)
            buffer = allocator.buffer(capacity: 0)
        }
        if writer.isChunked { buffer.writeStaticString("\r\n") }
        gathered = buffer
    }

    /// Ends the response (a chunked body's last chunk and trailers).
    mutating func writeEnd(_ trailers: HTTPHeaders?, allocator: ByteBufferAllocator) {
        bodiless = false
        guard writer.isChunked else { return }
        var buffer = gathered ?? allocator.buffer(capacity: 0)
        gathered = nil
        writer.writeEnd(trailers, into: &buffer)
        gathered = buffer
    }

    /// What was gathered, to write now; nil when nothing was.
    mutating func take() -> ByteBuffer? {
        defer { gathered = nil }
        guard let gathered, gathered.readableBytes > 0 else { return nil }
        recycled.keep(gathered)
        return gathered
    }
}

/// A loop's buffers for the HTTP/1 heads its connections write (responses
/// to apps, requests to apps), used again once the channel a buffer was
/// written to has let it go: the storage is then the list's alone, and the
/// next head is written into it without allocating. The oldest is handed
/// out first, the one most likely written by then; one a write still holds
/// gets a new storage from `clear`, and the held one is left to the write.
///
/// One list a loop, not a buffer a connection: what is kept does not grow
/// with idle connections. At most `keptCount` buffers of up to
/// `keptCapacity` each. Used on its loop only.
final class RecycledBuffers {
    static let keptCapacity = 4 * 1024
    static let keptCount = 16

    private var buffers = CircularBuffer<ByteBuffer>(initialCapacity: RecycledBuffers.keptCount)

    /// Buffers kept now.
    var count: Int { buffers.count }

    /// An empty buffer of at least `capacity`: the oldest kept, else a new one.
    func take(capacity: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard var buffer = buffers.popFirst() else { return allocator.buffer(capacity: capacity) }
        buffer.clear(minimumCapacity: capacity)
        return buffer
    }

    /// Keeps `buffer`, about to be written, for a later `take`.
    func keep(_ buffer: ByteBuffer) {
        guard buffer.capacity <= Self.keptCapacity, buffers.count < Self.keptCount else { return }
        buffers.append(buffer)
    }
}

extension ByteBuffer {
    /// A chunk's size line: `count` in hex, CRLF. Both writers' chunks.
    mutating func writeChunkSizeLine(_ count: Int) {
        writeString(String(count, radix: 16))
        writeStaticString("\r\n")
    }

    /// The last chunk of a chunked body, its trailers, and the empty line.
    mutating func writeLastChunk(_ trailers: HTTPHeaders?) {
        writeHead(room: 5 + (trailers?.count ?? 0) * 64) { text in
            text.append("0\r\n")
            if let trailers { text.append(fields: trailers, keepingLength: true, keepingCoding: true) }
            text.append("\r\n")
        }
    }
}
