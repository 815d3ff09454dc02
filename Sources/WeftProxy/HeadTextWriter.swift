import NIOCore
import NIOHTTP1
import WeftHTTP2
import WeftMesh

/// A head's text written straight into bytes reserved for it at once.
///
/// Each of ByteBuffer's write calls checks its capacity and that it owns
/// its storage, some 250 instructions a call, and a head takes a dozen
/// calls and more. Here the head pays those checks once. Every append still
/// checks the room left: a head that does not fit (a plan that counted
/// short) is not written at all (`ByteBuffer.writeHeadText`), and is
/// written again with twice the room (`ByteBuffer.writeHead`). Every
/// field line weft writes to HTTP/1 goes through `append(fields:...)`
/// (Strings) or `append(fieldBytes:...)` (a peer's bytes).
struct HeadTextWriter {
    private let base: UnsafeMutableRawPointer
    private let room: Int
    fileprivate private(set) var count = 0
    fileprivate private(set) var overflowed = false

    fileprivate init(base: UnsafeMutableRawPointer, room: Int) {
        self.base = base
        self.room = room
    }

    mutating func append(_ text: StaticString) {
        copy(UnsafeRawPointer(text.utf8Start), text.utf8CodeUnitCount)
    }

    /// (Labelled, so that a literal takes the `StaticString` overload: a
    /// literal would otherwise be made a String and copied through its
    /// UTF-8 view, several times the cost.)
    mutating func append(string text: String) {
        // `initialize(from:)` copies a String's bytes in one go, small
        // strings included, without the closure and stack copy that
        // `withContiguousStorageIfAvailable` costs.
        let length = text.utf8.count
        guard !overflowed, length <= room - count else { return overflowed = true }
        let target = UnsafeMutableRawBufferPointer(start: base + count, count: length).bindMemory(to: UInt8.self)
        let (_, copied) = target.initialize(from: text.utf8)
        count += copied
    }

    /// A request method's name, the common ones from static text.
    mutating func append(method: HTTPMethod) {
        if let name = method.staticName { append(name) } else { append(string: method.rawValue) }
    }

    mutating func append(bytes: UnsafeRawBufferPointer) {
        copy(bytes.baseAddress, bytes.count)
    }

    mutating func append(byte: UInt8) {
        guard !overflowed, count < room else { return overflowed = true }
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    /// `value` in decimal (a status code).
    mutating func append(decimal value: Int) {
        guard value >= 0 else { return append(string: String(value)) }
        var divisor = 1
        while divisor <= value / 10 { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            append(byte: UInt8(ascii: "0") + UInt8(rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }

    /// `name: value` CRLF for each field, but `content-length` and
    /// `transfer-encoding` only when kept.
    mutating func append(fields: HTTPHeaders, keepingLength: Bool, keepingCoding: Bool) {
        for (name, value) in fields {
            switch name.utf8.count {
            case 14 where !keepingLength && name.equalsASCIICaseInsensitive("content-length"): continue
            case 17 where !keepingCoding && name.equalsASCIICaseInsensitive("transfer-encoding"): continue
            default:
                append(string: name)
                append(": ")
                append(string: value)
                append("\r\n")
            }
        }
    }

    /// The same for one field of a peer's, its bytes as they came (its
    /// name lower case, as HTTP/2 has it).
    mutating func append(fieldBytes name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer,
                         keepingLength: Bool, keepingCoding: Bool) {
        switch name.count {
        case 14 where !keepingLength && name.equals("content-length"): return
        case 17 where !keepingCoding && name.equals("transfer-encoding"): return
        default:
            copy(name.baseAddress, name.count)
            append(": ")
            copy(value.baseAddress, value.count)
            append("\r\n")
        }
    }

    private mutating func copy(_ source: UnsafeRawPointer?, _ length: Int) {
        guard !overflowed, length <= room - count else { return overflowed = true }
        if let source, length > 0 { (base + count).copyMemory(from: source, byteCount: length) }
        count += length
    }
}

extension ByteBuffer {
    /// Writes a head with `body`, into `room` bytes reserved at once when
    /// it fits (its plan's count), else into twice as many, and so on:
    /// `body` may run more than once.
    mutating func writeHead(room: Int, _ body: (inout HeadTextWriter) -> Void) {
        var room = max(room, 64)
        while !writeHeadText(room: room, body) { room *= 2 }
    }

    /// Writes a head with `body` into `room` bytes reserved at once. False,
    /// with nothing written, when it did not fit.
    mutating func writeHeadText(room: Int, _ body: (inout HeadTextWriter) -> Void) -> Bool {
        var fitted = false
        writeWithUnsafeMutableBytes(minimumWritableBytes: room) { out in
            guard let base = out.baseAddress else { return 0 }
            var writer = HeadTextWriter(base: base, room: min(room, out.count))
            body(&writer)
            guard !writer.overflowed else { return 0 }
            fitted = true
            return writer.count
        }
        return fitted
    }
}
