import WeftCore
import XCTest
@testable import WeftIPTables

final class BackendDetectorTests: XCTestCase {
    private func select(_ choice: BackendChoice, nft: FakeIPTables, legacy: FakeIPTables) throws -> BackendDetector.Selection {
        try BackendDetector.select(choice) { $0 == .nft ? nft : legacy }
    }

    private static let filterRules = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n-A INPUT -j DROP\nCOMMIT\n"

    func testAutoPicksLegacyOnlyWhenItHoldsMoreRules() throws {
        let busyLegacy = FakeIPTables(otherTables: Self.filterRules)
        XCTAssertEqual(try select(.auto, nft: FakeIPTables(), legacy: busyLegacy),
                       .init(backend: .legacy, reason: "auto: legacy holds 4 rules, nft 0"))

        let busyNft = FakeIPTables(otherTables: Self.filterRules)
        XCTAssertEqual(try select(.auto, nft: busyNft, legacy: FakeIPTables()).backend, .nft)

        // A tie (a fresh namespace) goes to nft, the Debian 12 default.
        XCTAssertEqual(try select(.auto, nft: FakeIPTables(), legacy: FakeIPTables()).backend, .nft)
    }

    func testAutoCountsNatRulesOfBothFamilies() throws {
        let legacy = FakeIPTables()
        try legacy.load(.ipv6, "*nat\n-A OUTPUT -j RETURN\nCOMMIT\n")
        XCTAssertEqual(try select(.auto, nft: FakeIPTables(), legacy: legacy).backend, .legacy)
    }

    func testAutoFallsBackToWhateverIsInstalled() throws {
        let none = FakeIPTables(available: [])
        XCTAssertEqual(try select(.auto, nft: none, legacy: FakeIPTables()).backend, .legacy)
        XCTAssertEqual(try select(.auto, nft: FakeIPTables(), legacy: none).backend, .nft)
        XCTAssertThrowsError(try select(.auto, nft: none, legacy: none)) { error in
            XCTAssertEqual(error as? InitError, .noBackend)
            XCTAssertEqual("\(error)",
                           "no iptables found: neither iptables-nft-restore nor iptables-legacy-restore is installed")
        }
    }

    func testExplicitBackendIsUsedAsAskedButMustExist() throws {
        let busyLegacy = FakeIPTables(otherTables: Self.filterRules)
        XCTAssertEqual(try select(.nft, nft: FakeIPTables(), legacy: busyLegacy).backend, .nft)
        XCTAssertEqual(try select(.legacy, nft: FakeIPTables(), legacy: FakeIPTables()).backend, .legacy)
        XCTAssertThrowsError(try select(.nft, nft: FakeIPTables(available: []), legacy: FakeIPTables())) { error in
            XCTAssertEqual(error as? InitError, .toolMissing("iptables-nft-restore"))
        }
    }

    func testToolNames() {
        XCTAssertEqual(Backend.nft.restoreCommand(.ipv4), "iptables-nft-restore")
        XCTAssertEqual(Backend.legacy.saveCommand(.ipv6), "ip6tables-legacy-save")
    }
}
