import XCTest
@testable import WeftHTTP2

final class ClosedStreamsTests: XCTestCase {
    func testTellsHowAStreamClosed() {
        var record = ClosedStreams(capacity: 8)
        record.record(1, endedByPeer: true)
        record.record(3, endedByPeer: false)
        XCTAssertEqual(record.closure(of: 1), .endedByPeer)
        XCTAssertEqual(record.closure(of: 3), .cutShort)
        XCTAssertNil(record.closure(of: 5), "never closed")
        XCTAssertNil(record.closure(of: 0))
        XCTAssertNil(record.closure(of: -1))
    }

    func testKeepsTheLastCapacityClosedAndForgetsTheOldestFirst() {
        var record = ClosedStreams(capacity: 4)
        for id in stride(from: Int32(1), through: 11, by: 2) {  // 1, 3, ..., 11: six closures
            record.record(id, endedByPeer: id % 4 == 1)
        }
        XCTAssertNil(record.closure(of: 1))
        XCTAssertNil(record.closure(of: 3))
        XCTAssertEqual(record.closure(of: 5), .endedByPeer)
        XCTAssertEqual(record.closure(of: 7), .cutShort)
        XCTAssertEqual(record.closure(of: 9), .endedByPeer)
        XCTAssertEqual(record.closure(of: 11), .cutShort)
        // Wrapping on: 13 takes the place of 5, the oldest left.
        record.record(13, endedByPeer: false)
        XCTAssertNil(record.closure(of: 5))
        XCTAssertEqual(record.closure(of: 7), .cutShort)
        XCTAssertEqual(record.closure(of: 13), .cutShort)
    }

    func testACapacityBelowOneKeepsOne() {
        var record = ClosedStreams(capacity: 0)
        XCTAssertEqual(record.capacity, 1)
        record.record(1, endedByPeer: true)
        record.record(3, endedByPeer: true)
        XCTAssertNil(record.closure(of: 1))
        XCTAssertEqual(record.closure(of: 3), .endedByPeer)
    }
}
