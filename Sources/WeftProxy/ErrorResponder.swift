import NIOCore
import NIOHTTP1
import WeftHTTP2
import WeftMesh
import WeftObservability

/// Every response weft makes itself (SPEC §4, §6): the reason's status,
/// `weft-reason`, a one-line plain-text body, and no caching. One home, so
/// an HTTP/1 app, an HTTP/2 app and a peer node hear the same answer.
enum ErrorResponder {
    /// `502 Bad Gateway: connect_failure`.
    static func body(_ reason: ErrorReason) -> ByteBuffer {
        ByteBuffer(string: text(reason))
    }

    private static func text(_ reason: ErrorReason) -> String {
        let status = HTTPResponseStatus(statusCode: reason.status)
        return "\(status.code) \(status.reasonPhrase): \(reason.rawValue)\n"
    }

    /// The head for an HTTP/1 client; `keepAlive: false` adds `Connection: close`.
    static func head(_ reason: ErrorReason, version: HTTPVersion, keepAlive: Bool) -> HTTPResponseHead {
        var headers = HTTPHeaders([
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", String(text(reason).utf8.count)),
            ("cache-control", "no-store"),
            (MeshTranslation.reasonHeader, reason.rawValue),
        ])
        if reason == .rateLimited { headers.add(name: "retry-after", value: retryAfter) }
        if !keepAlive { headers.add(name: "connection", value: "close") }
        return HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: reason.status), headers: headers)
    }

    /// The header list for an HTTP/2 client (an app or a peer node); the
    /// body follows as DATA.
    static func headers(_ reason: ErrorReason) -> HTTP2Fields {
        var fields: HTTP2Fields = [
            HTTP2Header(":status", String(reason.status)),
            HTTP2Header("content-type", "text/plain; charset=utf-8"),
            HTTP2Header("content-length", String(text(reason).utf8.count)),
            HTTP2Header("cache-control", "no-store"),
            HTTP2Header(MeshTranslation.reasonHeader, reason.rawValue),
        ]
        if reason == .rateLimited { fields.append(HTTP2Header("retry-after", retryAfter)) }
        return fields
    }

    /// A bucket of at least one token a second has the next one within a
    /// second.
    static let retryAfter = "1"

    /// Answers `streamID` on an HTTP/2 connection: headers, body, end.
    static func respond(_ reason: ErrorReason, on connection: MeshConnection, streamID: Int32) {
        try? connection.respond(streamID: streamID, headers: headers(reason), endStream: false)
        try? connection.sendData(streamID: streamID, body(reason), endStream: true)
    }
}
