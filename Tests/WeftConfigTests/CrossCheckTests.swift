import WeftConfig
import XCTest

/// Problems that span clusters and listeners.
final class CrossCheckTests: XCTestCase {
    func testDuplicateClusterNames() {
        assertProblems("""
            clusters:
              - { name: backend, endpoints: [{ address: "198.18.0.2:80" }] }
              - { name: backend, endpoints: [{ address: "198.18.0.3:80" }] }
            """, [#"clusters[1].name: "backend" is already used by clusters[0].name"#])
    }

    func testSameVIPInTwoClusters() {
        assertProblems("""
            clusters:
              - { name: a, addresses: ["198.19.0.10:80"], endpoints: [{ address: "198.18.0.2:80" }] }
              - { name: b, addresses: ["198.19.0.11:80", "198.19.0.10:80"], endpoints: [{ address: "198.18.0.3:80" }] }
            """, [#"clusters[1].addresses[1]: "198.19.0.10:80" is already used by clusters[0].addresses[0]"#])
    }

    func testSameVIPOnAnotherPortIsFine() throws {
        XCTAssertNoThrow(try ConfigLoader.load(yaml: """
            clusters:
              - { name: a, addresses: ["198.19.0.10:80"], endpoints: [{ address: "198.18.0.2:80" }] }
              - { name: b, addresses: ["198.19.0.10:81"], endpoints: [{ address: "198.18.0.3:80" }] }
            """))
    }

    func testHostnameInTwoClustersIgnoringCase() {
        assertProblems("""
            clusters:
              - { name: a, hostnames: [backend], endpoints: [{ address: "198.18.0.2:80" }] }
              - { name: b, hostnames: [BACKEND], endpoints: [{ address: "198.18.0.3:80" }] }
            """, [#"clusters[1].hostnames[0]: "backend" is already used by clusters[0].hostnames[0]"#])
    }

    func testDuplicateEndpointInOneCluster() {
        assertProblems("""
            clusters:
              - name: a
                endpoints: [{ address: "198.18.0.2:80" }, { address: "198.18.0.2:80", weight: 2 }]
            """, [#"clusters[0].endpoints[1].address: "198.18.0.2:80" is already used by clusters[0].endpoints[0].address"#])
    }

    func testListenerPortsCollide() {
        assertProblems("listeners: { mesh: { port: 15001 } }", [
            "listeners.mesh.port: 15001 is already used by the outbound listener",
        ])
        // Blamed on the port the file sets, not on the default it hits.
        assertProblems("listeners: { outbound: { port: 15020 } }", [
            "listeners.outbound.port: 15020 is already used by the health listener",
        ])
        assertProblems("listeners: { admin: { port: 9000 }, health: { port: 9000 } }", [
            "listeners.health.port: 9000 is already used by the admin listener",
        ])
    }

    func testNothingPointsAtWeftOnLoopback() {
        assertProblems("""
            listeners: { outbound: { port: 16001 } }
            clusters:
              - name: a
                addresses: ["127.0.0.1:16001"]
                endpoints: [{ address: "[::1]:15000" }, { address: "127.0.0.2:15008" }]
            """, [
            #"clusters[0].addresses[0]: "127.0.0.1:16001" is weft's own outbound listener (traffic would loop)"#,
            #"clusters[0].endpoints[0].address: "[::1]:15000" is weft's own admin listener (traffic would loop)"#,
            #"clusters[0].endpoints[1].address: "127.0.0.2:15008" is weft's own mesh listener (traffic would loop)"#,
        ])
    }

    func testWeftPortsOnOtherHostsAreFine() throws {
        XCTAssertNoThrow(try ConfigLoader.load(yaml: """
            clusters: [{ name: a, endpoints: [{ address: "198.18.0.2:15008" }, { address: "127.0.0.1:8080" }] }]
            """))
    }
}
