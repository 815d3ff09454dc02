import Logging
import NIOCore
import WeftHTTP2
import WeftMesh
import WeftObservability
import WeftUpstream

/// The attempts of one HTTP/2 app request on the sending node, past the
/// route and admission stages (SPEC §5, Timeouts and Retries). Each
/// attempt opens a stream to a lease's endpoint (`HTTP2Dispatch`: a mesh
/// stream to its node, or h2c to a plain endpoint). The app's half of the
/// splice (`SplicedStream`) drives them: this says how long the current
/// attempt may take to answer, keeps what the app sent for a replay, and,
/// for a cluster with `retries`, whether a failed attempt is worth another
/// and after which backoff.
///
/// The request timeout bounds the time to the response headers, not the
/// whole stream: a long-lived gRPC stream that has answered is not cut.
final class StreamAttempts {
    private let request: HTTP2Fields
    private let requestEndsStream: Bool
    private let services: LoopServices
    private let logger: Logger
    private let target: RequestTarget
    private let overallDeadline: NIODeadline
    private var retry: RetryAttempts?
    /// When the current attempt must have answered; while waiting for the
    /// next attempt, the overall deadline.
    private(set) var deadline: NIODeadline
    /// What the app sent after its headers, kept while another attempt may
    /// still be made; nil once there is too much of it, or no retries.
    private(set) var replay: [(data: ByteBuffer, endStream: Bool)]?
    private(set) var replayTrailers: HTTP2Fields?
    private var replayBytes = 0

    init(request: HTTP2Fields, endStream: Bool, target: RequestTarget, services: LoopServices, logger: Logger) {
        self.request = request
        self.requestEndsStream = endStream
        self.target = target
        self.services = services
        self.logger = logger
        overallDeadline = .now() + TimeAmount(target.requestTimeout)
        deadline = overallDeadline
        if let policy = target.cluster.config.retries {
            retry = RetryAttempts(policy: policy, target: target, deadline: overallDeadline)
            replay = []
        }
    }

    /// Attempts after the first.
    var retries: Int { retry?.retries ?? 0 }

    /// Opens an attempt on `lease`; `done` hears of the opened half or why
    /// it could not be opened.
    func open(on lease: Lease, done: @escaping (SplicedStream?, ErrorReason?) -> Void) {
        deadline = retry?.started(on: lease.endpoint) ?? overallDeadline
        let meshed = target.isMeshed(lease.endpoint)
        let (pool, peer, headers) = meshed
            ? (services.meshPool, target.meshPeer(of: lease.endpoint),
               MeshTranslation.meshRequest(fromHTTP2: request, destination: lease.endpoint.description))
            : (services.appHTTP2Pool, lease.endpoint, MeshTranslation.withoutMeshHeaders(request, keepReason: false))
        // A peer node's `weft-reason` is for the app; a plain endpoint
        // cannot speak for weft.
        HTTP2Dispatch.open(headers, endStream: requestEndsStream, to: peer, pool: pool, lease: lease, logger: logger,
                           rewriteResponse: { MeshTranslation.withoutMeshHeaders($0, keepReason: meshed) },
                           done: done)
    }

    // MARK: the replay

    func keep(_ data: ByteBuffer, endStream: Bool) {
        guard replay != nil else { return }
        replayBytes += data.readableBytes
        if replayBytes <= RetryAttempts.replayLimit {
            replay?.append((data, endStream))
        } else {
            replay = nil
        }
    }

    func keep(trailers: HTTP2Fields) {
        if replay != nil { replayTrailers = trailers }
    }

    /// The response reached the app: no more attempts, nothing to keep.
    func answered() {
        replay = nil
        replayTrailers = nil
    }

    // MARK: another attempt?

    /// The backoff before another attempt after the current one failed
    /// with `reason`, or nil when there is to be none.
    func retryDelay(after reason: ErrorReason) -> TimeAmount? {
        guard let condition = retry?.condition(for: reason) else { return nil }
        return retryDelay(condition)
    }

    /// The backoff before another attempt instead of passing on this
    /// answer, or nil when it is to be passed on.
    func retryDelay(afterAnswer headers: HTTP2Fields, status: Int) -> TimeAmount? {
        guard let retry, let condition = retry.condition(
            status: status, peerReason: headers.first(name: MeshTranslation.reasonHeader))
        else { return nil }
        return retryDelay(condition)
    }

    /// The attempt ran out of time: past the overall deadline no other
    /// may follow.
    func timedOut() {
        if NIODeadline.now() >= overallDeadline { retry?.overallExpired = true }
    }

    private func retryDelay(_ condition: String) -> TimeAmount? {
        let replayable = replay != nil
        guard let delay = retry?.retry(replayable: replayable, logger: logger, draw: services.drawRouteWeight) else { return nil }
        deadline = overallDeadline
        logger.debug("retrying", metadata: ["cluster": "\(target.name)", "condition": "\(condition)",
                                            "endpoint": "\(retry?.tried.last.map(String.init(describing:)) ?? "?")",
                                            "attempt": "\(retries + 1)",
                                            "after_ms": "\(delay.nanoseconds / 1_000_000)"])
        return delay
    }

    /// A lease for the next attempt (another endpoint when there is one),
    /// or nil when the request can no longer be replayed or no endpoint
    /// is left.
    func nextLease() -> Lease? {
        guard replay != nil, let retry else { return nil }
        return retry.nextLease(header: { name in self.request.first(name: name) })
    }

    /// The request is over.
    func finish() {
        retry?.finish()
        answered()
    }
}
