import XCTest
@testable import WeftHTTP2

/// The stream table's kept-at-hand entry never outlives or hides the
/// dictionary's: a removed or replaced stream is never handed out.
final class HTTP2StreamTableTests: XCTestCase {
    func testTheLastStreamLookedUpIsNeverStale() {
        var table = HTTP2StreamTable()
        let one = HTTP2StreamState(local: .open), three = HTTP2StreamState(local: .idle)
        table[1] = one
        table[3] = three
        XCTAssertTrue(table[1] === one)
        XCTAssertTrue(table[1] === one, "again, from the kept entry")
        XCTAssertTrue(table[3] === three)
        let replacement = HTTP2StreamState(local: .ended)
        table[3] = replacement
        XCTAssertTrue(table[3] === replacement, "a replaced stream is not handed out")
        table[3] = nil
        XCTAssertNil(table[3], "a removed stream is gone")
        XCTAssertTrue(table[1] === one)
        table[1] = nil
        XCTAssertNil(table[1])
        XCTAssertNil(table[0], "0 is no stream")
        XCTAssertNil(table[5])
    }
}
