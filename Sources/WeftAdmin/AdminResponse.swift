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

    public static let notFound = AdminResponse(status: .notFound, body: "not found\n")
    public static let methodNotAllowed = AdminResponse(status: .methodNotAllowed, body: "method not allowed\n")
}

/// Answers one admin request: method and path (query string included).
public typealias AdminRouter = @Sendable (HTTPMethod, String) -> AdminResponse
