import WeftCore
import XCTest
@testable import WeftIPTables

/// Bad flag values are refused with a one-line reason naming flag and value.
final class OptionValidationTests: XCTestCase {
    func testBadValuesAreRefusedWithTheirReason() {
        let cases: [([String], String)] = [
            (["--exclude-outbound-cidrs", "10.0.0.0/33"], #"--exclude-outbound-cidrs: "10.0.0.0/33" is not a valid CIDR"#),
            (["--include-outbound-cidrs", "10.0.0.0/8,300.1.1.1/8"], #"--include-outbound-cidrs: "300.1.1.1/8" is not a valid CIDR"#),
            (["--exclude-outbound-cidrs", "fd00::/129"], #"--exclude-outbound-cidrs: "fd00::/129" is not a valid CIDR"#),
            (["--exclude-inbound-ports", "22,70000"], #"--exclude-inbound-ports: "70000" is not a valid port (1-65535)"#),
            (["--exclude-outbound-ports", "0"], #"--exclude-outbound-ports: "0" is not a valid port (1-65535)"#),
            (["--include-inbound-ports", "abc"], #"--include-inbound-ports: "abc" is not a valid port (1-65535)"#),
            (["--outbound-port", "70000"], #"--outbound-port: "70000" is not a valid port (1-65535)"#),
            (["--inbound-port", "-1"], #"--inbound-port: "-1" is not a valid port (1-65535)"#),
            (["--mesh-port", "0"], #"--mesh-port: "0" is not a valid port (1-65535)"#),
            (["--admin-port", "1e3"], #"--admin-port: "1e3" is not a valid port (1-65535)"#),
            (["--health-port", ""], #"--health-port: "" is not a valid port (1-65535)"#),
            (["--dns-port", "65536"], #"--dns-port: "65536" is not a valid port (1-65535)"#),
            (["--proxy-uid", "4294967296"], #"--proxy-uid: "4294967296" is not a valid uid (0-4294967295)"#),
            (["--proxy-gid", "-5"], #"--proxy-gid: "-5" is not a valid gid (0-4294967295)"#),
            (["--exclude-uids", "1000,root"], #"--exclude-uids: "root" is not a valid uid (0-4294967295)"#),
            (["--backend", "iptables"], #"--backend: "iptables" is not a valid backend (auto, legacy, nft)"#),
            (["--ipv6", "yes"], #"--ipv6: "yes" is not a valid mode (auto, on, off)"#),
            (["--include-inbound-ports", "80", "--exclude-inbound-ports", "22"],
             "--include-inbound-ports and --exclude-inbound-ports cannot be used together"),
            (["--inbound-port", "15001"], "--inbound-port: 15001 is already the --outbound-port"),
            (["--capture-dns", "--dns-port", "15008"], "--dns-port: 15008 is already the --mesh-port"),
        ]
        for (arguments, message) in cases {
            XCTAssertThrowsError(try options(arguments), "\(arguments)") { error in
                XCTAssertEqual((error as? InterceptionOptionError)?.description, message, "\(arguments)")
                XCTAssertFalse(message.contains("\n"))
            }
        }
    }

    func testDefaultsAreTheSpecs() throws {
        let parsed = try options([])
        XCTAssertEqual(parsed, InterceptionOptions())
        XCTAssertEqual([parsed.proxyUID, parsed.proxyGID], [1337, 1337])
        XCTAssertEqual([parsed.outboundPort, parsed.inboundPort, parsed.meshPort, parsed.adminPort,
                        parsed.healthPort, parsed.dnsPort], [15001, 15006, 15008, 15000, 15020, 15053])
        XCTAssertNil(parsed.includeInboundPorts)
        XCTAssertNil(parsed.includeOutboundCIDRs)
        XCTAssertEqual(parsed.backend, .auto)
        XCTAssertEqual(parsed.ipv6, .auto)
        XCTAssertFalse(parsed.captureDNS)
    }

    func testListsSplitOnCommasAcrossRepeatsAndDropDuplicates() throws {
        let parsed = try options(["--exclude-inbound-ports", "22, 8080,,22", "--exclude-inbound-ports", "9090",
                                  "--exclude-uids", "0,4294967295",
                                  "--exclude-outbound-cidrs", "10.1.2.3/8,2001:db8::1"])
        XCTAssertEqual(parsed.excludeInboundPorts, [22, 8080, 9090])
        XCTAssertEqual(parsed.excludeUIDs, [0, 4_294_967_295])
        XCTAssertEqual(parsed.excludeOutboundCIDRs.map(\.description), ["10.0.0.0/8", "2001:db8::1/128"])
    }

    func testIncludeFlagsGivenEmptyMeanNoneAndStarMeansAll() throws {
        XCTAssertEqual(try options(["--include-inbound-ports", ""]).includeInboundPorts, [])
        XCTAssertEqual(try options(["--include-outbound-cidrs", ""]).includeOutboundCIDRs, [])
        XCTAssertNil(try options(["--include-inbound-ports", "*"]).includeInboundPorts)
        XCTAssertNil(try options(["--include-outbound-cidrs", "*"]).includeOutboundCIDRs)
        // `*` is "not restricted", so it combines with excluded ports.
        XCTAssertNoThrow(try options(["--include-inbound-ports", "*", "--exclude-inbound-ports", "22"]))
    }

    func testBackendAndIPv6Values() throws {
        for backend in BackendChoice.allCases {
            XCTAssertEqual(try options(["--backend", backend.rawValue]).backend, backend)
        }
        for mode in IPv6Mode.allCases {
            XCTAssertEqual(try options(["--ipv6", mode.rawValue]).ipv6, mode)
        }
    }

    /// A bad value stops the runner before any tool is looked at.
    func testRunnerValidatesBeforeTouchingAnything() {
        var bad = InterceptionOptions()
        bad.inboundPort = bad.outboundPort
        let runner = InitRunner(options: bad, action: .install, executor: { _ in Unreachable() },
                                kernelHasIPv6: { true })
        XCTAssertThrowsError(try runner.run { _ in })
        XCTAssertThrowsError(try runner.dryRun())
    }
}
