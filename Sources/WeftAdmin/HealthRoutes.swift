import NIOCore
import NIOHTTP1

/// What the health and admin listeners read from the node. WeftAdmin sees
/// the node only through this (it imports nothing of the proxy); the `weft`
/// executable makes the node conform.
public protocol NodeView: Sendable {
    /// Listening and not draining.
    var isReady: Bool { get }
    /// Prometheus text exposition (version 0.0.4).
    func metricsText() -> String
}

/// The read-only routes of the health listener (15020): `/ready`,
/// `/healthz` and `/metrics`, GET or HEAD.
public enum HealthRoutes {
    public static func router(for node: some NodeView) -> AdminRouter {
        { request, loop in loop.makeSucceededFuture(answer(request, node: node) ?? .notFound) }
    }

    /// The answer of a health route, or nil when `request` is for none.
    static func answer(_ request: AdminRequest, node: some NodeView) -> AdminResponse? {
        guard ["/ready", "/healthz", "/metrics"].contains(request.path) else { return nil }
        guard request.method == .GET || request.method == .HEAD else { return .methodNotAllowed }
        switch request.path {
        case "/ready":
            return node.isReady ? AdminResponse(body: "ready\n")
                : AdminResponse(status: .serviceUnavailable, body: "not ready\n")
        case "/healthz":
            return AdminResponse(body: "ok\n")
        default:
            return AdminResponse(contentType: "text/plain; version=0.0.4; charset=utf-8", body: node.metricsText())
        }
    }
}
