import NIOCore
import NIOHTTP1

/// What the HTTP/1 parser tests share: input cut into reads, and events
/// written down as text.
enum HTTP1ParserTestSupport {
    /// `raw`'s bytes in reads of `step` bytes (one empty read for no bytes).
    static func reads(of raw: String, step: Int) -> [ByteBuffer] {
        let bytes = Array(raw.utf8)
        guard !bytes.isEmpty else { return [ByteBuffer()] }
        return stride(from: 0, to: bytes.count, by: step).map { offset in
            ByteBuffer(bytes: bytes[offset..<min(offset + step, bytes.count)])
        }
    }

    static func fields(_ headers: HTTPHeaders) -> [String] {
        headers.map { "\($0.name): \($0.value)" }
    }
}

extension Array where Element == String {
    /// `body <bytes>`, joined to a body part just before it (parsers split
    /// bodies where the reads split them).
    mutating func appendBody(_ body: ByteBuffer) {
        let text = String(buffer: body)
        if let last, last.hasPrefix("body ") { self[count - 1] = last + text } else { append("body " + text) }
    }

    /// `end [name: value, ...]`, the trailers if any.
    mutating func appendEnd(_ trailers: HTTPHeaders?) {
        append("end \(trailers.map(HTTP1ParserTestSupport.fields) ?? [])")
    }
}
