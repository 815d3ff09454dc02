import NIOCore
import NIOHTTP1
import WeftCore
import WeftHTTP2
import WeftMesh

/// Why bytes are not an HTTP/1.1 message (RFC 9112): the connection's
/// framing is lost. An upstream's response is answered `502 bad_response`;
/// an app's request `400` (`431` for a head too large).
public enum HTTP1ParseError: Error, Equatable, CustomStringConvertible {
    case badStatusLine
    case badRequestLine
    /// A method llhttp does not know either (it reads a fixed list).
    case unknownMethod
    /// A request target that is not origin, absolute, authority (CONNECT
    /// only) or asterisk form, or holds bytes outside visible ASCII.
    case badRequestTarget
    case badVersion
    case badField
    /// A line folded onto the one before (obs-fold, RFC 9112 §5.2).
    case foldedField
    case headTooLarge
    case badContentLength
    /// Both Transfer-Encoding and Content-Length: which one frames the body
    /// is the classic smuggling question, so neither is trusted.
    case conflictingFraming
    case unsupportedTransferCoding
    case badChunk
    /// Bytes when no response is due, or past the end of the last one.
    case unsolicited
    /// `101 Switching Protocols`, which no request here asked for
    /// (upgrades are carried as tunnels).
    case unexpectedUpgrade
    /// A 1xx that closes the connection (HTTP/1.0, or `Connection:
    /// close`), so no final response can follow it (RFC 9110 §15.2: a 1xx
    /// is never sent to HTTP/1.0).
    case closingInterim
    /// The input ended inside a message.
    case truncated
    /// A request after one that closed the connection (`Connection: close`,
    /// or HTTP/1.0 without keep-alive).
    case dataAfterClose

    public var description: String {
        switch self {
        case .badStatusLine: "bad status line"
        case .badRequestLine: "bad request line"
        case .unknownMethod: "unknown method"
        case .badRequestTarget: "bad request target"
        case .badVersion: "not HTTP/1.0 or HTTP/1.1"
        case .badField: "bad header field"
        case .foldedField: "folded header field"
        case .headTooLarge: "head too large"
        case .badContentLength: "bad Content-Length"
        case .conflictingFraming: "both Transfer-Encoding and Content-Length"
        case .unsupportedTransferCoding: "a transfer coding other than chunked"
        case .badChunk: "bad chunk"
        case .unsolicited: "a response nobody asked for"
        case .unexpectedUpgrade: "101 Switching Protocols"
        case .closingInterim: "a 1xx response that closes the connection"
        case .truncated: "the input ended inside a message"
        case .dataAfterClose: "a request after one that closed the connection"
        }
    }
}

/// What weft's HTTP/1.1 request and response parsers share (RFC 9112): a
/// message's head found whole over split reads, its body framed by length
/// or chunks, trailers, and the field syntax. The parsers read start lines
/// and decide framing; this reads everything else.
///
/// Strict where leniency is a smuggling risk: CRLF line ends; no bare CR,
/// NUL or other controls in a field; no space before a field's colon; no
/// folded lines; one Content-Length field with one value; chunked as the
/// only transfer coding, never beside a Content-Length. Body bytes are
/// slices of what was read, never copied; field names come lower-cased.
struct HTTP1MessageReader {
    enum Event {
        /// A whole head: start line, fields and the empty line.
        case head(ByteBuffer)
        case body(ByteBuffer)
        /// The message ended, with its trailers (chunked bodies only).
        case end(HTTPHeaders?)
    }

    /// How a message's body is framed (RFC 9112 §6.3).
    enum Body {
        case none
        case length(UInt64)
        case chunked
        /// Until the input ends (responses only).
        case untilClose
    }

    /// What the end of the input meant.
    enum InputEnd {
        /// Between messages (or after a failure): nothing is lost.
        case betweenMessages
        /// The end of a body that runs until close.
        case endOfBody
        /// Inside a message, or with a head due.
        case cutShort
    }

    /// The most bytes a head (start line and fields), or a chunked body's
    /// trailers, may take; NIO's default too.
    static let maxHeadBytes = 80 * 1024
    /// A chunk line longer than this (size and extensions) is refused.
    static let maxChunkLineBytes = 4 * 1024

    private enum State {
        /// No message is under way or due.
        case idle
        /// Reading a head (`scanned` bytes of `held` are known to hold no
        /// end of head).
        case head(scanned: Int)
        case fixedBody(remaining: UInt64)
        /// The body is over (or there is none): the end is next.
        case endDue
        case chunkLine
        case chunkData(remaining: UInt64)
        case chunkDataEnd
        case trailers(scanned: Int)
        case untilClose
        case failed(HTTP1ParseError)
    }

    private var state = State.idle
    /// Bytes of a head, chunk line or trailers that came split over reads.
    private var held: ByteBuffer?

    var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    /// A head is due next.
    mutating func expectHead() {
        state = .head(scanned: 0)
    }

    /// The head just read frames its body so.
    mutating func startBody(_ body: Body) {
        switch body {
        case .none: state = .endDue
        case .length(let length): state = length == 0 ? .endDue : .fixedBody(remaining: length)
        case .chunked: state = .chunkLine
        case .untilClose: state = .untilClose
        }
    }

    /// The next event from `buffer` (and any bytes held from before), or
    /// nil when more bytes are needed (then every byte of `buffer` has been
    /// taken, held when it is part of something unfinished), or when idle
    /// (then none has).
    mutating func next(_ buffer: inout ByteBuffer) throws(HTTP1ParseError) -> Event? {
        switch state {
        case .failed(let error):
            throw error
        case .idle:
            return nil
        case .head(let scanned):
            guard let head = try takeSection(from: &buffer, scanned: scanned, limit: Self.maxHeadBytes,
                                             pending: { .head(scanned: $0) }) else { return nil }
            // The caller frames the body (or fails) before the next call.
            state = .endDue
            return .head(head)
        case .fixedBody(let remaining):
            guard let (slice, left) = Self.take(remaining, from: &buffer) else { return nil }
            state = left == 0 ? .endDue : .fixedBody(remaining: left)
            return .body(slice)
        case .endDue:
            state = .idle
            return .end(nil)
        case .chunkLine:
            guard let line = try takeLine(from: &buffer) else { return nil }
            guard let size = Self.chunkSize(line) else { return try fail(.badChunk) }
            state = size == 0 ? .trailers(scanned: 0) : .chunkData(remaining: size)
            return try next(&buffer)
        case .chunkData(let remaining):
            guard let (slice, left) = Self.take(remaining, from: &buffer) else { return nil }
            state = left == 0 ? .chunkDataEnd : .chunkData(remaining: left)
            return .body(slice)
        case .chunkDataEnd:
            // The CRLF after a chunk's data: an empty line.
            guard let line = try takeLine(from: &buffer) else { return nil }
            guard line.readableBytes == 0 else { return try fail(.badChunk) }
            state = .chunkLine
            return try next(&buffer)
        case .trailers(let scanned):
            // Field lines, then an empty line, which may come at once (no
            // trailers, the usual case).
            if held == nil {
                if buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
                    buffer.moveReaderIndex(forwardBy: 2)
                    state = .idle
                    return .end(nil)
                }
                // Else found as a head's end is: after the last chunk
                // line's CRLF, held in front.
                var lastLineEnd = ByteBuffer()
                lastLineEnd.writeInteger(UInt16(0x0D0A))
                held = lastLineEnd
            }
            guard let section = try takeSection(from: &buffer, scanned: scanned, limit: Self.maxHeadBytes,
                                                pending: { .trailers(scanned: $0) }) else { return nil }
            let trailers = try fields(of: section, from: section.readerIndex + 2)
            // Framing fields have no place in trailers (RFC 9110 §6.5.1),
            // and llhttp, which apps' other clients use, refuses them: so
            // does weft (names are lower-cased already).
            if trailers.contains(where: { $0.0 == "content-length" || $0.0 == "transfer-encoding" }) {
                return try fail(.badField)
            }
            state = .idle
            return .end(trailers.isEmpty ? nil : HTTPHeaders(trailers))
        case .untilClose:
            guard buffer.readableBytes > 0 else { return nil }
            return .body(buffer.readSlice(length: buffer.readableBytes) ?? ByteBuffer())
        }
    }

    /// The input ended; the reader is idle after.
    mutating func inputEnded() -> InputEnd {
        defer {
            if case .failed = state {} else { state = .idle }
            held = nil
        }
        switch state {
        case .idle, .failed: return .betweenMessages
        case .untilClose: return .endOfBody
        default: return .cutShort
        }
    }

    /// Fails the message for good: every later `next` throws `error`.
    mutating func fail<T>(_ error: HTTP1ParseError) throws(HTTP1ParseError) -> T {
        state = .failed(error)
        held = nil
        throw error
    }

    /// Up to `remaining` body bytes of `buffer` as a slice, and how many
    /// are still to come; nil when `buffer` is empty.
    private static func take(_ remaining: UInt64, from buffer: inout ByteBuffer) -> (ByteBuffer, UInt64)? {
        guard buffer.readableBytes > 0 else { return nil }
        let count = Int(min(remaining, UInt64(buffer.readableBytes)))
        guard let slice = buffer.readSlice(length: count) else { return nil }
        return (slice, remaining - UInt64(count))
    }

    // MARK: sections and lines

    /// The bytes up to and including the first empty line (CRLF CRLF), from
    /// what is held and `buffer`; nil (holding the bytes) when that line
    /// has not come yet.
    private mutating func takeSection(from buffer: inout ByteBuffer, scanned: Int, limit: Int,
                                      pending: (Int) -> State) throws(HTTP1ParseError) -> ByteBuffer? {
        if held == nil {
            // The usual case: the whole section in this read.
            if let end = Self.endOfSection(in: buffer, from: buffer.readerIndex) {
                guard end - buffer.readerIndex <= limit else { return try fail(.headTooLarge) }
                return buffer.readSlice(length: end - buffer.readerIndex)
            }
            guard buffer.readableBytes <= limit else { return try fail(.headTooLarge) }
            if buffer.readableBytes > 0 {
                held = buffer
                buffer.moveReaderIndex(to: buffer.writerIndex)
            }
            state = pending(max(0, (held?.readableBytes ?? 0) - 3))
            return nil
        }
        guard var section = held else { return nil }
        let before = section.readableBytes
        section.writeImmutableBuffer(buffer)
        let searchFrom = section.readerIndex + scanned
        guard let end = Self.endOfSection(in: section, from: searchFrom) else {
            guard section.readableBytes <= limit else { return try fail(.headTooLarge) }
            buffer.moveReaderIndex(to: buffer.writerIndex)
            held = section
            state = pending(max(0, section.readableBytes - 3))
            return nil
        }
        let length = end - section.readerIndex
        guard length <= limit else { return try fail(.headTooLarge) }
        held = nil
        buffer.moveReaderIndex(forwardBy: length - before)
        return section.readSlice(length: length)
    }

    /// The index just past the first CRLF CRLF at or after `from`.
    private static func endOfSection(in buffer: ByteBuffer, from: Int) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            let start = from - buffer.readerIndex
            guard bytes.count >= 4, start <= bytes.count - 4 else { return nil }
            // From LF to LF (most bytes are none), eight bytes at a time
            // while there are eight: the section ends at an LF after CR LF CR.
            var index = start + 3
            while index < bytes.count {
                if index + 8 <= bytes.count {
                    let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                    let lf = Self.zeroBytes(word ^ 0x0A0A_0A0A_0A0A_0A0A)
                    guard lf != 0 else {
                        index += 8
                        continue
                    }
                    // The lowest flag is the first LF (flags above it may be wrong).
                    index += lf.trailingZeroBitCount / 8
                } else if bytes[index] != 0x0A {
                    index += 1
                    continue
                }
                if bytes[index - 1] == 0x0D && bytes[index - 2] == 0x0A && bytes[index - 3] == 0x0D {
                    return buffer.readerIndex + index + 1
                }
                index += 1
            }
            return nil
        }
    }

    /// A flag (0x80) in the byte of `word` that is zero, the lowest one
    /// exact; a byte above a zero one may be flagged wrongly.
    @inline(__always)
    static func zeroBytes(_ word: UInt64) -> UInt64 {
        (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080
    }

    /// One CRLF-ended line of a chunked body (without its CRLF), from what
    /// is held and `buffer`; nil (holding the bytes) until it is whole.
    private mutating func takeLine(from buffer: inout ByteBuffer) throws(HTTP1ParseError) -> ByteBuffer? {
        var source = buffer
        if var line = held {
            line.writeImmutableBuffer(buffer)
            source = line
        }
        let view = source.readableBytesView
        guard let lf = view.firstIndex(of: 0x0A) else {
            guard source.readableBytes <= Self.maxChunkLineBytes else { return try fail(.badChunk) }
            held = source
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return nil
        }
        let length = lf - source.readerIndex
        guard length >= 1, length <= Self.maxChunkLineBytes, view[lf - 1] == 0x0D else { return try fail(.badChunk) }
        let consumedFromBuffer = length + 1 - (held?.readableBytes ?? 0)
        held = nil
        buffer.moveReaderIndex(forwardBy: consumedFromBuffer)
        return source.getSlice(at: source.readerIndex, length: length - 1)
    }

    /// `chunk-size [; extensions]` (RFC 9112 §7.1): hex digits that fit 63
    /// bits, then nothing, or extensions, which are not read; nil when the
    /// line is not that. No whitespace after the size: llhttp refuses it.
    private static func chunkSize(_ line: ByteBuffer) -> UInt64? {
        var size: UInt64 = 0
        var digits = 0
        let view = line.readableBytesView
        var index = view.startIndex
        while index < view.endIndex {
            let byte = view[index]
            let value: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = byte - UInt8(ascii: "A") + 10
            default: value = 0xFF
            }
            guard value != 0xFF else { break }
            guard size >> 59 == 0 else { return nil }
            size = size << 4 | UInt64(value)
            digits += 1
            index += 1
        }
        guard digits > 0, Self.isChunkExtensions(view[index...]) else { return nil }
        return size
    }

    /// Chunk extensions (RFC 9112 §7.1.1), which nobody uses, in the one
    /// form llhttp also reads: `;` then a name of token bytes, and maybe
    /// `=` and a token or a quoted string of token bytes and `;`; no
    /// whitespace anywhere, nothing empty after a `;`. Nothing at all is
    /// extensions too.
    private static func isChunkExtensions(_ bytes: ByteBufferView.SubSequence) -> Bool {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            guard bytes[index] == UInt8(ascii: ";") else { return false }
            index += 1
            let segmentStart = index
            while index < bytes.endIndex, isTokenByte(bytes[index]) { index += 1 }
            if index < bytes.endIndex, bytes[index] == UInt8(ascii: "=") {
                index += 1
                if index < bytes.endIndex, bytes[index] == UInt8(ascii: "\"") {
                    index += 1
                    while index < bytes.endIndex, isTokenByte(bytes[index]) || bytes[index] == UInt8(ascii: ";") {
                        index += 1
                    }
                    guard index < bytes.endIndex, bytes[index] == UInt8(ascii: "\"") else { return false }
                    index += 1
                } else {
                    while index < bytes.endIndex, isTokenByte(bytes[index]) { index += 1 }
                }
            }
            guard index > segmentStart else { return false }
        }
        return true
    }

    // MARK: fields

    /// Bytes no line may hold: controls other than HTAB (NUL and bare CR
    /// among them), and DEL.
    static func isForbiddenInLine(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != 0x09) || byte == 0x7F
    }

    /// A request head's field lines as bytes (names lower-cased), and what
    /// they say, the request rules' checks included: no String is made.
    mutating func requestHeadFields(of section: ByteBuffer, from start: Int) throws(HTTP1ParseError)
        -> (fields: HTTP2Fields, facts: HTTP1HeadFacts) {
        var facts = HTTP1HeadFacts()
        var fields = HTTP2Fields(capacity: 16, bytes: section.readableBytes)
        try forEachField(of: section, from: start) { name, value in
            facts.note(name: name, value: value, forRequest: true)
            facts.listBytes += name.count + value.count + 32
            fields.append(lowercasing: name, value: value)
        }
        return (fields, facts)
    }

    /// A response head's field lines as bytes (names lower-cased), and
    /// what they say of its framing and connection: no String is made.
    mutating func headFieldBlock(of section: ByteBuffer, from start: Int) throws(HTTP1ParseError)
        -> (fields: HTTP2Fields, facts: HTTP1HeadFacts) {
        var facts = HTTP1HeadFacts()
        var fields = HTTP2Fields(capacity: 16, bytes: section.readableBytes)
        try forEachField(of: section, from: start) { name, value in
            facts.note(name: name, value: value, forRequest: false)
            fields.append(lowercasing: name, value: value)
        }
        return (fields, facts)
    }

    /// The field lines from `start` to the empty line that ends `section`
    /// (RFC 9112 §5): `token ":" OWS value OWS CRLF`, the value without
    /// the whitespace around it. A bad line fails the reader.
    mutating func fields(of section: ByteBuffer, from start: Int) throws(HTTP1ParseError) -> [(String, String)] {
        var fields: [(String, String)] = []
        try forEachField(of: section, from: start) { name, value in
            fields.append((Self.lowercasedName(name), String(decoding: value, as: UTF8.self)))
        }
        return fields
    }

    /// Calls `body` with each field line's name and value (without the
    /// whitespace around it) from `start` to the empty line that ends
    /// `section`; a bad line fails the reader.
    private mutating func forEachField(of section: ByteBuffer, from start: Int,
                                       _ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Void)
        throws(HTTP1ParseError) {
        let parsed: HTTP1ParseError? = section.withUnsafeReadableBytes { bytes in
            Self.byteClasses.withUnsafeBufferPointer { classes in
                var index = start - section.readerIndex
                let end = bytes.count - 2  // the empty line's CRLF
                while index < end {
                    let nameStart = index
                    while index < end, classes[Int(bytes[index])] & Self.token != 0 { index += 1 }
                    guard index > nameStart else {
                        return bytes[index] == 0x20 || bytes[index] == 0x09 ? .foldedField : .badField
                    }
                    guard index < end, bytes[index] == UInt8(ascii: ":") else { return .badField }
                    let nameEnd = index
                    index += 1
                    while index < end, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 }
                    let valueStart = index
                    var valueEnd = index
                    // Up to the CR, which the section's end guarantees:
                    // eight bytes at a time while none of them may be a
                    // control byte or DEL, then one at a time (the CR is
                    // near, or a tab).
                    var wordwise = true
                    while true {
                        if wordwise && index + 8 <= bytes.count {
                            let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                            if !Self.mayHoldControl(word) {
                                // Value bytes and spaces: the value ends after
                                // the last byte that is no space.
                                let nonSpace = word ^ 0x2020_2020_2020_2020
                                if nonSpace != 0 { valueEnd = index + (63 - nonSpace.leadingZeroBitCount) / 8 + 1 }
                                index += 8
                                continue
                            }
                            wordwise = false
                        }
                        let byteClass = classes[Int(bytes[index])]
                        if byteClass & Self.valueByte != 0 {
                            index += 1
                            valueEnd = index
                        } else if byteClass & Self.whitespace != 0 {
                            index += 1
                        } else if bytes[index] == 0x0D {
                            break
                        } else {
                            return .badField
                        }
                    }
                    guard bytes[index + 1] == 0x0A else { return .badField }
                    let name = UnsafeRawBufferPointer(rebasing: bytes[nameStart..<nameEnd])
                    // llhttp, which apps' other clients use, takes only
                    // spaces after a Content-Length's digits; a tab there
                    // (whitespace to RFC 9110) is refused, as weft may
                    // refuse more than llhttp but never read otherwise.
                    if valueEnd < index, name.count == 14,
                       bytes[valueEnd..<index].contains(0x09),
                       name.assumingMemoryBound(to: UInt8.self).equalsASCIICaseInsensitive("content-length") {
                        return .badContentLength
                    }
                    index += 2
                    body(name, UnsafeRawBufferPointer(rebasing: bytes[valueStart..<valueEnd]))
                }
                return nil
            }
        }
        if let parsed { return try fail(parsed) }
    }

    /// Whether any of the eight bytes of `word` may be below 0x20 (CR, HTAB
    /// and the controls) or DEL: never false when one is (a true may be
    /// wrong, and the bytes are then read one at a time).
    @inline(__always)
    static func mayHoldControl(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        let below = (word &- ones &* 0x20) & ~word & highs
        let del = word ^ (ones &* 0x7F)
        return below | ((del &- ones) & ~del & highs) != 0
    }

    /// A field name (token bytes, so ASCII) lower-cased as it is copied: as
    /// HTTP/2 carries it (RFC 9113 §8.2.1), and as weft relays it to
    /// HTTP/1 peers, so the translation has nothing left to lower-case.
    private static func lowercasedName(_ bytes: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: bytes.count) { out in
            for index in 0..<bytes.count {
                let byte = bytes[index]
                out[index] = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            }
            return bytes.count
        }
    }

    /// What each byte may be in a field line, looked up in the field loop:
    /// a name's (`token`), a value's other than whitespace (`valueByte`:
    /// visible ASCII and obs-text), or whitespace (SP, HTAB). Any other
    /// byte (controls, DEL) is in no field; CR ends one.
    private static let byteClasses: [UInt8] = (0...255).map { value in
        let byte = UInt8(value)
        var byteClass: UInt8 = 0
        if isTokenByte(byte) { byteClass |= token }
        if byte == 0x20 || byte == 0x09 {
            byteClass |= whitespace
        } else if !isForbiddenInLine(byte) {
            byteClass |= valueByte
        }
        return byteClass
    }
    private static let token: UInt8 = 1
    private static let valueByte: UInt8 = 2
    private static let whitespace: UInt8 = 4

    /// tchar (RFC 9110 §5.6.2).
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    // MARK: framing fields

    /// The framing a head's fields gave (both fields checked in every
    /// head, bodiless or not): its Content-Length, and whether it has
    /// Transfer-Encoding and whether that is exactly `chunked`. Fails the
    /// reader on a bad length or on both fields at once.
    mutating func framing(of facts: HTTP1HeadFacts) throws(HTTP1ParseError)
        -> (length: UInt64?, coded: Bool, chunked: Bool) {
        if facts.badLength { return try fail(.badContentLength) }
        if facts.codings > 0 && facts.length != nil { return try fail(.conflictingFraming) }
        return (facts.length, facts.codings > 0, facts.codings == 1 && facts.chunked)
    }

}

/// What a head's fields say, gathered while weft's parsers read them (or
/// by one walk, `init(of:)`, for a head from anywhere else), so that
/// nothing walks the fields again for it: its framing (Content-Length,
/// Transfer-Encoding), its `Connection` options, and what the request
/// rules check (`HTTP1RequestRules`).
public struct HTTP1HeadFacts: Equatable, Sendable {
    public internal(set) var connection = ConnectionOptions()
    /// The Content-Length, when there is one good one.
    var length: UInt64?
    /// A Content-Length repeated, or not one number.
    var badLength = false
    /// Transfer codings named (a field of none, or with an empty member,
    /// counts as codings weft does not know).
    var codings = 0
    /// The first coding is `chunked`.
    var chunked = false
    /// Transfer-Encoding fields, and whether each says just `chunked`.
    var transferEncodingFields = 0
    var onlyChunked = true
    /// Host fields.
    var hosts = 0
    /// The first field a request rule refuses on its own: a Host with a
    /// byte no host may hold, or a Content-Length that is not digits
    /// fitting 63 bits (no peer carries it).
    var fieldViolation: HTTP1RequestRules.Violation?
    /// HPACK's size of the fields as they go on (name + value + 32 each).
    var listBytes = 0

    public init() {}

    /// The facts of a head's `fields` (as weft's parser leaves them), by
    /// one walk.
    public init(of fields: HTTP2Fields) {
        fields.forEach { name, value in
            note(name: name, value: value, forRequest: true)
            listBytes += name.count + value.count + 32
        }
    }

    /// What one field says, if it is a field the facts tell of (told by
    /// its length first: most fields are none of these).
    /// `forRequest`: what the request rules check is noted too (a
    /// response's framing and options are all its parser needs).
    /// Whether the fields announce a body, as `MeshTranslation.declaresBody`
    /// reads them; nil when the Content-Length fields do not settle it
    /// (repeated, or no number), for that to read.
    var declaresBody: Bool? {
        if transferEncodingFields > 0 { return true }
        if badLength { return nil }
        return (length ?? 0) != 0
    }

    mutating func note(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, forRequest: Bool) {
        let name = name.assumingMemoryBound(to: UInt8.self)
        let value = value.assumingMemoryBound(to: UInt8.self)
        switch name.count {
        case 4 where forRequest && name.equalsASCIICaseInsensitive("host"):
            hosts += 1
            if fieldViolation == nil, !value.allSatisfy(HTTP1RequestRules.isHostByte) { fieldViolation = .invalidHost }
        case 10 where name.equalsASCIICaseInsensitive("connection"):
            connection.add(value)
        case 14 where name.equalsASCIICaseInsensitive("content-length"):
            // One field, one value: llhttp, which apps' other clients
            // use, refuses repeats and lists, so weft does too.
            let parsed = Self.contentLength(value)
            if fieldViolation == nil, parsed.map({ $0 > UInt64(Int64.max) }) ?? true {
                fieldViolation = .contentLengthOutOfRange
            }
            if length != nil || badLength {
                badLength = true
            } else if let parsed {
                length = parsed
            } else {
                badLength = true
            }
        case 17 where name.equalsASCIICaseInsensitive("transfer-encoding"):
            transferEncodingFields += 1
            if !Self.trimmed(value).equalsASCIICaseInsensitive("chunked") { onlyChunked = false }
            var members = 0
            HTTPFieldSyntax.forEachListMember(of: value) { coding in
                members += 1
                codings += 1
                chunked = codings == 1 && coding.count == 7 && coding.equalsASCIICaseInsensitive("chunked")
            }
            // A field of no codings, or with an empty member (`chunked,`),
            // counts as codings weft does not know. RFC 9110 §5.6.1 lets a
            // recipient skip empty members, but llhttp reads `chunked,` as
            // a coding after chunked (found by FuzzTranslation), and a
            // message framed one way by weft and another by a peer is how
            // requests are smuggled: weft frames neither.
            if members == 0 || value.count(where: { $0 == UInt8(ascii: ",") }) >= members { codings += 2 }
        default:
            break
        }
    }

    /// A Content-Length value: digits (the parser took the whitespace
    /// around them) that fit 64 bits.
    /// `value` without the spaces and tabs around it (weft's parsers leave
    /// none; a head from elsewhere may have some).
    private static func trimmed(_ value: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        var first = 0, last = value.count
        while first < last && HTTPFieldSyntax.isSpaceOrTab(value[first]) { first += 1 }
        while last > first && HTTPFieldSyntax.isSpaceOrTab(value[last - 1]) { last -= 1 }
        return UnsafeBufferPointer(rebasing: value[first..<last])
    }

    static func contentLength(_ value: UnsafeBufferPointer<UInt8>) -> UInt64? {
        guard !value.isEmpty else { return nil }
        var number: UInt64 = 0
        for byte in value {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = number.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            number = sum
        }
        return number
    }
}
