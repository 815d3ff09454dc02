import XCTest
@testable import WeftObservability

/// A loop's request counts: whatever order records come in, and however
/// many keys they spread over (more than the table keeps at hand), each
/// key counts exactly its own records.
final class StatsTableTests: XCTestCase {
    func testEveryKeyCountsItsOwnRecordsInAnyOrder() {
        let table = StatsTable()
        var expected: [StatsKey: (count: Int, bytesOut: Int)] = [:]
        var generator = SystemRandomNumberGenerator()
        let clusters = ["backend", "a-cluster-name-longer-than-fifteen-bytes", "cache"]
        let statuses = [200, 204, 404, 503, 0]
        for index in 0..<5000 {
            var record = RequestRecord(direction: Bool.random(using: &generator) ? .outbound : .inbound,
                                       cluster: index % 7 == 0 ? nil : clusters.randomElement(using: &generator))
            record.status = statuses.randomElement(using: &generator) ?? 200
            if record.status == 503 { record.reason = .connectFailure }
            record.bytesOut = index
            table.add(record, seconds: 0.001)
            let key = StatsKey(direction: record.direction, cluster: record.cluster ?? "none",
                               statusClass: record.status == 0 ? 0 : record.status / 100,
                               reason: record.reason, isSession: false)
            expected[key, default: (0, 0)].count += 1
            expected[key, default: (0, 0)].bytesOut += index
        }
        let tallies = table.tallies
        XCTAssertEqual(tallies.count, expected.count)
        XCTAssertGreaterThan(tallies.count, 8, "more keys than the table keeps at hand")
        for (key, want) in expected {
            XCTAssertEqual(tallies[key]?.count, want.count, "\(key)")
            XCTAssertEqual(tallies[key]?.bytesOut, want.bytesOut, "\(key)")
        }
        XCTAssertEqual(tallies.values.reduce(0) { $0 + $1.count }, 5000)
    }
}
