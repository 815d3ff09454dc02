import XCTest
import WeftConfig

/// `health_check` and `outlier_detection` (SPEC §5, Endpoint health).
final class HealthConfigTests: XCTestCase {
    private func cluster(_ extra: String) throws -> Cluster {
        let configuration = try ConfigLoader.load(yaml: """
            clusters:
              - name: backend
                endpoints: [{ address: "198.18.0.2:9090" }]
            \(extra)
            """)
        return try XCTUnwrap(configuration.clusters.first)
    }

    func testTheSpecExampleIsTakenAsWritten() throws {
        let backend = try cluster("""
                health_check: { protocol: http, path: /healthz, interval: 5s, timeout: 1s, healthy: 2, unhealthy: 3 }
                outlier_detection: { consecutive_5xx: 5, consecutive_gateway_errors: 5, interval: 10s, base_ejection: 30s, max_ejection_percent: 50 }
            """)
        XCTAssertEqual(backend.healthCheck, HealthCheck(kind: .http, path: "/healthz", interval: .seconds(5),
                                                        timeout: .seconds(1), healthy: 2, unhealthy: 3))
        XCTAssertEqual(backend.outlierDetection, OutlierDetection(consecutive5xx: 5, consecutiveGatewayErrors: 5,
                                                                  interval: .seconds(10), baseEjection: .seconds(30),
                                                                  maxEjectionPercent: 50))
    }

    func testDefaultsAndNone() throws {
        let plain = try cluster("")
        XCTAssertNil(plain.healthCheck)
        XCTAssertNil(plain.outlierDetection, "no ejection unless asked for, as in Envoy")
        let defaults = try cluster("""
                health_check: { protocol: tcp }
                outlier_detection: {}
            """)
        XCTAssertEqual(defaults.healthCheck, HealthCheck(kind: .tcp))
        XCTAssertEqual(defaults.outlierDetection, OutlierDetection())
    }

    func testMistakesAreNamed() {
        assertProblems("""
            clusters:
              - name: backend
                endpoints: [{ address: "198.18.0.2:9090" }]
                health_check: { protocol: tcp, path: /healthz, interval: 1s, timeout: 2s, healthy: 0 }
                outlier_detection: { consecutive_5xx: 0, consecutive_gateway_errors: 0, max_ejection_percent: 101, base_ejection: 1m, max_ejection: 10s }
              - name: other
                endpoints: [{ address: "198.18.0.3:9090" }]
                health_check: { protocol: http, path: healthz }
              - name: third
                endpoints: [{ address: "198.18.0.4:9090" }]
                health_check: { interval: 5s }
            """, [
            "clusters[0].health_check.path: path applies only to protocol: http",
            "clusters[0].health_check.timeout: timeout (2.0 seconds) must not be longer than interval (1.0 seconds)",
            "clusters[0].health_check.healthy: 0 is out of range (1-100)",
            "clusters[0].outlier_detection: consecutive_5xx and consecutive_gateway_errors are both 0: nothing would ever be ejected",
            "clusters[0].outlier_detection.max_ejection_percent: 101 is out of range (0-100)",
            "clusters[0].outlier_detection.max_ejection: max_ejection (10.0 seconds) must not be shorter than base_ejection (60.0 seconds)",
            #"clusters[1].health_check.path: "healthz" is not a valid request path (it starts with "/", without spaces)"#,
            "clusters[2].health_check.protocol: required key is missing",
        ])
    }

    func testRetries() throws {
        let backend = try cluster("""
                retries: { attempts: 2, on: [connect-failure, reset, "503", 5xx, gateway-error, refused-stream], per_try_timeout: 5s, budget_percent: 20 }
            """)
        XCTAssertEqual(backend.retries, RetryPolicy(attempts: 2, conditions: [.connectFailure, .reset, .status(503),
                                                                              .serverError, .gatewayError, .refusedStream],
                                                    perTryTimeout: .seconds(5), budgetPercent: 20))
        XCTAssertNil(try cluster("").retries)
        assertProblems("""
            clusters:
              - name: backend
                endpoints: [{ address: "198.18.0.2:9090" }]
                retries: { attempts: 11, on: [sometimes, "200"], budget_percent: -1 }
            """, [
            "clusters[0].retries.attempts: 11 is out of range (0-10)",
            #"clusters[0].retries.on[0]: "sometimes" is not a retry condition (connect-failure, reset, refused-stream, 5xx, gateway-error, or a status 400-599 such as "503")"#,
            #"clusters[0].retries.on[1]: "200" is not a retry condition (connect-failure, reset, refused-stream, 5xx, gateway-error, or a status 400-599 such as "503")"#,
            "clusters[0].retries.budget_percent: -1 is out of range (0-100)",
        ])
    }

    func testEgressAndRoutingListeners() throws {
        let configuration = try ConfigLoader.load(yaml: """
            listeners:
              egress: [{ port: 9250, cluster: dynamodb }]
              http_routing: { port: 9001 }
            clusters:
              - name: dynamodb
                endpoints: [{ address: "198.18.9.1:80" }]
            """)
        XCTAssertEqual(configuration.listeners.egress, [EgressListener(port: 9250, cluster: "dynamodb")])
        XCTAssertEqual(configuration.listeners.httpRouting, PortListener(port: 9001))
        XCTAssertTrue(configuration.listeners.ownPorts.isSuperset(of: [9250, 9001]), "never proxied, never delivered to")
        assertProblems("""
            listeners:
              egress: [{ port: 9250, cluster: dynamo }, { port: 15001, cluster: dynamodb }, { cluster: dynamodb }]
              http_routing: { port: 9250 }
            clusters:
              - name: dynamodb
                endpoints: [{ address: "198.18.9.1:80" }]
            """, [
            #"listeners.egress[0].cluster: "dynamo" is not a cluster defined in clusters"#,
            "listeners.egress[1].port: 15001 is already used by the outbound listener",
            "listeners.egress[2].port: required key is missing",
            "listeners.http_routing.port: 9250 is already used by the egress[0] listener",
        ])
    }

    func testIdleTimeout() throws {
        XCTAssertEqual(try cluster("").timeouts.idle, .seconds(3600), "Envoy's default: an hour")
        XCTAssertEqual(try cluster("    timeouts: { idle: 90s }").timeouts.idle, .seconds(90))
    }

    func testLocality() throws {
        let configuration = try ConfigLoader.load(yaml: """
            node: { locality: { region: eu-west, zone: a } }
            clusters:
              - name: backend
                endpoints: [{ address: "198.18.0.2:9090", locality: { region: eu-west, zone: b } }, { address: "198.18.0.3:9090" }]
            """)
        XCTAssertEqual(configuration.node.locality, Locality(region: "eu-west", zone: "a"))
        XCTAssertEqual(configuration.clusters[0].endpoints.map(\.locality), [Locality(region: "eu-west", zone: "b"), nil])
        assertProblems("""
            clusters:
              - name: backend
                endpoints: [{ address: "198.18.0.2:9090", locality: { rack: 3 } }]
            """, [#"clusters[0].endpoints[0].locality.rack: unknown key"#])
    }

    func testDNSRefreshHasAFloor() {
        assertProblems("""
            clusters:
              - name: backend
                discovery: dns
                dns_refresh: 10ms
                endpoints: [{ address: "backend.internal:9090" }]
            """, ["clusters[0].dns_refresh: dns_refresh must be at least 100ms"])
    }
}
