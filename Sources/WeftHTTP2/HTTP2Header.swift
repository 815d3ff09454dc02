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
