import NIOCore
import NIOHTTP1
import WeftCore
import WeftHTTP2
import WeftMesh

/// A response head as weft's parser reads it: status and version, its
/// fields as the bytes that came (`HTTP2Fields`; names lower-cased, values
/// without the whitespace around them), and what its `Connection` fields
/// say, gathered in the same pass. A mesh node upgrades it to HTTP/2
/// fields from those bytes; `head` makes Strings of them for the rest.
public struct HTTP1ResponseHead {
    public var version: HTTPVersion
    public var status: HTTPResponseStatus
    public var fields: HTTP2Fields
    public var connection: ConnectionOptions

    public init(version: HTTPVersion, status: HTTPResponseStatus, fields: HTTP2Fields,
                connection: ConnectionOptions) {
        self.version = version
        self.status = status
        self.fields = fields
        self.connection = connection
    }

    /// The head with its fields as `HTTPHeaders`.
    public var head: HTTPResponseHead {
        HTTPResponseHead(version: version, status: status, headers: HTTPHeaders(fields.pairs()))
    }
}

/// The response side of weft's HTTP/1.1 upstream connections (RFC 9112),
/// as a state machine with no I/O: bytes in, heads, body slices and ends
/// out, one at a time (`next`), so that whoever handles an event may start
/// the connection's next exchange without re-entering the parser.
///
/// The head, body and field rules are `HTTP1MessageReader`'s; this reads
/// status lines and frames responses: a 1xx must leave the connection
/// open, `101` is refused, and bytes past a response's framing, or with
/// no response due, are refused rather than kept for the next.
public struct HTTP1ResponseParser {
    public enum Event {
        /// A 1xx interim head (more heads follow), or the final head.
        case head(HTTP1ResponseHead)
        case body(ByteBuffer)
        /// The response ended, with its trailers (chunked bodies only).
        case end(HTTPHeaders?)
    }

    /// The most bytes a head (status line and fields), or a chunked body's
    /// trailers, may take.
    public static let maxHeadBytes = HTTP1MessageReader.maxHeadBytes

    private var reader = HTTP1MessageReader()
    private var requestWasHEAD = false

    public init() {}

    /// A request went out: its response is due. A response to `HEAD` has
    /// no body whatever its head says (RFC 9110 §9.3.2).
    public mutating func expectResponse(toHEAD: Bool) {
        if reader.isIdle { reader.expectHead() }
        requestWasHEAD = toHEAD
    }

    /// Whether the response due is under way or awaited.
    public var isBusy: Bool { !reader.isIdle }

    /// The next event from `buffer` (and any bytes held from before), or
    /// nil when more bytes are needed: then every byte of `buffer` has
    /// been taken (held when it is part of something unfinished).
    public mutating func next(_ buffer: inout ByteBuffer) throws(HTTP1ParseError) -> Event? {
        if reader.isIdle {
            guard buffer.readableBytes == 0 else { return try reader.fail(.unsolicited) }
            return nil
        }
        switch try reader.next(&buffer) {
        case nil: return nil
        case .head(let section):
            let (head, facts) = try parseHead(section)
            try startBody(head, facts)
            return .head(head)
        case .body(let body): return .body(body)
        case .end(let trailers): return .end(trailers)
        }
    }

    /// The upstream closed: the end of a body that runs until close, or
    /// nothing (nil) when no response was under way; else the response was
    /// cut short (`closedEarly`, not malformed).
    public mutating func inputEnded() -> Result<Event?, HTTP1UpstreamError> {
        switch reader.inputEnded() {
        case .betweenMessages: .success(nil)
        case .endOfBody: .success(.end(nil))
        case .cutShort: .failure(.closedEarly)
        }
    }

    // MARK: the head

    private mutating func parseHead(_ head: ByteBuffer) throws(HTTP1ParseError)
        -> (HTTP1ResponseHead, HTTP1HeadFacts) {
        // `HTTP/1.x SP 3DIGIT SP reason CRLF` (RFC 9112 §4); the reason
        // may be empty, and its SP is then tolerated missing.
        let line: (major: UInt8, minor: UInt8, status: Int, next: Int)? =
            head.withUnsafeReadableBytes { bytes in
                guard bytes.count >= 14,
                      bytes[0] == UInt8(ascii: "H"), bytes[1] == UInt8(ascii: "T"), bytes[2] == UInt8(ascii: "T"),
                      bytes[3] == UInt8(ascii: "P"), bytes[4] == UInt8(ascii: "/"), bytes[6] == UInt8(ascii: "."),
                      bytes[8] == UInt8(ascii: " ") else { return nil }
                // Any byte here: checked below, after the line is whole.
                let major = bytes[5], minor = bytes[7]
                var status = 0
                for index in 9..<12 {
                    guard bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") else { return nil }
                    status = status * 10 + Int(bytes[index] - UInt8(ascii: "0"))
                }
                var index = 12
                if bytes[index] == UInt8(ascii: " ") { index += 1 } else if bytes[index] != 0x0D { return nil }
                while bytes[index] != 0x0D {
                    if HTTP1MessageReader.isForbiddenInLine(bytes[index]) { return nil }
                    index += 1
                }
                guard bytes[index + 1] == 0x0A else { return nil }
                return (major, minor, status, index + 2)
            }
        guard let line, line.status >= 100 else { return try reader.fail(.badStatusLine) }
        guard line.major == UInt8(ascii: "1"), line.minor == UInt8(ascii: "0") || line.minor == UInt8(ascii: "1") else {
            return try reader.fail(.badVersion)
        }
        let version: HTTPVersion = line.minor == UInt8(ascii: "0") ? .http1_0 : .http1_1
        guard line.status != 101 else { return try reader.fail(.unexpectedUpgrade) }
        let (fields, facts) = try reader.headFieldBlock(of: head, from: head.readerIndex + line.next)
        // The reason phrase is not kept (RFC 9112 §4: clients ignore it;
        // the mesh hop has none): each status goes on with its own.
        return (HTTP1ResponseHead(version: version, status: HTTPResponseStatus(statusCode: line.status),
                                  fields: fields, connection: facts.connection), facts)
    }

    // MARK: framing

    /// How the body of the response `head` is framed (RFC 9112 §6.3), set
    /// in the reader.
    private mutating func startBody(_ head: HTTP1ResponseHead, _ facts: HTTP1HeadFacts) throws(HTTP1ParseError) {
        let code = head.status.code
        let framing = try reader.framing(of: facts)
        if code < 200 {
            // An interim response: the final one follows, on a connection
            // the interim one must leave open.
            guard facts.connection.isPersistent(version: head.version) else { return try reader.fail(.closingInterim) }
            reader.expectHead()
        } else if requestWasHEAD || code == 204 || code == 304 {
            reader.startBody(.none)
        } else if framing.coded {
            guard framing.chunked else { return try reader.fail(.unsupportedTransferCoding) }
            reader.startBody(.chunked)
        } else if let length = framing.length {
            reader.startBody(.length(length))
        } else {
            reader.startBody(.untilClose)
        }
    }
}
