#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/2 header field. Names must already be lowercase (HTTP/2 forbids
/// uppercase names; the HTTP/1 translation lowercases them), pseudo-headers
/// (`:method`, `:status`, ...) come first and in the order they were sent.
public struct HTTP2Header: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    public init(name: String, value: String) {
        self.init(name, value)
    }

    public var description: String { "\(name): \(value)" }
}

/// What a received header block is, decided from the stream's state and
/// `:status`: a request (server side), a final response or a 1xx
/// informational response (client side), or trailers (either side).
public enum HTTP2HeadersKind: Hashable, Sendable {
    case request
    case response
    case informational
    case trailers
}

extension HTTP2Header {
    /// Names every mesh message carries, and the most common others: a
    /// received name that is one of them is this literal, with no String
    /// made (and checked) from the bytes. By length, then compared.
    private static let knownNames: [[(bytes: [UInt8], name: String)]] = {
        let names = [":method", ":path", ":scheme", ":authority", ":status", "weft-dst", "weft-orig-proto",
                     "weft-reason", "content-type", "content-length", "date", "server", "etag", "last-modified",
                     "accept-ranges", "accept", "accept-encoding", "user-agent", "cache-control", "te",
                     "grpc-status", "grpc-message", "traceparent", "x-request-id", "vary", "location"]
        var byLength = [[(bytes: [UInt8], name: String)]](repeating: [], count: 16)
        for name in names where name.utf8.count < byLength.count {
            byLength[name.utf8.count].append((Array(name.utf8), name))
        }
        return byLength
    }()

    /// A field name received as bytes, as a String.
    public static func name(from bytes: UnsafeRawBufferPointer) -> String {
        if bytes.count < knownNames.count, let start = bytes.baseAddress {
            for known in knownNames[bytes.count]
            where known.bytes.withUnsafeBytes({ literal in
                literal.baseAddress.map { memcmp($0, start, bytes.count) == 0 } ?? false
            }) {
                return known.name
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
