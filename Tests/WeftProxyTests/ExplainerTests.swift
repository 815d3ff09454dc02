import WeftConfig
import WeftCore
import WeftObservability
import XCTest
@testable import WeftProxy

/// `/explain` from the live state, without a socket: the verdicts follow
/// the endpoint states and the locality shares the balancer uses, and move
/// back when the states do.
final class ExplainerTests: XCTestCase {
    private let identity = NodeIdentity(id: "client", addresses: [IPAddress("198.18.0.2")!],
                                        listenerPorts: [15001, 15006, 15008, 15000, 15020])

    private func snapshot(_ yaml: String) throws -> RuntimeSnapshot {
        RuntimeSnapshot(configuration: try ConfigLoader.load(yaml: yaml))
    }

    private func explain(_ snapshot: RuntimeSnapshot, _ destination: String, host: String? = nil,
                         path: String? = nil) throws -> Explanation {
        Explainer.explain(destination: try XCTUnwrap(IPEndpoint(destination)), host: host, path: path,
                          snapshot: snapshot, identity: identity)
    }

    private let zoned = """
        node: { id: client, locality: { region: lab, zone: a } }
        clusters:
          - name: backend
            addresses: ["198.19.0.1:80"]
            hostnames: [backend]
            endpoints:
              - { address: "198.18.0.10:80", locality: { region: lab, zone: a } }
              - { address: "198.18.0.11:80", locality: { region: lab, zone: a } }
              - { address: "198.18.0.12:80", locality: { region: lab, zone: b } }
        """

    func testAnotherZoneGetsNoTrafficUntilTheNearOnesFailAndThenAllOfIt() throws {
        let state = try snapshot(zoned)
        var answer = try explain(state, "198.19.0.1:80")
        XCTAssertEqual(answer.endpoints.map(\.getsTraffic), [true, true, false])
        XCTAssertEqual(answer.endpoints.map(\.tierShare), [1, 1, 0])
        XCTAssertEqual(answer.endpoints[2].why, "its locality tier takes no traffic now: nearer endpoints are healthy enough")
        XCTAssertEqual(answer.endpoints[2].locality, "lab/b")

        let backend = try XCTUnwrap(state.upstream(named: "backend"))
        _ = backend.health[0].setFailingHealthCheck(true)
        _ = backend.health[1].setFailingHealthCheck(true)
        answer = try explain(state, "198.19.0.1:80")
        XCTAssertEqual(answer.endpoints.map(\.getsTraffic), [false, false, true])
        XCTAssertEqual(answer.endpoints.map(\.why), ["failing its active health check", "failing its active health check", nil])
        XCTAssertEqual(answer.endpoints[2].tierShare, 1)

        // One near endpoint back: its zone takes 1/2 × 1.4 = 70%, the rest spills.
        _ = backend.health[0].setFailingHealthCheck(false)
        answer = try explain(state, "198.19.0.1:80")
        XCTAssertEqual(answer.endpoints.map(\.getsTraffic), [true, false, true])
        let shares = answer.endpoints.map { ($0.tierShare ?? -1) * 100 }.map { $0.rounded() }
        XCTAssertEqual(shares, [70, 70, 30])
    }

    func testWithNoEndpointUsablePanicModeServesEveryOne() throws {
        let state = try snapshot(zoned)
        let backend = try XCTUnwrap(state.upstream(named: "backend"))
        for health in backend.health { _ = health.setFailingHealthCheck(true) }
        let answer = try explain(state, "198.19.0.1:80")
        XCTAssertEqual(answer.endpoints.map(\.getsTraffic), [true, true, true])
        XCTAssertEqual(answer.endpoints.map(\.usable), [false, false, false])
        XCTAssertTrue(answer.summary.last?.contains("panic mode balances over all of them") == true, "\(answer.summary)")
    }

    func testAHostnameNamesTheClusterOfAPassthroughRequest() throws {
        let state = try snapshot(zoned)
        let named = try explain(state, "198.18.0.99:80", host: "backend:80", path: "/")
        XCTAssertEqual(named.verdict, "cluster")
        XCTAssertEqual(named.cluster?.name, "backend")
        XCTAssertEqual(named.cluster?.matchedBy, "hostname backend:80")
        let unnamed = try explain(state, "198.18.0.99:80", host: "elsewhere", path: "/")
        XCTAssertEqual(unnamed.verdict, "passthrough")
        XCTAssertNil(unnamed.cluster)
    }

    func testRegistryOnlyAndOwnListenersAreRefusedWithTheReasonCounted() throws {
        let state = try snapshot("""
            outbound_policy: registry_only
            clusters: [{ name: backend, addresses: ["198.19.0.1:80"], endpoints: [{ address: "198.18.0.10:80" }] }]
            """)
        let unknown = try explain(state, "198.18.0.99:80")
        XCTAssertEqual(unknown.verdict, "refused")
        XCTAssertEqual(unknown.refusal, "registry_only")
        let own = try explain(state, "198.18.0.2:15006")
        XCTAssertEqual(own.refusal, "loop")
        XCTAssertTrue(own.summary.first?.contains("this node's own address") == true, "\(own.summary)")
    }

    func testPoliciesInWordsAndAnOpenBreaker() throws {
        let state = try snapshot("""
            clusters:
              - name: backend
                addresses: ["198.19.0.1:80"]
                retries: { attempts: 2, on: [connect-failure, "503"], per_try_timeout: 300ms }
                circuit_breakers: { max_requests: 1 }
                rate_limit: { per_second: 10, burst: 5 }
                endpoints: [{ address: "198.18.0.10:80" }]
            """)
        let admission = try XCTUnwrap(state.upstream(named: "backend")?.admission)
        XCTAssertTrue(admission.acquire(.requests))
        let policies = Dictionary(uniqueKeysWithValues: try explain(state, "198.19.0.1:80").policies.map { ($0.name, $0.value) })
        XCTAssertEqual(policies["retries"], "2 more on 503, connect-failure, 300ms per try, budget 20%")
        XCTAssertEqual(policies["rate_limit"], "10/s, burst 5: over it, 429")
        XCTAssertTrue(policies["circuit_breakers"]?.contains("max_requests 1/1 (open: 503 overflow)") == true,
                      policies["circuit_breakers"] ?? "")
        admission.release(.requests)
    }
}
