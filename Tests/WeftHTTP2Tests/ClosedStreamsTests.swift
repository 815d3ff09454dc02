import XCTest
@testable import WeftHTTP2

final class ClosedStreamsTests: XCTestCase {
    func testTellsHowAStreamClosed() {
        var record = ClosedStreams(capacity: 8)
        record.record(1, .endedByPeer)
        record.record(3, .cutShort)
        XCTAssertEqual(record.closure(of: 1), .endedByPeer)
        XCTAssertEqual(record.closure(of: 3), .cutShort)
        XCTAssertNil(record.closure(of: 5), "never closed")
    }

    func testEachKindKeepsItsLastCapacityAndForgetsItsOldestFirst() {
        var record = ClosedStreams(capacity: 2)
        record.record(1, .cutShort)
        for id: Int32 in [3, 5, 7, 9] { record.record(id, .endedByPeer) }
        XCTAssertEqual(record.closure(of: 1), .cutShort, "completions do not push out a reset")
        XCTAssertNil(record.closure(of: 3))
        XCTAssertNil(record.closure(of: 5))
        XCTAssertEqual(record.closure(of: 7), .endedByPeer)
        XCTAssertEqual(record.closure(of: 9), .endedByPeer)
        record.record(11, .cutShort)
        record.record(13, .cutShort)
        XCTAssertNil(record.closure(of: 1), "two later resets did")
        XCTAssertEqual(record.closure(of: 11), .cutShort)
        XCTAssertEqual(record.closure(of: 13), .cutShort)
    }

    func testRecentIDsWrapAroundAndKeepAtLeastOne() {
        var ids = RecentStreamIDs(capacity: 3)
        for id: Int32 in [1, 3, 5, 7, 9] { ids.insert(id) }
        XCTAssertEqual([1, 3, 5, 7, 9].map { ids.contains($0) }, [false, false, true, true, true])
        ids.insert(11)  // takes the place of 5, the oldest left
        XCTAssertEqual([5, 7, 9, 11].map { ids.contains($0) }, [false, true, true, true])
        var one = RecentStreamIDs(capacity: 0)
        XCTAssertEqual(one.capacity, 1)
        one.insert(1)
        one.insert(3)
        XCTAssertFalse(one.contains(1))
        XCTAssertTrue(one.contains(3))
    }
}
