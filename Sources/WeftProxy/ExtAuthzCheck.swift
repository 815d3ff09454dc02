import Logging
import NIOCore
import NIOHTTP1
import WeftConfig
import WeftCore
import WeftHTTP2
import WeftMesh
import WeftObservability
import WeftUpstream

/// The `ext_authz` stage of the receiving side (SPEC §8): before an
/// inbound request is delivered, one `POST <path>` to the authorization
/// cluster, through the same pipeline as an app's request (its admission,
/// balancing, pools or mesh, and the `timeout` as its deadline).
///
/// The check carries the request's headers, and its method, path and
/// authority as `x-forwarded-method`, `x-forwarded-uri` and
/// `x-forwarded-host` (the forward-auth convention), plus the caller's
/// verified mesh identity as `x-forwarded-client-cert: URI=<spiffe id>`
/// (Envoy's form) when mTLS is on; no body.
///
/// It answers to this object as to an app connection, and this object
/// turns the answer into a ``Verdict`` once, counted in
/// `weft_ext_authz_total`.
final class ExtAuthzCheck: ExchangeResponder {
    enum Verdict {
        /// Deliver, with these headers (the `forward_headers` the service
        /// answered with) in place of any the caller sent under those
        /// names; also what no answer comes to under `failure_mode_allow`.
        case allow([(String, String)])
        /// The service said no: its answer goes to the caller, as the
        /// response fields of an HTTP/2 stream (the receiving side answers
        /// its peer node) and the body, if it had one that was kept.
        case deny(HTTP2Fields, ByteBuffer?)
        /// No answer to judge by (unreachable, timed out, broken): 403.
        case refuse(ErrorReason)
    }

    /// A denial's body is passed on up to this size; a longer one is dropped.
    static let maxDenialBody = 16 * 1024

    let metrics: ProxyMetrics
    var draining: Bool { false }
    var appIsWritable: Bool { true }
    private let settings: ExtAuthzSettings
    private var exchange: (any OutboundExchange)?
    private var timer: Scheduled<Void>?
    private var head: HTTPResponseHead?  // the peer's fields merged in
    private var body: ByteBuffer?
    private var bodyTooLong = false
    private var completion: ((Verdict) -> Void)?
    private let logger: Logger

    private init(settings: ExtAuthzSettings, metrics: ProxyMetrics, logger: Logger,
                 completion: @escaping (Verdict) -> Void) {
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        self.completion = completion
    }

    /// Sends the check for `request` and tells `completion` the verdict,
    /// once, on this loop (perhaps before returning). The check keeps
    /// itself until then; ``cancel()`` it if the request goes away.
    static func start(for request: HTTPRequestHead, peer: SPIFFEID?, settings: ExtAuthzSettings,
                      services: LoopServices, meshPort: UInt16, logger: Logger,
                      completion: @escaping (Verdict) -> Void) -> ExtAuthzCheck {
        let check = ExtAuthzCheck(settings: settings, metrics: services.meshListener.metrics, logger: logger,
                                  completion: completion)
        guard let cluster = services.snapshot.upstream(named: settings.cluster) else {
            check.noAnswer(.noEndpoint)
            return check
        }
        let target = RequestTarget(cluster: cluster, balancer: services.balancer(for: cluster), fixedEndpoint: nil,
                                   meshPort: meshPort, source: nil, requestTimeout: settings.timeout)
        let head = checkRequest(for: request, peer: peer, settings: settings)
        let lease: Lease
        switch target.lease(header: { head.headers.first(name: $0) }) {
        case .success(let leased): lease = leased
        case .failure(let reason):
            check.noAnswer(reason)
            return check
        }
        let deadline = NIODeadline.now() + TimeAmount(settings.timeout)
        OutboundDispatch.start(HTTP1RequestHead(head), connection: ConnectionOptions(of: head.headers), lease: lease,
                               target: target, responder: check, services: services,
                               logger: logger, deadline: deadline) { check.exchange = $0 }
        check.exchange?.sendEnd(nil)
        if check.completion != nil {
            // The timer holds the check until its verdict (which cancels
            // the timer) or its deadline: exchanges hold their responder
            // weakly, and a caller may not keep it.
            check.timer = services.upstreamPool.eventLoop.scheduleTask(deadline: deadline) {
                check.exchange?.timedOut()
            }
        }
        return check
    }

    /// The request's fields the check does not copy: the ones it sets itself.
    private static let notCopied: Set<String> = ["host", "content-length", "expect", "x-forwarded-method",
                                                 "x-forwarded-uri", "x-forwarded-host", "x-forwarded-client-cert"]

    /// The check request for `request`: its end-to-end headers except the
    /// framing ones and any `forward_headers` (which only the service may
    /// set), and what it asks for as `x-forwarded-*`.
    static func checkRequest(for request: HTTPRequestHead, peer: SPIFFEID?, settings: ExtAuthzSettings) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        MeshTranslation.forEachEndToEnd(request.headers, dropping: nil) { name, value in
            guard !notCopied.contains(name), !settings.forwardHeaders.contains(name) else { return }
            headers.add(name: name, value: value)
        }
        headers.add(name: "host", value: settings.cluster)
        headers.add(name: "content-length", value: "0")
        headers.add(name: "x-forwarded-method", value: request.method.rawValue)
        headers.add(name: "x-forwarded-uri", value: request.uri)
        if let host = request.headers.first(name: "host") { headers.add(name: "x-forwarded-host", value: host) }
        if let peer { headers.add(name: "x-forwarded-client-cert", value: "URI=\(peer)") }
        return HTTPRequestHead(version: .http1_1, method: .POST, uri: settings.path, headers: headers)
    }

    /// An HTTP/2 request (an HTTP/2 app's) as the head the check
    /// describes: `:method`, `:path`, `:authority` as Host, the rest as is.
    static func describe(_ fields: HTTP2Fields) -> HTTPRequestHead? {
        var method: String?
        var path: String?
        var headers = HTTPHeaders()
        for field in fields {
            switch field.name {
            case ":method": method = field.value
            case ":path": path = field.value
            case ":authority": headers.add(name: "host", value: field.value)
            default: if !field.name.hasPrefix(":") { headers.add(name: field.name, value: field.value) }
            }
        }
        guard let method, let path else { return nil }
        return HTTPRequestHead(version: .http2, method: HTTPMethod(rawValue: method), uri: path, headers: headers)
    }

    /// A header list with the verdict's forwarded headers in place of any
    /// the caller sent under the `forward_headers` names.
    static func forwarding(_ fields: [(String, String)], into headers: HTTP2Fields,
                           settings: ExtAuthzSettings) -> HTTP2Fields {
        headers.filter { !settings.forwardHeaders.contains($0.name) } + fields.map { HTTP2Header($0.0, $0.1) }
    }

    /// The same for an HTTP/1 head.
    static func forwarding(_ fields: [(String, String)], into head: HTTPRequestHead,
                           settings: ExtAuthzSettings) -> HTTPRequestHead {
        var head = head
        for name in settings.forwardHeaders { head.headers.remove(name: name) }
        for (name, value) in fields { head.headers.add(name: name, value: value) }
        return head
    }

    /// The request went away: the check is dropped, nobody is told.
    func cancel() {
        completion = nil
        timer?.cancel()
        timer = nil
        let exchange = self.exchange
        self.exchange = nil
        exchange?.appClosed()
    }

    private func finish(_ verdict: Verdict) {
        timer?.cancel()
        timer = nil
        exchange = nil
        guard let completion else { return }
        self.completion = nil
        completion(verdict)
    }

    /// No answer to judge by: refused, or let through with no forwarded
    /// header under `failure_mode_allow`.
    private func noAnswer(_ reason: ErrorReason) {
        guard completion != nil else { return }
        guard settings.failureModeAllow else {
            logger.debug("ext_authz gave no answer", metadata: ["reason": "\(reason.rawValue)"])
            metrics.extAuthz.failed.wrappingIncrement(ordering: .relaxed)
            return finish(.refuse(.extAuthzFailure))
        }
        logger.warning("ext_authz gave no answer; delivered (failure_mode_allow)", metadata: ["reason": "\(reason.rawValue)"])
        metrics.extAuthz.failedOpen.wrappingIncrement(ordering: .relaxed)
        finish(.allow([]))
    }

    // MARK: ExchangeResponder

    func setReadsPaused(_ paused: Bool) {}

    func writeHead(_ head: AppResponseHead) {
        if head.status.code >= 200 { self.head = head.merged }
    }

    func writeBody(_ buffer: ByteBuffer) {
        guard !bodyTooLong else { return }
        if (body?.readableBytes ?? 0) + buffer.readableBytes > Self.maxDenialBody {
            bodyTooLong = true
            body = nil
            return
        }
        var buffer = buffer
        if body == nil { body = buffer } else { body?.writeBuffer(&buffer) }
    }

    func flush() {}

    func writeEnd(_ trailers: HTTPHeaders?, close: Bool, exchange: any OutboundExchange) {
        guard let head else { return noAnswer(.badResponse) }
        guard (200..<300).contains(head.status.code) else {
            // Without the body (none, or too long to keep) no length is true.
            var fields = MeshTranslation.upgradeResponse(head)
            if body == nil { fields.removeAll { $0.name == "content-length" } }
            metrics.extAuthz.denied.wrappingIncrement(ordering: .relaxed)
            return finish(.deny(fields, body))
        }
        var forwarded: [(String, String)] = []
        for name in settings.forwardHeaders {
            for value in head.headers[name] { forwarded.append((name, value)) }
        }
        metrics.extAuthz.allowed.wrappingIncrement(ordering: .relaxed)
        finish(.allow(forwarded))
    }

    func abortResponse() {
        noAnswer(.upstreamReset)
    }

    func respondWithError(_ reason: ErrorReason, keepAlive: Bool, version: HTTPVersion,
                          finished: (any OutboundExchange)?) {
        noAnswer(reason)
    }

    func record(_ record: RequestRecord) {
        metrics.record(record)
    }
}
