import WeftConfig
import WeftCore
import XCTest

/// Valid configs map to the expected `Configuration`.
final class ConfigLoaderTests: XCTestCase {
    func testFullConfigMapsEveryField() throws {
        let config = try ConfigLoader.load(yaml: """
            node:
              id: frontend-0
              addresses: [198.18.0.1, "2001:db8::1"]
              proxy_uid: 1500
              locality: { region: eu-west, zone: a }
            listeners:
              outbound: { port: 16001 }
              inbound:  { port: 16006, deliver_to: pod_ip, plaintext: deny }
              mesh:     { port: 16008 }
              admin:    { address: "::1", port: 16000 }
              health:   { port: 16020 }
            outbound_policy: registry_only
            detect_timeout: 250ms
            drain_timeout: 1m
            opaque_ports: [5432, 6379]
            clusters:
              - name: backend
                addresses: ["198.19.0.10:9090", "[2001:db8::10]:9090"]
                hostnames: [Backend, "backend.default.svc.cluster.local."]
                protocol: http2
                mesh: true
                discovery: static
                lb: round_robin
                endpoints:
                  - { address: "198.18.0.2:9090", weight: 3 }
                  - address: "[2001:db8::2]:9090"
                timeouts: { connect: 1.5s, request: 2m }
              - name: redis
                protocol: tcp
                endpoints: [{ address: "198.18.0.5:6379" }]
            """)

        XCTAssertEqual(config.node, NodeSettings(
            id: "frontend-0",
            addresses: .list([try XCTUnwrap(IPAddress("198.18.0.1")), try XCTUnwrap(IPAddress("2001:db8::1"))]),
            proxyUID: 1500,
            locality: Locality(region: "eu-west", zone: "a")
        ))
        XCTAssertEqual(config.listeners.outbound.port, 16001)
        XCTAssertEqual(config.listeners.inbound, InboundListener(port: 16006, deliverTo: .podIP, plaintext: .deny))
        XCTAssertEqual(config.listeners.mesh.port, 16008)
        XCTAssertEqual(config.listeners.admin, AddressListener(address: .loopbackV6, port: 16000))
        XCTAssertEqual(config.listeners.health.port, 16020)
        XCTAssertEqual(config.outboundPolicy, .registryOnly)
        XCTAssertEqual(config.detectTimeout, .milliseconds(250))
        XCTAssertEqual(config.drainTimeout, .seconds(60))
        XCTAssertEqual(config.opaquePorts, [5432, 6379])

        XCTAssertEqual(config.clusters.count, 2)
        let backend = config.clusters[0]
        XCTAssertEqual(backend.name, "backend")
        XCTAssertEqual(backend.addresses, [
            try XCTUnwrap(IPEndpoint("198.19.0.10:9090")), try XCTUnwrap(IPEndpoint("[2001:db8::10]:9090")),
        ])
        XCTAssertEqual(backend.hostnames, ["backend", "backend.default.svc.cluster.local"])
        XCTAssertEqual(backend.protocol, .http2)
        XCTAssertTrue(backend.mesh)
        XCTAssertEqual(backend.discovery, .static)
        XCTAssertEqual(backend.lb, .roundRobin)
        XCTAssertEqual(backend.endpoints, [
            Endpoint(address: try XCTUnwrap(IPEndpoint("198.18.0.2:9090")), weight: 3),
            Endpoint(address: try XCTUnwrap(IPEndpoint("[2001:db8::2]:9090")), weight: 1),
        ])
        XCTAssertEqual(backend.timeouts.connect, .milliseconds(1500))
        XCTAssertEqual(backend.timeouts.request, .seconds(120))

        let redis = config.clusters[1]
        XCTAssertEqual(redis, Cluster(
            name: "redis", protocol: .tcp,
            endpoints: [Endpoint(address: try XCTUnwrap(IPEndpoint("198.18.0.5:6379")))]
        ))
        XCTAssertFalse(redis.mesh)
        XCTAssertEqual(redis.timeouts.connect, .seconds(5))
        XCTAssertEqual(redis.timeouts.request, .seconds(15), "the default")
    }

    func testEmptyDocumentsAreAnInboundOnlyNodeWithDefaults() throws {
        for yaml in ["", "\n", "# nothing here\n", "{}", "---\n", "~"] {
            let config = try ConfigLoader.load(yaml: yaml)
            XCTAssertEqual(config, Configuration(), "for \(yaml.debugDescription)")
        }
    }

    func testDefaultsMatchTheSpec() throws {
        let config = try ConfigLoader.load(yaml: "{}")
        XCTAssertNil(config.node.id)
        XCTAssertEqual(config.node.addresses, .auto)
        XCTAssertEqual(config.node.proxyUID, 1337)
        XCTAssertEqual(config.node.locality, Locality())
        XCTAssertEqual(config.listeners.outbound.port, 15001)
        XCTAssertEqual(config.listeners.inbound, InboundListener(port: 15006, deliverTo: .loopback, plaintext: .allow))
        XCTAssertEqual(config.listeners.mesh.port, 15008)
        XCTAssertEqual(config.listeners.admin, AddressListener(address: .loopbackV4, port: 15000))
        XCTAssertEqual(config.listeners.health.port, 15020)
        XCTAssertEqual(config.outboundPolicy, .allowAny)
        XCTAssertEqual(config.detectTimeout, .seconds(1))
        XCTAssertEqual(config.drainTimeout, .seconds(20))
        XCTAssertEqual(config.opaquePorts, [25, 587, 3306, 4444, 5432, 6379, 9300, 11211])
        XCTAssertEqual(config.clusters, [])
    }

    func testClusterDefaults() throws {
        let config = try ConfigLoader.load(yaml: oneCluster)
        XCTAssertEqual(config.clusters, [
            Cluster(name: "backend", endpoints: [Endpoint(address: try XCTUnwrap(IPEndpoint("198.18.0.2:9090")))]),
        ])
        let cluster = config.clusters[0]
        XCTAssertEqual(cluster.protocol, .auto)
        XCTAssertFalse(cluster.mesh)
        XCTAssertEqual(cluster.endpoints[0].weight, 1)
        XCTAssertEqual(cluster.timeouts.connect, .seconds(5))
    }

    func testNullValuesMeanTheDefault() throws {
        let config = try ConfigLoader.load(yaml: "node:\nlisteners: { mesh: ~ }\ndetect_timeout: null\n")
        XCTAssertEqual(config, Configuration())
    }

    func testEmptyOpaquePortsTurnsTheListOff() throws {
        XCTAssertEqual(try ConfigLoader.load(yaml: "opaque_ports: []").opaquePorts, [])
    }

    func testNodeAddressesAuto() throws {
        XCTAssertEqual(try ConfigLoader.load(yaml: "node: { addresses: auto }").node.addresses, .auto)
    }

    func testExampleConfigInDocsIsValid() throws {
        let example = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/examples/weft.yaml")
        let config: Configuration
        do {
            config = try ConfigLoader.load(path: example.path)
        } catch {
            return XCTFail("docs/examples/weft.yaml is refused:\n\(error)")
        }
        XCTAssertEqual(config.clusters.map(\.name), ["backend", "postgres"])
        XCTAssertEqual(config.clusters.reduce(0) { $0 + $1.endpoints.count }, 3)
        XCTAssertEqual(config.node.locality, Locality(region: "eu-west", zone: "a"))
    }

    func testLoadPathReadsTheFile() throws {
        let file = FileManager.default.temporaryDirectory
            .appendingPathComponent("weft-config-test-\(UUID().uuidString).yaml")
        try Data(oneCluster.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        XCTAssertEqual(try ConfigLoader.load(path: file.path).clusters.map(\.name), ["backend"])
    }
}
