import Logging
import NIOCore
import NIOHTTP1
import WeftHTTP2
import WeftMesh
import WeftObservability
import WeftUpstream

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

/// Who an exchange answers to: the app connection's handler, or a retry
/// stage between them that decides whether an attempt's answer reaches
/// the app or another attempt is made.
protocol ExchangeResponder: AnyObject {
    var metrics: ProxyMetrics { get }
    /// The node is draining: responses say `Connection: close`.
    var draining: Bool { get }
    var appIsWritable: Bool { get }
    /// Backpressure: stop (or resume) reading the app's request.
    func setReadsPaused(_ paused: Bool)
    /// Head and body parts go unflushed; `flush` once per read.
    func writeHead(_ head: AppResponseHead)
    func writeBody(_ buffer: ByteBuffer)
    func flush()
    func writeEnd(_ trailers: HTTPHeaders?, close: Bool, exchange: any OutboundExchange)
    /// The response had started and broke: the app connection closes.
    func abortResponse()
    /// An error response weft makes itself (the exchange recorded it).
    func respondWithError(_ reason: ErrorReason, keepAlive: Bool, version: HTTPVersion,
                          finished: (any OutboundExchange)?)
    /// What the exchange came to, once, before its last answer above.
    func record(_ record: RequestRecord)
}

/// A request head on its way to an HTTP/1 app or endpoint: a head weft or
/// the app gave (`uri`, `headers`), or a peer node's request, whose
/// target, fields that are the app's and Host are written from its block's
/// bytes (`peer`).
struct AppRequestHead {
    var method: HTTPMethod
    var version: HTTPVersion
    /// The request target; nil: the peer's (`PeerRequestBlock.forEachTargetPart`).
    var uri: String?
    /// The fields weft or the app gave: after the peer's, before its Host.
    var headers: HTTPHeaders
    var peer: PeerRequestBlock?
    /// A body follows whatever the head says (a mesh stream that did not
    /// end with its HEADERS): it must reach the app framed.
    var bodyFollows: Bool

    init(_ head: HTTPRequestHead, bodyFollows: Bool = false) {
        method = head.method
        version = head.version
        uri = head.uri
        headers = head.headers
        peer = nil
        self.bodyFollows = bodyFollows
    }

    init(_ request: DowngradedRequest, bodyFollows: Bool) {
        method = request.method
        version = request.version
        uri = nil
        headers = HTTPHeaders()
        peer = request.block
        self.bodyFollows = bodyFollows
    }

    /// The connection stays open after the exchange (a peer's fields never
    /// say `Connection`: HTTP/2 refuses it).
    var isPersistent: Bool { headers.isPersistent(version: version) }

    /// Calls `body` with each of the peer's fields that are the app's.
    func forEachPeerField(_ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Void) {
        peer?.forEachFieldForApp(body)
    }
}

/// A response head on its way to an HTTP/1 app: status, version and the
/// fields weft or a plain endpoint gave (`headers`), then the fields a peer
/// node sent (`peerFields`), kept as the bytes that came. Only the peer's
/// fields that are the app's (`MeshTranslation.isForApp`) are read or
/// written: no String is made of them on the way, and a value's bytes
/// reach the app as they were sent.
///
/// Its parts are held apart, not as an `HTTPResponseHead`: that one boxes
/// them, an allocation for every response a peer sends.
struct AppResponseHead {
    var version: HTTPVersion
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var peerFields: HTTP2Fields

    init(_ head: HTTPResponseHead, peerFields: HTTP2Fields = HTTP2Fields()) {
        self.init(version: head.version, status: head.status, headers: head.headers, peerFields: peerFields)
    }

    init(version: HTTPVersion, status: HTTPResponseStatus, headers: HTTPHeaders = HTTPHeaders(),
         peerFields: HTTP2Fields = HTTP2Fields()) {
        self.version = version
        self.status = status
        self.headers = headers
        self.peerFields = peerFields
    }

    /// Status, version and `headers` as NIO's head (the peer's fields left out).
    var head: HTTPResponseHead { HTTPResponseHead(version: version, status: status, headers: headers) }

    /// Calls `body` with each of the peer's fields that are the app's.
    func forEachPeerField(_ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Void) {
        guard !peerFields.isEmpty else { return }
        peerFields.forEach { name, value in
            if MeshTranslation.isForApp(responseField: name) { body(name, value) }
        }
    }

    /// The first value of the field `name` (lower case) in either part.
    func first(name: String) -> String? {
        if let value = headers.first(name: name) { return value }
        var found: String?
        var wanted = name
        wanted.withUTF8 { wanted in
            forEachPeerField { fieldName, value in
                if found == nil, fieldName.equals(UnsafeRawBufferPointer(wanted)) {
                    found = String(decoding: value, as: UTF8.self)
                }
            }
        }
        return found
    }

    /// The whole head with the peer's fields made `HTTPHeaders` (for the
    /// few stages that read every field: ext_authz's verdicts).
    var merged: HTTPResponseHead {
        var merged = head
        merged.headers.add(contentsOf: peerFields.pairs(keeping: MeshTranslation.isForApp(responseField:)))
        return merged
    }
}

/// Keep-alive and framing of a response for the app's HTTP version: an
/// HTTP/1.0 app gets a close-delimited body when no length is known; a
/// draining node or a closing request says `Connection: close`.
enum ResponseFraming {
    /// A peer's fields never say `Connection` (HTTP/2 refuses it, RFC
    /// 9113 §8.2.2), so only `head`'s are replaced.
    static func frame(_ response: inout AppResponseHead, for request: HTTP1RequestHead, keepAlive: inout Bool,
                      draining: Bool) {
        if draining { keepAlive = false }
        let bodyless = request.method.isHEAD || response.status == .noContent || response.status == .notModified
        // Only an HTTP/1.0 app's body needs a length to keep the connection.
        if request.version == .http1_0 && !bodyless
            && !response.headers.contains(name: "content-length")
            && !response.peerFields.contains(lowercaseName: "content-length") {
            keepAlive = false
        }
        if !keepAlive {
            response.headers.replaceOrAdd(name: "connection", value: "close")
        } else if request.version == .http1_0 {
            response.headers.replaceOrAdd(name: "connection", value: "keep-alive")
        }
    }
}

/// The dispatch stage for an HTTP/1.x app request: a stream on the mesh
/// connection to a meshed endpoint's node, or the endpoint itself over
/// pooled HTTP/1.1. The exchange answers to `responder`, which is handed
/// it (`adopt`) before it starts: starting may already answer.
enum OutboundDispatch {
    /// `connection`: the head's `Connection` options, as its parser read
    /// them.
    static func start(_ head: HTTP1RequestHead, connection: ConnectionOptions, lease: Lease, target: RequestTarget,
                      responder: any ExchangeResponder, services: LoopServices, logger: Logger, deadline: NIODeadline,
                      adopt: (any OutboundExchange) -> Void) {
        if target.isMeshed(lease.endpoint) {
            let exchange = MeshOutboundExchange(handler: responder, head: head, connection: connection, lease: lease,
                                                cluster: target.name, logger: logger)
            adopt(exchange)
            exchange.start(pool: services.meshPool, peer: target.meshPeer(of: lease.endpoint), deadline: deadline)
        } else {
            let exchange = PlainOutboundExchange(handler: responder, head: head, connection: connection, lease: lease,
                                                 cluster: target.name, logger: logger)
            adopt(exchange)
            exchange.start(pool: services.upstreamPool,
                           connectTimeout: TimeAmount(target.cluster.config.timeouts.connect), deadline: deadline)
        }
    }
}

/// A `max_pending` slot of the cluster's circuit breakers (SPEC §5), held
/// while a request waits for a connection to its endpoint.
struct PendingSlot {
    private var admission: ClusterAdmission?

    /// Takes the slot when the lease's cluster has circuit breakers; false
    /// when they are at their bound (answer `overflow`).
    mutating func take(for lease: Lease?) -> Bool {
        guard let admission = lease?.slot?.admission else { return true }
        guard admission.acquire(.pending) else { return false }
        self.admission = admission
        return true
    }

    /// Gives the slot back (the connection came, or the wait ended); once.
    mutating func release() {
        admission?.release(.pending)
        admission = nil
    }
}
