import WeftCore
import XCTest
@testable import WeftIPTables

/// `weft init` end to end against in-memory tables.
final class InitRunnerTests: XCTestCase {
    private func runner(_ arguments: [String], _ action: InitAction = .install, nft: FakeIPTables,
                        legacy: FakeIPTables = FakeIPTables(available: []), ipv6: Bool = true) throws -> InitRunner {
        InitRunner(options: try options(arguments), action: action,
                   executor: { $0 == .nft ? nft : legacy }, kernelHasIPv6: { ipv6 })
    }

    func testInstallTwiceThenRemoveLeavesTheTableAsItWas() throws {
        let nft = FakeIPTables()
        try nft.load(.ipv4, TransactionPlannerTests.foreign)
        let original = [try nft.save(.ipv4, table: "nat"), try nft.save(.ipv6, table: "nat")]

        try runner(["--capture-dns"], nft: nft).run { _ in }
        let once = [try nft.save(.ipv4, table: "nat"), try nft.save(.ipv6, table: "nat")]
        XCTAssertNotEqual(once, original)
        XCTAssertEqual(NatTableSnapshot(parsing: once[0]).jumpsIntoWeft.count, 3)
        XCTAssertEqual(NatTableSnapshot(parsing: once[1]).jumpsIntoWeft.count, 2)

        try runner(["--capture-dns"], nft: nft).run { _ in }
        XCTAssertEqual([try nft.save(.ipv4, table: "nat"), try nft.save(.ipv6, table: "nat")], once)

        var log: [String] = []
        try runner([], .remove, nft: nft).run { log.append($0) }
        XCTAssertEqual([try nft.save(.ipv4, table: "nat"), try nft.save(.ipv6, table: "nat")], original)
        XCTAssertEqual(log.last, "IPv6: removed 2 jumps and 4 chains")
    }

    func testRemoveWithNothingInstalledRunsNoRestore() throws {
        let nft = FakeIPTables()
        var log: [String] = []
        try runner([], .remove, nft: nft).run { log.append($0) }
        XCTAssertTrue(nft.restores.isEmpty)
        XCTAssertEqual(log.dropFirst(), ["IPv4: no weft rules installed, nothing to remove",
                                         "IPv6: no weft rules installed, nothing to remove"])
    }

    func testOneTransactionPerFamily() throws {
        let nft = FakeIPTables()
        try runner([], nft: nft).run { _ in }
        XCTAssertEqual(nft.restores.map(\.0), [.ipv4, .ipv6])
        XCTAssertEqual(nft.restores.map(\.1), [DryRun.transaction(InterceptionOptions(), action: .install, family: .ipv4).text,
                                               DryRun.transaction(InterceptionOptions(), action: .install, family: .ipv6).text])
    }

    func testIPv6Resolution() throws {
        let nft = FakeIPTables()
        try runner([], nft: nft, ipv6: false).run { _ in }
        XCTAssertEqual(nft.restores.map(\.0), [.ipv4])

        let noIP6Tables = FakeIPTables(available: [.ipv4])
        try runner([], nft: noIP6Tables, ipv6: true).run { _ in }
        XCTAssertEqual(noIP6Tables.restores.map(\.0), [.ipv4])
        XCTAssertThrowsError(try runner(["--ipv6", "on"], nft: noIP6Tables).run { _ in }) { error in
            XCTAssertEqual(error as? InitError, .toolMissing("ip6tables-nft-restore"))
        }

        let off = FakeIPTables()
        try runner(["--ipv6", "off"], nft: off, ipv6: true).run { _ in }
        XCTAssertEqual(off.restores.map(\.0), [.ipv4])
    }

    func testDryRunFamilies() throws {
        let unused = FakeIPTables(available: [])
        XCTAssertFalse(try runner([], nft: unused, ipv6: false).dryRun().contains("IPv6"))
        XCTAssertTrue(try runner([], nft: unused, ipv6: true).dryRun().contains("# weft init: IPv6"))
        XCTAssertTrue(try runner(["--ipv6", "on"], nft: unused, ipv6: false).dryRun().contains("IPv6"))
        XCTAssertTrue(unused.restores.isEmpty)
    }

    func testUsesTheBackendThatHoldsRules() throws {
        let nft = FakeIPTables(), legacy = FakeIPTables()
        try legacy.load(.ipv4, TransactionPlannerTests.foreign)
        var log: [String] = []
        try runner([], nft: nft, legacy: legacy).run { log.append($0) }
        XCTAssertEqual(log.first, "backend legacy (auto: legacy holds 3 rules, nft 0)")
        XCTAssertTrue(nft.restores.isEmpty)
        XCTAssertEqual(legacy.restores.count, 2)
    }

    /// A jump into a weft chain from another user chain is deleted too,
    /// otherwise the chain could not be deleted.
    func testRemoveAlsoDeletesJumpsFromOtherChains() throws {
        let nft = FakeIPTables()
        try nft.load(.ipv4, "*nat\n:WEFT_OUTPUT - [0:0]\n:KEEP - [0:0]\n-A KEEP -j WEFT_OUTPUT\nCOMMIT\n")
        try runner([], .remove, nft: nft).run { _ in }
        let after = NatTableSnapshot(parsing: try nft.save(.ipv4, table: "nat"))
        XCTAssertEqual(after.chains, ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "KEEP"])
        XCTAssertTrue(after.rules.isEmpty)
    }

    /// A failing restore ends the run with the tool's reason on one line.
    func testAFailingToolStopsTheRun() throws {
        let nft = FakeIPTables()
        let failing = FailingExecutor(inner: nft)
        let runner = InitRunner(options: InterceptionOptions(), action: .install, executor: { _ in failing },
                                kernelHasIPv6: { true })
        XCTAssertThrowsError(try runner.run { _ in }) { error in
            XCTAssertEqual((error as? InitError)?.description,
                           "iptables-nft-restore --noflush failed (exit status 2): iptables-restore: line 3 failed")
        }
        XCTAssertEqual(NatTableSnapshot(parsing: try nft.save(.ipv4, table: "nat")).rules, [])
    }
}

/// Saves through `inner` but fails every restore, as a broken iptables would.
struct FailingExecutor: IPTablesExecutor {
    let inner: FakeIPTables
    func isAvailable(_ family: IPAddress.Family) -> Bool { inner.isAvailable(family) }
    func save(_ family: IPAddress.Family, table: String?) throws -> String { try inner.save(family, table: table) }
    func restore(_ family: IPAddress.Family, _ text: String) throws {
        throw InitError.commandFailed(command: "iptables-nft-restore --noflush", status: 2,
                                      output: "iptables-restore: line 3 failed\n")
    }
}
