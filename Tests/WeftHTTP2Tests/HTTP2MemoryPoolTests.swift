import CNghttp2
import NIOCore
import XCTest

@testable import WeftHTTP2

final class HTTP2MemoryPoolTests: XCTestCase {
    /// The pool through nghttp2's own callbacks, as the library calls them.
    private struct Calls {
        let mem: nghttp2_mem
        func malloc(_ size: Int) -> UnsafeMutableRawPointer? { mem.malloc(size, mem.mem_user_data) }
        func free(_ pointer: UnsafeMutableRawPointer?) { mem.free(pointer, mem.mem_user_data) }
        func calloc(_ count: Int, _ size: Int) -> UnsafeMutableRawPointer? { mem.calloc(count, size, mem.mem_user_data) }
        func realloc(_ pointer: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
            mem.realloc(pointer, size, mem.mem_user_data)
        }
    }

    func testSizeClassesHoldTheirBlocks() {
        XCTAssertEqual(HTTP2MemoryPool.sizeClass(holding: 1), 0)
        XCTAssertEqual(HTTP2MemoryPool.sizeClass(holding: 64), 0)
        XCTAssertEqual(HTTP2MemoryPool.sizeClass(holding: 65), 1)
        XCTAssertEqual(HTTP2MemoryPool.sizeClass(holding: 128), 1)
        XCTAssertEqual(HTTP2MemoryPool.sizeClass(holding: 129), 2)
        XCTAssertEqual(HTTP2MemoryPool.sizeClass(holding: 4096), HTTP2MemoryPool.classCount - 1)
        for total in 1...HTTP2MemoryPool.largestClassSize {
            let sizeClass = HTTP2MemoryPool.sizeClass(holding: total)
            XCTAssertGreaterThanOrEqual(HTTP2MemoryPool.classSize(sizeClass), total)
            if sizeClass > 0 { XCTAssertLessThan(HTTP2MemoryPool.classSize(sizeClass - 1), total) }
        }
    }

    func testAFreedBlockIsHandedOutAgainForASizeOfItsClassOnly() throws {
        let pool = HTTP2MemoryPool()
        let calls = Calls(mem: pool.allocator)
        let first = try XCTUnwrap(calls.malloc(100))
        XCTAssertEqual(Int(bitPattern: first) % 16, 0, "16-byte alignment")
        XCTAssertEqual(pool.systemAllocations, 1)
        calls.free(first)
        XCTAssertEqual(pool.keptBlocks, 1)

        let other = try XCTUnwrap(calls.malloc(300))
        XCTAssertNotEqual(other, first, "another class")
        XCTAssertEqual(pool.systemAllocations, 2)
        let again = try XCTUnwrap(calls.malloc(110))
        XCTAssertEqual(again, first, "the kept block of the class")
        XCTAssertEqual(pool.systemAllocations, 2)
        XCTAssertEqual(pool.keptBlocks, 0)
        calls.free(other)
        calls.free(again)
        calls.free(nil)
        XCTAssertEqual(pool.keptBlocks, 2)
    }

    func testEachListKeepsAtMostItsCapAndLargeBlocksAreNeverKept() throws {
        let pool = HTTP2MemoryPool()
        let calls = Calls(mem: pool.allocator)
        let cap = HTTP2MemoryPool.keptBytesPerClass / HTTP2MemoryPool.classSize(HTTP2MemoryPool.classCount - 1)
        let blocks = try (0..<(cap + 5)).map { _ in try XCTUnwrap(calls.malloc(4000)) }
        blocks.forEach(calls.free)
        XCTAssertEqual(pool.keptBlocks, cap)

        let large = try XCTUnwrap(calls.malloc(100_000))
        large.storeBytes(of: 7, toByteOffset: 99_999, as: UInt8.self)
        calls.free(large)
        XCTAssertEqual(pool.keptBlocks, cap)
    }

    /// For the fuzz harnesses: nothing kept, every block from malloc.
    func testAPoolThatKeepsNothingFreesEveryBlock() throws {
        let pool = HTTP2MemoryPool(keepsBlocks: false)
        let calls = Calls(mem: pool.allocator)
        for round in 1...3 {
            calls.free(try XCTUnwrap(calls.malloc(100)))
            XCTAssertEqual(pool.keptBlocks, 0)
            XCTAssertEqual(pool.systemAllocations, round)
        }
        let pair = try Pair()
        let session = try HTTP2Session(role: .client, recyclesLibraryMemory: false, delegate: pair.clientRecorder)
        for index in 0..<3 { _ = try session.submitRequest(headers: request(path: "/\(index)"), endStream: true) }
        _ = try session.produceOutput()
        XCTAssertEqual(session.memoryPool.keptBlocks, 0)
        XCTAssertGreaterThan(session.memoryPool.systemAllocations, 3)
    }

    func testReallocKeepsTheBytesWithinAClassAcrossClassesAndToALargeBlock() throws {
        let pool = HTTP2MemoryPool()
        let calls = Calls(mem: pool.allocator)
        var pointer = try XCTUnwrap(calls.realloc(nil, 20))
        for index in 0..<20 { pointer.storeBytes(of: UInt8(index), toByteOffset: index, as: UInt8.self) }
        let same = try XCTUnwrap(calls.realloc(pointer, 40))
        XCTAssertEqual(same, pointer, "still fits its block")
        pointer = try XCTUnwrap(calls.realloc(same, 1000))
        XCTAssertEqual(pool.keptBlocks, 1, "the small block went back to its list")
        pointer = try XCTUnwrap(calls.realloc(pointer, 50_000))
        pointer = try XCTUnwrap(calls.realloc(pointer, 60_000))
        for index in 0..<20 { XCTAssertEqual(pointer.load(fromByteOffset: index, as: UInt8.self), UInt8(index)) }
        calls.free(pointer)
    }

    func testCallocZeroesAReusedBlockAndRefusesAnOverflowingSize() throws {
        let pool = HTTP2MemoryPool()
        let calls = Calls(mem: pool.allocator)
        let dirty = try XCTUnwrap(calls.malloc(200))
        dirty.initializeMemory(as: UInt8.self, repeating: 0xAB, count: 200)
        calls.free(dirty)
        let zeroed = try XCTUnwrap(calls.calloc(10, 20))
        XCTAssertEqual(zeroed, dirty)
        XCTAssertTrue(UnsafeRawBufferPointer(start: zeroed, count: 200).allSatisfy { $0 == 0 })
        calls.free(zeroed)
        XCTAssertNil(calls.calloc(Int.max / 2, 3))
        XCTAssertNil(calls.malloc(Int.max - 8))
        // A size_t above Int.max arrives negative.
        XCTAssertNil(calls.malloc(-8))
        XCTAssertNil(calls.realloc(nil, -8))
        let kept = try XCTUnwrap(calls.malloc(100))
        kept.storeBytes(of: 42, as: UInt8.self)
        XCTAssertNil(calls.realloc(kept, -8), "not the old block, as if it held that much")
        XCTAssertEqual(kept.load(as: UInt8.self), 42, "left as it was")
        calls.free(kept)
        XCTAssertNil(calls.calloc(-1, -8))
        XCTAssertNil(calls.calloc(-1, 8))
        XCTAssertNil(calls.calloc(1, -8))
    }

    /// The session allocates through its pool: once the first exchanges
    /// have filled the lists, later ones take nothing from malloc (the
    /// values stay four digits wide, so HPACK's entries keep their sizes).
    func testASessionInSteadyStateTakesNothingFromMalloc() throws {
        let pair = try Pair()
        pair.serverRecorder.onHeaders = { session, id, _, _, _ in
            try session.submitResponse(streamID: id, headers: [h(":status", "200"), h("x-n", "\(id)")],
                                       endStream: false)
            try session.sendData(streamID: id, buffer("answer \(id)"), endStream: true)
        }
        // Values new to HPACK each time (dynamic table insertions and
        // evictions), of one width, as request ids are.
        var next = 1000
        func exchanges(_ count: Int) throws {
            for _ in 0..<count {
                next += 1
                let id = try pair.client.submitRequest(
                    headers: request(path: "/item/\(next)", extra: [h("x-request-id", "id-\(next)")]),
                    endStream: true)
                try pair.pump()
                XCTAssertEqual(pair.clientRecorder.body(id), "answer \(id)")
            }
        }
        // Until HPACK's tables hold as many entries as they will, and the
        // server keeps as many closed streams as it will (nghttp2 keeps up
        // to SETTINGS_MAX_CONCURRENT_STREAMS, 1024, for priorities).
        try exchanges(1200)
        let client = pair.client.memoryPool.systemAllocations
        let server = pair.server.memoryPool.systemAllocations
        XCTAssertGreaterThan(client, 0)
        XCTAssertGreaterThan(server, 0)
        try exchanges(1000)
        XCTAssertEqual(pair.client.memoryPool.systemAllocations, client)
        XCTAssertEqual(pair.server.memoryPool.systemAllocations, server)
        XCTAssertGreaterThan(pair.client.memoryPool.keptBlocks, 0)
    }
}
