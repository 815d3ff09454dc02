import NIOCore
import NIOHTTP1
import XCTest
@testable import WeftProxy

/// RFC 9112's Host and Transfer-Encoding rules, as a pure check.
final class HTTP1RequestRulesTests: XCTestCase {
    private func check(_ version: HTTPVersion, _ headers: [(String, String)]) -> HTTP1RequestRules.Violation? {
        HTTP1RequestRules.violation(of: HTTP1RequestHead(HTTPRequestHead(version: version, method: .POST, uri: "/",
                                                                         headers: HTTPHeaders(headers))))
    }

    func testExactlyOneHostOnHTTP11() {
        XCTAssertNil(check(.http1_1, [("Host", "a")]))
        XCTAssertNil(check(.http1_1, [("hOsT", "a")]))
        XCTAssertEqual(check(.http1_1, []), .missingHost)
        XCTAssertEqual(check(.http1_1, [("Host", "a"), ("host", "a")]), .duplicateHost, "even when equal")
        XCTAssertNil(check(.http1_0, []), "HTTP/1.0 may leave Host out")
        XCTAssertEqual(check(.http1_0, [("Host", "a"), ("Host", "b")]), .duplicateHost)
    }

    /// Of two fields each refused on its own, the first one named tells
    /// why, as when the rules walked the fields themselves; the parser's
    /// facts give the same verdict as a walk.
    func testTheFirstRefusedFieldTellsWhy() throws {
        XCTAssertEqual(check(.http1_1, [("Content-Length", "9223372036854775808"), ("Host", "a{b")]),
                       .contentLengthOutOfRange)
        XCTAssertEqual(check(.http1_1, [("Host", "a{b"), ("Content-Length", "9223372036854775808")]), .invalidHost)
        var parser = HTTP1RequestParser()
        var bytes = ByteBuffer(string: "GET / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\nHost: a{b\r\n\r\n")
        guard case .head(let head, let facts)? = try parser.next(&bytes) else { return XCTFail("no head") }
        XCTAssertEqual(HTTP1RequestRules.violation(of: head, facts: facts), .contentLengthOutOfRange)
    }

    /// Found by FuzzTranslation: a Host with spaces went on as `:authority`,
    /// which the peer's HTTP/2 checks refuse (502 instead of 400 here).
    func testHostMustBeAHostAndPort() {
        for good in ["backend", "backend:9090", "198.19.0.10:80", "[2001:2::1]:8080", "a-b.c_d~e", "", "x%41y"] {
            XCTAssertNil(check(.http1_1, [("Host", good)]), good)
        }
        for bad in ["Expect: 100-continuebackend", "a b", "a\tb", "a/b", "a@b", "a\"b", "a{b}", "ä.example"] {
            XCTAssertEqual(check(.http1_1, [("Host", bad)]), .invalidHost, bad)
        }
    }

    /// Found by FuzzTranslation: HTTP/1 parsers take lengths up to 2^64 − 1,
    /// HTTP/2 peers only to 2^63 − 1, so such a request was refused far away.
    func testContentLengthMustFitSixtyThreeBits() {
        XCTAssertNil(check(.http1_1, [("Host", "a"), ("Content-Length", "9223372036854775807")]))
        XCTAssertNil(check(.http1_1, [("Host", "a"), ("Content-Length", "000123")]))
        XCTAssertEqual(check(.http1_1, [("Host", "a"), ("Content-Length", "9223372036854775808")]),
                       .contentLengthOutOfRange)
        XCTAssertEqual(check(.http1_1, [("Host", "a"), ("Content-Length", "00000000000000000000000011068937977120715208")]),
                       .contentLengthOutOfRange)
    }

    /// Found by FuzzTranslation: `GET * HTTP/1.1` went on as `:path *`,
    /// which HTTP/2 allows for OPTIONS only.
    func testTheAsteriskFormIsForOPTIONSOnly() {
        func target(_ method: HTTPMethod, _ uri: String) -> HTTP1RequestRules.Violation? {
            HTTP1RequestRules.violation(of: HTTP1RequestHead(HTTPRequestHead(version: .http1_1, method: method, uri: uri,
                                                                             headers: HTTPHeaders([("Host", "a")]))))
        }
        XCTAssertNil(target(.OPTIONS, "*"))
        XCTAssertEqual(target(.GET, "*"), .asteriskFormNotOptions)
        XCTAssertEqual(target(.POST, "*"), .asteriskFormNotOptions)
        XCTAssertNil(target(.GET, "/*"))
    }

    func testOnlyASingleChunkedCodingAndNeverOnHTTP10() {
        XCTAssertNil(check(.http1_1, [("Host", "a"), ("Transfer-Encoding", " Chunked\t")]))
        XCTAssertEqual(check(.http1_1, [("Host", "a"), ("Transfer-Encoding", "gzip, chunked")]), .unsupportedTransferCoding)
        XCTAssertEqual(check(.http1_1, [("Host", "a"), ("Transfer-Encoding", "chunked"), ("transfer-encoding", "chunked")]),
                       .unsupportedTransferCoding)
        XCTAssertEqual(check(.http1_0, [("Transfer-Encoding", "chunked")]), .transferEncodingInHTTP10)
        XCTAssertNil(check(.http1_1, [("Host", "a"), ("If-Modified-Since", "x")]), "a 17-byte name that is not TE")
    }
}
