import NIOHTTP1
import XCTest
import WeftCore
import WeftHTTP2
@testable import WeftMesh

final class MeshTranslationTests: XCTestCase {
    let destination = IPEndpoint("198.18.0.3:9090")!

    private func request(_ uri: String = "/a?b=1", version: HTTPVersion = .http1_1, method: HTTPMethod = .GET,
                         headers: [(String, String)]) -> HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: uri, headers: HTTPHeaders(headers))
    }

    func testUpgradeMapsPseudoHeadersAndMarksTheHop() throws {
        let fields = try MeshTranslation.upgradeRequest(
            request(headers: [("Host", "backend:9090"), ("Accept", "*/*"), ("Content-Length", "5")]),
            destination: destination)
        XCTAssertEqual(fields, [
            HTTP2Header(":method", "GET"), HTTP2Header(":scheme", "http"),
            HTTP2Header(":authority", "backend:9090"), HTTP2Header(":path", "/a?b=1"),
            HTTP2Header("accept", "*/*"), HTTP2Header("content-length", "5"),
            HTTP2Header("weft-orig-proto", "HTTP/1.1"), HTTP2Header("weft-dst", "198.18.0.3:9090"),
        ])
    }

    /// A head's fields as weft's parser leaves them go on as the bytes that
    /// came: a value that is not UTF-8 (obs-text) is not made U+FFFD, and
    /// the rules for Strings hold (hop-by-hop and Connection-named fields
    /// dropped, `TE` kept as `trailers`, the Host made `:authority`).
    func testARequestsFieldBytesGoOnUnchanged() throws {
        var fields = HTTP2Fields()
        let latin: [UInt8] = Array("caf".utf8) + [0xE9]
        fields.append(name: "host", value: "backend:9090")
        latin.withUnsafeBytes { fields.append(name: .init("x-latin"), value: $0) }
        fields.append(name: "connection", value: "x-hop, close")
        fields.append(name: "x-hop", value: "1")
        fields.append(name: "te", value: "gzip, trailers")
        fields.append(name: "keep-alive", value: "timeout=5")
        fields.append(name: "weft-dst", value: "198.18.0.9:1")
        fields.append(name: "x-after", value: "2")
        var connection = ConnectionOptions()
        connection.add("x-hop, close")
        let upgraded = try MeshTranslation.upgradeRequest(method: .POST, uri: "/p", version: .http1_1, fields: fields,
                                                          destination: destination, connection: connection)
        XCTAssertEqual(upgraded.map(\.name), [":method", ":scheme", ":authority", ":path", "x-latin", "te", "x-after",
                                             "weft-orig-proto", "weft-dst"])
        XCTAssertEqual(upgraded.first(name: ":authority"), "backend:9090")
        XCTAssertEqual(upgraded.first(name: "te"), "trailers")
        XCTAssertEqual(upgraded.first(name: "weft-dst"), "198.18.0.3:9090")
        let value = upgraded.firstResult { name, value in name.equals("x-latin") ? Array(value) : nil }
        XCTAssertEqual(value, latin)
    }

    /// Whether a head announces a body, from its fields' bytes.
    func testABodyIsDeclaredByAnyCodingOrALengthOtherThanZero() {
        func declares(_ pairs: [(String, String)]) -> Bool {
            var fields = HTTP2Fields()
            for (name, value) in pairs { fields.append(name: name, value: value) }
            return MeshTranslation.declaresBody(fields)
        }
        XCTAssertFalse(declares([("host", "a")]))
        XCTAssertFalse(declares([("content-length", "0")]))
        XCTAssertFalse(declares([("content-length", "000")]))
        XCTAssertTrue(declares([("content-length", "5")]))
        XCTAssertTrue(declares([("content-length", "10")]))
        XCTAssertTrue(declares([("transfer-encoding", "chunked")]))
        XCTAssertTrue(declares([("content-length", "0"), ("transfer-encoding", "chunked")]))
        XCTAssertFalse(declares([("content-length", "0"), ("content-length", "5")]), "the first length decides")
        XCTAssertEqual(MeshTranslation.declaresBody(HTTPHeaders([("Content-Length", "7")])), true)
        XCTAssertEqual(MeshTranslation.declaresBody(HTTPHeaders([("Transfer-Encoding", "chunked")])), true)
        XCTAssertEqual(MeshTranslation.declaresBody(HTTPHeaders([("Content-Length", "0")])), false)
    }

    func testAStreamsKindIsReadFromItsFields() {
        let get: HTTP2Fields = [HTTP2Header(":method", "GET"), HTTP2Header(":path", "/"), HTTP2Header("weft-dst", "198.18.0.3:9090")]
        XCTAssertEqual(MeshTranslation.streamKind(of: get), .http1App)
        XCTAssertEqual(MeshTranslation.streamKind(of: get + [HTTP2Header("weft-orig-proto", "HTTP/1.1")]), .http1App)
        XCTAssertEqual(MeshTranslation.streamKind(of: get + [HTTP2Header("weft-orig-proto", "HTTP/2")]), .http2App)
        XCTAssertEqual(MeshTranslation.streamKind(of: [HTTP2Header(":method", "CONNECT"),
                                                       HTTP2Header("weft-orig-proto", "HTTP/2")]), .tunnel)
        // Only weft's own field says HTTP/2, and only its value's start.
        XCTAssertEqual(MeshTranslation.streamKind(of: get + [HTTP2Header("x-orig-proto", "HTTP/2")]), .http1App)
        XCTAssertEqual(MeshTranslation.streamKind(of: get + [HTTP2Header("weft-orig-proto", "http/2")]), .http1App)
    }

    func testASCIIPrefixesAreComparedByteForByte() {
        XCTAssertTrue("weft-dst".hasASCIIPrefix("weft-"))
        XCTAssertTrue("weft-".hasASCIIPrefix("weft-"))
        XCTAssertFalse("weft".hasASCIIPrefix("weft-"))
        XCTAssertFalse("Weft-dst".hasASCIIPrefix("weft-"))
        XCTAssertTrue("a-long-field-name-beyond-fifteen-bytes".hasASCIIPrefix("a-long-field"))
        XCTAssertTrue("".hasASCIIPrefix(""))
        XCTAssertFalse("é-weft".hasASCIIPrefix("e"))
    }

    /// Found by FuzzTranslation: a value with trailing whitespace (which the
    /// HTTP/1 parser keeps) went on as is, and the peer's HTTP/2 checks
    /// refused the whole message.
    func testWhitespaceAroundAValueIsNotPartOfIt() throws {
        let head = HTTPResponseHead(version: .http1_1, status: .found,
                                    headers: HTTPHeaders([("Location", "/x "), ("X-A", "\ta b\t"), ("X-B", "c")]))
        XCTAssertEqual(MeshTranslation.upgradeResponse(head), [
            HTTP2Header(":status", "302"), HTTP2Header("location", "/x"), HTTP2Header("x-a", "a b"),
            HTTP2Header("x-b", "c"),
        ])
        let fields = try MeshTranslation.upgradeRequest(request(headers: [("Host", "b"), ("X-C", "d  ")]),
                                                        destination: destination)
        XCTAssertTrue(fields.contains(HTTP2Header("x-c", "d")), "\(fields)")
    }

    /// Found by FuzzTranslation: an empty Host became an empty `:authority`,
    /// which HTTP/2 refuses.
    func testAnEmptyHostCrossesAsTheDestinationAndComesBackEmpty() throws {
        let fields = try MeshTranslation.upgradeRequest(request(headers: [("Host", "")]), destination: destination)
        XCTAssertTrue(fields.contains(HTTP2Header(":authority", "198.18.0.3:9090")), "\(fields)")
        XCTAssertTrue(fields.contains(HTTP2Header("weft-orig-proto", "HTTP/1.1; empty-host")), "\(fields)")
        let back = try MeshTranslation.downgradeRequest(fields).head
        XCTAssertEqual(back.headers["host"], [""])
        XCTAssertEqual(back.headers.count, 1)
    }

    /// Found by FuzzTranslation: an app's 204 with Content-Length crossed
    /// as is, and the peer's HTTP/2 checks refused it.
    func testA204SaysNoContentLength() {
        let head = HTTPResponseHead(version: .http1_1, status: .noContent, headers: HTTPHeaders([("Content-Length", "4")]))
        XCTAssertEqual(MeshTranslation.upgradeResponse(head), [HTTP2Header(":status", "204")])
        let notModified = HTTPResponseHead(version: .http1_1, status: .notModified,
                                           headers: HTTPHeaders([("Content-Length", "4")]))
        XCTAssertEqual(MeshTranslation.upgradeResponse(notModified),
                       [HTTP2Header(":status", "304"), HTTP2Header("content-length", "4")],
                       "a 304's length is the representation's, and allowed")
    }

    /// A parsed response's fields (names lower case, values trimmed) are
    /// upgraded from their bytes by the same rules as a head's Strings:
    /// `:status` first, hop-by-hop and mesh fields and those `Connection`
    /// names dropped, `te` only as `trailers`, no length in a 1xx or 204.
    func testAResponsesFieldBytesAreUpgradedByTheSameRules() {
        var options = ConnectionOptions()
        options.add("close, x-hop")
        let fields: HTTP2Fields = [
            HTTP2Header("content-type", "text/plain"), HTTP2Header("connection", "close, x-hop"),
            HTTP2Header("x-hop", "1"), HTTP2Header("keep-alive", "timeout=5"), HTTP2Header("te", "gzip, trailers"),
            HTTP2Header("transfer-encoding", "chunked"), HTTP2Header("weft-dst", "198.18.0.9:1"),
            HTTP2Header("proxy-authenticate", "x"), HTTP2Header("content-length", "4"), HTTP2Header("x-kept", "k"),
        ]
        let expected: HTTP2Fields = [
            HTTP2Header(":status", "200"), HTTP2Header("content-type", "text/plain"), HTTP2Header("te", "trailers"),
            HTTP2Header("content-length", "4"), HTTP2Header("x-kept", "k"),
        ]
        XCTAssertEqual(MeshTranslation.upgradeResponse(status: .ok, fields: fields, connection: options), expected)
        let head = HTTPResponseHead(version: .http1_1, status: .ok,
                                    headers: HTTPHeaders(fields.map { ($0.name, $0.value) }))
        XCTAssertEqual(MeshTranslation.upgradeResponse(head, connection: options), expected)

        for status in [HTTPResponseStatus.noContent, .continue] {
            let upgraded = MeshTranslation.upgradeResponse(status: status, fields: fields, connection: options)
            XCTAssertFalse(upgraded.contains(name: "content-length"), "\(status)")
            XCTAssertEqual(upgraded.first, HTTP2Header(":status", String(status.code)))
        }
        XCTAssertEqual(MeshTranslation.upgradeResponse(status: .notModified, fields: fields, connection: options)
            .first(name: "content-length"), "4", "a 304's length is the representation's")
    }

    /// Found by FuzzTranslation: a peer's `:path` with a byte outside
    /// visible ASCII (which nghttp2 lets through) became a request line the
    /// app cannot parse.
    func testAPathThatIsNoHTTP1RequestTargetIsRefused() {
        func fields(_ path: String) -> HTTP2Fields {
            [HTTP2Header(":method", "GET"), HTTP2Header(":scheme", "http"), HTTP2Header(":authority", "b"),
             HTTP2Header(":path", path), HTTP2Header("weft-dst", "198.18.0.3:9090")]
        }
        for bad in ["/a?\u{96}", "/a b", "/a\u{7f}"] {
            XCTAssertThrowsError(try MeshTranslation.downgradeRequest(fields(bad)), bad.debugDescription) {
                XCTAssertEqual($0 as? TranslationError, .badRequestTarget(bad))
            }
        }
        XCTAssertNoThrow(try MeshTranslation.downgradeRequest(fields("/a?b=%C3%A9&c=~!*")))
    }

    /// A length is carriable where `Int64` reads it.
    func testACarriableLengthIsOneInt64Reads() {
        for text in ["0", "9223372036854775807", " 5\t", "+5", "-9223372036854775808", "00000000000000000000012",
                     "x", "", " ", "+", "9223372036854775808", "-9223372036854775809", "5a", "5 5", "18446744073709551616"] {
            var bytes = text
            let carriable = bytes.withUTF8 { MeshTranslation.isCarriableLength(UnsafeRawBufferPointer($0)) }
            XCTAssertEqual(carriable, Int64(text.trimmingSpaces) != nil, text)
        }
    }

    /// Found by FuzzTranslation: an app response with more fields than a
    /// node takes was sent on, and the peer reset it.
    func testWhatFitsAPeersHeaderLimits() {
        let status: HTTP2Fields = [HTTP2Header(":status", "200")]
        let many = status + (0..<99).map { HTTP2Header("x-f\($0)", "v") }
        XCTAssertTrue(MeshTranslation.fitsPeerLimits(many), "100 fields")
        XCTAssertFalse(MeshTranslation.fitsPeerLimits(many + [HTTP2Header("x-more", "v")]), "101 fields")
        let big = status + [HTTP2Header("x-big", String(repeating: "b", count: 64 * 1024 - 32 - 5 - 32 - 7 - 3))]
        XCTAssertTrue(MeshTranslation.fitsPeerLimits(big), "exactly 64 KiB")
        XCTAssertFalse(MeshTranslation.fitsPeerLimits(status + [HTTP2Header("x-big", String(repeating: "b", count: 64 * 1024))]))
        XCTAssertTrue(MeshTranslation.fitsPeerLimits(status + [HTTP2Header("content-length", "9223372036854775807")]))
        XCTAssertFalse(MeshTranslation.fitsPeerLimits(status + [HTTP2Header("content-length", "9223372036854775808")]),
                       "a length past 2^63 - 1")
    }

    func testHopByHopHeadersNeverCross() throws {
        let fields = try MeshTranslation.upgradeRequest(request(headers: [
            ("Host", "backend"), ("Connection", "keep-alive, X-Private"), ("X-Private", "secret"),
            ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"), ("TE", "gzip, trailers"),
            ("Upgrade", "h2c"), ("Proxy-Authorization", "Basic x"), ("Proxy-Connection", "keep-alive"),
            ("HTTP2-Settings", "AAA"), ("X-Kept", "yes"), ("weft-dst", "10.0.0.1:1"),
        ]), destination: destination)
        let names = fields.map(\.name)
        XCTAssertEqual(names, [":method", ":scheme", ":authority", ":path", "te", "x-kept", "weft-orig-proto", "weft-dst"])
        XCTAssertEqual(fields.first { $0.name == "te" }?.value, "trailers")
        XCTAssertEqual(fields.last, HTTP2Header("weft-dst", "198.18.0.3:9090"), "an app cannot forge weft-dst")
    }

    /// Every `Connection` header counts, options in any case and spacing;
    /// `keep-alive` and `close` name no header.
    func testHeadersNamedByAnyConnectionHeaderAreDropped() throws {
        let fields = try MeshTranslation.upgradeRequest(request(headers: [
            ("Host", "backend"), ("Connection", "Keep-Alive ,  X-One,,"), ("connection", "x-TWO, CLOSE"),
            ("X-One", "1"), ("x-two", "2"), ("X-Three", "3"), ("Close", "a header, not an option"),
        ]), destination: destination)
        let names = fields.map(\.name).filter { !$0.hasPrefix(":") && !$0.hasPrefix("weft-") }
        XCTAssertEqual(names, ["x-three", "close"])
    }

    /// A name is judged by its lower-case form, whatever its case: the
    /// Kelvin sign (U+212A) lower-cases to an ASCII `k`.
    func testANameIsJudgedByItsLowerCaseForm() throws {
        let fields = try MeshTranslation.upgradeRequest(request(headers: [
            ("Host", "backend"), ("\u{212A}eep-Alive", "timeout=5"), ("CONNECTION", "x-gone"), ("X-Gone", "1"),
            ("WEFT-Dst", "198.18.0.9:1"), ("X-Kept", "k"),
        ]), destination: destination)
        let names = fields.map(\.name).filter { !$0.hasPrefix(":") && !$0.hasPrefix("weft-") }
        XCTAssertEqual(names, ["x-kept"])
    }

    /// The options read from `Connection` fields: persistence, and the
    /// fields named (lower-cased), whatever the case and spacing.
    func testConnectionOptionsTellPersistenceAndNamedFields() {
        func options(_ values: String...) -> ConnectionOptions {
            ConnectionOptions(of: HTTPHeaders(values.map { ("Connection", $0) } + [("X-Other", "close")]))
        }
        XCTAssertTrue(options().isPersistent(version: .http1_1))
        XCTAssertFalse(options().isPersistent(version: .http1_0))
        XCTAssertTrue(options("KEEP-alive").isPersistent(version: .http1_0))
        XCTAssertFalse(options(" Close ").isPersistent(version: .http1_1))
        XCTAssertFalse(options("keep-alive", "close").isPersistent(version: .http1_1), "both: close")
        XCTAssertEqual(options("keep\ralive, closed, X-One", "Upgrade").names, ["keep\ralive", "closed", "x-one", "upgrade"])
        XCTAssertTrue(options("keep\ralive, closed").isPersistent(version: .http1_1), "options that only look alike")
        XCTAssertTrue(options("a, X-One").names("x-one"))
        XCTAssertFalse(options("a, X-One").names("x-two"))
        // What a parser gathers field by field is what a walk gathers.
        var gathered = ConnectionOptions()
        gathered.add("keep-alive, X-One")
        gathered.add("upgrade")
        XCTAssertEqual(gathered, options("keep-alive, X-One", "upgrade"))
    }

    func testRoundTripKeepsTheRequestFaithful() throws {
        let original = request("/x", headers: [("Host", "backend:9090"), ("X-A", "1"), ("X-A", "2")])
        let down = try MeshTranslation.downgradeRequest(try MeshTranslation.upgradeRequest(original, destination: destination))
        XCTAssertEqual(down.head.uri, "/x")
        XCTAssertEqual(down.head.version, .http1_1)
        XCTAssertEqual(down.head.headers["host"], ["backend:9090"])
        XCTAssertEqual(down.head.headers["x-a"], ["1", "2"])
        XCTAssertEqual(down.destination, destination)
        XCTAssertFalse(down.head.headers.contains { $0.name.hasPrefix("weft-") })
    }

    func testAbsoluteFormAndHTTP10WithoutHostSurvive() throws {
        let absolute = request("http://backend:9090/p?q", headers: [("Host", "ignored")])
        let up = try MeshTranslation.upgradeRequest(absolute, destination: destination)
        XCTAssertTrue(up.contains(HTTP2Header(":authority", "backend:9090")))
        XCTAssertTrue(up.contains(HTTP2Header(":path", "/p?q")))
        XCTAssertTrue(up.contains(HTTP2Header("weft-orig-proto", "HTTP/1.1; absolute-form")))
        XCTAssertEqual(try MeshTranslation.downgradeRequest(up).head.uri, "http://backend:9090/p?q")

        let old = request("/", version: .http1_0, headers: [])
        let up10 = try MeshTranslation.upgradeRequest(old, destination: destination)
        XCTAssertTrue(up10.contains(HTTP2Header(":authority", "198.18.0.3:9090")), "HTTP/2 needs an authority")
        XCTAssertTrue(up10.contains(HTTP2Header("weft-orig-proto", "HTTP/1.0; no-host")))
        let down10 = try MeshTranslation.downgradeRequest(up10)
        XCTAssertEqual(down10.head.version, .http1_0)
        XCTAssertNil(down10.head.headers.first(name: "host"), "the app gets no Host it never sent")
    }

    /// A block without `:authority` (HTTP/2 lets a request go without
    /// one): weft writes no Host of its own, and a `host` in the block
    /// goes on; the target is the `:path`, read from its bytes.
    func testARequestWithoutAnAuthorityKeepsThePeersHost() throws {
        let fields: HTTP2Fields = [HTTP2Header(":method", "GET"), HTTP2Header(":scheme", "http"),
                                   HTTP2Header(":path", "/x?y"), HTTP2Header("host", "h"),
                                   HTTP2Header("weft-dst", "198.18.0.3:9090")]
        let down = try MeshTranslation.downgradeRequest(fields)
        XCTAssertEqual(down.host, .none)
        XCTAssertFalse(down.setsHost)
        XCTAssertEqual(down.uri, "/x?y")
        XCTAssertEqual(down.head.headers["host"], ["h"])
        var parts: [String] = []
        down.block.forEachTargetPart { parts.append(String(decoding: $0, as: UTF8.self)) }
        XCTAssertEqual(parts, ["/x?y"])
    }

    /// The writer takes the first `:path` and `:authority`, so the one
    /// checked is the one written: a second of either is refused (nghttp2
    /// refuses it first; this holds whatever the block came from).
    func testARepeatedPathOrAuthorityIsRefused() {
        let base = [HTTP2Header(":method", "GET"), HTTP2Header(":scheme", "http"),
                    HTTP2Header("weft-dst", "198.18.0.3:9090")]
        let paths = base + [HTTP2Header(":path", "/a b\r\nX: y"), HTTP2Header(":path", "/ok"),
                            HTTP2Header(":authority", "a")]
        XCTAssertThrowsError(try MeshTranslation.downgradeRequest(HTTP2Fields(paths))) { error in
            XCTAssertEqual(error as? TranslationError, .repeatedPseudoHeader(":path"))
        }
        let authorities = base + [HTTP2Header(":path", "/"), HTTP2Header(":authority", "a"),
                                  HTTP2Header(":authority", "b")]
        XCTAssertThrowsError(try MeshTranslation.downgradeRequest(HTTP2Fields(authorities))) { error in
            XCTAssertEqual(error as? TranslationError, .repeatedPseudoHeader(":authority"))
        }
        let once = base + [HTTP2Header(":path", "/ok"), HTTP2Header(":authority", "a")]
        XCTAssertEqual(try MeshTranslation.downgradeRequest(HTTP2Fields(once)).uri, "/ok")
    }

    func testDowngradeRefusesMissingOrBadMeshHeaders() {
        let base: HTTP2Fields = [HTTP2Header(":method", "GET"), HTTP2Header(":scheme", "http"), HTTP2Header(":path", "/")]
        XCTAssertThrowsError(try MeshTranslation.downgradeRequest(base)) {
            XCTAssertEqual($0 as? TranslationError, .badDestination(nil))
        }
        XCTAssertThrowsError(try MeshTranslation.downgradeRequest(base + [HTTP2Header("weft-dst", "nope")])) {
            XCTAssertEqual($0 as? TranslationError, .badDestination("nope"))
        }
        XCTAssertThrowsError(try MeshTranslation.downgradeRequest(base + [
            HTTP2Header("weft-dst", "198.18.0.3:80"), HTTP2Header("weft-orig-proto", "SPDY/3"),
        ])) { XCTAssertEqual($0 as? TranslationError, .badOrigProto("SPDY/3")) }
        XCTAssertThrowsError(try MeshTranslation.downgradeRequest([HTTP2Header(":path", "/")])) {
            XCTAssertEqual($0 as? TranslationError, .missingPseudoHeader(":method"))
        }
        XCTAssertThrowsError(try MeshTranslation.upgradeRequest(request("ftp://x/", headers: []), destination: destination))
    }

    func testResponsesTranslateBothWays() throws {
        let head = HTTPResponseHead(version: .http1_1, status: .notModified, headers: HTTPHeaders([
            ("ETag", "\"v1\""), ("Connection", "close"), ("Transfer-Encoding", "chunked"), ("Content-Length", "0"),
        ]))
        let fields = MeshTranslation.upgradeResponse(head)
        XCTAssertEqual(fields, [HTTP2Header(":status", "304"), HTTP2Header("etag", "\"v1\""), HTTP2Header("content-length", "0")])
        let back = try MeshTranslation.downgradeResponse(
            fields + [HTTP2Header("weft-x", "y"), HTTP2Header("weft-reason", "connect_failure")], version: .http1_0)
        XCTAssertEqual(back.headers["weft-reason"], ["connect_failure"], "the reason is for the app")
        XCTAssertEqual(back.status, .notModified)
        XCTAssertEqual(back.version, .http1_0)
        XCTAssertEqual(back.headers["etag"], ["\"v1\""])
        XCTAssertNil(back.headers.first(name: "weft-x"))
        XCTAssertThrowsError(try MeshTranslation.downgradeResponse([HTTP2Header(":status", "20")], version: .http1_1))
        XCTAssertThrowsError(try MeshTranslation.downgradeResponse([], version: .http1_1))
    }
}

final class UpgradeRequestTests: XCTestCase {
}
