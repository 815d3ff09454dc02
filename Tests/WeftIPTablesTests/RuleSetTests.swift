import WeftCore
import XCTest
@testable import WeftIPTables

/// The SPEC §3 properties of the rules, checked directly (the golden files
/// pin the exact text; these say what must stay true when they change).
final class RuleSetTests: XCTestCase {
    private func rules(_ arguments: [String], _ family: IPAddress.Family) throws -> RuleSet {
        RuleSet(options: try options(arguments), family: family)
    }

    private func chain(_ rules: RuleSet, _ chain: WeftChain) -> [Rule] {
        rules.rules.filter { $0.chain == chain.rawValue }
    }

    func testOutboundOrder() throws {
        let output = chain(try rules(["--exclude-uids", "0", "--capture-dns", "--exclude-outbound-ports", "3306",
                                      "--exclude-outbound-cidrs", "10.0.0.0/8"], .ipv4), .output)
        XCTAssertEqual(output.map(\.comment), [
            "weft/proxy-uid", "weft/proxy-gid", "weft/exclude-uid", "weft/dns-udp", "weft/dns-tcp",
            "weft/app-to-own-address", "weft/loopback-interface", "weft/loopback-destination",
            "weft/exclude-outbound-port", "weft/exclude-outbound-cidr", "weft/outbound-all",
        ])
        XCTAssertEqual(output.last?.jumpTarget, "WEFT_REDIRECT")
        XCTAssertEqual(output.last?.matches, [], "default: everything else is redirected, no -d")
    }

    func testInboundReturnsProxyAndExcludedPortsThenRedirects() throws {
        let inbound = chain(try rules(["--exclude-inbound-ports", "22"], .ipv4), .inbound)
        XCTAssertEqual(inbound.compactMap { $0.matches.last }, ["15008", "15000", "15020", "22", "tcp"])
        XCTAssertEqual(inbound.map { $0.jumpTarget }, ["RETURN", "RETURN", "RETURN", "RETURN", "WEFT_IN_REDIRECT"])

        let included = chain(try rules(["--include-inbound-ports", "8080,9090"], .ipv6), .inbound)
        XCTAssertEqual(included.filter { $0.jumpTarget == "WEFT_IN_REDIRECT" }.map { $0.matches.last }, ["8080", "9090"])
    }

    func testSshIsNotExcludedByDefault() throws {
        XCTAssertFalse(try rules([], .ipv4).rules.contains { $0.matches.contains("22") })
    }

    func testEachFamilyOnlySeesItsOwnBlocks() throws {
        let arguments = ["--exclude-outbound-cidrs", "10.0.0.0/8,fd00::/8", "--include-outbound-cidrs", "198.19.0.0/16"]
        let v4 = try rules(arguments, .ipv4), v6 = try rules(arguments, .ipv6)
        XCTAssertEqual(v4.rules.compactMap { $0.destination }, ["127.0.0.0/8", "127.0.0.0/8", "10.0.0.0/8", "198.19.0.0/16"])
        XCTAssertEqual(v6.rules.compactMap { $0.destination }, ["::1/128", "::1/128", "fd00::/8"])
        // Inclusion was restricted to IPv4 blocks: nothing IPv6 goes to the outbound redirect.
        XCTAssertFalse(chain(v6, .output).contains { $0.jumpTarget == "WEFT_REDIRECT" })
    }

    /// UDP enters WEFT_OUTPUT only for port 53, and then only reaches WEFT_DNS.
    func testDNSCaptureIsIPv4AndUDPOnlyReachesTheDNSChain() throws {
        let v4 = try rules(["--capture-dns"], .ipv4), v6 = try rules(["--capture-dns"], .ipv6)
        XCTAssertEqual(v4.chains.last, .dns)
        XCTAssertFalse(v6.chains.contains(.dns))
        XCTAssertEqual(v4.jumps.last?.matches, ["-p", "udp", "-m", "udp", "--dport", "53"])
        let output = chain(v4, .output)
        let firstUDPCatch = try XCTUnwrap(output.firstIndex { $0.matches.starts(with: ["-p", "udp"]) })
        XCTAssertTrue(output[..<firstUDPCatch].allSatisfy { $0.jumpTarget == "RETURN" && $0.matches.contains("owner") })
        XCTAssertEqual(chain(v4, .dns).map(\.target), [["-j", "REDIRECT", "--to-ports", "15053"],
                                                       ["-j", "REDIRECT", "--to-ports", "15053"]])
    }

    func testEveryRuleIsCommentedAndEveryRedirectNamesItsProtocol() throws {
        let all = ["--capture-dns", "--exclude-uids", "7", "--exclude-outbound-ports", "25"]
        for family in [IPAddress.Family.ipv4, .ipv6] {
            let set = try rules(all, family)
            for rule in set.rules + set.jumps {
                XCTAssertTrue(rule.comment.hasPrefix("weft/"), rule.rendered())
                XCTAssertTrue(rule.rendered().contains(#"-m comment --comment "weft/"#))
                if rule.jumpTarget == "REDIRECT" { XCTAssertEqual(rule.matches.prefix(1), ["-p"]) }
            }
        }
    }

    func testCustomPortsAndIDs() throws {
        let set = try rules(["--proxy-uid", "0", "--proxy-gid", "4294967295", "--outbound-port", "1",
                             "--inbound-port", "65535"], .ipv4)
        let text = set.rules.map { $0.rendered() + "\n" }.joined()
        XCTAssertTrue(text.contains("--uid-owner 0 "))
        XCTAssertTrue(text.contains("--gid-owner 4294967295 "))
        XCTAssertTrue(text.contains("REDIRECT --to-ports 1\n"))
        XCTAssertTrue(text.contains("REDIRECT --to-ports 65535"))
    }
}

private extension Rule {
    /// The `-d` block, if the rule matches on one.
    var destination: String? {
        matches.firstIndex(of: "-d").map { matches[$0 + 1] }
    }
}
