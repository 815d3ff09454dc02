import Foundation
import NIOCore
import NIOPosix
import WeftCore
import XCTest
@testable import WeftObservability

/// Access log lines as an operator reads them: every field in place, JSON
/// that parses, and request data that can neither break a line nor forge
/// a field.
final class AccessLogTests: XCTestCase {
    private func record() -> RequestRecord {
        var record = RequestRecord(direction: .outbound, cluster: "backend", endpoint: IPEndpoint("198.18.0.3:9390"))
        record.describe(method: "GET", authority: "backend:9390", path: "/items?id=7", field: { name in
            ["x-request-id": "5f0c1b2a-8d3e-4c4f-9a6b-0123456789ab",
             "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"][name]
        })
        record.status = 200
        record.bytesIn = 12
        record.bytesOut = 1024
        return record
    }

    private func line(_ record: RequestRecord, _ format: AccessLog.Format) -> String {
        var buffer = ByteBuffer()
        // 2026-11-30T09:40:01.123Z
        AccessLogLine.write(record, as: format, at: 1_796_031_601.123, duration: .microseconds(1234), into: &buffer)
        return String(buffer: buffer)
    }

    func testTextLineHasEveryFieldInOrder() {
        XCTAssertEqual(line(record(), .text),
                       "2026-11-30T09:40:01.123Z outbound backend 198.18.0.3:9390 \"GET backend:9390 /items?id=7\" 200 - "
                       + "12 1024 1.234 1 5f0c1b2a-8d3e-4c4f-9a6b-0123456789ab 0af7651916cd43dd8448eb211c80319c -\n")
    }

    func testJSONLineParsesWithEveryField() throws {
        var failed = record()
        failed.status = 503
        failed.reason = .overflow
        failed.attempts = 3
        let text = line(failed, .json)
        XCTAssertTrue(text.hasSuffix("}\n"))
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(object["time"] as? String, "2026-11-30T09:40:01.123Z")
        XCTAssertEqual(object["protocol"] as? String, "http")
        XCTAssertEqual(object["cluster"] as? String, "backend")
        XCTAssertEqual(object["endpoint"] as? String, "198.18.0.3:9390")
        XCTAssertEqual(object["path"] as? String, "/items?id=7")
        XCTAssertEqual(object["status"] as? Int, 503)
        XCTAssertEqual(object["reason"] as? String, "overflow")
        XCTAssertEqual(object["duration_ms"] as? Double, 1.234)
        XCTAssertEqual(object["attempts"] as? Int, 3)
        XCTAssertEqual(object["trace_id"] as? String, "0af7651916cd43dd8448eb211c80319c")
        XCTAssertTrue(object["peer_identity"] is NSNull)
    }

    func testThePeersVerifiedIdentityIsTheLastField() throws {
        var inbound = record()
        inbound.direction = .inbound
        inbound.peerIdentity = try SPIFFEID(parsing: "spiffe://mesh.local/ns/default/sa/frontend")
        XCTAssertTrue(line(inbound, .text).hasSuffix(" 0af7651916cd43dd8448eb211c80319c spiffe://mesh.local/ns/default/sa/frontend\n"),
                      line(inbound, .text))
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line(inbound, .json).utf8)) as? [String: Any])
        XCTAssertEqual(object["peer_identity"] as? String, "spiffe://mesh.local/ns/default/sa/frontend")
    }

    func testATCPSessionHasNoMethodOrStatus() throws {
        let session = RequestRecord.session(.inbound, cluster: nil, endpoint: IPEndpoint("127.0.0.1:6379"),
                                            startedAt: .now(), received: 40, sent: 7)
        XCTAssertTrue(line(session, .text).contains(" - 127.0.0.1:6379 \"TCP - -\" - - 40 7 "))
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line(session, .json).utf8)) as? [String: Any])
        XCTAssertEqual(object["protocol"] as? String, "tcp")
        XCTAssertTrue(object["status"] is NSNull)
        XCTAssertTrue(object["cluster"] is NSNull)
        XCTAssertEqual(object["bytes_in"] as? Int, 40)
    }

    func testRequestDataCannotBreakALineOrForgeAField() throws {
        var hostile = record()
        hostile.describe(method: "GET", authority: "h\u{7f}\u{1}é",
                         path: "/a\" 200 - 0 0 0.000 1 forged\n2026-01-01T00:00:00.000Z inbound",
                         field: { _ in nil })
        let text = line(hostile, .text)
        XCTAssertEqual(text.filter { $0 == "\n" }.count, 1, text)
        XCTAssertTrue(text.contains("\"GET h\\x7f\\x01\\xc3\\xa9 /a\\x22\\x20200"), text)
        let json = line(hostile, .json)
        XCTAssertEqual(json.filter { $0 == "\n" }.count, 1)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        XCTAssertEqual(object["path"] as? String, hostile.path)
        XCTAssertEqual(object["authority"] as? String, hostile.authority)
    }

    func testTraceIDOnlyFromAWellFormedTraceparent() {
        var record = record()
        XCTAssertEqual(record.traceID, "0af7651916cd43dd8448eb211c80319c")
        record.describe(method: "GET", authority: nil, path: "/", field: { name in
            name == "traceparent" ? "00-nothex-b7ad6b7169203331-01" : nil
        })
        XCTAssertNil(record.traceID)
        record.describe(method: "GET", authority: nil, path: "/", field: { _ in nil })
        XCTAssertNil(record.traceID)
    }

    func testTimestampsAcrossYearsAndLeapDays() {
        func stamp(_ time: Double) -> String {
            var buffer = ByteBuffer()
            AccessLogLine.writeTimestamp(time, into: &buffer)
            return String(buffer: buffer)
        }
        XCTAssertEqual(stamp(0), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(stamp(951_782_400.5), "2000-02-29T00:00:00.500Z")
        XCTAssertEqual(stamp(1_709_251_199.999), "2024-02-29T23:59:59.999Z")
    }

    func testLinesLoggedOnALoopReachTheFileAndAreCounted() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let path = NSTemporaryDirectory() + "weft-access-\(getpid()).log"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let log = try AccessLog(format: .json, path: path, group: group)
        let metrics = ProxyMetrics(accessLog: log)
        let sample = record()
        for loop in group.makeIterator() {
            try loop.submit { for _ in 0..<50 { metrics.record(sample) } }.wait()
        }
        log.close()
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 100)
        XCTAssertEqual(log.writtenLines, 100)
        XCTAssertEqual(log.droppedLines, 0)
        // Off a loop there is no batch to write into: dropped, counted.
        metrics.record(sample)
        XCTAssertEqual(log.droppedLines, 1)
    }

    func testAFileThatCannotBeOpenedIsAClearError() {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        XCTAssertThrowsError(try AccessLog(format: .text, path: "/nonexistent-dir/access.log", group: group)) { error in
            XCTAssertEqual("\(error)", "cannot open access log /nonexistent-dir/access.log: No such file or directory")
        }
    }
}
