import Foundation
import NIOCore
import WeftConfig
import WeftCore
import XCTest

@testable import WeftDiscovery

/// The list/watch loop of `discovery: kubernetes`, fed what an API server
/// answers (pages, chunked watch bodies cut anywhere, 410s, errors, broken
/// connections), with no network.
final class KubernetesWatchTests: XCTestCase {
    typealias Action = KubernetesWatch.Action

    private func machine(namespace: String? = nil) -> KubernetesWatch {
        KubernetesWatch(service: KubernetesServiceRef(service: "backend", namespace: namespace, port: "http"),
                        namespace: "shop", pathPrefix: "/proxy", watchSeconds: 300, jitter: { 1 })
    }

    private func slice(_ name: String, version: String, _ addresses: [String], ready: Bool = true) -> String {
        let endpoints = addresses.map { "{\"addresses\":[\"\($0)\"],\"conditions\":{\"ready\":\(ready)}}" }
        return """
            {"metadata":{"name":"\(name)","resourceVersion":"\(version)"},"addressType":"IPv4",\
            "endpoints":[\(endpoints.joined(separator: ","))],"ports":[{"name":"http","port":9090}]}
            """
    }

    private func page(_ version: String, _ slices: [String], continue token: String? = nil) -> ByteBuffer {
        let more = token.map { ",\"continue\":\"\($0)\"" } ?? ""
        return ByteBuffer(string: "{\"kind\":\"EndpointSliceList\",\"metadata\":{\"resourceVersion\":\"\(version)\"\(more)},"
                          + "\"items\":[\(slices.joined(separator: ","))]}")
    }

    private func line(_ type: String, _ object: String) -> String {
        "{\"type\":\"\(type)\",\"object\":\(object)}\n"
    }

    private func reported(_ actions: [Action]) -> [[String]] {
        actions.compactMap {
            if case .report(let endpoints) = $0 { return endpoints.map { "\($0.address)" } }
            return nil
        }
    }

    private func sent(_ actions: [Action]) -> [String] {
        actions.compactMap {
            if case .send(let request) = $0 { return request.path }
            return nil
        }
    }

    /// Lists, then starts the watch: the state most tests begin from.
    private func listed(_ watch: inout KubernetesWatch, version: String = "100", _ slices: [String]) -> [Action] {
        XCTAssertEqual(sent(watch.start()).count, 1)
        XCTAssertEqual(watch.received(status: 200), [])
        XCTAssertEqual(watch.received(body: page(version, slices)), [])
        let actions = watch.ended()
        XCTAssertEqual(watch.received(status: 200), [])
        return actions
    }

    func testListsTheServicesSlicesThenWatchesFromTheListsVersion() {
        var watch = machine()
        XCTAssertEqual(sent(watch.start()), [
            "/proxy/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dbackend&limit=500",
        ])
        XCTAssertEqual(watch.received(status: 200), [])
        XCTAssertEqual(watch.received(body: page("100", [slice("backend-a", version: "90", ["198.18.0.3", "198.18.0.4"])])), [])
        let actions = watch.ended()
        XCTAssertEqual(reported(actions), [["198.18.0.3:9090", "198.18.0.4:9090"]])
        XCTAssertEqual(sent(actions), [
            "/proxy/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dbackend"
                + "&watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=100",
        ])
    }

    func testTheServicesOwnNamespaceWinsOverTheNodes() {
        var watch = machine(namespace: "payments")
        XCTAssertTrue((sent(watch.start()).first ?? "").contains("/namespaces/payments/endpointslices"))
    }

    func testPagesAreGatheredBeforeTheEndpointsAreReported() {
        var watch = machine()
        _ = watch.start()
        _ = watch.received(status: 200)
        _ = watch.received(body: page("100", [slice("backend-a", version: "90", ["198.18.0.3"])], continue: "tok/en=1"))
        let next = watch.ended()
        XCTAssertEqual(reported(next), [], "nothing is reported from half a list")
        XCTAssertEqual(sent(next).count, 1)
        XCTAssertTrue((sent(next).first ?? "").hasSuffix("&limit=500&continue=tok%2Fen%3D1"), (sent(next).first ?? ""))
        _ = watch.received(status: 200)
        _ = watch.received(body: page("100", [slice("backend-b", version: "95", ["198.18.0.5"])]))
        let done = watch.ended()
        XCTAssertEqual(reported(done), [["198.18.0.3:9090", "198.18.0.5:9090"]])
        XCTAssertTrue((sent(done).first ?? "").contains("watch=1"))
    }

    func testWatchEventsCutAnywhereAcrossChunksMoveTheEndpoints() {
        var watch = machine()
        _ = listed(&watch, [slice("backend-a", version: "90", ["198.18.0.3"])])
        let stream = line("ADDED", slice("backend-b", version: "101", ["198.18.0.6"]))
            + line("MODIFIED", slice("backend-a", version: "102", ["198.18.0.3"], ready: false))
            + line("DELETED", slice("backend-b", version: "103", []))
        var reports: [[String]] = []
        // Three-byte chunks: lines are split mid-JSON and mid-newline.
        let bytes = Array(stream.utf8)
        for start in stride(from: 0, to: bytes.count, by: 3) {
            let chunk = ByteBuffer(bytes: bytes[start..<min(start + 3, bytes.count)])
            let actions = watch.received(body: chunk)
            XCTAssertEqual(sent(actions), [])
            reports += reported(actions)
        }
        XCTAssertEqual(reports, [["198.18.0.3:9090", "198.18.0.6:9090"], ["198.18.0.6:9090"], []])
        XCTAssertEqual(watch.resourceVersion, "103")
    }

    func testABookmarkMovesTheVersionAndAWatchThatEndsResumesFromIt() {
        var watch = machine()
        _ = listed(&watch, [slice("backend-a", version: "90", ["198.18.0.3"])])
        let bookmark = "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"EndpointSlice\",\"metadata\":{\"resourceVersion\":\"250\"}}}\n"
        XCTAssertEqual(watch.received(body: ByteBuffer(string: bookmark)), [], "a bookmark changes no endpoint")
        XCTAssertEqual(watch.resourceVersion, "250")
        let next = watch.ended()
        XCTAssertEqual(next.count, 1)
        XCTAssertTrue((sent(next).first ?? "").hasSuffix("&resourceVersion=250"), "resumed at once, from the bookmark")
    }

    func testAGoneEventOrStatusListsAgainFromScratch() {
        var watch = machine()
        _ = listed(&watch, [slice("backend-a", version: "90", ["198.18.0.3"])])
        let gone = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"Expired\",\"code\":410}}\n"
        let actions = watch.received(body: ByteBuffer(string: gone))
        XCTAssertEqual(actions.first, .close)
        XCTAssertEqual(sent(actions).count, 1)
        XCTAssertTrue((sent(actions).first ?? "").hasSuffix("&limit=500"), "a fresh list, no version")
        // The new list has another pod: reported; the old one is gone.
        XCTAssertEqual(watch.received(status: 200), [])
        _ = watch.received(body: page("400", [slice("backend-a", version: "390", ["198.18.0.7"])]))
        let relisted = watch.ended()
        XCTAssertEqual(reported(relisted), [["198.18.0.7:9090"]])
        XCTAssertTrue((sent(relisted).first ?? "").hasSuffix("&resourceVersion=400"))

        // The watch delivers, is cut, and the resumed one gets 410 as its
        // status (the version was compacted meanwhile): listed again at once.
        _ = watch.received(status: 200)
        _ = watch.received(body: ByteBuffer(string: line("ADDED", slice("backend-b", version: "401", ["198.18.0.8"]))))
        _ = watch.failed("cut")
        XCTAssertTrue((sent(watch.retry()).first ?? "").hasSuffix("&resourceVersion=401"))
        let status = watch.received(status: 410)
        XCTAssertEqual(status.first, .close)
        XCTAssertTrue((sent(status).first ?? "").hasSuffix("&limit=500"))
    }

    func testA410ThatComesBackBeforeAnyEventWaitsTheBackoff() {
        var watch = machine()
        _ = listed(&watch, [slice("backend-a", version: "90", ["198.18.0.3"])])
        XCTAssertEqual(sent(watch.received(status: 410)).count, 1, "the first 410: a list at once")
        _ = watch.received(status: 200)
        _ = watch.received(body: page("500", [slice("backend-a", version: "90", ["198.18.0.3"])]))
        _ = watch.ended()
        let again = watch.received(status: 410)
        XCTAssertEqual(sent(again), [], "a server that answers only 410 is not hammered")
        XCTAssertEqual(again.last, .wait(.milliseconds(500)))
        XCTAssertTrue((sent(watch.retry()).first ?? "").hasSuffix("&limit=500"))
    }

    func testARelistWithTheSameEndpointsReportsNothing() {
        var watch = machine()
        _ = listed(&watch, [slice("backend-a", version: "90", ["198.18.0.3"])])
        _ = watch.received(status: 410)
        _ = watch.received(status: 200)
        _ = watch.received(body: page("500", [slice("backend-a", version: "90", ["198.18.0.3"])]))
        XCTAssertEqual(reported(watch.ended()), [])
    }

    func testRefusalsAndBrokenConnectionsBackOffDoublingToThirtySeconds() {
        var watch = machine()
        _ = watch.start()
        var waits: [Duration] = []
        for _ in 0..<9 {
            let actions = watch.received(status: 403)
            XCTAssertEqual(actions.first, .close)
            guard case .problem(let problem) = actions[1], case .wait(let delay) = actions[2] else {
                return XCTFail("\(actions)")
            }
            XCTAssertTrue(problem.contains("403") && problem.contains("rbac"), problem)
            waits.append(delay)
            let retried = watch.retry()
            XCTAssertTrue((sent(retried).first ?? "").hasSuffix("&limit=500"), "never listed: lists again")
        }
        XCTAssertEqual(waits, [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16),
                               .seconds(30), .seconds(30), .seconds(30)])
        // A good list does not reset it (its watch may still fail at once)...
        _ = watch.received(status: 200)
        _ = watch.received(body: page("100", []))
        _ = watch.ended()
        XCTAssertEqual(watch.failed("connection reset").last, .wait(.seconds(30)))
        // ...a watch that delivers does, even if it breaks later.
        _ = watch.retry()
        _ = watch.received(status: 200)
        _ = watch.received(body: ByteBuffer(string: line("ADDED", slice("backend-b", version: "101", ["198.18.0.6"]))))
        XCTAssertEqual(watch.failed("connection reset").last, .wait(.milliseconds(500)))
    }

    func testAllPagesOfAListTogetherAreBounded() {
        var watch = machine()
        _ = watch.start()
        let big = String(repeating: "x", count: 1 << 20)
        var cut = false
        for index in 0..<80 {
            let actions = watch.received(status: 200)
                + watch.received(body: ByteBuffer(string: "{\"metadata\":{\"resourceVersion\":\"1\",\"continue\":\"p\(index)\"},"
                                                   + "\"items\":[],\"padding\":\"\(big)\"}"))
            if actions.first == .close {
                cut = true
                break
            }
            XCTAssertEqual(sent(watch.ended()).count, 1, "next page")
        }
        XCTAssertTrue(cut, "pages without end are cut off at \(KubernetesWatch.maxListBytes >> 20) MiB in all")
    }

    func testAWatchThatBreaksResumesFromItsVersionAfterTheBackoff() {
        var watch = machine()
        _ = listed(&watch, version: "100", [slice("backend-a", version: "90", ["198.18.0.3"])])
        _ = watch.received(body: ByteBuffer(string: line("ADDED", slice("backend-b", version: "120", ["198.18.0.9"]))))
        let broke = watch.failed("the connection closed")
        XCTAssertEqual(sent(broke), [], "waits first")
        XCTAssertEqual(reported(broke), [], "the endpoints stay")
        let resumed = watch.retry()
        XCTAssertTrue((sent(resumed).first ?? "").hasSuffix("&watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=120"))
    }

    func testAWatchThatEndsWithNothingWaitsBeforeTheNext() {
        var watch = machine()
        _ = listed(&watch, [])
        let ended = watch.ended()
        XCTAssertEqual(ended, [.wait(.milliseconds(500))], "a server that drops every watch is not hammered")
        XCTAssertTrue((sent(watch.retry()).first ?? "").contains("watch=1"))
    }

    func testUndecodableAnswersAndOversizedEventsAreProblemsNotCrashes() {
        var watch = machine()
        _ = watch.start()
        _ = watch.received(status: 200)
        _ = watch.received(body: ByteBuffer(string: "<html>not json</html>"))
        let bad = watch.ended()
        guard case .problem(let problem) = bad.first else { return XCTFail("\(bad)") }
        XCTAssertTrue(problem.contains("not an EndpointSliceList"), problem)

        _ = watch.retry()
        _ = watch.received(status: 200)
        _ = watch.received(body: page("100", [slice("backend-a", version: "90", ["198.18.0.3"])]))
        _ = watch.ended()
        _ = watch.received(status: 200)
        let garbage = watch.received(body: ByteBuffer(string: "{\"type\":\"ADDED\",\"object\":42}\n"))
        XCTAssertEqual(garbage.first, .close)
        XCTAssertEqual(reported(garbage), [])

        _ = watch.retry()
        _ = watch.received(status: 200)
        _ = watch.received(body: page("100", []))
        _ = watch.ended()
        _ = watch.received(status: 200)
        let endless = ByteBuffer(repeating: UInt8(ascii: "x"), count: KubernetesWatch.maxEventBytes + 1)
        let huge = watch.received(body: endless)
        XCTAssertEqual(huge.first, .close, "an event with no end is cut off")
    }

    func testNothingHappensAfterStop() {
        var watch = machine()
        _ = listed(&watch, [slice("backend-a", version: "90", ["198.18.0.3"])])
        watch.stop()
        XCTAssertEqual(watch.received(body: ByteBuffer(string: line("ADDED", slice("backend-b", version: "101", ["198.18.0.6"])))), [])
        XCTAssertEqual(watch.failed("closed"), [])
        XCTAssertEqual(watch.retry(), [])
    }

    func testServerURLsAndTheInClusterEnvironment() throws {
        XCTAssertEqual(try KubernetesServerURL.parse("https://10.96.0.1").get(),
                       KubernetesServerURL(tls: true, host: "10.96.0.1", port: 443))
        XCTAssertEqual(try KubernetesServerURL.parse("https://[2001:2::1]:6443/k8s/clusters/c1/").get(),
                       KubernetesServerURL(tls: true, host: "2001:2::1", port: 6443, pathPrefix: "/k8s/clusters/c1"))
        XCTAssertEqual(try KubernetesServerURL.parse("http://localhost:8001").get().description, "http://localhost:8001")
        for bad in ["ftp://x", "https://", "https://a b", "https://host:0", "https://host:99999", "https://[::1", "https://x/?q",
                    "https://2001:db8::1:6443", "https://host:+443", "https://host:"] {
            XCTAssertThrowsError(try KubernetesServerURL.parse(bad).get(), bad)
        }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-sa-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "payments\n".write(toFile: directory + "/namespace", atomically: true, encoding: .utf8)
        let inCluster = try KubernetesAPIAccess.resolve(nil, environment: [
            "KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443",
        ], serviceAccount: directory).get()
        XCTAssertEqual(inCluster.server.description, "https://[fd00::1]:443")
        XCTAssertEqual(inCluster.tokenFile, directory + "/token")
        XCTAssertEqual(inCluster.caFile, directory + "/ca.crt")
        XCTAssertEqual(inCluster.namespace, "payments")
        guard case .failure(let error) = KubernetesAPIAccess.resolve(nil, environment: [:], serviceAccount: directory) else {
            return XCTFail("no environment, no settings")
        }
        XCTAssertTrue(error.description.contains("kubernetes_api"), error.description)
        let configured = try KubernetesAPIAccess.resolve(
            KubernetesAPISettings(server: KubernetesServerURL(tls: false, host: "127.0.0.1", port: 8001)),
            environment: [:], serviceAccount: directory + "/none").get()
        XCTAssertEqual(configured.namespace, "default")
    }
}
