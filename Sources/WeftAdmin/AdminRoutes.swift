import Foundation
import NIOCore
import NIOHTTP1
import WeftObservability

/// What the admin listener (127.0.0.1:15000) reads from and asks of the
/// node, beyond the health routes.
public protocol AdminNode: NodeView {
    /// Each cluster in force, its endpoints and their counts (gathered from
    /// every event loop, hence the future).
    func clusters(on loop: EventLoop) -> EventLoopFuture<[ClusterStatus]>
    /// The configuration in force with its version, as JSON.
    func configDump() -> String
    func listeners() -> [ListenerStatus]
    /// How a connection to `destination` (`IP:PORT`), and an HTTP request
    /// for `host` and `path` on it, would be handled now; nil when
    /// `destination` is not an address.
    func explain(destination: String, host: String?, path: String?) -> Explanation?
    /// Starts draining, as the first SIGTERM does: `/ready` fails, the
    /// data-path listeners close, requests in flight finish. The process
    /// stays up.
    func drain()
    /// Drains, then exits (a classic sidecar's Job is done).
    func quit()
    var logLevel: String { get }
    /// Sets the level by name (trace ... critical); false for another name.
    func setLogLevel(_ name: String) -> Bool
}

/// The routes of the admin listener (SPEC §6): the health routes, then
/// `/clusters`, `/config_dump`, `/listeners`, `/explain` (GET), `POST /drain`,
/// `POST /quitquitquit` and `POST /logging?level=` (GET: the level now).
/// `/` lists them.
public enum AdminRoutes {
    public static func router(for node: some AdminNode) -> AdminRouter {
        { request, loop in
            if let health = HealthRoutes.answer(request, node: node, loop: loop) { return health }
            return answer(request, node: node, loop: loop)
        }
    }

    static let index = """
        weft admin API
          GET  /ready  /healthz  /metrics
          GET  /clusters        each cluster's endpoints: health, ejection, in flight, requests, errors
          GET  /config_dump     the configuration in force, with its version
          GET  /listeners       what each listener is bound to
          GET  /explain?dst=IP:PORT[&host=H&path=P]   how a connection (and request) there is handled now
          POST /drain           fail /ready, stop accepting, let requests in flight finish
          POST /quitquitquit    drain, then exit
          POST /logging?level=  trace, debug, info, notice, warning, error or critical (GET: the level now)

        """

    private static func answer(_ request: AdminRequest, node: some AdminNode,
                               loop: EventLoop) -> EventLoopFuture<AdminResponse> {
        let reading = request.method == .GET || request.method == .HEAD
        func now(_ response: AdminResponse) -> EventLoopFuture<AdminResponse> { loop.makeSucceededFuture(response) }
        switch request.path {
        case "/":
            return now(reading ? AdminResponse(body: index) : .methodNotAllowed)
        case "/clusters":
            guard reading else { return now(.methodNotAllowed) }
            return node.clusters(on: loop).map { .json(encode(["clusters": $0])) }
        case "/config_dump":
            return now(reading ? .json(node.configDump()) : .methodNotAllowed)
        case "/listeners":
            return now(reading ? .json(encode(["listeners": node.listeners()])) : .methodNotAllowed)
        case "/explain":
            guard reading else { return now(.methodNotAllowed) }
            guard let destination = request.query["dst"],
                  let answer = node.explain(destination: destination, host: request.query["host"],
                                            path: request.query["path"]) else {
                return now(.json(encode(["error": "dst must be IP:PORT, as in /explain?dst=198.19.0.1:80"]),
                                 status: .badRequest))
            }
            return now(.json(encode(answer)))
        case "/drain":
            guard request.method == .POST else { return now(.methodNotAllowed) }
            node.drain()
            return now(AdminResponse(body: "draining\n"))
        case "/quitquitquit":
            guard request.method == .POST else { return now(.methodNotAllowed) }
            node.quit()
            return now(AdminResponse(body: "draining, then exiting\n"))
        case "/logging":
            if reading { return now(AdminResponse(body: "level=\(node.logLevel)\n")) }
            guard request.method == .POST else { return now(.methodNotAllowed) }
            guard let level = request.query["level"], node.setLogLevel(level) else {
                return now(AdminResponse(status: .badRequest, body:
                    "level must be one of trace, debug, info, notice, warning, error, critical\n"))
            }
            return now(AdminResponse(body: "level=\(node.logLevel)\n"))
        default:
            return now(.notFound)
        }
    }

    static func encode(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return "{}\n" }
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
