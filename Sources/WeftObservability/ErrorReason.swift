/// Why weft answered a request itself instead of the app: the value of the
/// `weft-reason` header and of the `reason` label of
/// `weft_error_responses_total` (SPEC §4).
public enum ErrorReason: String, Sendable, CaseIterable {
    /// The peer node or the local app could not be connected to.
    case connectFailure = "connect_failure"
    /// The stream or connection broke before a response arrived.
    case upstreamReset = "reset"
    /// The peer refused the stream (GOAWAY): it never processed it.
    case refusedStream = "refused_stream"
    /// The peer's response could not be understood.
    case badResponse = "bad_response"
    /// No response head within the cluster's `timeouts.request`.
    case requestTimeout = "timeout"
    /// The cluster has no endpoint to send to.
    case noEndpoint = "no_healthy_endpoint"
    /// The mesh connection could take no more streams, even after a retry.
    case meshOverloaded = "mesh_overloaded"
    /// The app's request line named something weft cannot carry.
    case badRequestTarget = "bad_request_target"
    /// The app's request could not be parsed.
    case badRequest = "bad_request"
    /// A mesh request without usable `weft-dst` or pseudo-headers.
    case badMeshRequest = "bad_mesh_request"
    /// `weft-dst` names an address that is not this node's (no open relay).
    case notLocalDestination = "not_local"
    /// The cluster's token bucket is empty (`rate_limit`).
    case rateLimited = "rate_limited"
    /// A circuit breaker of the cluster is at its bound (`circuit_breakers`).
    case overflow
    /// An HTTP-routing listener's request matched no route and no hostname.
    case noRoute = "no_route"
    /// The app's request has more header fields, or more header bytes, than
    /// the mesh carries: refused at the first hop, not downstream.
    case headersTooLarge = "headers_too_large"
    /// The app's request target is longer than weft carries.
    case uriTooLong = "uri_too_long"
    /// The mesh peer's identity is not allowed to reach that local port
    /// (`authorization`), or it has none (no mTLS).
    case unauthorized
    /// `ext_authz` gave no answer to judge by (unreachable, timed out,
    /// broken) and `failure_mode_allow` is off.
    case extAuthzFailure = "ext_authz_failure"

    /// The endpoint failed the attempt (unreachable, reset, silent, or
    /// speaking nonsense), as opposed to the request or weft itself: what
    /// balancers (and later outlier detection) count against it.
    public var isEndpointFailure: Bool {
        switch self {
        case .connectFailure, .upstreamReset, .badResponse, .requestTimeout: true
        // A refused stream never reached the endpoint: the peer node said no.
        case .refusedStream, .noEndpoint, .meshOverloaded, .badRequestTarget, .badRequest, .badMeshRequest,
             .notLocalDestination, .rateLimited, .overflow, .noRoute, .headersTooLarge, .uriTooLong,
             .unauthorized, .extAuthzFailure: false
        }
    }

    /// The HTTP status weft answers with for this reason.
    public var status: Int {
        switch self {
        case .connectFailure, .upstreamReset, .refusedStream, .badResponse: 502
        case .requestTimeout: 504
        case .noEndpoint, .meshOverloaded, .overflow: 503
        case .rateLimited: 429
        case .badRequestTarget, .badRequest, .badMeshRequest: 400
        case .notLocalDestination, .unauthorized, .extAuthzFailure: 403
        case .noRoute: 404
        case .headersTooLarge: 431
        case .uriTooLong: 414
        }
    }
}

/// A reason is also what a stage that cannot go on fails with.
extension ErrorReason: Error {}
