import Foundation
import XCTest

@testable import WeftInject

/// Golden files: Golden/workloads.yaml injected in the native and the
/// classic form must read exactly as workloads.native.yaml and
/// workloads.classic.yaml (scripts/test also validates those two with
/// kubernetes-validate). WEFT_UPDATE_GOLDEN=1 rewrites them from the code.
final class InjectorTests: XCTestCase {
    private let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    private func read(_ name: String) throws -> String {
        try String(contentsOf: golden.appendingPathComponent(name), encoding: .utf8)
    }

    private func check(classic: Bool, expected name: String) throws -> String {
        var options = Injector.Options()
        options.classic = classic
        let (out, outcomes) = try Injector.inject(try read("workloads.yaml"), options: options)
        if ProcessInfo.processInfo.environment["WEFT_UPDATE_GOLDEN"] == "1" {
            try out.write(to: golden.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        XCTAssertEqual(out, try read(name), "weft inject\(classic ? " --classic" : "") no longer gives \(name)")
        XCTAssertEqual(outcomes.map(\.description), [
            "Deployment/frontend: injected", "StatefulSet/ledger: injected", "DaemonSet/agent: injected",
            "Job/report: injected", "CronJob/nightly: injected", "Pod/debug: weft.io/inject: false",
            "Pod/toolbox: injected", "Service/frontend: not a workload",
        ])
        return out
    }

    func testTheNativeFormMatchesItsGoldenFile() throws {
        _ = try check(classic: false, expected: "workloads.native.yaml")
    }

    func testTheClassicFormMatchesItsGoldenFile() throws {
        _ = try check(classic: true, expected: "workloads.classic.yaml")
    }

    func testInjectingTwiceChangesNothing() throws {
        for classic in [false, true] {
            var options = Injector.Options()
            options.classic = classic
            let once = try Injector.inject(try read("workloads.yaml"), options: options)
            let twice = try Injector.inject(once.yaml, options: options)
            XCTAssertEqual(twice.yaml, once.yaml)
            XCTAssertEqual(twice.outcomes.filter { $0.action == .injected }, [])
        }
    }

    func testProbePortsAndAnnotationsReachWeftInit() throws {
        let (out, _) = try Injector.inject(try read("workloads.yaml"))
        // frontend: the readiness probe names port `admin` (8081), the liveness
        // probe uses 8081 too: excluded once. ledger: the annotations, and no
        // probe port (weft.io/exclude-probe-ports: "false").
        XCTAssertTrue(out.contains("- \"--exclude-inbound-ports\"\n        - \"8081\""), out)
        XCTAssertTrue(out.contains("- \"--exclude-inbound-ports\"\n        - \"22,7000\"\n        - \"--exclude-outbound-ports\"\n        - \"5432\"\n        - \"--exclude-outbound-cidrs\"\n        - \"10.96.0.0/12\""), out)
        XCTAssertFalse(out.contains("9090\""), "the ledger's probe port was excluded against its annotation")
    }

    func testTheSidecarComesBeforeTheAppsOwnInitContainers() throws {
        let (out, _) = try Injector.inject(try read("workloads.yaml"))
        let ledger = try XCTUnwrap(out.range(of: "name: ledger\n"))
        let tail = out[ledger.upperBound...]
        let proxy = try XCTUnwrap(tail.range(of: "name: weft-proxy"))
        let migrate = try XCTUnwrap(tail.range(of: "name: migrate"))
        XCTAssertLessThan(proxy.lowerBound, migrate.lowerBound, "the app's init containers would run without weft")
    }

    func testBadInputIsAClearError() {
        XCTAssertThrowsError(try Injector.inject("kind: Deployment\napiVersion: apps/v1\nspec: [1]\n")) {
            XCTAssertTrue("\($0)".contains("no pod template at spec.template"), "\($0)")
        }
        XCTAssertThrowsError(try Injector.inject("a: [unclosed\n")) {
            XCTAssertTrue("\($0)".hasPrefix("not YAML"), "\($0)")
        }
    }
}
