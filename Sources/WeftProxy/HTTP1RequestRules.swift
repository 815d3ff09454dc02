import NIOHTTP1
import WeftHTTP2
import WeftCore
import WeftMesh
import WeftObservability

/// RFC 9112 rules an app's HTTP/1.x request must meet before weft carries
/// it, beyond what `HTTP1RequestParser` already refuses (invalid field
/// names and values, obs-fold, Transfer-Encoding with Content-Length,
/// malformed or repeated Content-Length, a coding other than chunked, bad
/// chunk sizes, a bad request target). A request that breaks one is answered at the first hop (400,
/// or 431/414 for what the mesh would not carry), and the connection is
/// closed: its framing cannot be trusted.
public enum HTTP1RequestRules {
    /// What the next hop takes (`HTTP2Limits`), less room for the
    /// pseudo-headers and mesh headers weft adds.
    static let maxHeaderCount = HTTP2Limits.default.maxHeaderCount - 8
    static let maxHeaderBytes = HTTP2Limits.default.maxHeaderListBytes - 1024
    static let maxURIBytes = 8 * 1024

    public enum Violation: String, Equatable, Sendable {
        /// RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host.
        case missingHost = "no Host"
        case duplicateHost = "more than one Host"
        /// RFC 9112 §3.2: a Host that is not `uri-host [ ":" port ]` is a 400.
        case invalidHost = "an invalid Host"
        /// A Content-Length past 2^63 − 1: no peer could carry it.
        case contentLengthOutOfRange = "a Content-Length past 2^63 - 1"
        /// RFC 9112 §3.2.4: the asterisk form is for OPTIONS only.
        case asteriskFormNotOptions = "a * target on a method other than OPTIONS"
        /// RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request makes its
        /// framing faulty.
        case transferEncodingInHTTP10 = "Transfer-Encoding in an HTTP/1.0 request"
        /// A transfer coding other than a single `chunked`: weft decodes none
        /// (RFC 9112 §6.1 lets a server refuse what it does not implement),
        /// and passing one on would hand the app a body it cannot read.
        case unsupportedTransferCoding = "a transfer coding other than chunked"
        case tooManyHeaders = "more header fields than the mesh carries"
        case headersTooLarge = "more header bytes than the mesh carries"
        case uriTooLong = "a request target longer than 8 KiB"

        /// How weft answers it.
        var reason: ErrorReason {
            switch self {
            case .missingHost, .duplicateHost, .invalidHost, .contentLengthOutOfRange, .asteriskFormNotOptions,
                 .transferEncodingInHTTP10, .unsupportedTransferCoding:
                .badRequest
            case .tooManyHeaders, .headersTooLarge: .headersTooLarge
            case .uriTooLong: .uriTooLong
            }
        }
    }

    /// The rule `head` breaks, if any; its fields read by one walk.
    public static func violation(of head: HTTP1RequestHead) -> Violation? {
        violation(of: head, facts: HTTP1HeadFacts(of: head.fields))
    }

    /// The rule `head` breaks, if any, from what its parser gathered as it
    /// read the fields (`facts`): nothing walks them again.
    public static func violation(of head: HTTP1RequestHead, facts: HTTP1HeadFacts) -> Violation? {
        if head.uri.utf8.count > maxURIBytes { return .uriTooLong }
        if head.uri == "*" && head.method != .OPTIONS { return .asteriskFormNotOptions }
        if head.fields.count > maxHeaderCount { return .tooManyHeaders }
        if let violation = facts.fieldViolation { return violation }
        if head.version == .http1_1 || head.version.major > 1 || head.version.minor > 1 {
            if facts.hosts == 0 { return .missingHost }
        }
        if facts.hosts > 1 { return .duplicateHost }
        // HPACK's accounting: name + value + 32 per field.
        if head.uri.utf8.count + facts.listBytes > maxHeaderBytes { return .headersTooLarge }
        if facts.transferEncodingFields > 0 {
            if head.version == .http1_0 { return .transferEncodingInHTTP10 }
            if facts.transferEncodingFields > 1 || !facts.onlyChunked { return .unsupportedTransferCoding }
        }
        return nil
    }

    /// A byte of `uri-host [ ":" port ]` (RFC 3986 §3.2.2): unreserved,
    /// pct-encoded, sub-delims, and ":" "[" "]" (a reg-name, an IP literal
    /// or an IPv4 address, and a port). A Host of these bytes only (or
    /// empty: a target without an authority) is valid; the set is the one
    /// an HTTP/2 `:authority` may hold, so a Host weft passes, the peer
    /// takes. The request target's authority form is read with it too.
    static func isHostByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "%"),
             UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("),
             UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"),
             UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]"):
            true
        default:
            false
        }
    }
}
