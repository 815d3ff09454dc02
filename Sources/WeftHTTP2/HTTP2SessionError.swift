/// Errors from ``HTTP2Session``: libnghttp2's return codes, named, plus the
/// wrapper's own misuse checks.
public enum HTTP2SessionError: Error, Hashable, Sendable, CustomStringConvertible {
    // Fatal: the connection must be closed (after flushing any output).
    /// A server saw bytes other than the HTTP/2 client preface.
    case badClientMagic
    /// The peer made nghttp2 queue too many frames (PING/SETTINGS ACK flood).
    case flooded
    /// The peer sent more CONTINUATION frames than allowed (CVE-2024-28182 fix).
    case tooManyContinuations
    /// The peer broke the session's ``HTTP2FrameBudget``; GOAWAY
    /// ENHANCE_YOUR_CALM is queued.
    case frameFlood(HTTP2FrameBudget.Flood)
    /// A callback failed fatally (an internal invariant of the wrapper broke).
    case callbackFailure
    case outOfMemory
    /// nghttp2 tore the connection down with GOAWAY because the peer broke
    /// the protocol; `reason` is nghttp2's debug text when it gave one.
    case connectionTerminated(HTTP2ErrorCode, reason: String)

    // Not fatal: the call was refused, the connection goes on.
    /// Stream ids are exhausted or new streams are refused after GOAWAY:
    /// open a new connection.
    case streamIDNotAvailable
    case startStreamNotAllowed
    case sessionClosing
    /// The stream is unknown to the session or already closed.
    case unknownStream(Int32)
    /// The local side of the stream is already ended (END_STREAM queued or sent).
    case streamEnded(Int32)
    /// The call does not fit the session's role (e.g. `submitRequest` on a server).
    case wrongRole(String)
    case invalidArgument(String)
    /// Any other libnghttp2 error code, with `nghttp2_strerror`'s text.
    case library(code: Int32, message: String)

    /// Whether the connection cannot go on after this error.
    public var isFatal: Bool {
        switch self {
        case .badClientMagic, .flooded, .tooManyContinuations, .frameFlood, .callbackFailure, .outOfMemory,
             .connectionTerminated:
            true
        case .library(let code, _):
            code <= -900
        default:
            false
        }
    }

    /// A flood limit ended the connection (counted as `http2_flood`).
    public var isFlood: Bool {
        switch self {
        case .flooded, .tooManyContinuations, .frameFlood: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .badClientMagic: "bad HTTP/2 client preface"
        case .flooded: "peer flooded the outbound queue"
        case .tooManyContinuations: "too many CONTINUATION frames"
        case .frameFlood(let flood): "peer flooded with \(flood.rawValue)"
        case .callbackFailure: "nghttp2 callback failure"
        case .outOfMemory: "out of memory"
        case .connectionTerminated(let code, let reason):
            reason.isEmpty ? "connection terminated: \(code)" : "connection terminated: \(code) (\(reason))"
        case .streamIDNotAvailable: "stream ids exhausted"
        case .startStreamNotAllowed: "new streams not allowed (GOAWAY)"
        case .sessionClosing: "session is closing"
        case .unknownStream(let id): "unknown or closed stream \(id)"
        case .streamEnded(let id): "stream \(id) already ended"
        case .wrongRole(let what): "wrong session role: \(what)"
        case .invalidArgument(let what): "invalid argument: \(what)"
        case .library(let code, let message): "nghttp2 error \(code): \(message)"
        }
    }
}
