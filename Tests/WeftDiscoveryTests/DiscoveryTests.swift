import Foundation
import Synchronization
import XCTest
import WeftConfig
import WeftCore
@testable import WeftDiscovery

/// A resolver whose answers the test sets.
final class FakeResolver: HostResolver {
    let answers = Mutex<[String: Result<[IPAddress], HostResolutionError>]>([:])

    func set(_ host: String, _ addresses: [String]) {
        answers.withLock { $0[host] = .success(addresses.compactMap(IPAddress.init)) }
    }

    func fail(_ host: String) {
        answers.withLock { $0[host] = .failure(HostResolutionError("SERVFAIL")) }
    }

    func resolve(_ host: String) -> Result<[IPAddress], HostResolutionError> {
        answers.withLock { $0[host] } ?? .failure(HostResolutionError("unknown host"))
    }
}

final class DNSEndpointSourceTests: XCTestCase {
    func testEveryAddressBecomesAnEndpointAndOnlyChangesAreReported() {
        let resolver = FakeResolver()
        resolver.set("backend.internal", ["198.18.0.3", "198.18.0.2", "2001:2::4"])
        resolver.set("other.internal", ["198.18.0.9"])
        let problems = Mutex<[String]>([])
        let source = DNSEndpointSource(names: [NamedEndpoint(host: "backend.internal", port: 9090, weight: 2, mesh: true),
                                               NamedEndpoint(host: "other.internal", port: 80),
                                               NamedEndpoint(host: "never.internal", port: 80)],
                                       refresh: .seconds(5), resolver: resolver,
                                       onProblem: { problem in problems.withLock { $0.append(problem) } })
        resolver.fail("never.internal")
        let first = source.resolveAll()
        XCTAssertEqual(first?.map(\.address.description),
                       ["198.18.0.2:9090", "198.18.0.3:9090", "198.18.0.9:80", "[2001:2::4]:9090"])
        XCTAssertEqual(first?.first, Endpoint(address: IPEndpoint("198.18.0.2:9090")!, weight: 2, mesh: true))
        XCTAssertNil(source.resolveAll(), "the same answer is no change")
        resolver.set("backend.internal", ["2001:2::4", "198.18.0.3", "198.18.0.2"])
        XCTAssertNil(source.resolveAll(), "a reordered answer is no change")

        // A failed lookup keeps that name's last answer; the other name moves.
        resolver.fail("backend.internal")
        resolver.set("other.internal", ["198.18.0.10"])
        XCTAssertEqual(source.resolveAll()?.map(\.address.description),
                       ["198.18.0.10:80", "198.18.0.2:9090", "198.18.0.3:9090", "[2001:2::4]:9090"])
        XCTAssertEqual(problems.withLock { $0 }, ["never.internal: SERVFAIL (never resolved)", "backend.internal: SERVFAIL"])
        XCTAssertNil(source.resolveAll())
        XCTAssertEqual(problems.withLock { $0.count }, 2, "a problem is told once, not once per refresh")

        resolver.set("backend.internal", ["198.18.0.5"])
        XCTAssertEqual(source.resolveAll()?.map(\.address.description), ["198.18.0.10:80", "198.18.0.5:9090"])
    }

    func testTheTimerReportsWithinARefresh() throws {
        let resolver = FakeResolver()
        resolver.set("svc", ["198.18.0.2"])
        let source = DNSEndpointSource(names: [NamedEndpoint(host: "svc", port: 80)], refresh: .milliseconds(100),
                                       resolver: resolver)
        let reported = Mutex<[[Endpoint]]>([])
        source.start { endpoints in reported.withLock { $0.append(endpoints) } }
        defer { source.stop() }
        XCTAssertTrue(eventually { reported.withLock { $0.count } == 1 })
        resolver.set("svc", ["198.18.0.2", "198.18.0.3"])
        XCTAssertTrue(eventually { reported.withLock { $0.count } == 2 })
        XCTAssertEqual(reported.withLock { $0.last?.count }, 2)
    }

    func testTheSystemResolverReadsHostsAndLiterals() {
        XCTAssertEqual(try SystemResolver().resolve("127.0.0.1").get(), [.loopbackV4])
        XCTAssertEqual(try SystemResolver().resolve("::1").get(), [.loopbackV6])
        XCTAssertNotNil(try? SystemResolver().resolve("localhost").get().first)
        if case .success = SystemResolver().resolve("no-such-host.invalid") { XCTFail("resolved .invalid") }
    }
}

final class FileEndpointSourceTests: XCTestCase {
    func testTheListIsReadAtStartAndOnEveryChange() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-file-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("endpoints.yaml").path
        try #"- { address: "198.18.0.2:9090" }"#.write(toFile: path, atomically: true, encoding: .utf8)

        let reported = Mutex<[[Endpoint]]>([])
        let problems = Mutex<[String]>([])
        let source = FileEndpointSource(path: path, onProblem: { problem in problems.withLock { $0.append(problem) } })
        source.start { endpoints in reported.withLock { $0.append(endpoints) } }
        defer { source.stop() }
        XCTAssertTrue(eventually { reported.withLock { $0.count } == 1 })
        XCTAssertEqual(reported.withLock { $0.last }, [Endpoint(address: IPEndpoint("198.18.0.2:9090")!)])

        // Replaced by rename, as tools (and ConfigMaps) do.
        try """
            - { address: "198.18.0.2:9090" }
            - { address: "198.18.0.3:9090", weight: 3, mesh: false }
            """.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(eventually { reported.withLock { $0.count } == 2 })
        XCTAssertEqual(reported.withLock { $0.last?.last }, Endpoint(address: IPEndpoint("198.18.0.3:9090")!, weight: 3, mesh: false))

        // A broken file keeps the last list and says why.
        try "- { address: nowhere }".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(eventually { problems.withLock { $0.count } == 1 })
        XCTAssertEqual(reported.withLock { $0.count }, 2)
        XCTAssertTrue(problems.withLock { $0.first ?? "" }.contains("[0].address"), problems.withLock { $0.first ?? "" })

        // An empty file (a writer caught halfway) and a missing one keep it too.
        try "".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(eventually { problems.withLock { $0.count } == 2 })
        XCTAssertTrue(problems.withLock { $0[1] }.contains("is empty"))
        try FileManager.default.removeItem(atPath: path)
        XCTAssertTrue(eventually { problems.withLock { $0.count } == 3 })
        XCTAssertTrue(problems.withLock { $0[2] }.contains("no such file"))
        usleep(1_500_000)
        XCTAssertEqual(problems.withLock { $0.count }, 3, "a missing file is told once")
        XCTAssertEqual(reported.withLock { $0.count }, 2)
        try "[]".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertTrue(eventually { reported.withLock { $0.count } == 3 })
        XCTAssertEqual(reported.withLock { $0.last }, [], "[] says: no endpoints")
    }

    func testEndpointListParsing() throws {
        XCTAssertEqual(try ConfigLoader.loadEndpoints(yaml: ""), [])
        XCTAssertEqual(try ConfigLoader.loadEndpoints(yaml: "[]"), [])
        XCTAssertThrowsError(try ConfigLoader.loadEndpoints(yaml: "{ address: x }"))
        XCTAssertThrowsError(try ConfigLoader.loadEndpoints(yaml: #"- { address: "198.18.0.2:80", colour: red }"#))
    }
}

/// Polls `condition` for up to five seconds.
func eventually(_ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(5)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}
