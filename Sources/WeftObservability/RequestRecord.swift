import NIOCore
import WeftCore

/// What one HTTP request (or TCP session) came to, written once when it
/// ends, whoever answered (the app, or weft itself): the one record metrics
/// and the access log read.
public struct RequestRecord: Sendable {
    public var direction: Direction
    /// A TCP session (a relayed connection or a CONNECT tunnel), not an
    /// HTTP request: no method, path or status.
    public var isSession = false
    /// What the access log tells of the request beyond the counters; nil
    /// for a session, a request that could not be read, or when there is no
    /// access log (then nothing reads it, and the record copies cheaply).
    public private(set) var text: RequestText?
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
    /// The mesh peer's verified identity (inbound over mTLS), else nil.
    public var peerIdentity: SPIFFEID?
    public let startedAt: NIODeadline

    public init(direction: Direction, cluster: String? = nil, endpoint: IPEndpoint? = nil, startedAt: NIODeadline = .now()) {
        self.direction = direction
        self.cluster = cluster
        self.endpoint = endpoint
        self.startedAt = startedAt
    }
}

extension RequestRecord {
    /// A finished TCP session: bytes from the client (`received`) and back
    /// to it (`sent`); `reason` when weft could not carry it.
    public static func session(_ direction: Direction, cluster: String?, endpoint: IPEndpoint?,
                               startedAt: NIODeadline, received: Int, sent: Int,
                               reason: ErrorReason? = nil) -> RequestRecord {
        var record = RequestRecord(direction: direction, cluster: cluster, endpoint: endpoint, startedAt: startedAt)
        record.isSession = true
        record.bytesIn = received
        record.bytesOut = sent
        record.reason = reason
        return record
    }

    /// Weft answered the request itself, for `reason`.
    public mutating func answered(by reason: ErrorReason) {
        status = reason.status
        self.reason = reason
    }

    /// Fills in what the access log tells of the request, from its header
    /// fields as the app sent them (`field` by lowercase name).
    public mutating func describe(method: String, authority: String?, path: String, field: (String) -> String?) {
        text = RequestText(method: method, authority: authority, path: path,
                           requestID: field("x-request-id"), traceparent: field("traceparent"))
    }

    /// The request as the app sent it.
    public var method: String? { text?.method }
    public var authority: String? { text?.authority }
    public var path: String? { text?.path }
    /// `x-request-id` as carried (weft makes one when the app sent none).
    public var requestID: String? { text?.requestID }
    /// W3C `traceparent` as received, passed on unchanged.
    public var traceparent: String? { text?.traceparent }

    /// The trace id of `traceparent` (`00-<trace id>-<parent id>-<flags>`),
    /// when it has the W3C shape.
    public var traceID: Substring? {
        guard let traceparent else { return nil }
        let parts = traceparent.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[1].count == 32, parts[1].allSatisfy(\.isHexDigit) else { return nil }
        return parts[1]
    }
}

/// A request's method, authority, path, `x-request-id` and `traceparent`,
/// for the access log: one shared, immutable box, so a record holding it
/// copies with one reference instead of five strings.
public final class RequestText: Sendable {
    public let method: String
    public let authority: String?
    public let path: String
    public let requestID: String?
    public let traceparent: String?

    public init(method: String, authority: String?, path: String, requestID: String?, traceparent: String?) {
        self.method = method
        self.authority = authority
        self.path = path
        self.requestID = requestID
        self.traceparent = traceparent
    }
}

extension ProxyMetrics {
    /// Counts a finished request: its status class and, for a response
    /// weft made, its reason.
    public func record(_ request: RequestRecord) {
        let duration = NIODeadline.now() - request.startedAt
        stats.add(request, seconds: Double(max(duration.nanoseconds, 0)) / 1e9)
        if let reason = request.reason { countErrorResponse(reason) }
        accessLog?.log(request, duration: duration)
    }
}
