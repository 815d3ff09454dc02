import NIOCore
import WeftCore

/// What one HTTP request came to, written once when it ends, whoever
/// answered (the app, or weft itself): the one record metrics read (and
/// the access log will).
public struct RequestRecord: Sendable {
    public var direction: Direction
    public var cluster: String?
    public var endpoint: IPEndpoint?
    /// The status the client got; 0 when the exchange broke before a
    /// response head (the client saw a reset or a close).
    public var status = 0
    /// Why weft answered itself, when it did.
    public var reason: ErrorReason?
    /// Request body bytes from the client, response body bytes to it.
    public var bytesIn = 0
    public var bytesOut = 0
    public var attempts = 1
    public let startedAt: NIODeadline

    public init(direction: Direction, cluster: String? = nil, endpoint: IPEndpoint? = nil, startedAt: NIODeadline = .now()) {
        self.direction = direction
        self.cluster = cluster
        self.endpoint = endpoint
        self.startedAt = startedAt
    }
}

extension ProxyMetrics {
    /// Counts a finished request: its status class and, for a response
    /// weft made, its reason.
    public func record(_ request: RequestRecord) {
        if request.status > 0 { countResponse(request.direction, status: request.status) }
        if let reason = request.reason { countErrorResponse(reason) }
    }
}
