import XCTest
import WeftCore
@testable import WeftIPTables

/// `weft init --dry-run` for a table of flag combinations, against
/// `Golden/<name>.rules` (IPv4 section, then IPv6 unless `--ipv6 off`).
final class GoldenTests: XCTestCase {
    static let cases: [(name: String, action: InitAction, arguments: [String])] = [
        ("defaults", .install, []),
        ("exclude-ports", .install, ["--exclude-inbound-ports", "22,8080", "--exclude-inbound-ports", "15008",
                                     "--exclude-outbound-ports", "3306,5432"]),
        ("include-inbound-ports", .install, ["--include-inbound-ports", "80,443"]),
        ("include-inbound-none", .install, ["--include-inbound-ports", ""]),
        ("cidrs-mixed", .install, ["--exclude-outbound-cidrs", "10.96.0.1/32,fd00::/8",
                                   "--include-outbound-cidrs", "198.19.0.0/16,10.0.0.0/8",
                                   "--include-outbound-cidrs", "2001:db8::/32"]),
        ("include-cidrs-ipv4-only", .install, ["--include-outbound-cidrs", "198.18.0.0/15"]),
        ("exclude-uids", .install, ["--exclude-uids", "0,1000", "--exclude-uids", "65534"]),
        ("capture-dns", .install, ["--capture-dns", "--dns-port", "5353"]),
        ("ipv6-off", .install, ["--ipv6", "off", "--exclude-outbound-cidrs", "fd00::/8,169.254.169.254/32"]),
        ("custom-ports", .install, ["--proxy-uid", "2000", "--proxy-gid", "2001", "--outbound-port", "16001",
                                    "--inbound-port", "16006", "--mesh-port", "16008", "--admin-port", "16000",
                                    "--health-port", "16020"]),
        ("remove", .remove, []),
        ("remove-capture-dns", .remove, ["--capture-dns"]),
    ]

    func testGoldenFiles() throws {
        for (name, action, arguments) in Self.cases {
            let runner = InitRunner(options: try options(arguments), action: action,
                                    executor: { _ in Unreachable() }, kernelHasIPv6: { true })
            GoldenFile.assertMatches(try runner.dryRun(),
                                     GoldenFile.goldenDirectory.appendingPathComponent("\(name).rules"))
        }
    }

    /// Every golden file belongs to a case (a renamed case leaves no orphan).
    func testNoOrphanGoldenFiles() throws {
        guard !GoldenFile.updating else { return }
        let files = try FileManager.default.contentsOfDirectory(atPath: GoldenFile.goldenDirectory.path)
            .filter { $0.hasSuffix(".rules") }
        XCTAssertEqual(Set(files), Set(Self.cases.map { "\($0.name).rules" }))
    }
}

/// An executor that must never be used (dry runs touch nothing).
struct Unreachable: IPTablesExecutor {
    func isAvailable(_ family: IPAddress.Family) -> Bool {
        XCTFail("dry run looked at iptables")
        return false
    }
    func save(_ family: IPAddress.Family, table: String?) throws -> String {
        XCTFail("dry run ran iptables-save")
        return ""
    }
    func restore(_ family: IPAddress.Family, _ text: String) throws {
        XCTFail("dry run ran iptables-restore")
    }
}
