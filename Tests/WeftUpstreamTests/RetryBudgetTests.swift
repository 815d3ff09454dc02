import XCTest
@testable import WeftUpstream

/// The retry budget's arithmetic, on a clock the test moves.
final class RetryBudgetTests: XCTestCase {
    private let second: UInt64 = 1_000_000_000

    func testRetriesStayUnderTheShareOfRecentRequestsWithAFloorOfThree() {
        var budget = RetryBudget()
        var now = 100 * second
        // A quiet cluster may still retry three times.
        XCTAssertEqual((0..<5).filter { _ in budget.allowRetry(now: now, percent: 20) }.count, 3)
        // 100 requests: 20% of them.
        for _ in 0..<100 { budget.recordRequest(now: now) }
        XCTAssertEqual((0..<30).filter { _ in budget.allowRetry(now: now, percent: 20) }.count, 17, "20 in all")
        // Five seconds on, the last window still counts; ten on, nothing does.
        now += 5 * second
        XCTAssertFalse(budget.allowRetry(now: now, percent: 20))
        now += 5 * second
        XCTAssertEqual((0..<5).filter { _ in budget.allowRetry(now: now, percent: 20) }.count, 3)
    }

    func testZeroPercentLeavesOnlyTheFloor() {
        var budget = RetryBudget()
        for _ in 0..<1000 { budget.recordRequest(now: second) }
        XCTAssertEqual((0..<10).filter { _ in budget.allowRetry(now: second, percent: 0) }.count, 3)
    }
}
