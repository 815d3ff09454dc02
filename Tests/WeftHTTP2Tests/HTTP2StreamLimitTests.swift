import NIOCore
import XCTest

@testable import WeftHTTP2

/// A peer that opens more streams at once than SETTINGS_MAX_CONCURRENT_STREAMS
/// allows: nghttp2 refuses it, and the delegate hears why (so it is counted).
final class HTTP2StreamLimitTests: XCTestCase {
    private let headersType: UInt8 = 1

    /// HEADERS (END_HEADERS, no END_STREAM) opening each of `ids`.
    private func open(_ ids: [UInt32]) -> [UInt8] {
        ids.flatMap { RawFrame.frame(type: headersType, flags: 0x4, stream: $0,
                                     payload: RawFrame.requestBlockPieces.flatMap { $0 }) }
    }

    /// A server allowing 3 streams at once, fed `frames` after the preface
    /// and the client's SETTINGS (acknowledging the server's when `acked`).
    private func serve(_ frames: [UInt8], acked: Bool) throws -> (Recorder, [(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8])]) {
        var settings = HTTP2Settings()
        settings.maxConcurrentStreams = 3
        let recorder = Recorder()
        let server = try HTTP2Session(role: .server, settings: settings, delegate: recorder)
        let ack = acked ? RawFrame.frame(type: 4, flags: 0x1, stream: 0) : []
        try server.receive(ByteBuffer(bytes: RawFrame.preface + RawFrame.emptySettings + ack + frames))
        return (recorder, RawFrame.parse(try server.produceOutput()))
    }

    private func rejections(_ recorder: Recorder) -> [Int32: HTTP2StreamRejection] {
        var found: [Int32: HTTP2StreamRejection] = [:]
        for case .rejected(let id, let reason) in recorder.events { found[id] = reason }
        return found
    }

    func testAStreamOverTheUnacknowledgedLimitIsRefusedAndTheRestGoOn() throws {
        let (recorder, output) = try serve(open([1, 3, 5, 7]), acked: false)
        XCTAssertEqual(rejections(recorder), [7: .tooManyStreams(limit: 3)])
        XCTAssertEqual(Set<Int32>(recorder.events.compactMap { if case .headers(let id, _, _, _) = $0 { id } else { nil } }),
                       [1, 3, 5])
        let resets = output.filter { $0.type == 3 }
        XCTAssertEqual(resets.map(\.stream), [7])
        XCTAssertEqual(resets.map { RawFrame.errorCode($0.payload) }, [HTTP2ErrorCode.refusedStream.rawValue])
        XCTAssertTrue(output.filter { $0.type == 7 }.isEmpty, "the connection goes on")
    }

    func testAStreamOverAnAcknowledgedLimitEndsTheConnection() throws {
        let (recorder, output) = try serve(open([1, 3, 5, 7]), acked: true)
        XCTAssertEqual(rejections(recorder), [7: .tooManyStreams(limit: 3)])
        let goAways = output.filter { $0.type == 7 }
        XCTAssertEqual(goAways.map { RawFrame.errorCode($0.payload, at: 4) }, [HTTP2ErrorCode.protocolError.rawValue])
    }

    func testStreamsWithinTheLimitAndOtherProtocolErrorsAreNotCountedAsTooMany() throws {
        let (within, _) = try serve(open([1, 3, 5]), acked: true)
        XCTAssertEqual(rejections(within), [:])
        // A client may not open an even stream: a protocol error, not the limit.
        let (even, output) = try serve(open([1, 2]), acked: true)
        XCTAssertEqual(rejections(even), [:])
        XCTAssertEqual(output.filter { $0.type == 7 }.map { RawFrame.errorCode($0.payload, at: 4) },
                       [HTTP2ErrorCode.protocolError.rawValue])
        // Once a stream closes its slot is free again.
        let (reused, _) = try serve(open([1, 3]) + RawFrame.frame(type: 3, flags: 0, stream: 1, payload: [0, 0, 0, 8])
                                    + open([5, 7]), acked: true)
        XCTAssertEqual(rejections(reused), [:])
    }
}
