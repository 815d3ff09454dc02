import Foundation
import WeftConfig
import WeftCore
import XCTest

@testable import WeftDiscovery

/// The EndpointSlice state of `discovery: kubernetes`, fed list answers and
/// watch events as the API server writes them.
final class EndpointSlicesTests: XCTestCase {
    private func slice(_ name: String, version: String, port: Int = 9090, portName: String = "http",
                       _ endpoints: [(String, Bool?, Bool?, Bool?, String?)]) -> String {
        let items = endpoints.map { address, ready, serving, terminating, zone in
            var conditions: [String] = []
            if let ready { conditions.append("\"ready\":\(ready)") }
            if let serving { conditions.append("\"serving\":\(serving)") }
            if let terminating { conditions.append("\"terminating\":\(terminating)") }
            return "{\"addresses\":[\"\(address)\"],\"conditions\":{\(conditions.joined(separator: ","))}"
                + (zone.map { ",\"zone\":\"\($0)\"" } ?? "") + "}"
        }
        return """
            {"metadata":{"name":"\(name)","resourceVersion":"\(version)","labels":{"kubernetes.io/service-name":"backend"}},\
            "addressType":"IPv4","endpoints":[\(items.joined(separator: ","))],\
            "ports":[{"name":"\(portName)","port":\(port),"protocol":"TCP"}]}
            """
    }

    private func list(_ version: String, _ slices: [String]) -> Data {
        Data("{\"kind\":\"EndpointSliceList\",\"metadata\":{\"resourceVersion\":\"\(version)\"},\"items\":[\(slices.joined(separator: ","))]}".utf8)
    }

    private func event(_ type: String, _ object: String) -> Data {
        Data("{\"type\":\"\(type)\",\"object\":\(object)}".utf8)
    }

    private func addresses(_ state: EndpointSlices) -> [String] {
        state.endpoints.map { "\($0.address)" }
    }

    func testAListGivesTheReadyEndpointsWithTheNamedPortAndTheirZones() throws {
        var state = EndpointSlices(port: "http")
        try state.apply(list: list("100", [
            slice("backend-a", version: "90", [("198.18.0.3", true, true, false, "zone-a"), ("198.18.0.4", nil, nil, nil, "zone-b")]),
            slice("backend-b", version: "95", [("198.18.0.5", false, false, false, nil)]),
        ]))
        XCTAssertEqual(addresses(state), ["198.18.0.3:9090", "198.18.0.4:9090"], "not-ready left out, unset means ready")
        XCTAssertEqual(state.endpoints.first?.locality, Locality(zone: "zone-a"))
        XCTAssertEqual(state.resourceVersion, "100")
    }

    func testWatchEventsAddModifyAndDeleteAndMoveTheResourceVersion() throws {
        var state = EndpointSlices(port: "http")
        try state.apply(list: list("100", [slice("backend-a", version: "90", [("198.18.0.3", true, nil, nil, nil)])]))
        XCTAssertEqual(try state.apply(event: event("ADDED", slice("backend-b", version: "101", [("198.18.0.6", true, nil, nil, nil)]))), .changed)
        XCTAssertEqual(addresses(state), ["198.18.0.3:9090", "198.18.0.6:9090"])
        XCTAssertEqual(try state.apply(event: event("MODIFIED", slice("backend-a", version: "102", [("198.18.0.3", false, nil, nil, nil)]))), .changed)
        XCTAssertEqual(addresses(state), ["198.18.0.6:9090"], "a pod that stopped being ready leaves")
        XCTAssertEqual(try state.apply(event: event("DELETED", slice("backend-b", version: "103", []))), .changed)
        XCTAssertEqual(addresses(state), [])
        XCTAssertEqual(state.resourceVersion, "103")
        XCTAssertEqual(try state.apply(event: event("BOOKMARK", "{\"kind\":\"EndpointSlice\",\"metadata\":{\"resourceVersion\":\"150\"}}")), .unchanged)
        XCTAssertEqual(state.resourceVersion, "150", "a bookmark moves the version a re-watch resumes from")
    }

    func testAGoneWatchAsksForAListAndOtherErrorsAreReported() throws {
        var state = EndpointSlices(port: "http")
        XCTAssertEqual(try state.apply(event: event("ERROR", "{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\"}")), .gone)
        XCTAssertEqual(try state.apply(event: event("ERROR", "{\"kind\":\"Status\",\"code\":500}")), .failed(500))
        XCTAssertThrowsError(try state.apply(event: Data("{\"type\":\"ADDED\"}".utf8)), "an ADDED without its object")
        XCTAssertThrowsError(try state.apply(event: Data("not json".utf8)))
    }

    func testTerminatingButServingEndpointsAreUsedOnlyWhenNoneIsReady() throws {
        var state = EndpointSlices(port: "http")
        try state.apply(list: list("1", [slice("backend-a", version: "1", [
            ("198.18.0.3", false, true, true, nil), ("198.18.0.4", true, true, false, nil),
            ("198.18.0.5", false, false, true, nil),
        ])]))
        XCTAssertEqual(addresses(state), ["198.18.0.4:9090"])
        _ = try state.apply(event: event("MODIFIED", slice("backend-a", version: "2", [
            ("198.18.0.3", false, true, true, nil), ("198.18.0.5", false, false, true, nil),
        ])))
        XCTAssertEqual(addresses(state), ["198.18.0.3:9090"], "the last serving pod of a rollout still takes traffic")
    }

    func testThePortIsFoundByNameOrNumberAndASliceWithoutItGivesNothing() throws {
        let slices = [slice("backend-a", version: "1", port: 8080, portName: "web", [("198.18.0.3", true, nil, nil, nil)]),
                      slice("backend-b", version: "1", port: 9090, portName: "http", [("198.18.0.4", true, nil, nil, nil)])]
        var byName = EndpointSlices(port: "web")
        try byName.apply(list: list("1", slices))
        XCTAssertEqual(addresses(byName), ["198.18.0.3:8080"])
        var byNumber = EndpointSlices(port: "9090")
        try byNumber.apply(list: list("1", slices))
        XCTAssertEqual(addresses(byNumber), ["198.18.0.4:9090"])
        var missing = EndpointSlices(port: "grpc")
        try missing.apply(list: list("1", slices))
        XCTAssertEqual(addresses(missing), [])
    }

    func testATopologyHintNamesTheZoneAnEndpointServes() throws {
        var state = EndpointSlices(port: "http")
        let slice = """
            {"metadata":{"name":"s","resourceVersion":"1"},"ports":[{"name":"http","port":80}],"endpoints":[
             {"addresses":["198.18.0.3"],"zone":"zone-a","hints":{"forZones":[{"name":"zone-b"}]}},
             {"addresses":["198.18.0.4"],"zone":"zone-a","hints":{"forZones":[{"name":"zone-c"},{"name":"zone-a"}]}},
             {"addresses":["198.18.0.5"],"zone":"zone-a"},
             {"addresses":["198.18.0.6"]}]}
            """
        try state.apply(list: list("1", [slice]))
        XCTAssertEqual(state.endpoints.map(\.locality?.zone), ["zone-b", "zone-a", "zone-a", nil])
    }
}
