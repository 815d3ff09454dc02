import WeftConfig
import WeftCore
import XCTest

/// Each class of problem names the right path and value.
final class ConfigProblemTests: XCTestCase {
    func testBadEndpointPort() {
        assertProblems("""
            clusters:
              - name: backend
                endpoints: [{ address: "198.18.0.2:99999" }]
            """, [#"clusters[0].endpoints[0].address: "198.18.0.2:99999" is not a valid IP:port"#])
    }

    func testBadAddresses() {
        assertProblems("""
            node: { addresses: [198.18.0.1, 10.0.0.300] }
            listeners: { admin: { address: localhost } }
            clusters:
              - name: backend
                addresses: ["198.19.0.10", "2001:db8::1:80"]
                endpoints: [{ address: "198.18.0.2:9090" }]
            """, [
            #"node.addresses[1]: "10.0.0.300" is not a valid IP address"#,
            #"listeners.admin.address: "localhost" is not a valid IP address"#,
            #"clusters[0].addresses[0]: "198.19.0.10" is not a valid IP:port"#,
            #"clusters[0].addresses[1]: "2001:db8::1:80" is not a valid IP:port"#,
        ])
    }

    func testUnknownKeysAtEveryLevel() {
        assertProblems("""
            colour: blue
            node: { name: x }
            listeners: { outbound: { port: 15001, bind: 0.0.0.0 } }
            clusters:
              - name: a
                endpoints: [{ address: "198.18.0.2:80" }]
              - name: b
                endpoints: [{ address: "198.18.0.3:80", wieght: 2 }]
                timeouts: { conect: 1s }
            """, [
            "colour: unknown key",
            "node.name: unknown key",
            "listeners.outbound.bind: unknown key",
            #"clusters[1].endpoints[0].wieght: unknown key (did you mean "weight"?)"#,
            #"clusters[1].timeouts.conect: unknown key (did you mean "connect"?)"#,
        ])
    }

    func testWrongTypes() {
        assertProblems("""
            node: { id: [a], proxy_uid: "1337", locality: eu }
            listeners:
              outbound: { port: abc }
              inbound: { port: 1.5 }
              mesh: 15008
            opaque_ports: 25
            clusters:
              - name: backend
                mesh: yes
                hostnames: backend
                endpoints: [{ address: 9090, weight: heavy }]
            """, [
            "node.id: expected a non-empty string, got a list",
            #"node.proxy_uid: expected an integer, got "1337""#,
            #"node.locality: expected a mapping, got "eu""#,
            #"listeners.outbound.port: expected an integer, got "abc""#,
            "listeners.inbound.port: expected an integer, got 1.5",
            "listeners.mesh: expected a mapping, got 15008",
            "opaque_ports: expected a list, got 25",
            #"clusters[0].mesh: expected true or false, got "yes""#,
            #"clusters[0].hostnames: expected a list, got "backend""#,
            "clusters[0].endpoints[0].address: 9090 is not a valid IP:port",
            #"clusters[0].endpoints[0].weight: expected an integer, got "heavy""#,
        ])
    }

    func testTopLevelMustBeAMapping() {
        assertProblems("- a\n- b\n", ["expected a mapping at the top level, got a list"])
    }

    func testRangesAndChoices() {
        assertProblems("""
            node: { proxy_uid: 0 }
            listeners: { health: { port: 0 }, admin: { port: 65536 }, inbound: { deliver_to: host, plaintext: strict } }
            outbound_policy: deny_all
            opaque_ports: [25, 70000]
            clusters:
              - name: backend
                protocol: http3
                endpoints: [{ address: "198.18.0.2:80", weight: 10001 }]
            """, [
            "node.proxy_uid: 0 is out of range (1-4294967294)",
            "listeners.health.port: 0 is not a valid port (1-65535)",
            "listeners.admin.port: 65536 is not a valid port (1-65535)",
            #"listeners.inbound.deliver_to: expected one of loopback, pod_ip, got "host""#,
            #"listeners.inbound.plaintext: expected one of allow, deny, got "strict""#,
            #"outbound_policy: expected one of allow_any, registry_only, got "deny_all""#,
            "opaque_ports[1]: 70000 is not a valid port (1-65535)",
            #"clusters[0].protocol: expected one of auto, http1, http2, tcp, got "http3""#,
            "clusters[0].endpoints[0].weight: 10001 is out of range (1-10000)",
        ])
    }

    func testBadDurations() {
        assertProblems("""
            detect_timeout: 5
            drain_timeout: 0s
            clusters:
              - name: backend
                endpoints: [{ address: "198.18.0.2:80" }]
                timeouts: { connect: 5 seconds }
            """, [
            "detect_timeout: 5 is not a valid duration: missing unit (ms, s, m or h, such as 5s)",
            #"drain_timeout: "0s" is not a valid duration: must be greater than zero"#,
            #"clusters[0].timeouts.connect: "5 seconds" is not a valid duration: unknown unit " seconds" (use ms, s, m or h)"#,
        ])
    }

    func testKubernetesDiscoveryNamesAServiceAndTheAPIServer() throws {
        let config = try ConfigLoader.load(yaml: """
            kubernetes_api: { server: "https://198.18.0.250:6443/", token_file: /run/weft/token, ca_file: /run/weft/ca.crt }
            clusters:
              - { name: backend, mesh: true, discovery: kubernetes, kubernetes: { service: backend, namespace: shop, port: http } }
              - { name: cache, discovery: kubernetes, kubernetes: { service: cache, port: 6379 } }
            """)
        XCTAssertEqual(config.kubernetesAPI, KubernetesAPISettings(
            server: KubernetesServerURL(tls: true, host: "198.18.0.250", port: 6443),
            tokenFile: "/run/weft/token", caFile: "/run/weft/ca.crt"))
        XCTAssertEqual(config.clusters.map(\.discovery), [.kubernetes, .kubernetes])
        XCTAssertEqual(config.clusters[0].kubernetes, KubernetesServiceRef(service: "backend", namespace: "shop", port: "http"))
        XCTAssertEqual(config.clusters[1].kubernetes, KubernetesServiceRef(service: "cache", port: "6379"))
        XCTAssertNil(try ConfigLoader.load(yaml: "clusters: []").kubernetesAPI, "in-cluster unless told")
        XCTAssertNotNil(try ConfigLoader.load(yaml: "kubernetes_api: { server: http://127.0.0.1:8001 }").kubernetesAPI)

        assertProblems("""
            kubernetes_api: { server: "ftp://api", token_file: token }
            clusters:
              - { name: a, discovery: kubernetes }
              - { name: b, discovery: kubernetes, kubernetes: { service: Backend, port: 0 }, endpoints: [{ address: "198.18.0.2:80" }] }
              - { name: c, endpoints: [{ address: "198.18.0.2:80" }], kubernetes: { service: c, port: 80 } }
            """, [
            #"kubernetes_api.server: "ftp://api" is not an API server URL: it must start with https:// (or http:// for a local proxy)"#,
            #"kubernetes_api.token_file: "token" must be an absolute path"#,
            "clusters[0].kubernetes: a kubernetes cluster needs kubernetes: { service, port } (namespace: the node's own)",
            #"clusters[1].kubernetes.service: "Backend" is not a valid service name (a DNS label: lowercase letters, digits and "-")"#,
            #"clusters[1].kubernetes.port: "0" is neither a port number (1-65535) nor a port name"#,
            "clusters[1].endpoints: a kubernetes cluster takes its endpoints from the Service's EndpointSlices, not from endpoints",
            "clusters[2].kubernetes: kubernetes applies only to discovery: kubernetes",
        ])
        assertProblems("kubernetes_api: { server: https://api.example:6443 }", [
            "kubernetes_api.ca_file: an https server needs ca_file (the CA its certificate chains to)",
        ])
        assertProblems("kubernetes_api: { server: http://198.18.0.9:8080, token_file: /t }", [
            "kubernetes_api.token_file: a token is sent only over https, or over http to this machine (a kubectl proxy)",
        ])
        XCTAssertNotNil(try ConfigLoader.load(yaml: "kubernetes_api: { server: http://127.0.0.1:8001, token_file: /t }").kubernetesAPI)
    }

    func testTheDNSListenerTakesAPortAndAnUpstream() throws {
        XCTAssertNil(try ConfigLoader.load(yaml: "listeners: {}").listeners.dns)
        XCTAssertEqual(try ConfigLoader.load(yaml: "listeners: { dns: {} }").listeners.dns, DNSListener())
        XCTAssertEqual(try ConfigLoader.load(yaml: "listeners: { dns: { port: 5353, upstream: 198.18.0.53 } }").listeners.dns,
                       DNSListener(port: 5353, upstream: .address(IPEndpoint("198.18.0.53:53")!)))
        XCTAssertEqual(try ConfigLoader.load(yaml: "listeners: { dns: { upstream: \"[2001:2::53]:5353\" } }").listeners.dns?.upstream,
                       .address(IPEndpoint("[2001:2::53]:5353")!))
        assertProblems("listeners: { dns: { upstream: resolver.example, port: 15008 } }", [
            #"listeners.dns.upstream: expected auto, original or an IP address (with a port, or 53), got "resolver.example""#,
            "listeners.dns.port: 15008 is already used by the mesh listener",
        ])
    }

    func testMeshTLSTakesThreeAbsoluteFilePaths() throws {
        let config = try ConfigLoader.load(yaml: """
            listeners:
              mesh: { port: 15008, tls: { cert: /etc/weft/tls/node.crt, key: /etc/weft/tls/node.key, ca: /etc/weft/tls/ca.crt } }
            """)
        XCTAssertEqual(config.listeners.mesh.tls,
                       MeshTLSFiles(cert: "/etc/weft/tls/node.crt", key: "/etc/weft/tls/node.key", ca: "/etc/weft/tls/ca.crt"))
        XCTAssertNil(try ConfigLoader.load(yaml: "listeners: { mesh: { port: 15008 } }").listeners.mesh.tls)
        assertProblems("""
            listeners:
              mesh: { tls: { cert: tls/node.crt, key: /etc/weft/tls/node.key, certs: /x } }
            """, [
            "listeners.mesh.tls.ca: required key is missing",
            #"listeners.mesh.tls.cert: "tls/node.crt" must be an absolute path"#,
            "listeners.mesh.tls.certs: unknown key (did you mean \"cert\"?)",
        ])
    }

    func testAuthorizationRulesTakeOnePortEachAndSPIFFEIDs() throws {
        let config = try ConfigLoader.load(yaml: """
            authorization:
              - { port: 9090, allow: ["spiffe://mesh.local/ns/default/sa/frontend", "spiffe://mesh.local/ns/ops/sa/probe"] }
              - { port: 9091, allow: [] }
            """)
        XCTAssertEqual(config.authorization.map(\.port), [9090, 9091])
        XCTAssertEqual(config.authorization[0].allow.map(String.init(describing:)),
                       ["spiffe://mesh.local/ns/default/sa/frontend", "spiffe://mesh.local/ns/ops/sa/probe"])
        XCTAssertEqual(config.authorization[1].allow, [])
        assertProblems("""
            authorization:
              - { port: 9090, allow: ["frontend", "spiffe://mesh.local/ns/a/sa/b/"] }
              - { port: 9090, allow: [] }
              - { allow: [] }
            """, [
            #"authorization[0].allow[0]: "frontend" is not a SPIFFE ID: does not start with spiffe://"#,
            #"authorization[0].allow[1]: "spiffe://mesh.local/ns/a/sa/b/" is not a SPIFFE ID: has an invalid path segment """#,
            "authorization[1].port: port 9090 already has a rule (one rule per port)",
            "authorization[2].port: required key is missing",
        ])
    }

    func testEveryLoadBalancerLoadsWithItsKey() throws {
        let yaml = """
            clusters:
              - { name: a, lb: least_request, endpoints: [{ address: "198.18.0.2:80" }] }
              - { name: b, lb: peak_ewma, endpoints: [{ address: "198.18.0.3:80" }] }
              - { name: c, lb: random, endpoints: [{ address: "198.18.0.4:80" }] }
              - { name: d, lb: ring_hash, hash_on: { header: X-User }, endpoints: [{ address: "198.18.0.5:80" }] }
              - { name: e, lb: maglev, hash_on: { cookie: session }, endpoints: [{ address: "198.18.0.6:80" }] }
              - { name: f, lb: maglev, hash_on: { source_ip: true }, endpoints: [{ address: "198.18.0.7:80" }] }
            """
        let clusters = try ConfigLoader.load(yaml: yaml).clusters
        XCTAssertEqual(clusters.map(\.lb), [.leastRequest, .peakEWMA, .random, .ringHash, .maglev, .maglev])
        XCTAssertEqual(clusters.map(\.hashOn), [nil, nil, nil, .header("x-user"), .cookie("session"), .sourceIP])
    }

    func testHashOnProblems() {
        assertProblems("""
            clusters:
              - { name: a, lb: ring_hash, endpoints: [{ address: "198.18.0.2:80" }] }
              - { name: b, lb: round_robin, hash_on: { header: x-user }, endpoints: [{ address: "198.18.0.3:80" }] }
              - { name: c, lb: maglev, hash_on: { header: x-user, cookie: s }, endpoints: [{ address: "198.18.0.4:80" }] }
              - { name: d, lb: maglev, hash_on: { header: "x user" }, endpoints: [{ address: "198.18.0.5:80" }] }
              - { name: e, lb: maglev, hash_on: { source_ip: false }, endpoints: [{ address: "198.18.0.6:80" }] }
              - { name: f, lb: maglev, hash_on: { path: true }, endpoints: [{ address: "198.18.0.7:80" }] }
              - { name: g, lb: fastest, endpoints: [{ address: "198.18.0.8:80" }] }
              - { name: h, lb: maglev, hash_on: {}, endpoints: [{ address: "198.18.0.9:80" }] }
            """, [
            "clusters[0].hash_on: lb ring_hash needs hash_on ({ header: NAME }, { cookie: NAME } or { source_ip: true })",
            "clusters[1].hash_on: hash_on applies only to lb ring_hash and maglev (this cluster uses round_robin)",
            "clusters[2].hash_on: hash_on takes exactly one of header, cookie or source_ip",
            #"clusters[3].hash_on.header: "x user" is not a valid header name"#,
            "clusters[4].hash_on.source_ip: source_ip: false hashes on nothing; name a header or a cookie instead",
            "clusters[5].hash_on.path: unknown key",
            #"clusters[6].lb: expected one of round_robin, least_request, peak_ewma, random, ring_hash, maglev, got "fastest""#,
            "clusters[7].hash_on: hash_on takes exactly one of header, cookie or source_ip",
        ])
    }

    func testClusterNames() {
        assertProblems("""
            clusters:
              - endpoints: [{ address: "198.18.0.2:80" }]
              - name: Backend
                endpoints: [{ address: "198.18.0.2:80" }]
              - name: "-backend"
                endpoints: [{ address: "198.18.0.2:80" }]
            """, [
            "clusters[0].name: required key is missing",
            #"clusters[1].name: "Backend" is not a valid cluster name (lowercase letters, digits, "-", "." and "_", starting and ending with a letter or digit)"#,
            #"clusters[2].name: "-backend" is not a valid cluster name (lowercase letters, digits, "-", "." and "_", starting and ending with a letter or digit)"#,
        ])
    }

    func testHostnamesMustBeDNSNames() {
        assertProblems("""
            clusters:
              - name: backend
                hostnames: ["bad_host", "-x.example", "a..b", "*.example.com", ""]
                endpoints: [{ address: "198.18.0.2:80" }]
            """, [
            #"clusters[0].hostnames[0]: "bad_host" is not a valid DNS name"#,
            #"clusters[0].hostnames[1]: "-x.example" is not a valid DNS name"#,
            #"clusters[0].hostnames[2]: "a..b" is not a valid DNS name"#,
            #"clusters[0].hostnames[3]: "*.example.com" is not a valid DNS name"#,
            #"clusters[0].hostnames[4]: expected a non-empty string, got """#,
        ])
    }

    func testStaticClusterNeedsEndpoints() {
        assertProblems("clusters: [{ name: a }, { name: b, endpoints: [] }]", [
            "clusters[0].endpoints: a static cluster needs at least one endpoint",
            "clusters[1].endpoints: a static cluster needs at least one endpoint",
        ])
        assertProblems("clusters: [{ name: a, endpoints: [{ weight: 2 }] }]", [
            "clusters[0].endpoints[0].address: required key is missing",
        ])
    }

    func testEveryProblemIsReportedTogetherInDocumentOrder() {
        assertProblems("""
            listeners:
              outbound: { port: abc }
            detect_timeout: 5
            clusters:
              - name: backend
                endpoints:
                  - { address: "198.18.0.2:99999" }
                  - { address: "198.18.0.3:80", wieght: 2 }
            routes: [{ clusters: [{ name: nowhere }] }]
            """, [
            #"listeners.outbound.port: expected an integer, got "abc""#,
            "detect_timeout: 5 is not a valid duration: missing unit (ms, s, m or h, such as 5s)",
            #"clusters[0].endpoints[0].address: "198.18.0.2:99999" is not a valid IP:port"#,
            #"clusters[0].endpoints[1].wieght: unknown key (did you mean "weight"?)"#,
            #"routes[0].clusters[0].name: "nowhere" is not a cluster defined in clusters"#,
        ])
    }

    func testProblemPathAndMessageAreSeparate() throws {
        do {
            _ = try ConfigLoader.load(yaml: "detect_timeout: 5")
            XCTFail("accepted")
        } catch {
            XCTAssertEqual(error.problems, [ConfigProblem(
                path: "detect_timeout",
                message: "5 is not a valid duration: missing unit (ms, s, m or h, such as 5s)"
            )])
            XCTAssertEqual(error.description, "detect_timeout: 5 is not a valid duration: missing unit (ms, s, m or h, such as 5s)")
        }
    }

    func testYAMLSyntaxErrorIsOneProblemWithLineAndColumn() {
        let found = problems("node:\n  id: [a, b\nclusters: []\n")
        XCTAssertEqual(found.count, 1)
        XCTAssertTrue(found.first?.hasPrefix("YAML syntax error at line 3, column ") ?? false, "\(found)")
    }

    func testDuplicateKeyIsAProblem() {
        XCTAssertEqual(problems("node:\n  id: a\n  id: b\n"),
                       [#"YAML error at line 2, column 3: duplicate key "id" in one mapping"#])
    }

    func testUnreadableFileIsOneProblemNamingIt() {
        let path = "/nonexistent-weft-dir/weft.yaml"
        do {
            _ = try ConfigLoader.load(path: path)
            XCTFail("accepted")
        } catch {
            XCTAssertEqual(error.problems.map(\.description), ["cannot read \(path): No such file or directory"])
        }
    }
}

final class RouteConfigTests: XCTestCase {
    func testRoutesLoad() throws {
        let config = try ConfigLoader.load(yaml: """
            clusters:
              - { name: backend, endpoints: [{ address: "198.18.0.2:80" }] }
              - { name: backend-v2, endpoints: [{ address: "198.18.0.3:80" }] }
            routes:
              - match: { host: Backend, path_prefix: /v2, headers: { X-Canary: "1" } }
                clusters: [{ name: backend-v2, weight: 10 }, { name: backend, weight: 90 }]
                timeout: 2s
              - match: { path: /health }
                clusters: [{ name: backend }]
            """)
        XCTAssertEqual(config.routes, [
            Route(match: RouteMatch(host: "backend", pathPrefix: "/v2", headers: ["x-canary": "1"]),
                  clusters: [WeightedCluster(name: "backend-v2", weight: 10), WeightedCluster(name: "backend", weight: 90)],
                  timeout: .seconds(2)),
            Route(match: RouteMatch(path: "/health"), clusters: [WeightedCluster(name: "backend")]),
        ])
    }

    func testRouteProblems() {
        assertProblems("""
            clusters:
              - { name: backend, endpoints: [{ address: "198.18.0.2:80" }] }
            routes:
              - match: { path_prefix: v2 }
                clusters: [{ name: backend }]
              - clusters: [{ name: nowhere }]
              - clusters: []
              - match: { host: "not a host" }
              - clusters: [{ name: backend, weight: 0 }]
              - match: { headers: { "bad header": x } }
                clusters: [{ name: backend }]
            """, [
            #"routes[0].match.path_prefix: "v2" must start with "/""#,
            #"routes[1].clusters[0].name: "nowhere" is not a cluster defined in clusters"#,
            "routes[2].clusters: a route needs at least one cluster",
            "routes[3].clusters: required key is missing",
            #"routes[3].match.host: "not a host" is not a valid host name"#,
            "routes[4].clusters: at least one cluster needs a weight above 0",
            #"routes[5].match.headers.bad header: "bad header" is not a valid header name"#,
        ])
    }
}

final class DiscoveryConfigTests: XCTestCase {
    func testDNSAndFileClustersLoad() throws {
        let config = try ConfigLoader.load(yaml: """
            clusters:
              - name: backend-v2
                discovery: dns
                dns_refresh: 2s
                endpoints: [{ address: "Backend-V2.internal:9090", weight: 2 }, { address: "198.18.0.7:9090" }]
              - name: payments
                discovery: file
                file: /etc/weft/endpoints/payments.yaml
            """)
        XCTAssertEqual(config.clusters[0].namedEndpoints, [NamedEndpoint(host: "backend-v2.internal", port: 9090, weight: 2),
                                                           NamedEndpoint(host: "198.18.0.7", port: 9090)])
        XCTAssertEqual(config.clusters[0].dnsRefresh, .seconds(2))
        XCTAssertEqual(config.clusters[0].endpoints, [])
        XCTAssertEqual(config.clusters[1].file, "/etc/weft/endpoints/payments.yaml")
    }

    func testDiscoveryProblems() {
        assertProblems("""
            clusters:
              - { name: a, discovery: dns, endpoints: [{ address: "not a host:80" }] }
              - { name: b, discovery: dns }
              - { name: c, discovery: file }
              - { name: d, discovery: file, file: relative.yaml }
              - { name: e, discovery: file, file: /x.yaml, endpoints: [{ address: "198.18.0.2:80" }] }
              - { name: f, dns_refresh: 1s, file: /x.yaml, endpoints: [{ address: "198.18.0.2:80" }] }
            """, [
            #"clusters[0].endpoints[0].address: "not a host:80" is not a valid host:port"#,
            "clusters[1].endpoints: a dns cluster needs at least one endpoint",
            "clusters[2].file: a file cluster needs file (the path of its endpoint list)",
            #"clusters[3].file: "relative.yaml" must be an absolute path"#,
            "clusters[4].endpoints: a file cluster takes its endpoints from its file, not from endpoints",
            "clusters[5].dns_refresh: dns_refresh applies only to discovery: dns",
            "clusters[5].file: file applies only to discovery: file",
        ])
    }
}
