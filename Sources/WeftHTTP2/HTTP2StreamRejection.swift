/// Why this side refused a stream the peer opened (or a response it sent).
/// A header-limit refusal resets the stream with
/// ``HTTP2Session/headerLimitResetCode`` and the delegate hears of it before
/// the matching `streamClosed`; a stream over the concurrency limit was
/// never opened, so no `streamClosed` follows.
public enum HTTP2StreamRejection: Hashable, Sendable, CustomStringConvertible {
    /// More header fields than ``HTTP2Limits/maxHeaderCount``.
    case tooManyHeaders(limit: Int)
    /// The header list grew past ``HTTP2Limits/maxHeaderListBytes``
    /// (RFC 7541 size: name + value + 32 per field).
    case headerListTooLarge(limit: Int)
    /// The peer opened more streams at once than this side's
    /// SETTINGS_MAX_CONCURRENT_STREAMS. nghttp2 refuses the stream
    /// (REFUSED_STREAM) while those SETTINGS are unacknowledged, and ends
    /// the connection (GOAWAY PROTOCOL_ERROR) once the peer has acknowledged
    /// them and still went over.
    case tooManyStreams(limit: UInt32)

    public var description: String {
        switch self {
        case .tooManyHeaders(let limit): "more than \(limit) header fields"
        case .headerListTooLarge(let limit): "header list larger than \(limit) bytes"
        case .tooManyStreams(let limit): "more than \(limit) concurrent streams"
        }
    }
}
