import WeftCore
import XCTest
@testable import WeftIPTables

final class TransactionPlannerTests: XCTestCase {
    /// Someone else's rules, which weft must leave alone.
    static let foreign = """
        *nat
        :DOCKER - [0:0]
        -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
        -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
        -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
        COMMIT

        """

    private func installed(_ arguments: [String] = [], family: IPAddress.Family = .ipv4) throws -> FakeIPTables {
        let fake = FakeIPTables()
        try fake.load(family, Self.foreign)
        let rules = RuleSet(options: try options(arguments), family: family)
        let current = NatTableSnapshot(parsing: try fake.save(family, table: "nat"))
        try fake.restore(family, TransactionPlanner.install(rules, over: current).text)
        return fake
    }

    func testFirstInstallDeclaresChainsAndAppendsJumps() throws {
        let rules = RuleSet(options: InterceptionOptions(), family: .ipv4)
        let lines = TransactionPlanner.install(rules, over: NatTableSnapshot()).lines
        XCTAssertEqual(Array(lines.prefix(4)), [":WEFT_INBOUND - [0:0]", ":WEFT_IN_REDIRECT - [0:0]",
                                                ":WEFT_OUTPUT - [0:0]", ":WEFT_REDIRECT - [0:0]"])
        XCTAssertEqual(lines.filter { $0.hasPrefix("-A PREROUTING") || $0.hasPrefix("-A OUTPUT") }.count, 2)
        XCTAssertFalse(lines.contains { $0.hasPrefix("-D") || $0.hasPrefix("-X") || $0.hasPrefix("-F") })
    }

    /// Re-running over an installed table adds no jump and deletes none.
    func testReinstallKeepsExistingJumps() throws {
        for arguments in [[], ["--capture-dns"]] {
            let fake = try installed(arguments)
            let before = try fake.save(.ipv4, table: "nat")
            let rules = RuleSet(options: try options(arguments), family: .ipv4)
            let again = TransactionPlanner.install(rules, over: NatTableSnapshot(parsing: before))
            XCTAssertFalse(again.lines.contains { $0.hasPrefix("-A PREROUTING") || $0.hasPrefix("-A OUTPUT") })
            XCTAssertFalse(again.lines.contains { $0.hasPrefix("-D") })
            try fake.restore(.ipv4, again.text)
            XCTAssertEqual(try fake.save(.ipv4, table: "nat"), before)
        }
    }

    func testDuplicateJumpsAreCollapsedToOne() throws {
        let fake = try installed()
        try fake.load(.ipv4, "*nat\n-A OUTPUT -p tcp -m comment --comment \"weft/outbound\" -j WEFT_OUTPUT\nCOMMIT\n")
        let current = NatTableSnapshot(parsing: try fake.save(.ipv4, table: "nat"))
        XCTAssertEqual(current.jumpsIntoWeft.count, 3)
        let plan = TransactionPlanner.install(RuleSet(options: InterceptionOptions(), family: .ipv4), over: current)
        XCTAssertEqual(plan.lines.filter { $0.hasPrefix("-D") },
                       [#"-D OUTPUT -p tcp -m comment --comment "weft/outbound" -j WEFT_OUTPUT"#])
        try fake.restore(.ipv4, plan.text)
        XCTAssertEqual(NatTableSnapshot(parsing: try fake.save(.ipv4, table: "nat")).jumpsIntoWeft.count, 2)
    }

    /// Turning DNS capture off removes its jump and its chain.
    func testChainsNoLongerWantedAreDeleted() throws {
        let fake = try installed(["--capture-dns"])
        let current = NatTableSnapshot(parsing: try fake.save(.ipv4, table: "nat"))
        let plan = TransactionPlanner.install(RuleSet(options: InterceptionOptions(), family: .ipv4), over: current)
        XCTAssertEqual(plan.lines.filter { $0.hasPrefix("-D") || $0.hasPrefix("-F") || $0.hasPrefix("-X") }, [
            #"-D OUTPUT -p udp -m udp --dport 53 -m comment --comment "weft/outbound-dns" -j WEFT_OUTPUT"#,
            "-F WEFT_DNS", "-X WEFT_DNS",
        ])
        try fake.restore(.ipv4, plan.text)
        let after = NatTableSnapshot(parsing: try fake.save(.ipv4, table: "nat"))
        XCTAssertEqual(after.weftChains, ["WEFT_INBOUND", "WEFT_IN_REDIRECT", "WEFT_OUTPUT", "WEFT_REDIRECT"])
    }

    /// --remove deletes exactly the jumps and chains, and the table is as before.
    func testRemoveRestoresTheOriginalTable() throws {
        for family in [IPAddress.Family.ipv4, .ipv6] {
            let pristine = FakeIPTables()
            try pristine.load(family, Self.foreign)
            let fake = try installed(["--capture-dns", "--exclude-inbound-ports", "22"], family: family)
            let current = NatTableSnapshot(parsing: try fake.save(family, table: "nat"))
            let plan = TransactionPlanner.remove(from: current, family: family)
            let chains = family == .ipv4 ? ["WEFT_INBOUND", "WEFT_IN_REDIRECT", "WEFT_OUTPUT", "WEFT_REDIRECT", "WEFT_DNS"]
                : ["WEFT_INBOUND", "WEFT_IN_REDIRECT", "WEFT_OUTPUT", "WEFT_REDIRECT"]
            XCTAssertEqual(plan.lines.filter { !$0.hasPrefix("-D") }, chains.map { "-F \($0)" } + chains.map { "-X \($0)" })
            XCTAssertEqual(plan.lines.filter { $0.hasPrefix("-D") }.count, family == .ipv4 ? 3 : 2)
            XCTAssertTrue(plan.lines.filter { $0.hasPrefix("-D") }.allSatisfy { $0.contains("-j WEFT_") })
            try fake.restore(family, plan.text)
            XCTAssertEqual(try fake.save(family, table: "nat"), try pristine.save(family, table: "nat"))
        }
    }

    func testRemoveFromACleanTableIsEmpty() throws {
        let fake = FakeIPTables()
        try fake.load(.ipv4, Self.foreign)
        let plan = TransactionPlanner.remove(from: NatTableSnapshot(parsing: try fake.save(.ipv4, table: "nat")),
                                             family: .ipv4)
        XCTAssertTrue(plan.isEmpty)
    }
}
