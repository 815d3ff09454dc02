import NIOCore
import XCTest
@testable import WeftHTTP2

/// A stream's outbound queue, and the stream table.
final class HTTP2StreamStateTests: XCTestCase {
    /// The queue hands out its bytes in order, as slices, across buffer
    /// boundaries, whether one buffer is queued (held inline) or many.
    func testTheOutboundQueueHandsOutItsBytesInOrder() {
        let state = HTTP2StreamState(local: .open)
        var output: [ByteBuffer] = []
        func take(_ count: Int) -> String? {
            output.removeAll()
            guard state.dequeue(count, into: &output) else { return nil }
            return output.map { String(buffer: $0) }.joined(separator: "|")
        }
        state.enqueue(ByteBuffer(string: "abc"))
        XCTAssertEqual(take(2), "ab")
        XCTAssertEqual(take(1), "c")
        XCTAssertEqual(state.queuedBytes, 0)
        state.enqueue(ByteBuffer(string: "de"))
        state.enqueue(ByteBuffer())  // nothing to queue
        state.enqueue(ByteBuffer(string: "fgh"))
        state.enqueue(ByteBuffer(string: "ij"))
        XCTAssertEqual(state.queuedBytes, 7)
        XCTAssertNil(take(8), "more than is queued")
        XCTAssertEqual(take(3), "de|f")
        XCTAssertEqual(take(4), "gh|ij")
        XCTAssertNil(take(1))
        state.enqueue(ByteBuffer(string: "kl"))
        XCTAssertEqual(take(2), "kl", "the queue is used again after it emptied")
        state.enqueue(ByteBuffer(string: "mn"))
        state.enqueue(ByteBuffer(string: "op"))
        state.dropOutbound()
        XCTAssertEqual(state.queuedBytes, 0)
        XCTAssertNil(take(1))
    }

    /// The stream table's kept-at-hand entry never outlives or hides the
    /// dictionary's: a removed or replaced stream is never handed out.
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
