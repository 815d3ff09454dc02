import NIOCore
import NIOHTTP1
import WeftCore
import WeftHTTP2
import WeftMesh

/// A request head as weft's parser reads it: the request line, and its
/// fields as the bytes that came (`HTTP2Fields`; names lower-cased, values
/// without the whitespace around them). The mesh upgrade, the route stage
/// and the access log read those bytes; `head` makes Strings of them for
/// the stages that need text (a plain endpoint's request).
public struct HTTP1RequestHead {
    public var method: HTTPMethod
    public var uri: String
    public var version: HTTPVersion
    public var fields: HTTP2Fields
    /// Whether the head announces a body (`MeshTranslation.declaresBody`):
    /// any Transfer-Encoding, or a Content-Length other than 0.
    public let declaresBody: Bool

    /// `declaresBody`: when the caller read it already (the parser, from
    /// the head's facts); else it is read from `fields`.
    public init(method: HTTPMethod, uri: String, version: HTTPVersion, fields: HTTP2Fields, declaresBody: Bool? = nil) {
        self.method = method
        self.uri = uri
        self.version = version
        self.fields = fields
        self.declaresBody = declaresBody ?? MeshTranslation.declaresBody(fields)
    }

    /// A head of Strings, its fields as the parser would leave them.
    public init(_ head: HTTPRequestHead) {
        self.init(method: head.method, uri: head.uri, version: head.version,
                  fields: HTTP2Fields(lowercasing: head.headers))
    }

    /// The head with its fields as `HTTPHeaders`.
    public var head: HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: uri, headers: HTTPHeaders(fields.pairs()))
    }

    /// Whether the request turns the connection into a tunnel
    /// (`MeshTranslation.opensTunnel`); `connection`: its `Connection`
    /// options, as the parser read them.
    public func opensTunnel(connection: ConnectionOptions) -> Bool {
        MeshTranslation.opensTunnel(method: method, fields: fields, connection: connection)
    }
}

/// The request side of an app's HTTP/1.x connection (RFC 9112), as a
/// state machine with no I/O: bytes in, heads, body slices and ends out,
/// one at a time (`next`). Requests may follow each other in one read
/// (pipelining).
///
/// The head, body and field rules are `HTTP1MessageReader`'s; this reads
/// request lines and frames requests: a length, chunked, or no body (a
/// request never runs until close). A request that opens a tunnel (CONNECT,
/// or an Upgrade) is the last one read: the bytes after its end belong to
/// the tunnel, and are left in the buffer (`isTunnelling`).
///
/// It accepts no more than llhttp (NIO's decoder, which weft used before)
/// would, and reads what it accepts as llhttp does: the fuzzer
/// (FuzzTranslation) holds it to that. Request lines are stricter: one
/// space between parts, llhttp's methods only, targets of visible ASCII.
public struct HTTP1RequestParser {
    public enum Event {
        /// A request head, with what its fields said (read with them, so
        /// that nothing walks them again for it).
        case head(HTTP1RequestHead, HTTP1HeadFacts)
        case body(ByteBuffer)
        /// The request ended, with its trailers (chunked bodies only).
        case end(HTTPHeaders?)
    }

    private var reader = HTTP1MessageReader()
    /// The request being read opens a tunnel: nothing after its end is read.
    private var opensTunnel = false
    /// A tunnelling request ended: the rest of the input is the tunnel's.
    public private(set) var isTunnelling = false
    /// A request that closes the connection ended: no other may follow.
    private var closesConnection = false
    private var closed = false
    /// The input ended: nothing more is read.
    private var ended = false

    public init() {}

    /// The next event from `buffer` (and any bytes held from before), or
    /// nil when more bytes are needed: then every byte of `buffer` has
    /// been taken (held when it is part of something unfinished), unless
    /// the connection is tunnelling, when none is.
    public mutating func next(_ buffer: inout ByteBuffer) throws(HTTP1ParseError) -> Event? {
        if isTunnelling || ended { return nil }
        if reader.isIdle {
            // Empty lines between requests are skipped (RFC 9112 §2.2, as
            // llhttp does), after a closing request too.
            Self.skipLineEnds(&buffer)
            guard buffer.readableBytes > 0 else { return nil }
            if closed { return try reader.fail(.dataAfterClose) }
            reader.expectHead()
        }
        switch try reader.next(&buffer) {
        case nil:
            return nil
        case .head(let section):
            let (head, facts) = try parseHead(section)
            try startBody(head, facts)
            return .head(head, facts)
        case .body(let body):
            return .body(body)
        case .end(let trailers):
            if opensTunnel {
                opensTunnel = false
                isTunnelling = true
            }
            closed = closesConnection
            return .end(trailers)
        }
    }

    /// The app finished sending (or the connection closed): nothing more
    /// is read. Throws `truncated` when that cut a request short (a head
    /// begun, a body unfinished).
    public mutating func inputEnded() throws(HTTP1ParseError) {
        if isTunnelling || ended { return }
        ended = true
        switch reader.inputEnded() {
        case .betweenMessages, .endOfBody: return
        case .cutShort: throw .truncated
        }
    }

    private static func skipLineEnds(_ buffer: inout ByteBuffer) {
        let skipped = buffer.readableBytesView.prefix { $0 == 0x0D || $0 == 0x0A }.count
        buffer.moveReaderIndex(forwardBy: skipped)
    }

    // MARK: the request line

    private mutating func parseHead(_ head: ByteBuffer) throws(HTTP1ParseError)
        -> (HTTP1RequestHead, HTTP1HeadFacts) {
        // `method SP request-target SP HTTP/1.x CRLF` (RFC 9112 §3).
        let parsed: Result<(method: HTTPMethod, uri: String, version: HTTPVersion, next: Int), HTTP1ParseError> =
            head.withUnsafeReadableBytes { bytes in
                var index = 0
                while index < bytes.count, bytes[index] != UInt8(ascii: " ") {
                    guard HTTP1MessageReader.isTokenByte(bytes[index]) else { return .failure(.badRequestLine) }
                    index += 1
                }
                guard index > 0, index < bytes.count else { return .failure(.badRequestLine) }
                guard let method = Self.method(UnsafeRawBufferPointer(rebasing: bytes[0..<index])) else {
                    return .failure(.unknownMethod)
                }
                index += 1
                let targetStart = index
                while index < bytes.count, bytes[index] > 0x20, bytes[index] < 0x7F { index += 1 }
                let target = UnsafeRawBufferPointer(rebasing: bytes[targetStart..<index])
                guard index < bytes.count, bytes[index] == UInt8(ascii: " ") else {
                    return .failure(target.isEmpty || index < bytes.count && bytes[index] != 0x0D
                        ? .badRequestTarget : .badRequestLine)
                }
                guard Self.isValidTarget(target, method: method) else { return .failure(.badRequestTarget) }
                index += 1
                // `HTTP/1.0` or `HTTP/1.1`, then CRLF.
                guard bytes.count - index >= 10,
                      bytes[index] == UInt8(ascii: "H"), bytes[index + 1] == UInt8(ascii: "T"),
                      bytes[index + 2] == UInt8(ascii: "T"), bytes[index + 3] == UInt8(ascii: "P"),
                      bytes[index + 4] == UInt8(ascii: "/"), bytes[index + 6] == UInt8(ascii: "."),
                      bytes[index + 8] == 0x0D, bytes[index + 9] == 0x0A else { return .failure(.badRequestLine) }
                guard bytes[index + 5] == UInt8(ascii: "1"),
                      bytes[index + 7] == UInt8(ascii: "0") || bytes[index + 7] == UInt8(ascii: "1") else {
                    return .failure(.badVersion)
                }
                let version: HTTPVersion = bytes[index + 7] == UInt8(ascii: "0") ? .http1_0 : .http1_1
                return .success((method, String(decoding: target, as: UTF8.self), version, index + 10))
            }
        let line: (method: HTTPMethod, uri: String, version: HTTPVersion, next: Int)
        switch parsed {
        case .success(let parsedLine): line = parsedLine
        case .failure(let error): return try reader.fail(error)
        }
        let (fields, facts) = try reader.requestHeadFields(of: head, from: head.readerIndex + line.next)
        return (HTTP1RequestHead(method: line.method, uri: line.uri, version: line.version, fields: fields,
                                 declaresBody: facts.declaresBody), facts)
    }

    /// The methods llhttp reads (its `HTTP_METHOD_MAP`), the common ones
    /// first. SOURCE and QUERY are raw, as NIO's decoder gave them; so is
    /// M-SEARCH: NIO's case for it is spelt `MSEARCH`, which would go on so.
    private static let methods: [(String, HTTPMethod)] = [
        ("GET", .GET), ("POST", .POST), ("PUT", .PUT), ("HEAD", .HEAD), ("DELETE", .DELETE), ("PATCH", .PATCH),
        ("OPTIONS", .OPTIONS), ("CONNECT", .CONNECT), ("TRACE", .TRACE), ("COPY", .COPY), ("LOCK", .LOCK),
        ("MKCOL", .MKCOL), ("MOVE", .MOVE), ("PROPFIND", .PROPFIND), ("PROPPATCH", .PROPPATCH),
        ("SEARCH", .SEARCH), ("UNLOCK", .UNLOCK), ("BIND", .BIND), ("REBIND", .REBIND), ("UNBIND", .UNBIND),
        ("ACL", .ACL), ("REPORT", .REPORT), ("MKACTIVITY", .MKACTIVITY), ("CHECKOUT", .CHECKOUT),
        ("MERGE", .MERGE), ("M-SEARCH", .RAW(value: "M-SEARCH")), ("NOTIFY", .NOTIFY), ("SUBSCRIBE", .SUBSCRIBE),
        ("UNSUBSCRIBE", .UNSUBSCRIBE), ("PURGE", .PURGE), ("MKCALENDAR", .MKCALENDAR), ("LINK", .LINK),
        ("UNLINK", .UNLINK), ("SOURCE", .RAW(value: "SOURCE")), ("QUERY", .RAW(value: "QUERY")),
    ]

    /// The method named by `bytes` (case-sensitive, RFC 9110 §9.1).
    private static func method(_ bytes: UnsafeRawBufferPointer) -> HTTPMethod? {
        for (name, method) in methods where name.utf8.count == bytes.count {
            if name.utf8.elementsEqual(bytes) { return method }
        }
        return nil
    }

    /// The request-target forms of RFC 9112 §3.2, as llhttp also reads
    /// them: origin form (`/…`); asterisk (`*`); absolute form
    /// (`scheme://…`); authority form (`host:port`), for CONNECT only,
    /// which takes no other. The bytes are visible ASCII already.
    private static func isValidTarget(_ target: UnsafeRawBufferPointer, method: HTTPMethod) -> Bool {
        guard let first = target.first else { return false }
        if method.isCONNECT {
            // `uri-host ":" port`: no path, no userinfo.
            guard let colon = target.lastIndex(of: UInt8(ascii: ":")), colon > 0, colon < target.count - 1 else {
                return false
            }
            return target[..<colon].allSatisfy(HTTP1RequestRules.isHostByte)
                && target[(colon + 1)...].allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        }
        if first == UInt8(ascii: "/") { return true }
        if target.count == 1 && first == UInt8(ascii: "*") { return true }
        // `scheme "://"`, a scheme of letters (llhttp's), then an authority.
        var index = 0
        while index < target.count, isLetter(target[index]) { index += 1 }
        guard index > 0, target.count - index > 3, target[index] == UInt8(ascii: ":"),
              target[index + 1] == UInt8(ascii: "/"), target[index + 2] == UInt8(ascii: "/") else { return false }
        let authorityStart = index + 3
        var authorityEnd = authorityStart
        while authorityEnd < target.count, target[authorityEnd] != UInt8(ascii: "/"),
              target[authorityEnd] != UInt8(ascii: "?") {
            guard HTTP1RequestRules.isHostByte(target[authorityEnd]) else { return false }
            authorityEnd += 1
        }
        return authorityEnd > authorityStart
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z")
    }

    // MARK: framing

    /// How the body of the request `head` is framed (RFC 9112 §6.3), set
    /// in the reader: chunked, a length, or none. CONNECT has no body
    /// (RFC 9110 §9.3.6); its tunnel starts after the head.
    private mutating func startBody(_ head: HTTP1RequestHead, _ facts: HTTP1HeadFacts) throws(HTTP1ParseError) {
        let framing = try reader.framing(of: facts)
        opensTunnel = head.opensTunnel(connection: facts.connection)
        closesConnection = !facts.connection.isPersistent(version: head.version)
        if head.method.isCONNECT {
            reader.startBody(.none)
        } else if framing.coded {
            guard framing.chunked else { return try reader.fail(.unsupportedTransferCoding) }
            reader.startBody(.chunked)
        } else {
            reader.startBody(.length(framing.length ?? 0))
        }
    }
}
