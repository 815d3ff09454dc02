import NIOHTTP1
import WeftCore
import XCTest
@testable import WeftMesh

/// `MeshTranslation.forEachEndToEnd` reads names and lists as bytes; these
/// tests hold it to the rules as they read with Strings.
final class EndToEndFieldsTests: XCTestCase {
    private func endToEnd(_ headers: [(String, String)], dropping extra: String? = nil) -> [String] {
        var out: [String] = []
        MeshTranslation.forEachEndToEnd(HTTPHeaders(headers), dropping: extra) { out.append("\($0): \($1)") }
        return out
    }

    func testEveryHopByHopNameInAnyCaseIsDropped() {
        let hopByHop = ["Connection", "KEEP-ALIVE", "Transfer-Encoding", "upgrade", "HTTP2-Settings",
                        "Proxy-Connection", "Proxy-Authorization", "weft-dst", "Weft-Orig-Proto"]
        XCTAssertEqual(endToEnd(hopByHop.map { ($0, "x") } + [("X-Kept", "1")]), ["x-kept: 1"])
        // Same lengths and first bytes, other names: kept.
        let lookalikes = ["connectiox", "keep-alivf", "transfer-encodinf", "upgradf", "http2-settingx", "tf", "t",
                          "weft", "proxy", "w", "p"]
        XCTAssertEqual(endToEnd(lookalikes.map { ($0, "v") }), lookalikes.map { "\($0): v" })
    }

    /// RFC 9110 §10.1.4: a sender of TE names it in `Connection`; `TE:
    /// trailers` still crosses (gRPC needs it), and nothing else of TE does.
    func testTEKeepsOnlyTrailersEvenWhenConnectionNamesIt() {
        XCTAssertEqual(endToEnd([("Connection", "TE"), ("TE", "gzip, Trailers ")]), ["te: trailers"])
        XCTAssertEqual(endToEnd([("te", "trailers;q=1, gzip")]), [])
        XCTAssertEqual(endToEnd([("TE", "gzip")]), [])
    }

    func testListMembersAreTrimmedAndEmptyOnesSkipped() {
        var members: [String] = []
        HTTPFieldSyntax.forEachListMember(of: " a ,\tb\t,, ,c,") { members.append(String(decoding: $0, as: UTF8.self)) }
        XCTAssertEqual(members, ["a", "b", "c"])
        members.removeAll()
        HTTPFieldSyntax.forEachListMember(of: "") { members.append(String(decoding: $0, as: UTF8.self)) }
        XCTAssertEqual(members, [])
    }

    func testOuterWhitespaceLeavesValuesAndInnerSpacesAlone() {
        XCTAssertEqual(endToEnd([("X-A", " \tv  w\t ")]), ["x-a: v  w"])
        XCTAssertEqual(endToEnd([("X-A", "")]), ["x-a: "])
        XCTAssertEqual(endToEnd([("X-A", "é ")]), ["x-a: é"])
    }

    /// Random header sets from a vocabulary of the names and values the
    /// rules look at, compared with the rules written over Strings.
    func testTheByteReadingAgreesWithTheRulesOverStrings() {
        let names = ["Connection", "connection", "CONNECTION", "Keep-Alive", "TE", "te", "Te", "Upgrade",
                     "Transfer-Encoding", "Proxy-Authorization", "weft-dst", "Weft-X", "X-One", "x-two", "X-Two",
                     "Close", "Host", "Content-Length", "http2-settings", "Set-Cookie", "proxy", "weftx", "é-x"]
        let values = ["keep-alive", "Keep-Alive, X-One", " close ,x-two", "x-TWO,,TE", "trailers", "gzip, trailers",
                      " padded\t", "", "a, b", "X-One, host", "set-cookie", "é", "Te", "CLOSE, Upgrade"]
        var random = SystemRandomNumberGenerator()
        for round in 0..<5_000 {
            let count = Int.random(in: 0...8, using: &random)
            let headers = (0..<count).map { _ in
                (names.randomElement(using: &random) ?? "", values.randomElement(using: &random) ?? "")
            }
            let extra = round % 3 == 0 ? "host" : nil
            XCTAssertEqual(endToEnd(headers, dropping: extra), reference(headers, dropping: extra), "\(headers)")
        }
    }

    /// The rules over Strings: what `forEachEndToEnd` did before it read bytes.
    private func reference(_ headers: [(String, String)], dropping extra: String?) -> [String] {
        let trim = { (text: Substring) -> String in
            String(text.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
        }
        var named: Set<String> = []
        for (name, value) in headers where name.lowercased() == "connection" {
            for option in value.split(separator: ",", omittingEmptySubsequences: false).map(trim)
            where !option.isEmpty && !["keep-alive", "close"].contains(option.lowercased()) {
                named.insert(option.lowercased())
            }
        }
        let hopByHop: Set = ["connection", "keep-alive", "transfer-encoding", "upgrade", "http2-settings"]
        var out: [String] = []
        for (name, value) in headers {
            let lower = name.lowercased()
            if lower.hasPrefix("weft-") || lower.hasPrefix("proxy-") || hopByHop.contains(lower) { continue }
            if lower == "te" {
                if value.split(separator: ",").contains(where: { trim($0).lowercased() == "trailers" }) {
                    out.append("te: trailers")
                }
                continue
            }
            if lower == extra || named.contains(lower) { continue }
            out.append("\(lower): \(trim(Substring(value)))")
        }
        return out
    }
}

/// `isPersistent` reads `Connection` as bytes; NIO's `isKeepAlive` is the
/// rule it must agree with.
final class PersistenceTests: XCTestCase {
    func testPersistenceAgreesWithNIOsKeepAlive() {
        let values = ["close", "Close", "keep-alive", "KEEP-ALIVE", "upgrade", " close , x", "x,keep-alive",
                      "closed", "keep-alive, close", "", ",", "te"]
        var random = SystemRandomNumberGenerator()
        for _ in 0..<3_000 {
            let headers = (0..<Int.random(in: 0...3, using: &random)).map { _ in
                (["Connection", "connection", "CONNECTION", "X-Connection", "Keep-Alive"].randomElement(using: &random) ?? "",
                 values.randomElement(using: &random) ?? "")
            }
            for version in [HTTPVersion.http1_0, .http1_1] {
                let head = HTTPRequestHead(version: version, method: .GET, uri: "/", headers: HTTPHeaders(headers))
                XCTAssertEqual(head.isPersistent, head.isKeepAlive, "\(version) \(headers)")
                let response = HTTPResponseHead(version: version, status: .ok, headers: HTTPHeaders(headers))
                XCTAssertEqual(response.isPersistent, head.isKeepAlive, "\(version) \(headers)")
            }
        }
        XCTAssertFalse(HTTPHeaders([("Connection", "x, CLOSE")]).isPersistent(version: .http1_1))
        XCTAssertTrue(HTTPHeaders([("Connection", "Keep-Alive")]).isPersistent(version: .http1_0))
        XCTAssertFalse(HTTPHeaders().isPersistent(version: .http1_0))
    }
}
