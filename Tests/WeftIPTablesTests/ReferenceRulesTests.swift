import XCTest
@testable import WeftIPTables

/// `iptables/rules.v4` and `rules.v6` are what `weft init --dry-run --ipv6 on`
/// prints for the default flags, one file per family.
final class ReferenceRulesTests: XCTestCase {
    func testReferenceRulesetsMatchDefaultDryRun() throws {
        let defaults = InterceptionOptions()
        GoldenFile.assertMatches(DryRun.section(defaults, action: .install, family: .ipv4),
                                 GoldenFile.iptablesDirectory.appendingPathComponent("rules.v4"))
        GoldenFile.assertMatches(DryRun.section(defaults, action: .install, family: .ipv6),
                                 GoldenFile.iptablesDirectory.appendingPathComponent("rules.v6"))
    }

    /// The dry-run output is exactly the two files, concatenated.
    func testDryRunIsTheTwoFiles() throws {
        guard !GoldenFile.updating else { return }
        var options = InterceptionOptions()
        options.ipv6 = .on
        let printed = try InitRunner(options: options, action: .install, executor: { _ in Unreachable() },
                                     kernelHasIPv6: { false }).dryRun()
        let v4 = try String(contentsOf: GoldenFile.iptablesDirectory.appendingPathComponent("rules.v4"), encoding: .utf8)
        let v6 = try String(contentsOf: GoldenFile.iptablesDirectory.appendingPathComponent("rules.v6"), encoding: .utf8)
        XCTAssertEqual(printed, v4 + v6)
    }
}
