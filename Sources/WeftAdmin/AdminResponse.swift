import NIOCore
import NIOHTTP1

/// What an admin or health route answers.
public struct AdminResponse: Sendable {
    public var status: HTTPResponseStatus
    public var contentType: String
    public var body: String

    public init(status: HTTPResponseStatus = .ok, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public static func json(_ body: String, status: HTTPResponseStatus = .ok) -> AdminResponse {
        AdminResponse(status: status, contentType: "application/json", body: body)
    }

    public static let notFound = AdminResponse(status: .notFound, body: "not found\n")
    public static let methodNotAllowed = AdminResponse(status: .methodNotAllowed, body: "method not allowed\n")
}

/// An admin request: its method, path and query parameters.
public struct AdminRequest: Sendable {
    public var method: HTTPMethod
    public var path: String
    public var query: [String: String]

    public init(method: HTTPMethod, uri: String) {
        self.method = method
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = parts.first.map(String.init) ?? uri
        var query: [String: String] = [:]
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(kv[0]).removingPercentEncodingOrSelf
                query[key] = kv.count == 2 ? String(kv[1]).removingPercentEncodingOrSelf : ""
            }
        }
        self.query = query
    }
}

extension String {
    /// `%XX` escapes decoded (and `+` as a space); an invalid escape is
    /// kept as it is.
    var removingPercentEncodingOrSelf: String {
        var bytes: [UInt8] = []
        var utf8 = Array(self.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "%"), utf8.count >= 2,
               let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Answers one admin request, on `loop` (the connection's) or later.
public typealias AdminRouter = @Sendable (AdminRequest, EventLoop) -> EventLoopFuture<AdminResponse>
