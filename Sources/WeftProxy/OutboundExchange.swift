import NIOCore
import NIOHTTP1

/// One app request in flight on an `OutboundHTTPHandler`, whatever carries
/// it: a mesh stream (`MeshOutboundExchange`) or a pooled HTTP/1.1
/// connection to a plain endpoint (`PlainOutboundExchange`). The handler
/// feeds it the request and its own socket's events; the exchange answers
/// through the handler's `write*`, `respondWithError` and `abortResponse`.
protocol OutboundExchange: AnyObject {
    /// When the response head must have arrived (`timeouts.request`); nil
    /// once it has, or once the exchange is over.
    var responseDeadline: NIODeadline? { get }
    func sendBody(_ buffer: ByteBuffer)
    func sendEnd(_ trailers: HTTPHeaders?)
    /// The response deadline passed.
    func timedOut()
    /// The app socket can take more response bytes.
    func appBecameWritable()
    /// The app connection is gone.
    func appClosed()
}

/// Keep-alive and framing of a response for the app's HTTP version: an
/// HTTP/1.0 app gets a close-delimited body when no length is known; a
/// draining node or a closing request says `Connection: close`.
enum ResponseFraming {
    static func frame(_ response: inout HTTPResponseHead, for request: HTTPRequestHead, keepAlive: inout Bool,
                      draining: Bool) {
        if draining { keepAlive = false }
        let hasLength = response.headers.contains(name: "content-length")
        let bodyless = request.method == .HEAD || response.status == .noContent || response.status == .notModified
        if request.version == .http1_0 && !hasLength && !bodyless { keepAlive = false }
        if !keepAlive {
            response.headers.replaceOrAdd(name: "connection", value: "close")
        } else if request.version == .http1_0 {
            response.headers.replaceOrAdd(name: "connection", value: "keep-alive")
        }
    }
}
