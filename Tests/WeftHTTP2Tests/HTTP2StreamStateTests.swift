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

    /// Streams by id, in slots and, when a slot is held by an older stream
    /// still open, in the overflow: every id finds its own value, wherever
    /// it lives, and a removed or replaced one is never handed out.
    func testEveryStreamIsFoundWhereverItLives() {
        var table = StreamSlots<Int>(slots: 8)
        var model: [Int32: Int] = [:]
        func check(_ note: String) {
            XCTAssertEqual(table.count, model.count, note)
            for id in Int32(0)...Int32(5000) { XCTAssertEqual(table[id], model[id], "\(note): id \(id)") }
        }
        // Sequential ids, a few left open for long: the table grows, then
        // (past its largest size) old ones share slots with new ones.
        for (index, id) in stride(from: Int32(1), through: 4999, by: 2).enumerated() {
            table[id] = index
            model[id] = index
            if index % 97 != 0, let done = model.keys.first(where: { $0 < id - 40 && $0 % 97 != 1 }) {
                XCTAssertEqual(table.removeValue(forKey: done), model.removeValue(forKey: done))
            }
        }
        check("after opening")
        // Replacing, whether in a slot or in the overflow.
        for id in model.keys { table[id] = -Int(id); model[id] = -Int(id) }
        check("after replacing")
        // Removing everything, one way or the other.
        for (index, id) in model.keys.sorted().enumerated() where index % 2 == 0 {
            table[id] = nil
            model[id] = nil
        }
        check("after removing half")
        // An id in the overflow whose slot has emptied is still replaced
        // where it lives.
        for id in model.keys { table[id] = Int(id); model[id] = Int(id) }
        check("after replacing again")
        XCTAssertNil(table.removeValue(forKey: 3), "removing what is gone")
        // Id 0 marks an empty slot; as a key it is kept apart, and counted.
        let before = table.count
        XCTAssertNil(table.removeValue(forKey: 0))
        XCTAssertEqual(table.count, before, "removing an absent 0 changes nothing")
        table[0] = 7
        XCTAssertEqual(table[0], 7)
        XCTAssertEqual(table.count, before + 1)
        XCTAssertEqual(table.removeValue(forKey: 0), 7)
        XCTAssertEqual(table.count, before)
        XCTAssertEqual(Set(table.removeAll()), Set(model.values))
        XCTAssertTrue(table.isEmpty)
        model.removeAll()
        check("after removeAll")
    }
}
