import NIOCore
import XCTest

@testable import WeftHTTP2

final class HTTP2SessionTests: XCTestCase {

    // MARK: - Requests and responses

    func testRequestAndResponseWithBodiesBothWays() throws {
        let pair = try Pair()
        pair.serverRecorder.onHeaders = { session, id, _, kind, _ in
            XCTAssertEqual(kind, .request)
            try session.submitResponse(streamID: id, headers: [h(":status", "201"), h("content-type", "text/plain")],
                                       endStream: false)
        }
        pair.serverRecorder.onData = { session, id, _, endStream in
            if endStream {
                try session.sendData(streamID: id, buffer("created "))
                try session.sendData(streamID: id, buffer("ok"), endStream: true)
            }
        }
        let id = try pair.client.submitRequest(
            headers: request("POST", path: "/upload?x=1", extra: [h("x-test", "1"), h("content-length", "11")]),
            endStream: false)
        XCTAssertEqual(id, 1)
        try pair.client.sendData(streamID: id, buffer("hello "))
        try pair.client.sendData(streamID: id, buffer("world"), endStream: true)
        try pair.pump()

        let requestBlocks = pair.serverRecorder.headerBlocks(id)
        XCTAssertEqual(requestBlocks.count, 1)
        XCTAssertEqual(requestBlocks.first?.headers,
                       request("POST", path: "/upload?x=1", extra: [h("x-test", "1"), h("content-length", "11")]),
                       "pseudo-headers first, every field in wire order")
        XCTAssertEqual(requestBlocks.first?.endStream, false)
        XCTAssertEqual(pair.serverRecorder.body(id), "hello world")
        XCTAssertTrue(pair.serverRecorder.endedStreams.contains(id))

        let responseBlocks = pair.clientRecorder.headerBlocks(id)
        XCTAssertEqual(responseBlocks.map(\.kind), [.response])
        XCTAssertEqual(responseBlocks.first?.headers, [h(":status", "201"), h("content-type", "text/plain")])
        XCTAssertEqual(pair.clientRecorder.body(id), "created ok")
        XCTAssertTrue(pair.clientRecorder.endedStreams.contains(id))

        XCTAssertEqual(pair.clientRecorder.closeCode(id), .noError)
        XCTAssertEqual(pair.serverRecorder.closeCode(id), .noError)
        XCTAssertEqual(pair.client.openStreamCount, 0)
        XCTAssertEqual(pair.server.openStreamCount, 0)
        XCTAssertTrue(pair.client.wantsRead, "an idle connection stays open")
    }

    /// A DATA frame that arrives in pieces (one read each) is delivered as
    /// its pieces, in order, END_STREAM on the last only; the next frame of
    /// the same stream starts afresh.
    func testADataFrameSplitAcrossReadsIsDeliveredInOrderWithEndStreamOnItsLastPiece() throws {
        let pair = try Pair()
        let id = try pair.client.submitRequest(headers: request("POST"), endStream: false)
        try pair.pump()
        let first = String(repeating: "a", count: 40) + String(repeating: "b", count: 40)
        try pair.client.sendData(streamID: id, buffer(first))
        var wire = ByteBuffer()
        for var part in try pair.client.produceOutput() { wire.writeBuffer(&part) }
        while wire.readableBytes > 0, let piece = wire.readSlice(length: min(25, wire.readableBytes)) {
            try pair.server.receive(piece)
        }
        try pair.client.sendData(streamID: id, buffer("tail"), endStream: true)
        try pair.pump()

        let pieces = pair.serverRecorder.events.compactMap { event -> (String, Bool)? in
            if case .data(id, let text, let end) = event { return (text, end) }
            return nil
        }
        XCTAssertGreaterThan(pieces.count, 3, "the first frame came in several pieces")
        XCTAssertEqual(pieces.map(\.0).joined(), first + "tail")
        XCTAssertEqual(pieces.map(\.1), Array(repeating: false, count: pieces.count - 1) + [true])
        XCTAssertEqual(pieces.last?.0, "tail", "the second frame is one piece of its own")
    }

    /// A server that answers before the request body ended gets its whole
    /// answer to the client, then RST_STREAM(NO_ERROR) stops the body
    /// (RFC 9113 §8.1); a reset submitted at once would have dropped it.
    func testResetAfterTheAnswerIsOutKeepsTheAnswer() throws {
        let pair = try Pair()
        pair.serverRecorder.onHeaders = { session, id, _, _, _ in
            try session.submitResponse(streamID: id, headers: [h(":status", "403")], endStream: false)
            try session.sendData(streamID: id, buffer("refused"), endStream: true)
            session.resetAfterSendingEnd(streamID: id)
        }
        let id = try pair.client.submitRequest(headers: request("POST", path: "/upload"), endStream: false)
        try pair.client.sendData(streamID: id, buffer("part one"))
        try pair.pump()
        XCTAssertEqual(pair.clientRecorder.headerBlocks(id).first?.headers, [h(":status", "403")])
        XCTAssertEqual(pair.clientRecorder.body(id), "refused")
        XCTAssertTrue(pair.clientRecorder.endedStreams.contains(id))
        XCTAssertEqual(pair.clientRecorder.closeCode(id), .noError, "closed by the NO_ERROR reset, not left open")
        XCTAssertEqual(pair.client.openStreamCount, 0)

        // A request that had ended: the answer closes the stream, no reset follows.
        pair.serverRecorder.onHeaders = { session, id, _, _, _ in
            try session.submitResponse(streamID: id, headers: [h(":status", "404")], endStream: false)
            try session.sendData(streamID: id, buffer("gone"), endStream: true)
            session.resetAfterSendingEnd(streamID: id)
        }
        let second = try pair.client.submitRequest(headers: request("GET", path: "/"), endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.clientRecorder.body(second), "gone")
        XCTAssertEqual(pair.clientRecorder.closeCode(second), .noError)
        XCTAssertFalse(pair.clientRecorder.events.contains { if case .connectionError = $0 { true } else { false } })
        XCTAssertTrue(pair.client.wantsRead, "the connection stays usable")
    }

    func testBodilessExchangeAndSettingsSeenByBothSides() throws {
        var serverSettings = HTTP2Settings()
        serverSettings.maxConcurrentStreams = 77
        let pair = try Pair(serverSettings: serverSettings)
        pair.serverRecorder.onHeaders = { session, id, _, _, endStream in
            XCTAssertTrue(endStream)
            try session.submitResponse(streamID: id, headers: [h(":status", "204")], endStream: true)
        }
        let id = try pair.client.submitRequest(headers: request(), endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.clientRecorder.headerBlocks(id).map(\.endStream), [true])
        XCTAssertEqual(pair.clientRecorder.closeCode(id), .noError)
        XCTAssertEqual(pair.client.remoteMaxConcurrentStreams, 77)
        XCTAssertTrue(pair.clientRecorder.events.contains {
            if case .settings(let s) = $0 { return s.maxConcurrentStreams == 77 && s.initialWindowSize == 1 << 20 }
            return false
        })
        XCTAssertTrue(pair.serverRecorder.events.contains {
            if case .settings(let s) = $0 { return s.maxHeaderListSize == 64 * 1024 && !s.enablePush }
            return false
        })
    }

    func testTrailersBothWays() throws {
        let pair = try Pair()
        pair.serverRecorder.onHeaders = { session, id, _, kind, endStream in
            if kind == .trailers {
                XCTAssertTrue(endStream)
                try session.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: false)
                try session.sendData(streamID: id, buffer("reply"))
                try session.submitTrailers(streamID: id, headers: [h("grpc-status", "0"), h("grpc-message", "ok")])
            }
        }
        let id = try pair.client.submitRequest(headers: request("POST", extra: [h("te", "trailers")]), endStream: false)
        try pair.client.sendData(streamID: id, buffer("payload"))
        try pair.client.submitTrailers(streamID: id, headers: [h("x-checksum", "abc")])
        XCTAssertThrowsError(try pair.client.sendData(streamID: id, buffer("late"))) {
            XCTAssertEqual($0 as? HTTP2SessionError, .streamEnded(id))
        }
        try pair.pump()

        XCTAssertEqual(pair.serverRecorder.body(id), "payload")
        let serverBlocks = pair.serverRecorder.headerBlocks(id)
        XCTAssertEqual(serverBlocks.map(\.kind), [.request, .trailers])
        XCTAssertEqual(serverBlocks.last?.headers, [h("x-checksum", "abc")])

        let clientBlocks = pair.clientRecorder.headerBlocks(id)
        XCTAssertEqual(clientBlocks.map(\.kind), [.response, .trailers])
        XCTAssertEqual(clientBlocks.map(\.endStream), [false, true])
        XCTAssertEqual(clientBlocks.last?.headers, [h("grpc-status", "0"), h("grpc-message", "ok")])
        XCTAssertEqual(pair.clientRecorder.body(id), "reply")
        XCTAssertEqual(pair.clientRecorder.closeCode(id), .noError)
    }

    func testContinueInformationalThenFinalResponse() throws {
        let pair = try Pair()
        pair.serverRecorder.onHeaders = { session, id, headers, kind, _ in
            guard kind == .request else { return }
            XCTAssertTrue(headers.contains(h("expect", "100-continue")))
            try session.submitInformational(streamID: id, headers: [h(":status", "100")])
        }
        let id = try pair.client.submitRequest(headers: request("PUT", extra: [h("expect", "100-continue")]),
                                               endStream: false)
        try pair.pump()
        XCTAssertEqual(pair.clientRecorder.headerBlocks(id).map(\.kind), [.informational])
        XCTAssertEqual(pair.clientRecorder.headerBlocks(id).first?.headers, [h(":status", "100")])
        XCTAssertEqual(pair.serverRecorder.body(id), "", "the client waited for 100")

        // 100 received: the body goes, then the final answer.
        try pair.client.sendData(streamID: id, buffer("the body"), endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.serverRecorder.body(id), "the body")
        try pair.server.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: false)
        XCTAssertThrowsError(try pair.server.submitInformational(streamID: id, headers: [h(":status", "103")]),
                             "no 1xx after the final response")
        try pair.server.sendEnd(streamID: id)
        try pair.pump()
        let blocks = pair.clientRecorder.headerBlocks(id)
        XCTAssertEqual(blocks.map(\.kind), [.informational, .response])
        XCTAssertEqual(blocks.last?.headers, [h(":status", "200")])
        XCTAssertTrue(pair.clientRecorder.events.contains(.data(id, "", endStream: true)))
        XCTAssertEqual(pair.clientRecorder.closeCode(id), .noError)
    }

    func testTwoHundredConcurrentStreamsInterleaved() throws {
        var limits = HTTP2Limits()
        limits.streamSendHighWatermark = 1 << 30
        let pair = try Pair(clientLimits: limits, serverLimits: limits)
        pair.coalesce = true
        // Echo server: answer on headers, echo every chunk, end with the request.
        pair.serverRecorder.onHeaders = { session, id, _, kind, _ in
            if kind == .request {
                try session.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: false)
            }
        }
        pair.serverRecorder.onData = { session, id, data, endStream in
            try session.sendData(streamID: id, data, endStream: endStream)
        }
        // Handshake first so the client knows the server allows 1024 streams.
        try pair.pump()
        var bodies: [Int32: String] = [:]
        var ids: [Int32] = []
        for index in 0..<200 {
            let id = try pair.client.submitRequest(headers: request("POST", path: "/\(index)"), endStream: false)
            ids.append(id)
            bodies[id] = ""
        }
        XCTAssertEqual(pair.client.openStreamCount, 200)
        // Round-robin 20 KB-ish chunks: each body needs several DATA frames,
        // so the frames of different streams must interleave.
        for round in 0..<3 {
            for id in ids {
                let chunk = String(repeating: Character(UnicodeScalar(UInt8(97 + (Int(id) + round) % 26))),
                                   count: 20_000 + Int(id) % 7)
                bodies[id]! += chunk
                try pair.client.sendData(streamID: id, buffer(chunk), endStream: round == 2)
            }
        }
        try pair.pump()

        for id in ids {
            XCTAssertEqual(pair.serverRecorder.body(id), bodies[id], "request body of stream \(id)")
            XCTAssertEqual(pair.clientRecorder.body(id), bodies[id], "echoed body of stream \(id)")
            XCTAssertEqual(pair.clientRecorder.closeCode(id), .noError)
        }
        XCTAssertEqual(pair.client.openStreamCount, 0)
        XCTAssertEqual(pair.server.openStreamCount, 0)
        // Interleaved: run one stream after another and the stream id would
        // change 199 times; multiplexed DATA frames switch far more often.
        let order = pair.serverRecorder.events.compactMap { event -> Int32? in
            if case .data(let id, _, _) = event { return id }
            return nil
        }
        let switches = zip(order, order.dropFirst()).filter { $0 != $1 }.count
        XCTAssertGreaterThan(switches, 2 * 200, "streams share the connection rather than run one after another")
    }

    // MARK: - Flow control and backpressure

    func testWindowOpensOnlyAsTheReceiverConsumes() throws {
        var serverSettings = HTTP2Settings()
        serverSettings.initialWindowSize = 64 * 1024
        let pair = try Pair(serverSettings: serverSettings)
        pair.serverRecorder.autoConsume = false
        let total = 1 << 20
        let id = try pair.client.submitRequest(headers: request("POST"), endStream: false)
        try pair.client.sendData(streamID: id, buffer(repeating: 0x61, count: total), endStream: true)
        XCTAssertEqual(pair.clientRecorder.events.last, .writable(id, false), "1 MiB queued is above the watermark")
        XCTAssertFalse(pair.client.isWritable(streamID: id))
        try pair.pump()

        // Stopped at the stream window (65535 before the server's SETTINGS
        // arrived, +1 after): the sender still holds the rest.
        let first = pair.serverRecorder.bodyBytes(id)
        XCTAssertGreaterThanOrEqual(first, 65_535)
        XCTAssertLessThanOrEqual(first, 64 * 1024)
        XCTAssertEqual(pair.client.queuedBytes(streamID: id), total - first)
        XCTAssertEqual(pair.server.unconsumedBytes(streamID: id), first)
        XCTAssertEqual(pair.server.localWindow(streamID: id), 64 * 1024 - first)
        try pair.pump()
        XCTAssertEqual(pair.serverRecorder.bodyBytes(id), first, "nothing more flows without consume")

        try pair.server.consume(streamID: id, bytes: first)
        try pair.pump()
        let second = pair.serverRecorder.bodyBytes(id)
        XCTAssertGreaterThan(second, first, "consuming reopened the window")
        XCTAssertLessThanOrEqual(second - first, 64 * 1024)

        // Drain the rest the way a proxy would: consume after writing onward.
        var rounds = 0
        while pair.server.unconsumedBytes(streamID: id) > 0 && rounds < 1000 {
            try pair.server.consume(streamID: id, bytes: pair.server.unconsumedBytes(streamID: id))
            try pair.pump()
            rounds += 1
        }
        XCTAssertEqual(pair.serverRecorder.bodyBytes(id), total)
        XCTAssertTrue(pair.serverRecorder.endedStreams.contains(id))
        XCTAssertTrue(pair.clientRecorder.events.contains(.writable(id, true)), "drained below the low watermark")
        XCTAssertEqual(pair.client.queuedBytes(streamID: id), 0)
    }

    func testConsumeAfterCloseReleasesTheConnectionWindow() throws {
        var serverSettings = HTTP2Settings()
        serverSettings.initialWindowSize = 65_535
        serverSettings.connectionWindowSize = 65_535
        let pair = try Pair(serverSettings: serverSettings)
        pair.serverRecorder.autoConsume = false
        pair.serverRecorder.onData = { session, id, _, endStream in
            if endStream { try session.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: true) }
        }
        let first = try pair.client.submitRequest(headers: request("POST"), endStream: false)
        try pair.client.sendData(streamID: first, buffer(repeating: 1, count: 60_000), endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.serverRecorder.closeCode(first), .noError)
        XCTAssertEqual(pair.server.unconsumedBytes(streamID: first), 60_000, "closed, but the debt is kept")

        let second = try pair.client.submitRequest(headers: request("POST"), endStream: false)
        try pair.client.sendData(streamID: second, buffer(repeating: 2, count: 60_000), endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.serverRecorder.bodyBytes(second), 5_535, "only what the connection window had left")

        try pair.server.discardUnconsumed(streamID: first)
        XCTAssertEqual(pair.server.unconsumedBytes(streamID: first), 0)
        try pair.pump()
        XCTAssertGreaterThan(pair.serverRecorder.bodyBytes(second), 5_535)
    }

    func testOutputBudgetLeavesTheRestQueued() throws {
        let pair = try Pair()
        try pair.pump()
        let id = try pair.client.submitRequest(headers: request("POST"), endStream: false)
        try pair.client.sendData(streamID: id, buffer(repeating: 7, count: 200_000), endStream: true)
        var out: [ByteBuffer] = []
        let produced = try pair.client.produceOutput(into: &out, maxBytes: 40_000)
        XCTAssertGreaterThanOrEqual(produced, 40_000)
        XCTAssertLessThan(produced, 40_000 + 16_384 + 9 + 1)
        XCTAssertEqual(produced, out.reduce(0) { $0 + $1.readableBytes })
        XCTAssertTrue(pair.client.queuedBytes(streamID: id) > 0)
        for buffer in out { try pair.server.receive(buffer) }
        try pair.pump()
        XCTAssertEqual(pair.serverRecorder.bodyBytes(id), 200_000)
    }

    func testStreamResetWhileOutputIsHeldBackByTheBudget() throws {
        let pair = try Pair()
        try pair.pump()
        let id = try pair.client.submitRequest(headers: request("POST"), endStream: false)
        try pair.client.sendData(streamID: id, buffer(repeating: 7, count: 500_000), endStream: true)
        let partial = try pair.client.produceOutput(maxBytes: 20_000)
        XCTAssertTrue(pair.client.wantsWrite, "more DATA is waiting for the next call")
        for buffer in partial { try pair.server.receive(buffer) }
        try pair.server.resetStream(streamID: id, errorCode: .cancel)
        for buffer in try pair.server.produceOutput() { try pair.client.receive(buffer) }
        XCTAssertEqual(pair.clientRecorder.closeCode(id), .cancel)
        XCTAssertEqual(pair.client.queuedBytes(streamID: id), 0, "a closed stream's queue is dropped")
        XCTAssertNoThrow(try pair.pump())
        XCTAssertTrue(pair.client.wantsRead, "the connection goes on")
        pair.serverRecorder.onHeaders = { session, id, _, _, _ in
            try session.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: true)
        }
        let next = try pair.client.submitRequest(headers: request(), endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.clientRecorder.closeCode(next), .noError)
    }

    // MARK: - Zero copy

    func testDataLeavesAsSlicesOfTheSubmittedBuffer() throws {
        let pair = try Pair()
        try pair.pump()
        pair.clientWire = []
        var body = ByteBufferAllocator().buffer(capacity: 1 << 20)
        body.writeBytes((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let (base, count) = body.withUnsafeReadableBytes { (UInt(bitPattern: $0.baseAddress!), $0.count) }

        let id = try pair.client.submitRequest(headers: request("POST"), endStream: false)
        try pair.client.sendData(streamID: id, body, endStream: true)
        try pair.pump()

        // Every body byte on the wire is a view into `body`'s storage.
        var sliced = 0
        var framing = 0
        for buffer in pair.clientWire {
            let start = buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
            if start >= base && start + UInt(buffer.readableBytes) <= base + UInt(count) {
                let offset = Int(start - base)
                XCTAssertEqual(buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes),
                               body.getBytes(at: body.readerIndex + offset, length: buffer.readableBytes))
                sliced += buffer.readableBytes
            } else {
                framing += buffer.readableBytes
            }
        }
        XCTAssertEqual(sliced, 1 << 20, "the whole body went out as slices, no copy")
        XCTAssertLessThan(framing, 2048, "only frame headers and control frames were written")
        XCTAssertEqual(pair.serverRecorder.bodyBytes(id), 1 << 20)

        // And received DATA is a slice of the buffer handed to `receive`.
        let (_, received) = try XCTUnwrap(pair.serverRecorder.dataBuffers.first)
        let receivedStart = received.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
        XCTAssertTrue(receivedStart >= base && receivedStart < base + UInt(count),
                      "fed in memory, the receiver's DATA even shares the sender's storage")
    }

    func testASmallPayloadLeavesInOneBufferWithItsHeadersAndALargerOneAsASlice() throws {
        let pair = try Pair()
        try pair.pump()
        let limit = HTTP2Session.copiedPayloadLimit
        // Two pieces, so the copy walks from one queued buffer to the next.
        let first = buffer(repeating: 0x61, count: 1000)
        let second = buffer(repeating: 0x62, count: limit - 1000)
        pair.clientWire = []
        let small = try pair.client.submitRequest(headers: request("POST"), endStream: false)
        try pair.client.sendData(streamID: small, first)
        try pair.client.sendData(streamID: small, second, endStream: true)
        try pair.pump()
        let smallWire = pair.clientWire.first { $0.readableBytes > limit }
        XCTAssertEqual(pair.clientWire.filter { $0.readableBytes >= 1000 }.count, 1,
                       "HEADERS, the DATA frame's header and its \(limit) payload bytes leave as one buffer")
        XCTAssertNotNil(smallWire)
        XCTAssertEqual(pair.serverRecorder.bodyBytes(small), limit)
        XCTAssertEqual(pair.serverRecorder.body(small), String(repeating: "a", count: 1000)
                       + String(repeating: "b", count: limit - 1000), "the copied bytes arrive in order")

        // One byte more is handed on as a slice of the caller's buffer.
        let large = buffer(repeating: 0x63, count: limit + 1)
        let base = large.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
        pair.clientWire = []
        let id = try pair.client.submitRequest(headers: request("POST"), endStream: false)
        try pair.client.sendData(streamID: id, large, endStream: true)
        try pair.pump()
        let sliced = pair.clientWire.filter { buffer in
            buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) } == base
        }
        XCTAssertEqual(sliced.map(\.readableBytes), [limit + 1], "the payload went out uncopied")
        XCTAssertEqual(pair.serverRecorder.bodyBytes(id), limit + 1)
    }

    /// The handler that owns a session is its delegate: a session that kept
    /// its delegate would keep both alive for ever.
    func testASessionDoesNotKeepItsDelegate() throws {
        var recorder: Recorder? = Recorder()
        weak var gone = recorder
        let session = try HTTP2Session(role: .client, delegate: recorder)
        XCTAssertTrue(session.delegate === recorder)
        recorder = nil
        XCTAssertNil(gone, "the delegate went when its owner let go")
        session.delegate = nil
        XCTAssertNoThrow(try session.produceOutput(), "a session without a delegate still runs")
    }

    // MARK: - Header blocks lent to nghttp2

    /// nghttp2 reads a submitted block's bytes in place: the session keeps
    /// the block until its HEADERS frame is out, and no longer.
    func testASubmittedBlockIsKeptUntilItsFrameIsSentThenLetGo() throws {
        var serverSettings = HTTP2Settings.default
        serverSettings.maxConcurrentStreams = 1
        let pair = try Pair(serverSettings: serverSettings)
        try pair.pump()
        var answer: [Int32] = []
        pair.serverRecorder.onHeaders = { _, id, _, _, _ in answer.append(id) }

        // Three requests; the server takes one at a time, so two wait in
        // nghttp2's queue while the first is answered.
        weak var lastBlock: AnyObject?
        var ids: [Int32] = []
        for index in 0..<3 {
            var fields = request(path: "/r\(index)", extra: [h("x-index", String(index))])
            ids.append(try pair.client.submitRequest(headers: fields, endStream: true))
            if index == 2 { lastBlock = fields.storage }
            // The caller's own copy changes after the submit; what was lent
            // stays as it was.
            fields.append(name: "x-changed", value: "after")
        }
        XCTAssertEqual(pair.client.lentBlockCount, 3)
        try pair.pump()
        XCTAssertEqual(answer.count, 1, "one stream at a time")
        XCTAssertNotNil(lastBlock, "a block still queued is kept")
        XCTAssertEqual(pair.client.lentBlockCount, 2, "the sent block is let go, the two queued ones are kept")

        while let id = answer.first {
            answer.removeFirst()
            try pair.server.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: true)
            try pair.pump()
        }
        for (index, id) in ids.enumerated() {
            XCTAssertEqual(pair.serverRecorder.headerBlocks(id).first?.headers,
                           request(path: "/r\(index)", extra: [h("x-index", String(index))]),
                           "the bytes read long after the submit are the ones submitted")
            XCTAssertEqual(pair.clientRecorder.closeCode(id), .noError)
        }
        XCTAssertEqual(pair.client.lentBlockCount, 0, "every block is let go once its frame is out")
        XCTAssertEqual(pair.server.lentBlockCount, 0)
        XCTAssertNil(lastBlock, "and freed")
    }

    /// A send the output budget cuts short leaves a HEADERS frame packed
    /// but not all sent, which nghttp2's queue no longer counts: its block
    /// stays lent until the frame's own callback. Let go early, the frame's
    /// callback matched whatever block was made next at the same address
    /// (the same size, so the allocator hands the address back), and let
    /// that one go while its own frame was still queued.
    func testABlockOfAFrameTheBudgetCutShortIsKeptUntilTheFrameIsOut() throws {
        var serverSettings = HTTP2Settings.default
        serverSettings.maxConcurrentStreams = 1
        let pair = try Pair(serverSettings: serverSettings)
        try pair.pump()
        func block(_ path: String) -> HTTP2Fields {
            var fields = HTTP2Fields(capacity: 8, bytes: 300)
            fields.append(contentsOf: request(path: path, extra: [h("x-path", path)]))
            return fields
        }
        try pair.client.ping()
        let first = try pair.client.submitRequest(headers: block("/aaaa"), endStream: true)
        var wire: [ByteBuffer] = []
        try pair.client.produceOutput(into: &wire, maxBytes: 1)
        XCTAssertTrue(pair.client.wantsWrite, "the budget cut the output short")
        XCTAssertEqual(pair.client.lentBlockCount, 1, "the half-sent frame's block is kept")

        // A second request, one stream at a time: it waits in the queue.
        var second: HTTP2Fields? = block("/bbbb")
        weak var secondBlock = second?.storage
        let secondID = try pair.client.submitRequest(headers: try XCTUnwrap(second), endStream: true)
        second = nil
        try pair.client.produceOutput(into: &wire)
        XCTAssertNotNil(secondBlock, "a queued frame's block is kept")
        XCTAssertEqual(pair.client.lentBlockCount, 1, "the first frame is out, the second queued")

        // Same-size blocks over any memory let go, then both exchanges.
        let junk = (0..<8).map { _ in block("/zzzz") }
        pair.serverRecorder.onHeaders = { session, id, _, _, _ in
            try session.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: true)
        }
        for buffer in wire { try pair.server.receive(buffer) }
        try pair.pump()
        XCTAssertEqual(pair.serverRecorder.headerBlocks(first).first?.headers,
                       request(path: "/aaaa", extra: [h("x-path", "/aaaa")]))
        XCTAssertEqual(pair.serverRecorder.headerBlocks(secondID).first?.headers,
                       request(path: "/bbbb", extra: [h("x-path", "/bbbb")]))
        XCTAssertEqual(pair.clientRecorder.closeCode(secondID), .noError)
        XCTAssertEqual(pair.client.lentBlockCount, 0)
        XCTAssertNil(secondBlock)
        withExtendedLifetime(junk) {}
    }

    /// Names that are not all lower-case are copied and lower-cased by
    /// nghttp2; the block says which it can vouch for.
    func testNamesOfUnknownCaseAreSentLowerCased() throws {
        let pair = try Pair()
        pair.serverRecorder.onHeaders = { session, id, _, _, _ in
            var fields: HTTP2Fields = [h(":status", "200")]
            fields.append(name: "X-Mixed-Case", value: "yes")
            XCTAssertFalse(fields.namesAreLowercase)
            try session.submitResponse(streamID: id, headers: fields, endStream: true)
        }
        var fields = request()
        fields.append(name: "X-Upper", value: "1")
        let id = try pair.client.submitRequest(headers: fields, endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.serverRecorder.headerBlocks(id).first?.headers, request(extra: [h("x-upper", "1")]))
        XCTAssertEqual(pair.clientRecorder.headerBlocks(id).first?.headers, [h(":status", "200"), h("x-mixed-case", "yes")])
        XCTAssertEqual(pair.clientRecorder.closeCode(id), .noError)
    }

    // MARK: - Resets, GOAWAY, PING

    func testResetStreamPropagatesWithItsErrorCode() throws {
        let pair = try Pair()
        let first = try pair.client.submitRequest(headers: request(), endStream: false)
        let second = try pair.client.submitRequest(headers: request(), endStream: false)
        try pair.pump()
        try pair.server.resetStream(streamID: first, errorCode: .cancel)
        try pair.client.resetStream(streamID: second, errorCode: HTTP2ErrorCode(0x42))
        try pair.pump()
        XCTAssertEqual(pair.clientRecorder.closeCode(first), .cancel)
        XCTAssertEqual(pair.serverRecorder.closeCode(first), .cancel)
        XCTAssertEqual(pair.serverRecorder.closeCode(second), HTTP2ErrorCode(0x42), "unknown codes survive")
        XCTAssertEqual(pair.clientRecorder.closeCode(second), HTTP2ErrorCode(0x42))
        XCTAssertThrowsError(try pair.client.sendData(streamID: first, buffer("x"))) {
            XCTAssertEqual($0 as? HTTP2SessionError, .unknownStream(first))
        }
        XCTAssertEqual(pair.client.openStreamCount, 0)
        XCTAssertEqual(pair.server.openStreamCount, 0)
    }

    func testGoAwayNamesTheLastStreamAndRefusesLaterOnes() throws {
        let pair = try Pair()
        let first = try pair.client.submitRequest(headers: request(), endStream: true)
        let second = try pair.client.submitRequest(headers: request(), endStream: true)
        try pair.pump()
        XCTAssertTrue(pair.client.isRequestAllowed)
        try pair.server.goAway(errorCode: .noError, lastStreamID: first, debugData: "draining")
        try pair.pump()
        XCTAssertTrue(pair.clientRecorder.events.contains(.goAway(first, .noError)))
        XCTAssertEqual(pair.clientRecorder.closeCode(second), .refusedStream, "above last-stream-id: safe to retry")
        XCTAssertNil(pair.clientRecorder.closeCode(first), "the first stream is still served")
        XCTAssertFalse(pair.client.isRequestAllowed)
        // nghttp2 still hands out an id, then refuses the stream when sending.
        let late = try pair.client.submitRequest(headers: request(), endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.clientRecorder.closeCode(late), .refusedStream)
        XCTAssertFalse(pair.serverRecorder.events.contains { if case .connectionError = $0 { true } else { false } },
                       "our own GOAWAY is not a connection error")

        try pair.server.submitResponse(streamID: first, headers: [h(":status", "200")], endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.clientRecorder.closeCode(first), .noError)
        XCTAssertFalse(pair.server.wantsRead || pair.server.wantsWrite, "server done: close the socket")
        XCTAssertFalse(pair.client.wantsRead || pair.client.wantsWrite)
    }

    func testGracefulShutdownLetsOpenStreamsFinish() throws {
        let pair = try Pair()
        let id = try pair.client.submitRequest(headers: request(), endStream: true)
        try pair.pump()
        try pair.server.startGracefulShutdown()
        try pair.pump()
        let goAways = pair.clientRecorder.events.compactMap { event -> Int32? in
            if case .goAway(let last, .noError) = event { return last }
            return nil
        }
        XCTAssertEqual(goAways, [Int32.max, id], "notice first, then the real last stream after a round trip")
        XCTAssertFalse(pair.clientRecorder.events.contains { if case .pingAck = $0 { true } else { false } },
                       "the shutdown PING is internal")
        XCTAssertTrue(pair.server.wantsRead, "stream \(id) still open")
        try pair.server.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: false)
        try pair.server.sendData(streamID: id, buffer("bye"), endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.clientRecorder.body(id), "bye")
        XCTAssertFalse(pair.server.wantsRead || pair.server.wantsWrite)
    }

    func testPingIsAcknowledged() throws {
        let pair = try Pair()
        let payload = try pair.client.ping(payload: 0x0102_0304_0506_0708)
        let automatic = try pair.client.ping()
        try pair.pump()
        XCTAssertEqual(payload, 0x0102_0304_0506_0708)
        let acks = pair.clientRecorder.events.compactMap { event -> UInt64? in
            if case .pingAck(let value) = event { return value }
            return nil
        }
        XCTAssertEqual(acks, [payload, automatic])
        XCTAssertFalse(pair.serverRecorder.events.contains { if case .pingAck = $0 { true } else { false } },
                       "the side that answers a PING hears no ack")
    }

    // MARK: - Limits and protections

    func testTooManyHeadersResetsTheStreamAndTheSessionSurvives() throws {
        var serverLimits = HTTP2Limits()
        serverLimits.maxHeaderCount = 10
        // A connection window of one default window: if the rejected stream's
        // body were never given back, the next request's body could not pass.
        var serverSettings = HTTP2Settings()
        serverSettings.initialWindowSize = 65_535
        serverSettings.connectionWindowSize = 65_535
        let pair = try Pair(serverSettings: serverSettings, serverLimits: serverLimits)
        let crowded = try pair.client.submitRequest(
            headers: request("POST", extra: HTTP2Fields((0..<20).map { h("x-h\($0)", "v") })), endStream: false)
        try pair.client.sendData(streamID: crowded, buffer(repeating: 1, count: 60_000))
        try pair.pump()
        XCTAssertTrue(pair.serverRecorder.events.contains(.rejected(crowded, .tooManyHeaders(limit: 10))))
        XCTAssertTrue(pair.serverRecorder.headerBlocks(crowded).isEmpty, "the rejected request is never delivered")
        XCTAssertEqual(pair.serverRecorder.bodyBytes(crowded), 0)
        XCTAssertEqual(pair.serverRecorder.closeCode(crowded), HTTP2Session.headerLimitResetCode)
        XCTAssertEqual(pair.clientRecorder.closeCode(crowded), HTTP2Session.headerLimitResetCode)

        pair.serverRecorder.onData = { session, id, _, endStream in
            if endStream { try session.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: true) }
        }
        let fine = try pair.client.submitRequest(headers: request("POST", extra: [h("x-ok", "1")]), endStream: false)
        try pair.client.sendData(streamID: fine, buffer(repeating: 2, count: 60_000), endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.serverRecorder.bodyBytes(fine), 60_000, "the connection window was not leaked")
        XCTAssertEqual(pair.clientRecorder.headerBlocks(fine).first?.headers.first, h(":status", "200"))
        XCTAssertEqual(pair.clientRecorder.closeCode(fine), .noError)
        XCTAssertFalse(pair.serverRecorder.events.contains { if case .connectionError = $0 { true } else { false } })
    }

    func testHeaderListBytesCapResetsTheStream() throws {
        var serverLimits = HTTP2Limits()
        serverLimits.maxHeaderListBytes = 4096
        let pair = try Pair(serverLimits: serverLimits)
        let big = try pair.client.submitRequest(
            headers: request(extra: [h("cookie", String(repeating: "c", count: 5000))]), endStream: true)
        try pair.pump()
        XCTAssertTrue(pair.serverRecorder.events.contains(.rejected(big, .headerListTooLarge(limit: 4096))))
        XCTAssertEqual(pair.clientRecorder.closeCode(big), HTTP2Session.headerLimitResetCode)
        XCTAssertTrue(pair.server.wantsRead)

        // Responses are capped the same way on the client.
        var clientLimits = HTTP2Limits()
        clientLimits.maxHeaderListBytes = 4096
        let other = try Pair(clientLimits: clientLimits)
        other.serverRecorder.onHeaders = { session, id, _, _, _ in
            try session.submitResponse(streamID: id, headers: [h(":status", "200"), h("x-big", String(repeating: "b", count: 5000))],
                                       endStream: false)
        }
        let id = try other.client.submitRequest(headers: request(), endStream: true)
        try other.pump()
        XCTAssertTrue(other.clientRecorder.events.contains(.rejected(id, .headerListTooLarge(limit: 4096))))
        XCTAssertEqual(other.clientRecorder.closeCode(id), HTTP2Session.headerLimitResetCode)
        XCTAssertTrue(other.clientRecorder.headerBlocks(id).isEmpty)
    }

    func testGarbageInputIsAnError() throws {
        let server = try HTTP2Session(role: .server, delegate: nil)
        XCTAssertThrowsError(try server.receive(buffer("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))) {
            XCTAssertEqual($0 as? HTTP2SessionError, .badClientMagic)
            XCTAssertEqual(($0 as? HTTP2SessionError)?.isFatal, true)
        }
        XCTAssertThrowsError(try server.receive(buffer("more")), "a dead session stays dead")

        // A client reading HTTP/1.1 instead of SETTINGS: nghttp2 answers
        // GOAWAY(PROTOCOL_ERROR); the delegate hears of it as that goes out.
        let recorder = Recorder()
        let client = try HTTP2Session(role: .client, delegate: recorder)
        _ = try client.produceOutput()
        try client.receive(buffer("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
        let out = try client.produceOutput()
        let goaway = RawFrame.parse(out).first { $0.type == 7 }
        XCTAssertEqual(goaway.map { RawFrame.errorCode($0.payload, at: 4) }, HTTP2ErrorCode.protocolError.rawValue)
        guard case .connectionError(.connectionTerminated(.protocolError, _))? = recorder.events.last else {
            return XCTFail("expected a connection error, got \(recorder.events)")
        }
        XCTAssertFalse(client.wantsRead || client.wantsWrite)
        XCTAssertNotNil(client.terminationError)
    }

    func testDataAfterEndStreamIsRejected() throws {
        // Locally: the API refuses to queue past END_STREAM.
        let pair = try Pair()
        let bodiless = try pair.client.submitRequest(headers: request(), endStream: true)
        XCTAssertThrowsError(try pair.client.sendData(streamID: bodiless, buffer("x"))) {
            XCTAssertEqual($0 as? HTTP2SessionError, .streamEnded(bodiless))
        }
        let ended = try pair.client.submitRequest(headers: request("POST"), endStream: false)
        try pair.client.sendData(streamID: ended, buffer("all"), endStream: true)
        XCTAssertThrowsError(try pair.client.sendData(streamID: ended, buffer("more")))
        XCTAssertThrowsError(try pair.client.sendEnd(streamID: ended))
        XCTAssertThrowsError(try pair.client.submitTrailers(streamID: ended, headers: [h("x", "y")]))

        // On the wire: a peer sending DATA after its END_STREAM breaks the
        // protocol. nghttp2 makes it a connection error (GOAWAY
        // STREAM_CLOSED) rather than a stream reset; the DATA is never delivered.
        let recorder = Recorder()
        let server = try HTTP2Session(role: .server, delegate: recorder)
        var wire = RawFrame.preface + RawFrame.emptySettings
        wire += RawFrame.frame(type: 1, flags: 0x5, stream: 1, payload: RawFrame.requestBlockPieces.flatMap { $0 })
        wire += RawFrame.frame(type: 0, flags: 0, stream: 1, payload: Array("smuggled".utf8))
        try server.receive(ByteBuffer(bytes: wire))
        XCTAssertEqual(recorder.headerBlocks(1).map(\.endStream), [true])
        let out = try server.produceOutput()
        let goaway = RawFrame.parse(out).first { $0.type == 7 }
        XCTAssertEqual(goaway.map { RawFrame.errorCode($0.payload, at: 4) }, HTTP2ErrorCode.streamClosed.rawValue)
        XCTAssertEqual(recorder.body(1), "")
        guard case .connectionError(.connectionTerminated(.streamClosed, let reason))? = recorder.events.last else {
            return XCTFail("expected a connection error, got \(recorder.events)")
        }
        XCTAssertTrue(reason.contains("half-closed"), reason)
        XCTAssertFalse(server.wantsRead || server.wantsWrite)
        XCTAssertThrowsError(try server.receive(buffer("anything"))) {
            XCTAssertEqual(($0 as? HTTP2SessionError)?.isFatal, true)
        }
    }

    func testHeadersOnAStreamIDBelowOneAlreadyUsedIsAConnectionError() throws {
        // RFC 9113 §5.1.1: stream 5 opened, then HEADERS on 3 (never used).
        // libnghttp2 drops that frame silently; the wrapper ends the
        // connection with PROTOCOL_ERROR instead of letting the request hang.
        let recorder = Recorder()
        let server = try HTTP2Session(role: .server, delegate: recorder)
        let block = RawFrame.requestBlockPieces.flatMap { $0 }
        var wire = RawFrame.preface + RawFrame.emptySettings
        wire += RawFrame.frame(type: 1, flags: 0x5, stream: 5, payload: block)
        wire += RawFrame.frame(type: 1, flags: 0x5, stream: 3, payload: block)
        try server.receive(ByteBuffer(bytes: wire))
        XCTAssertEqual(recorder.headerBlocks(5).count, 1)
        XCTAssertEqual(recorder.headerBlocks(3).count, 0, "the request on stream 3 was delivered")
        let goaway = RawFrame.parse(try server.produceOutput()).first { $0.type == 7 }
        XCTAssertEqual(goaway.map { RawFrame.errorCode($0.payload, at: 4) }, HTTP2ErrorCode.protocolError.rawValue)
        XCTAssertEqual(goaway.map { RawFrame.errorCode($0.payload) }, 5, "GOAWAY names stream 5 as the last")
        XCTAssertEqual(server.protocolViolations, 1)
    }

    /// A server that read a request on stream 1 (END_STREAM) and answered
    /// it: the stream is closed on both sides.
    private func serverThatAnsweredStream1() throws -> (HTTP2Session, Recorder) {
        let recorder = Recorder()  // the session does not keep its delegate
        let server = try HTTP2Session(role: .server, delegate: recorder)
        try server.receive(ByteBuffer(bytes: RawFrame.preface + RawFrame.emptySettings
                                          + RawFrame.frame(type: 1, flags: 0x5, stream: 1, payload: RawFrame.requestBlock)))
        try server.submitResponse(streamID: 1, headers: [h(":status", "200")], endStream: true)
        _ = try server.produceOutput()
        return (server, recorder)
    }

    /// DATA on a stream both sides ended is dropped, and the connection
    /// goes on: RFC 9113 §5.1 lets an endpoint ignore a closed stream's
    /// frames, and libnghttp2, which keeps no closed streams here, drops
    /// DATA for a stream it does not have before any callback. (libnghttp2
    /// 1.52 keeping them made this a connection error STREAM_CLOSED.)
    func testDataOnAStreamBothSidesEndedIsDropped() throws {
        let (server, recorder) = try serverThatAnsweredStream1()
        let block = RawFrame.requestBlock
        XCTAssertEqual(recorder.closeCode(1), .noError)
        try server.receive(ByteBuffer(bytes: RawFrame.frame(type: 0, flags: 0x1, stream: 1, payload: Array("late".utf8))
                                          + RawFrame.frame(type: 1, flags: 0x5, stream: 3, payload: block)))
        XCTAssertEqual(recorder.body(1), "")
        XCTAssertEqual(recorder.headerBlocks(3).count, 1, "the next request is served")
        XCTAssertFalse(RawFrame.parse(try server.produceOutput()).contains { $0.type == 7 })
    }

    /// The peer may still have frames in flight for a stream we reset:
    /// trailers for it are ignored, not a violation. `count` streams are
    /// opened (body to follow) and reset, then one complete request comes,
    /// then trailers for the first.
    private func assertTrailersAreIgnoredOnAStreamReset(amongFirst count: Int,
                                                        file: StaticString = #filePath, line: UInt = #line) throws {
        let recorder = Recorder()
        let server = try HTTP2Session(role: .server, delegate: recorder)
        let block = RawFrame.requestBlockPieces.flatMap { $0 }
        var wire = RawFrame.preface + RawFrame.emptySettings
        for index in 0..<count {  // END_HEADERS, body to follow
            wire += RawFrame.frame(type: 1, flags: 0x4, stream: UInt32(2 * index + 1), payload: block)
        }
        wire += RawFrame.frame(type: 1, flags: 0x5, stream: UInt32(2 * count + 1), payload: block)
        try server.receive(ByteBuffer(bytes: wire))
        for index in 0..<count { try server.resetStream(streamID: Int32(2 * index + 1), errorCode: .cancel) }
        _ = try server.produceOutput()
        // Trailers for stream 1, sent before the peer saw the reset.
        try server.receive(ByteBuffer(bytes: RawFrame.frame(type: 1, flags: 0x5, stream: 1, payload: RawFrame.trailerBlock)))
        let out = RawFrame.parse(try server.produceOutput())
        XCTAssertFalse(out.contains { $0.type == 7 }, "GOAWAY for frames on a stream we reset: \(out.map(\.type))",
                       file: file, line: line)
        XCTAssertEqual(server.protocolViolations, 0, file: file, line: line)
    }

    func testTrailersOnAStreamThisSideResetAreIgnoredNotAViolation() throws {
        try assertTrailersAreIgnoredOnAStreamReset(amongFirst: 1)
    }

    /// The session's record of closed streams (not nghttp2's, which keeps
    /// none here) is what tells a late frame on a stream this side reset
    /// from one on a stream never opened, 70 closures later.
    func testTrailersOnAStreamResetSeventyResetsAgoAreIgnored() throws {
        try assertTrailersAreIgnoredOnAStreamReset(amongFirst: 70)
    }

    /// The session keeps its own record of closed streams (libnghttp2 is
    /// asked to keep none): of each kind, the last
    /// SETTINGS_MAX_CONCURRENT_STREAMS. Stream 1 is opened (body to follow)
    /// and reset; then `completed` requests are answered and `reset` more
    /// are opened and reset; then trailers for stream 1 come. Returns the
    /// connection errors the session caught itself.
    private func violationsForTrailersOnStream1(afterResetting reset: Int, completing completed: Int,
                                                capacity: UInt32) throws -> Int {
        var settings = HTTP2Settings()
        settings.maxConcurrentStreams = capacity
        let recorder = Recorder()  // the session does not keep its delegate
        let server = try HTTP2Session(role: .server, settings: settings, delegate: recorder)
        let block = RawFrame.requestBlockPieces.flatMap { $0 }
        try server.receive(ByteBuffer(bytes: RawFrame.preface + RawFrame.emptySettings
                                          + RawFrame.frame(type: 4, flags: 0x1, stream: 0)
                                          + RawFrame.frame(type: 1, flags: 0x4, stream: 1, payload: block)))
        try server.resetStream(streamID: 1, errorCode: .cancel)
        _ = try server.produceOutput()
        var id: Int32 = 1
        for _ in 0..<completed {
            id += 2
            try server.receive(ByteBuffer(bytes: RawFrame.frame(type: 1, flags: 0x5, stream: UInt32(id), payload: block)))
            try server.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: true)
            _ = try server.produceOutput()
        }
        for _ in 0..<reset {
            id += 2
            try server.receive(ByteBuffer(bytes: RawFrame.frame(type: 1, flags: 0x4, stream: UInt32(id), payload: block)))
            try server.resetStream(streamID: id, errorCode: .cancel)
            _ = try server.produceOutput()
        }
        try server.receive(ByteBuffer(bytes: RawFrame.frame(type: 1, flags: 0x5, stream: 1, payload: RawFrame.trailerBlock)))
        _ = try server.produceOutput()
        return server.protocolViolations
    }

    func testTheRecordKeepsTheLastMaxConcurrentStreamsResetsWhateverCompletesMeanwhile() throws {
        XCTAssertEqual(try violationsForTrailersOnStream1(afterResetting: 15, completing: 40, capacity: 16), 0,
                       "stream 1 is among the last 16 reset: its trailers are ignored")
        XCTAssertEqual(try violationsForTrailersOnStream1(afterResetting: 16, completing: 0, capacity: 16), 1,
                       "stream 1 is forgotten: HEADERS on a used id")
    }

    /// A stream nghttp2 refuses at its HEADERS (over a limit the peer has
    /// not acknowledged yet) never has a stream object, so no close is told
    /// of it; its body and trailers, already sent, are ignored like those
    /// of any stream reset, and the other streams go on.
    func testTrailersOfARefusedStreamAreIgnored() throws {
        var settings = HTTP2Settings()
        settings.maxConcurrentStreams = 3
        let recorder = Recorder()
        let server = try HTTP2Session(role: .server, settings: settings, delegate: recorder)
        let block = RawFrame.requestBlockPieces.flatMap { $0 }
        var wire = RawFrame.preface + RawFrame.emptySettings
        for id: UInt32 in [1, 3, 5, 7] { wire += RawFrame.frame(type: 1, flags: 0x4, stream: id, payload: block) }
        try server.receive(ByteBuffer(bytes: wire))
        let refused = RawFrame.parse(try server.produceOutput()).filter { $0.type == 3 }
        XCTAssertEqual(refused.map(\.stream), [7])
        try server.receive(ByteBuffer(bytes: RawFrame.frame(type: 0, flags: 0, stream: 7, payload: Array("body".utf8))
                                          + RawFrame.frame(type: 1, flags: 0x5, stream: 7, payload: RawFrame.trailerBlock)))
        XCTAssertFalse(RawFrame.parse(try server.produceOutput()).contains { $0.type == 7 })
        XCTAssertEqual(server.protocolViolations, 0)
        try server.submitResponse(streamID: 1, headers: [h(":status", "200")], endStream: true)
        XCTAssertTrue(RawFrame.parse(try server.produceOutput()).contains { $0.type == 1 && $0.stream == 1 })
    }

    /// A session tells whether it sent a GOAWAY with an error code (the
    /// connection then closes its write side first and drops what the
    /// peer still sends); a graceful GOAWAY is not one.
    func testASessionTellsWhetherItSentAnErrorGoAway() throws {
        let recorder = Recorder()
        let graceful = try HTTP2Session(role: .server, delegate: recorder)
        try graceful.receive(ByteBuffer(bytes: RawFrame.preface + RawFrame.emptySettings))
        try graceful.goAway()
        XCTAssertTrue(RawFrame.parse(try graceful.produceOutput()).contains { $0.type == 7 })
        XCTAssertFalse(graceful.sentErrorGoAway)

        let broken = try HTTP2Session(role: .server, delegate: recorder)
        let block = RawFrame.requestBlockPieces.flatMap { $0 }
        try broken.receive(ByteBuffer(bytes: RawFrame.preface + RawFrame.emptySettings
                                          + RawFrame.frame(type: 1, flags: 0x5, stream: 5, payload: block)
                                          + RawFrame.frame(type: 1, flags: 0x5, stream: 3, payload: block)))
        XCTAssertFalse(broken.sentErrorGoAway, "queued, not sent yet")
        _ = try broken.produceOutput()
        XCTAssertTrue(broken.sentErrorGoAway)
        XCTAssertFalse(broken.wantsRead || broken.wantsWrite)
    }

    /// HEADERS on a stream both sides ended: STREAM_CLOSED, like DATA.
    func testHeadersOnAStreamBothSidesEndedIsAStreamClosedError() throws {
        let (server, recorder) = try serverThatAnsweredStream1()
        defer { withExtendedLifetime(recorder) {} }  // the session does not keep its delegate
        try server.receive(ByteBuffer(bytes: RawFrame.frame(type: 1, flags: 0x5, stream: 1, payload: RawFrame.trailerBlock)))
        let goaway = RawFrame.parse(try server.produceOutput()).first { $0.type == 7 }
        XCTAssertEqual(goaway.map { RawFrame.errorCode($0.payload, at: 4) }, HTTP2ErrorCode.streamClosed.rawValue)
        XCTAssertEqual(server.protocolViolations, 1)
    }

    /// After this side's GOAWAY, the peer's streams above its last stream id
    /// are ignored, and so are their frames: trailers for such a stream
    /// are not HEADERS on a used id.
    func testFramesOfAStreamOpenedAfterOurGoAwayAreIgnored() throws {
        let recorder = Recorder()
        let server = try HTTP2Session(role: .server, delegate: recorder)
        let block = RawFrame.requestBlockPieces.flatMap { $0 }
        try server.receive(ByteBuffer(bytes: RawFrame.preface + RawFrame.emptySettings
                                          + RawFrame.frame(type: 1, flags: 0x5, stream: 1, payload: block)))
        try server.goAway(lastStreamID: 1)
        _ = try server.produceOutput()
        // Sent before the peer saw the GOAWAY: a request with a body and trailers.
        try server.receive(ByteBuffer(bytes: RawFrame.frame(type: 1, flags: 0x4, stream: 3, payload: block)
                                          + RawFrame.frame(type: 0, flags: 0, stream: 3, payload: Array("body".utf8))
                                          + RawFrame.frame(type: 1, flags: 0x5, stream: 3, payload: RawFrame.trailerBlock)))
        let out = RawFrame.parse(try server.produceOutput())
        XCTAssertFalse(out.contains { $0.type == 7 }, "a second GOAWAY: \(out.map(\.type))")
        XCTAssertEqual(server.protocolViolations, 0)
        XCTAssertEqual(recorder.headerBlocks(3).count, 0, "stream 3 was served")
        // Stream 1 is still served.
        try server.submitResponse(streamID: 1, headers: [h(":status", "200")], endStream: true)
        XCTAssertTrue(RawFrame.parse(try server.produceOutput()).contains { $0.type == 1 && $0.stream == 1 })
    }

    func testContentLengthMismatchIsCaughtByNghttp2() throws {
        let pair = try Pair()
        let id = try pair.client.submitRequest(headers: request("POST", extra: [h("content-length", "3")]),
                                               endStream: false)
        try pair.client.sendData(streamID: id, buffer("longer than three"), endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.serverRecorder.closeCode(id), .protocolError, "HTTP messaging checks stay on")
        XCTAssertFalse(pair.serverRecorder.endedStreams.contains(id))
    }

    func testSessionMisuseIsReportedNotCrashed() throws {
        let pair = try Pair()
        XCTAssertThrowsError(try pair.server.submitRequest(headers: request(), endStream: true)) {
            guard case .wrongRole = $0 as? HTTP2SessionError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try pair.client.submitResponse(streamID: 1, headers: [h(":status", "200")], endStream: true))
        XCTAssertThrowsError(try pair.client.sendData(streamID: 99, buffer("x"))) {
            XCTAssertEqual($0 as? HTTP2SessionError, .unknownStream(99))
        }
        XCTAssertNoThrow(try pair.client.consume(streamID: 99, bytes: 10), "consuming nothing owed is a no-op")
        XCTAssertNoThrow(try pair.client.resetStream(streamID: 99))
    }
}

final class HTTP2HeaderNameTests: XCTestCase {
    /// Known names come back as their literal, others as made; either way
    /// equal to the bytes.
    func testReceivedNamesAreTheirBytes() {
        for name in [":method", ":path", "weft-dst", "weft-orig-proto", "content-length", "te", "x-other",
                     ":metho", "content-lengtx", "a-name-longer-than-fifteen-bytes", ""] {
            var copy = name
            let made = copy.withUTF8 { HTTP2Header.name(from: UnsafeRawBufferPointer($0)) }
            XCTAssertEqual(made, name)
        }
    }
}
