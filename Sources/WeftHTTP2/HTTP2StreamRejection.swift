/// Why this side refused a stream the peer opened (or a response it sent).
/// The stream is reset with ``HTTP2Session/headerLimitResetCode`` and the
/// delegate hears of it before the matching `streamClosed`.
public enum HTTP2StreamRejection: Hashable, Sendable, CustomStringConvertible {
    /// More header fields than ``HTTP2Limits/maxHeaderCount``.
    case tooManyHeaders(limit: Int)
    /// The header list grew past ``HTTP2Limits/maxHeaderListBytes``
    /// (RFC 7541 size: name + value + 32 per field).
    case headerListTooLarge(limit: Int)

    public var description: String {
        switch self {
        case .tooManyHeaders(let limit): "more than \(limit) header fields"
        case .headerListTooLarge(let limit): "header list larger than \(limit) bytes"
        }
    }
}
