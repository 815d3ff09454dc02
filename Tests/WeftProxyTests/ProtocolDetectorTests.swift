import NIOCore
import XCTest
@testable import WeftProxy

final class ProtocolDetectorTests: XCTestCase {
    private func detect(_ text: String) -> DetectedProtocol? { ProtocolDetector.detect(ByteBuffer(string: text)) }
    private func detect(_ bytes: [UInt8]) -> DetectedProtocol? { ProtocolDetector.detect(ByteBuffer(bytes: bytes)) }

    func testHTTP1RequestLines() {
        XCTAssertEqual(detect("GET / HTTP/1.1\r\nHost: backend\r\n\r\n"), .http1)
        XCTAssertEqual(detect("POST /upload?x=1 HTTP/1.0\r\n"), .http1)
        XCTAssertEqual(detect("GET http://backend:9090/a HTTP/1.1\r\n"), .http1)
        XCTAssertEqual(detect("OPTIONS * HTTP/1.1\r\n"), .http1)
        XCTAssertEqual(detect("M-SEARCH * HTTP/1.1"), .http1)
    }

    func testWaitsForMoreWhileStillAmbiguous() {
        for partial in ["G", "GET", "GET ", "GET /index.html", "GET / HTTP/", "GET / HTTP/1.", "P", "PRI * HTTP/2.0\r\n"] {
            XCTAssertNil(detect(partial), partial)
        }
        XCTAssertNil(detect([0x16]))
        XCTAssertNil(detect([0x16, 0x03, 0x01, 0x02]))
        XCTAssertNil(detect([]))
    }

    func testHTTP2Preface() {
        XCTAssertEqual(detect("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), .http2)
        XCTAssertEqual(detect(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4]), .http2)
    }

    func testTLSClientHello() {
        XCTAssertEqual(detect([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]), .tls)
        XCTAssertEqual(detect([0x16, 0x03, 0x03, 0x00, 0x10, 0x02]), .tcp, "server hello is not a client")
        XCTAssertEqual(detect([0x16, 0x07]), .tcp)
    }

    func testEverythingElseIsTCPAsSoonAsItCannotBeHTTP() {
        XCTAssertEqual(detect("*1\r\n$4\r\nPING\r\n"), .tcp, "redis")
        XCTAssertEqual(detect("get / HTTP/1.1\r\n"), .tcp, "methods are upper-case")
        XCTAssertEqual(detect("GET / HTTP/2.0\r\n"), .tcp)
        XCTAssertEqual(detect("GET  / HTTP/1.1\r\n"), .tcp)
        XCTAssertEqual(detect("GET / FTP/1.1\r\n"), .tcp)
        XCTAssertEqual(detect([0x00, 0x01]), .tcp)
        XCTAssertEqual(detect(String(repeating: "A", count: 21)), .tcp)
    }

    /// Found by FuzzProtocolDetection: a method or target over its limit
    /// said TCP when read in pieces but waited for more when read at once.
    func testTheAnswerDoesNotDependOnHowTheBytesWereCut() {
        let longMethod = String(repeating: "J", count: 89) + " "
        XCTAssertEqual(detect(String(longMethod.prefix(21))), .tcp)
        XCTAssertEqual(detect(longMethod), .tcp)
        let probe = ProtocolDetector.maximumRequestLineProbe
        let longTarget = "GET /" + String(repeating: "a", count: probe) + " HTTP/1.1\r\n"
        XCTAssertEqual(detect(String(longTarget.prefix(probe))), .tcp)
        XCTAssertEqual(detect(longTarget), .tcp)
        let method20 = String(repeating: "M", count: 20) + " / HTTP/1.1\r\n"
        XCTAssertEqual(detect(method20), .http1, "20 characters is still a method")
        let target9K = "GET /" + String(repeating: "a", count: 9 * 1024) + " HTTP/1.1\r\n"
        XCTAssertEqual(detect(target9K), .http1, "over the URI limit is still HTTP (answered 414)")
    }
}
