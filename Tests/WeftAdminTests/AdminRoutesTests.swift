import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import WeftObservability
import XCTest
@testable import WeftAdmin

/// The admin listener's routes against a node that records what it was
/// asked: JSON shapes, methods, and what the POST routes do.
final class AdminRoutesTests: XCTestCase {
    final class FakeNode: AdminNode {
        let asked = NIOLockedValueBox<[String]>([])
        let level = NIOLockedValueBox("info")
        let ready = NIOLockedValueBox(true)

        var isReady: Bool { ready.withLockedValue { $0 } }
        func metricsText(on loop: EventLoop) -> EventLoopFuture<String> { loop.makeSucceededFuture("weft_up 1\n") }
        func clusters(on loop: EventLoop) -> EventLoopFuture<[ClusterStatus]> {
            let endpoint = EndpointStatus(address: "198.18.0.10:9390", weight: 2, mesh: true, region: "lab", zone: "a",
                                          healthy: true, ejected: false, ejections: 1, inFlight: 3, requests: 40,
                                          errors: 2)
            return loop.makeSucceededFuture([ClusterStatus(
                name: "backend", protocol: "auto", mesh: true, lb: "round_robin", discovery: "static",
                endpoints: [endpoint], circuitBreakersInUse: nil)])
        }
        func configDump() -> String { "{\"version\": 4}\n" }
        func listeners() -> [ListenerStatus] { [ListenerStatus(name: "admin", addresses: ["127.0.0.1:15000"])] }
        func explain(destination: String, host: String?, path: String?) -> Explanation? {
            guard destination.contains(":") else { return nil }
            var answer = Explanation(destination: destination, host: host, path: path, configVersion: 4,
                                     listener: "outbound (127.0.0.1:15001)")
            answer.summary = ["asked about \(destination)"]
            return answer
        }
        func drain() {
            asked.withLockedValue { $0.append("drain") }
            ready.withLockedValue { $0 = false }
        }
        func quit() { asked.withLockedValue { $0.append("quit") } }
        var logLevel: String { level.withLockedValue { $0 } }
        func setLogLevel(_ name: String) -> Bool {
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(name) else { return false }
            level.withLockedValue { $0 = name }
            return true
        }
    }

    private let loop = EmbeddedEventLoop()

    private func ask(_ node: FakeNode, _ method: HTTPMethod, _ uri: String) throws -> AdminResponse {
        try AdminRoutes.router(for: node)(AdminRequest(method: method, uri: uri), loop).wait()
    }

    func testClustersIsJSONWithSnakeCaseKeys() throws {
        let answer = try ask(FakeNode(), .GET, "/clusters")
        XCTAssertEqual(answer.contentType, "application/json")
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])
        let cluster = try XCTUnwrap((object["clusters"] as? [[String: Any]])?.first)
        XCTAssertEqual(cluster["name"] as? String, "backend")
        let endpoint = try XCTUnwrap((cluster["endpoints"] as? [[String: Any]])?.first)
        XCTAssertEqual(endpoint["in_flight"] as? Int, 3)
        XCTAssertEqual(endpoint["requests"] as? Int, 40)
        XCTAssertEqual(endpoint["errors"] as? Int, 2)
        XCTAssertEqual(endpoint["zone"] as? String, "a")
    }

    func testReadingRoutesWantGetAndChangingRoutesWantPost() throws {
        let node = FakeNode()
        XCTAssertEqual(try ask(node, .GET, "/drain").status, .methodNotAllowed)
        XCTAssertEqual(try ask(node, .GET, "/quitquitquit").status, .methodNotAllowed)
        XCTAssertEqual(try ask(node, .POST, "/clusters").status, .methodNotAllowed)
        XCTAssertEqual(try ask(node, .DELETE, "/config_dump").status, .methodNotAllowed)
        XCTAssertEqual(node.asked.withLockedValue { $0 }, [], "a GET changed something")
        XCTAssertEqual(try ask(node, .GET, "/nothing").status, .notFound)
        XCTAssertTrue(try ask(node, .GET, "/").body.contains("POST /quitquitquit"))
    }

    func testDrainFailsReadyAndQuitAsksTheNodeToExit() throws {
        let node = FakeNode()
        XCTAssertEqual(try ask(node, .GET, "/ready").status, .ok)
        XCTAssertEqual(try ask(node, .POST, "/drain").body, "draining\n")
        XCTAssertEqual(try ask(node, .GET, "/ready").status, .serviceUnavailable)
        XCTAssertEqual(try ask(node, .POST, "/quitquitquit").status, .ok)
        XCTAssertEqual(node.asked.withLockedValue { $0 }, ["drain", "quit"])
    }

    func testLoggingLevelIsReadAndSetAndABadOneRefused() throws {
        let node = FakeNode()
        XCTAssertEqual(try ask(node, .GET, "/logging").body, "level=info\n")
        XCTAssertEqual(try ask(node, .POST, "/logging?level=debug").body, "level=debug\n")
        XCTAssertEqual(try ask(node, .POST, "/logging?level=chatty").status, .badRequest)
        XCTAssertEqual(try ask(node, .POST, "/logging").status, .badRequest)
        XCTAssertEqual(node.logLevel, "debug")
    }

    func testExplainPassesTheQueryAndRefusesAMissingOrBadDestination() throws {
        let node = FakeNode()
        let answer = try ask(node, .GET, "/explain?dst=198.19.0.1%3A80&host=backend&path=/v2")
        XCTAssertEqual(answer.status, .ok)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let explanation = try decoder.decode(Explanation.self, from: Data(answer.body.utf8))
        XCTAssertEqual(explanation.destination, "198.19.0.1:80")
        XCTAssertEqual(explanation.host, "backend")
        XCTAssertEqual(explanation.path, "/v2")
        XCTAssertEqual(explanation.configVersion, 4)
        XCTAssertEqual(try ask(node, .GET, "/explain").status, .badRequest)
        XCTAssertEqual(try ask(node, .GET, "/explain?dst=nowhere").status, .badRequest)
        XCTAssertEqual(try ask(node, .POST, "/explain?dst=198.19.0.1:80").status, .methodNotAllowed)
    }

    func testQueryParametersArePercentDecoded() {
        let request = AdminRequest(method: .GET, uri: "/explain?dst=198.19.0.1%3A80&host=a+b&flag")
        XCTAssertEqual(request.path, "/explain")
        XCTAssertEqual(request.query, ["dst": "198.19.0.1:80", "host": "a b", "flag": ""])
    }
}
