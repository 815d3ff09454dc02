import NIOCore
import NIOHTTP1

/// What the health and admin listeners read from the node. WeftAdmin sees
/// the node only through this (it imports nothing of the proxy); the `weft`
/// executable makes the node conform.
public protocol NodeView: Sendable {
    /// Listening and not draining.
    var isReady: Bool { get }
    /// Prometheus text exposition (version 0.0.4), made on `loop` or later.
    func metricsText(on loop: EventLoop) -> EventLoopFuture<String>
}

/// The read-only routes of the health listener (15020): `/ready`,
/// `/healthz` and `/metrics`, GET or HEAD.
public enum HealthRoutes {
    public static func router(for node: some NodeView) -> AdminRouter {
        { request, loop in answer(request, node: node, loop: loop) ?? loop.makeSucceededFuture(.notFound) }
    }

    /// The answer of a health route, or nil when `request` is for none.
    static func answer(_ request: AdminRequest, node: some NodeView,
                       loop: EventLoop) -> EventLoopFuture<AdminResponse>? {
        guard ["/ready", "/healthz", "/metrics"].contains(request.path) else { return nil }
        guard request.method == .GET || request.method == .HEAD else { return loop.makeSucceededFuture(.methodNotAllowed) }
        switch request.path {
        case "/ready":
            return loop.makeSucceededFuture(node.isReady ? AdminResponse(body: "ready\n")
                : AdminResponse(status: .serviceUnavailable, body: "not ready\n"))
        case "/healthz":
            return loop.makeSucceededFuture(AdminResponse(body: "ok\n"))
        default:
            return node.metricsText(on: loop).map {
                AdminResponse(contentType: "text/plain; version=0.0.4; charset=utf-8", body: $0)
            }
        }
    }
}
