import XCTest
import WeftConfig
import WeftCore
@testable import WeftRouting

final class RouteTableTests: XCTestCase {
    private let clusters = ["a", "b", "c"].map { Cluster(name: $0) }

    private func table(_ routes: [Route]) -> RouteTable {
        RouteTable(configuration: Configuration(clusters: clusters, routes: routes))
    }

    private func match(_ table: RouteTable, host: String? = "backend", path: String = "/",
                       headers: [String: String] = [:]) -> Int? {
        table.match(authority: host, path: path, header: { headers[$0] }).map { $0.cluster(draw: 0) }
    }

    func testFirstMatchWinsOverHostPathAndHeaders() {
        let table = table([
            Route(match: RouteMatch(host: "backend", pathPrefix: "/v2", headers: ["x-canary": "1"]),
                  clusters: [WeightedCluster(name: "c")]),
            Route(match: RouteMatch(host: "backend", pathPrefix: "/v2"), clusters: [WeightedCluster(name: "b")]),
            Route(match: RouteMatch(path: "/exact"), clusters: [WeightedCluster(name: "a")]),
        ])
        XCTAssertEqual(match(table, path: "/v2/items", headers: ["x-canary": "1"]), 2)
        XCTAssertEqual(match(table, path: "/v2/items", headers: ["x-canary": "0"]), 1)
        XCTAssertEqual(match(table, host: "Backend:9090", path: "/v2"), 1, "host is case-insensitive, port ignored")
        XCTAssertEqual(match(table, host: "backend.", path: "/v2"), 1, "a trailing dot is the same host")
        XCTAssertNil(match(table, host: "other", path: "/v2"))
        XCTAssertNil(match(table, host: nil, path: "/v2"), "a host rule needs a host")
        XCTAssertNil(match(table, path: "/v1/v2"))
        XCTAssertEqual(match(table, host: "any", path: "/exact?x=1"), 0, "the query is not part of the path")
        XCTAssertNil(match(table, host: "any", path: "/exact/more"))
    }

    func testWeightedSplitFollowsTheWeights() throws {
        let table = table([Route(clusters: [WeightedCluster(name: "a", weight: 1), WeightedCluster(name: "c", weight: 3),
                                            WeightedCluster(name: "b", weight: 0)])])
        let route = try XCTUnwrap(table.match(authority: nil, path: "/", header: { _ in nil }))
        XCTAssertEqual(route.totalWeight, 4)
        XCTAssertEqual((0..<4).map(route.cluster(draw:)), [0, 2, 2, 2], "weight 0 never receives")
    }

    func testHostPart() {
        XCTAssertEqual(RouteTable.hostPart("backend:9090"), "backend")
        XCTAssertEqual(RouteTable.hostPart("[2001:2::1]:80"), "[2001:2::1]")
        XCTAssertEqual(RouteTable.hostPart("backend"), "backend")
    }

    func testNoRulesMatchNothing() {
        XCTAssertTrue(table([]).isEmpty)
        XCTAssertNil(match(table([])))
    }
}
