import NIOCore
import XCTest

@testable import WeftHTTP2

final class HTTP2ProtectionsTests: XCTestCase {
    private static let absent = HTTP2Protections.probe { _ in nil }

    func testProbeLooksUpTheSymbolsByName() {
        var asked: [String] = []
        let found = HTTP2Protections.probe { name in
            asked.append(name)
            return HTTP2Protections.dynamicLookup(name)
        }
        XCTAssertEqual(Set(asked), ["nghttp2_option_set_stream_reset_rate_limit",
                                    "nghttp2_option_set_max_continuations"])
        XCTAssertEqual(found, HTTP2Protections.detected)
        XCTAssertFalse(HTTP2Protections.detected.description.isEmpty)
        print("weft HTTP/2 protections: \(HTTP2Protections.detected)")
    }

    func testAbsentSymbolsAreReportedAndTheSessionStillWorks() throws {
        XCTAssertFalse(Self.absent.hasStreamResetRateLimit)
        XCTAssertFalse(Self.absent.hasMaxContinuations)
        XCTAssertTrue(Self.absent.description.contains("stream-reset rate limit: no"))

        let pair = try Pair(protections: Self.absent)
        pair.serverRecorder.onHeaders = { session, id, _, _, _ in
            try session.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: false)
            try session.sendData(streamID: id, buffer("still fine"), endStream: true)
        }
        let id = try pair.client.submitRequest(headers: request(), endStream: true)
        try pair.pump()
        XCTAssertEqual(pair.clientRecorder.body(id), "still fine")
        XCTAssertEqual(pair.clientRecorder.closeCode(id), .noError)
    }

    /// HEADERS followed by three CONTINUATION frames.
    private func fragmentedRequest() -> ByteBuffer {
        let pieces = RawFrame.requestBlockPieces
        var wire = RawFrame.preface + RawFrame.emptySettings
        wire += RawFrame.frame(type: 1, flags: 0x1, stream: 1, payload: pieces[0])  // END_STREAM only
        wire += RawFrame.frame(type: 9, flags: 0, stream: 1, payload: pieces[1])
        wire += RawFrame.frame(type: 9, flags: 0, stream: 1, payload: pieces[2])
        wire += RawFrame.frame(type: 9, flags: 0x4, stream: 1, payload: pieces[3])  // END_HEADERS
        return ByteBuffer(bytes: wire)
    }

    func testContinuationCapIsAppliedThroughTheProbedSymbol() throws {
        try XCTSkipUnless(HTTP2Protections.detected.hasMaxContinuations,
                          "this libnghttp2 exports no nghttp2_option_set_max_continuations")
        var limits = HTTP2Limits()
        limits.maxContinuations = 2
        let server = try HTTP2Session(role: .server, limits: limits, delegate: nil)
        XCTAssertThrowsError(try server.receive(fragmentedRequest())) {
            XCTAssertEqual($0 as? HTTP2SessionError, .tooManyContinuations)
            XCTAssertEqual(($0 as? HTTP2SessionError)?.isFatal, true)
        }

        // The same bytes pass when the option is absent (library default 8)...
        let recorder = Recorder()
        let unprotected = try HTTP2Session(role: .server, limits: limits, protections: Self.absent, delegate: recorder)
        try unprotected.receive(fragmentedRequest())
        XCTAssertEqual(recorder.headerBlocks(1).first?.headers,
                       [h(":method", "GET"), h(":scheme", "http"), h(":path", "/"), h(":authority", "a.b")])
        // ...and with the default limit.
        let defaults = try HTTP2Session(role: .server, delegate: nil)
        XCTAssertNoThrow(try defaults.receive(fragmentedRequest()))
    }

    func testStreamResetRateLimitIsAppliedThroughTheProbedSymbol() throws {
        try XCTSkipUnless(HTTP2Protections.detected.hasStreamResetRateLimit,
                          "this libnghttp2 exports no nghttp2_option_set_stream_reset_rate_limit")
        func rapidReset(_ protections: HTTP2Protections) throws -> Recorder {
            var limits = HTTP2Limits()
            limits.streamResetBurst = 5
            limits.streamResetRatePerSecond = 1
            let pair = try Pair(serverLimits: limits, protections: protections)
            try pair.pump()
            for _ in 0..<20 {
                // HEADERS out first (a reset of an unsent request just cancels it), then RST_STREAM.
                let id = try pair.client.submitRequest(headers: request(), endStream: false)
                try pair.pump()
                try pair.client.resetStream(streamID: id, errorCode: .cancel)
                try pair.pump()
            }
            return pair.clientRecorder
        }
        let limited = try rapidReset(.detected)
        XCTAssertTrue(limited.events.contains { if case .goAway(_, let code) = $0 { code != .noError } else { false } },
                      "20 resets against a burst of 5: the server gives up on the connection: \(limited.events)")
        let unlimited = try rapidReset(Self.absent)
        XCTAssertFalse(unlimited.events.contains { if case .goAway = $0 { true } else { false } },
                       "without the option the library default (burst 1000) applies")
    }
}
