import Logging
import NIOCore
import WeftCore
import WeftHTTP2
import WeftMesh
import WeftObservability
import WeftUpstream

/// The pipeline's HTTP/2 dispatch stage: opens a request as a stream on a
/// pooled HTTP/2 connection (a mesh connection to a peer node, or h2c to
/// an HTTP/2 app) and gives back the half that carries it, to be spliced
/// to the caller's stream. The sending node uses it for HTTP/2 apps, the
/// receiving node for delivery to a local HTTP/2 app.
enum HTTP2Dispatch {
    /// Calls `done` (on the pool's loop) with the opened half, or with the
    /// reason it could not be opened. `lease`, when given, travels with the
    /// half and hears how the attempt went; a connect failure counts
    /// against the endpoint, a connection with no room for a stream does not.
    /// While the stream waits for a connection it holds a `max_pending` slot
    /// of the lease's cluster: none free, `overflow`.
    /// `rewriteResponse` rewrites what comes back before the caller sees it.
    static func open(_ headers: HTTP2Fields, endStream: Bool, to peer: IPEndpoint, pool: MeshConnectionPool,
                     lease: Lease?, logger: Logger,
                     rewriteResponse: @escaping (HTTP2Fields) -> HTTP2Fields = { $0 },
                     done: @escaping (SplicedStream?, ErrorReason?) -> Void) {
        // A `max_pending` slot while the stream waits for a connection.
        var pending = PendingSlot()
        guard pending.take(for: lease) else {
            lease?.finish(.abandoned)
            return done(nil, .overflow)
        }
        let bound = NIOLoopBound((lease, pending), eventLoop: pool.eventLoop)
        let overloaded: ErrorReason = pool.countsAsMesh ? .meshOverloaded : .upstreamReset
        pool.connection(to: peer).whenComplete { result in
            var (lease, pending) = bound.value
            pending.release()
            guard case .success(let upstream) = result else {
                lease?.finish(.failure)
                return done(nil, .connectFailure)
            }
            let half = SplicedStream(connection: upstream, streamID: nil, opener: nil,
                                     rewriteResponse: rewriteResponse, logger: logger)
            do {
                half.opened(streamID: try upstream.openStream(headers: headers, endStream: endStream, handler: half))
                half.lease = lease
                done(half, nil)
            } catch {
                lease?.finish(.abandoned)
                done(nil, overloaded)
            }
        }
    }
}
