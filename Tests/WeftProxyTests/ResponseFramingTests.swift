import NIOHTTP1
import WeftHTTP2
import XCTest
@testable import WeftProxy

/// Whether an app connection stays open after a response, by the app's
/// HTTP version and what frames the response body.
final class ResponseFramingTests: XCTestCase {
    private func keepsAlive(version: HTTPVersion, method: HTTPMethod = .GET, status: HTTPResponseStatus = .ok,
                            peerFields: HTTP2Fields, draining: Bool = false) -> (Bool, String?) {
        let request = HTTP1RequestHead(method: method, uri: "/", version: version, fields: [])
        var response = AppResponseHead(HTTPResponseHead(version: version, status: status), peerFields: peerFields)
        var keepAlive = true
        ResponseFraming.frame(&response, for: request, keepAlive: &keepAlive, draining: draining)
        return (keepAlive, response.headers.first(name: "connection"))
    }

    func testAnHTTP10BodyWithoutALengthClosesTheConnection() {
        let length: HTTP2Fields = [HTTP2Header(":status", "200"), HTTP2Header("content-length", "5")]
        let none: HTTP2Fields = [HTTP2Header(":status", "200")]
        XCTAssertEqual(keepsAlive(version: .http1_0, peerFields: length).0, true)
        XCTAssertEqual(keepsAlive(version: .http1_0, peerFields: length).1, "keep-alive")
        XCTAssertEqual(keepsAlive(version: .http1_0, peerFields: none).0, false, "the close ends the body")
        XCTAssertEqual(keepsAlive(version: .http1_0, peerFields: none).1, "close")
        XCTAssertEqual(keepsAlive(version: .http1_0, method: .HEAD, peerFields: none).0, true, "no body to end")
        XCTAssertEqual(keepsAlive(version: .http1_0, status: .noContent, peerFields: none).0, true)
        XCTAssertEqual(keepsAlive(version: .http1_1, peerFields: none).0, true, "HTTP/1.1 chunks it")
        XCTAssertNil(keepsAlive(version: .http1_1, peerFields: none).1)
        XCTAssertEqual(keepsAlive(version: .http1_1, peerFields: length, draining: true).1, "close")
    }
}
