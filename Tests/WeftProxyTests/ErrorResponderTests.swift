import NIOCore
import NIOHTTP1
import NIOPosix
import WeftObservability
import XCTest
import WeftHTTP2
@testable import WeftProxy

/// One answer per reason, whoever asks: an HTTP/1 app, an HTTP/2 app or a
/// peer node gets the same status, reason and body.
final class ErrorResponderTests: XCTestCase {
    func testHTTP1AndHTTP2AnswersAgreeForEveryReason() throws {
        for reason in ErrorReason.allCases {
            let body = ErrorResponder.body(reason)
            let head = ErrorResponder.head(reason, version: .http1_1, keepAlive: true)
            let fields = ErrorResponder.headers(reason)
            XCTAssertEqual(Int(head.status.code), reason.status)
            XCTAssertEqual(fields.first, HTTP2Header(":status", String(reason.status)))
            XCTAssertEqual(head.headers.first(name: "weft-reason"), reason.rawValue)
            XCTAssertTrue(fields.contains(HTTP2Header("weft-reason", reason.rawValue)))
            XCTAssertEqual(head.headers.first(name: "content-length"), String(body.readableBytes))
            XCTAssertTrue(fields.contains(HTTP2Header("content-length", String(body.readableBytes))))
            XCTAssertTrue(String(buffer: body).hasSuffix(": \(reason.rawValue)\n"))
            XCTAssertFalse(head.headers.contains(name: "connection"))
        }
    }

    func testClosingAnswerSaysSoInItsVersion() {
        let head = ErrorResponder.head(.noEndpoint, version: .http1_0, keepAlive: false)
        XCTAssertEqual(head.version, .http1_0)
        XCTAssertEqual(head.status, .serviceUnavailable)
        XCTAssertEqual(head.headers.first(name: "connection"), "close")
    }

    func testRecordCountsStatusAndReason() throws {
        let metrics = ProxyMetrics()
        var record = RequestRecord(direction: .outbound, cluster: "backend")
        record.status = 503
        record.reason = .noEndpoint
        metrics.record(record)
        var answered = RequestRecord(direction: .inbound)
        answered.status = 200
        metrics.record(answered)
        metrics.record(RequestRecord(direction: .inbound))  // broke before a response: no status class
        XCTAssertEqual(metrics.errorResponseCount(status: 503), 1)
        XCTAssertEqual(try metrics.requests(.outbound, statusClass: 5, cluster: "backend"), 1)
        XCTAssertEqual(try metrics.requests(.inbound, statusClass: 2), 1)
        XCTAssertEqual(try metrics.requests(.inbound, statusClass: 0), 1, "broke before a response: no status class")
        var text = ""
        ProxyMetrics.render(try metrics.requestTotals(on: MultiThreadedEventLoopGroup.singleton.next()).wait(), into: &text)
        XCTAssertTrue(text.contains(
            "weft_requests_total{direction=\"outbound\",cluster=\"backend\",status_class=\"5xx\",reason=\"no_healthy_endpoint\"} 1\n"), text)
        XCTAssertTrue(text.contains(
            "weft_requests_total{direction=\"inbound\",cluster=\"none\",status_class=\"2xx\",reason=\"none\"} 1\n"), text)
    }
}
