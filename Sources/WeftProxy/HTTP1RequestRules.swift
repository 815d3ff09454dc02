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

    public static func violation(of head: HTTPRequestHead) -> Violation? {
        if head.uri.utf8.count > maxURIBytes { return .uriTooLong }
        if head.uri == "*" && head.method != .OPTIONS { return .asteriskFormNotOptions }
        if head.headers.count > maxHeaderCount { return .tooManyHeaders }
        var hosts = 0
        var transferEncodings = 0
        var onlyChunked = true
        // HPACK's accounting: name + value + 32 per field.
        var bytes = head.uri.utf8.count
        for (name, value) in head.headers {
            bytes += name.utf8.count + value.utf8.count + 32
            // The length first: most fields are none of these.
            switch name.utf8.count {
            case 4 where name.equalsASCIICaseInsensitive("host"):
                hosts += 1
                if !isValidHost(value) { return .invalidHost }
            case 14 where name.equalsASCIICaseInsensitive("content-length"):
                if !MeshTranslation.isCarriableLength(value) { return .contentLengthOutOfRange }
            case 17 where name.equalsASCIICaseInsensitive("transfer-encoding"):
                transferEncodings += 1
                if !String(value.trimmingSpaces).equalsASCIICaseInsensitive("chunked") { onlyChunked = false }
            default:
                break
            }
        }
        if head.version == .http1_1 || head.version.major > 1 || head.version.minor > 1 {
            if hosts == 0 { return .missingHost }
        }
        if hosts > 1 { return .duplicateHost }
        if bytes > maxHeaderBytes { return .headersTooLarge }
        if transferEncodings > 0 {
            if head.version == .http1_0 { return .transferEncodingInHTTP10 }
            if transferEncodings > 1 || !onlyChunked { return .unsupportedTransferCoding }
        }
        return nil
    }

    /// `uri-host [ ":" port ]` (RFC 3986 §3.2.2): the characters of a
    /// reg-name, an IP literal or an IPv4 address, and a port; empty is
    /// allowed (a target without an authority). The set is the one an
    /// HTTP/2 `:authority` may hold, so a Host weft passes, the peer takes.
    static func isValidHost(_ value: String) -> Bool {
        value.utf8.allSatisfy(isHostByte)
    }

    /// A byte of `uri-host [ ":" port ]`: unreserved, pct-encoded,
    /// sub-delims, and ":" "[" "]". The request target's authority form
    /// is read with it too.
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
