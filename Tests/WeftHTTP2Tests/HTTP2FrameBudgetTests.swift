import NIOCore
import XCTest

@testable import WeftHTTP2

final class HTTP2FrameBudgetTests: XCTestCase {
    private let data: UInt8 = 0, headers: UInt8 = 1, priority: UInt8 = 2, windowUpdate: UInt8 = 8, continuation: UInt8 = 9

    // MARK: the rules, without a session

    func testEmptyFramesInARowAreAFloodAndAnyPayloadEndsTheRun() {
        var budget = HTTP2FrameBudget()
        XCTAssertNil(budget.received(type: data, flags: 0, length: 0), "one empty frame is allowed")
        XCTAssertNil(budget.received(type: data, flags: 0, length: 10), "a payload ends the run")
        XCTAssertNil(budget.received(type: data, flags: 0, length: 0))
        XCTAssertNil(budget.received(type: data, flags: 0x1, length: 0), "an empty END_STREAM carries something")
        XCTAssertNil(budget.received(type: continuation, flags: 0, length: 5))
        XCTAssertNil(budget.received(type: headers, flags: 0, length: 0))
        XCTAssertEqual(budget.received(type: continuation, flags: 0, length: 0), .emptyFrames)
    }

    func testPriorityFramesAreBoundedPerStreamOpened() {
        var budget = HTTP2FrameBudget()
        for _ in 0..<100 { XCTAssertNil(budget.received(type: priority, flags: 0, length: 5)) }
        XCTAssertEqual(budget.received(type: priority, flags: 0, length: 5), .priorityFrames)
        budget.streamOpened()
        for _ in 0..<99 { XCTAssertNil(budget.received(type: priority, flags: 0, length: 5)) }
        XCTAssertEqual(budget.received(type: priority, flags: 0, length: 5), .priorityFrames)
    }

    func testWindowUpdatesAreBoundedByTheDataSent() {
        var budget = HTTP2FrameBudget()
        for _ in 0..<5 { XCTAssertNil(budget.received(type: windowUpdate, flags: 0, length: 4)) }
        XCTAssertEqual(budget.received(type: windowUpdate, flags: 0, length: 4), .windowUpdates)
        var sender = HTTP2FrameBudget()
        for _ in 0..<3 { sender.sentData() }
        for _ in 0..<65 { XCTAssertNil(sender.received(type: windowUpdate, flags: 0, length: 4), "5 + 2 × 10 per DATA frame") }
        XCTAssertEqual(sender.received(type: windowUpdate, flags: 0, length: 4), .windowUpdates)
    }

    func testPrematureResetsAreJudgedOnlyAfterEnoughStreams() {
        var budget = HTTP2FrameBudget()
        for _ in 0..<499 {
            budget.streamOpened()
            XCTAssertNil(budget.prematureReset(), "fewer than 500 streams: never judged")
        }
        budget.streamOpened()
        XCTAssertEqual(budget.prematureReset(), .prematureResets, "500 of 500 reset before an answer")

        var mostlyAnswered = HTTP2FrameBudget()
        for _ in 0..<1000 { mostlyAnswered.streamOpened() }
        for _ in 0..<500 { XCTAssertNil(mostlyAnswered.prematureReset(), "half is not more than half") }
        XCTAssertEqual(mostlyAnswered.prematureReset(), .prematureResets)
    }

    // MARK: in a session, from raw frames

    /// A server fed `frames` after the preface; returns what `receive` threw
    /// and the GOAWAY codes it then sent.
    private func serve(_ frames: [UInt8], limits: HTTP2Limits = .default) throws -> (HTTP2SessionError?, [UInt32]) {
        let recorder = Recorder()  // the session does not keep its delegate
        let server = try HTTP2Session(role: .server, limits: limits, delegate: recorder)
        defer { withExtendedLifetime(recorder) {} }
        var thrown: HTTP2SessionError?
        do {
            try server.receive(ByteBuffer(bytes: RawFrame.preface + RawFrame.emptySettings + frames))
        } catch {
            thrown = error as? HTTP2SessionError
        }
        let goAways = RawFrame.parse((try? server.produceOutput()) ?? []).filter { $0.type == 7 }
        return (thrown, goAways.map { RawFrame.errorCode($0.payload, at: 4) })
    }

    private var openStream1: [UInt8] {
        RawFrame.frame(type: headers, flags: 0x4, stream: 1, payload: RawFrame.requestBlockPieces.flatMap { $0 })
    }

    func testEmptyDataFloodEndsTheConnectionWithEnhanceYourCalm() throws {
        let flood = openStream1 + (0..<50).flatMap { _ in RawFrame.frame(type: data, flags: 0, stream: 1) }
        let (error, goAways) = try serve(flood)
        XCTAssertEqual(error, .frameFlood(.emptyFrames))
        XCTAssertEqual(error?.isFlood, true)
        XCTAssertEqual(goAways, [HTTP2ErrorCode.enhanceYourCalm.rawValue])

        let fine = openStream1 + RawFrame.frame(type: data, flags: 0, stream: 1)
            + RawFrame.frame(type: data, flags: 0, stream: 1, payload: [1, 2, 3])
            + RawFrame.frame(type: data, flags: 0x1, stream: 1)
        let (noError, none) = try serve(fine)
        XCTAssertNil(noError)
        XCTAssertEqual(none, [])
    }

    func testPriorityAndWindowUpdateFloodsEndTheConnection() throws {
        let priorityPayload: [UInt8] = [0, 0, 0, 0, 16]
        let priorities = (0..<101).flatMap { _ in RawFrame.frame(type: priority, flags: 0, stream: 3, payload: priorityPayload) }
        XCTAssertEqual(try serve(priorities).0, .frameFlood(.priorityFrames))
        XCTAssertNil(try serve(Array(priorities.prefix(100 * 14))).0, "100 PRIORITY frames are allowed")

        let updates = (0..<6).flatMap { _ in RawFrame.frame(type: windowUpdate, flags: 0, stream: 0, payload: [0, 0, 0, 1]) }
        XCTAssertEqual(try serve(updates).0, .frameFlood(.windowUpdates))
        XCTAssertNil(try serve(Array(updates.prefix(5 * 13))).0)
    }

    func testStreamsResetBeforeTheirAnswerEndTheConnectionButAnsweredOnesDoNot() throws {
        func cancelAll(_ count: Int, answer: Bool) throws -> HTTP2SessionError? {
            var limits = HTTP2Limits()
            limits.streamResetBurst = 10_000  // nghttp2's own rate limit out of the way
            let pair = try Pair(serverLimits: limits)
            if answer {
                pair.serverRecorder.onHeaders = { session, id, _, _, _ in
                    try session.submitResponse(streamID: id, headers: [h(":status", "200")], endStream: false)
                }
            }
            try pair.pump()
            do {
                for _ in 0..<count {
                    let id = try pair.client.submitRequest(headers: request(), endStream: false)
                    try pair.pump()
                    try pair.client.resetStream(streamID: id, errorCode: .cancel)
                    try pair.pump()
                }
            } catch {
                return error as? HTTP2SessionError
            }
            return nil
        }
        XCTAssertEqual(try cancelAll(600, answer: false), .frameFlood(.prematureResets))
        XCTAssertNil(try cancelAll(499, answer: false), "judged only from 500 streams on")
        XCTAssertNil(try cancelAll(600, answer: true), "a client cancelling answered streams is not flooding")
    }
}
