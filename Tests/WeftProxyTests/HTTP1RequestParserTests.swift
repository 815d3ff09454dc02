import NIOCore
import NIOEmbedded
import NIOHTTP1
import WeftHTTP2
import WeftMesh
import XCTest
@testable import WeftProxy

/// The app connection's request parser, without a channel: requests fed
/// whole, a byte at a time and in 7-byte reads; its refusals; tunnels.
/// (`OutboundHTTPHandler`, which carries it, is tested with real nodes in
/// `MeshPathTests`.)
final class HTTP1RequestParserTests: XCTestCase {
    /// What the parser made of `raw`, fed in reads of `step` bytes: events
    /// as text (`GET / HTTP/1.1 [name: value, ...]`, `body <bytes>`,
    /// `end [...]`), body parts of one run joined, then the error if one
    /// came (the end of the input included), and the bytes left untaken.
    private func parse(_ raw: String, step: Int = .max)
        -> (events: [String], error: HTTP1ParseError?, left: String) {
        var parser = HTTP1RequestParser()
        var events: [String] = []
        var left: [UInt8] = []
        for var buffer in HTTP1ParserTestSupport.reads(of: raw, step: step) {
            do {
                while let event = try parser.next(&buffer) {
                    switch event {
                    case .head(let head, let facts):
                        XCTAssertEqual(facts, HTTP1HeadFacts(of: head.fields), "gathered as the fields were read")
                        XCTAssertEqual(facts.connection, ConnectionOptions(of: head.head.headers))
                        XCTAssertEqual(head.declaresBody, MeshTranslation.declaresBody(head.fields),
                                       "the facts read the framing as the fields do")
                        events.append("\(head.method.rawValue) \(head.uri) \(head.version) "
                                      + "\(HTTP1ParserTestSupport.fields(head.head.headers))")
                    case .body(let body): events.appendBody(body)
                    case .end(let trailers): events.appendEnd(trailers)
                    }
                }
            } catch {
                return (events, error, String(decoding: left, as: UTF8.self))
            }
            if parser.isTunnelling { left += buffer.readableBytesView } else {
                XCTAssertEqual(buffer.readableBytes, 0, "every byte of a good read is taken")
            }
        }
        do {
            try parser.inputEnded()
        } catch {
            return (events, error, String(decoding: left, as: UTF8.self))
        }
        return (events, nil, String(decoding: left, as: UTF8.self))
    }

    private func assertParses(_ raw: String, _ expected: [String], left: String = "",
                              file: StaticString = #filePath, line: UInt = #line) {
        for step in [Int.max, 1, 7] {
            let got = parse(raw, step: step)
            XCTAssertNil(got.error, "step \(step)", file: file, line: line)
            XCTAssertEqual(got.events, expected, "step \(step)", file: file, line: line)
            XCTAssertEqual(got.left, left, "step \(step)", file: file, line: line)
        }
    }

    /// The eight-bytes-at-a-time test never misses a control byte or DEL,
    /// and passes every other byte, wherever it sits in the word.
    func testAWordWithAControlByteIsAlwaysSeen() {
        for value in 0...255 {
            let byte = UInt8(value)
            for position in 0..<8 {
                var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 8)
                bytes[position] = byte
                let word = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
                XCTAssertEqual(HTTP1MessageReader.mayHoldControl(word), byte < 0x20 || byte == 0x7F,
                               "byte \(byte) at \(position)")
            }
        }
        var random = SystemRandomNumberGenerator()
        for _ in 0..<100_000 {
            let bytes = (0..<8).map { _ in UInt8.random(in: 0...255, using: &random) }
            let word = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            if bytes.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
                XCTAssertTrue(HTTP1MessageReader.mayHoldControl(word), "\(bytes)")
            }
        }
    }

    /// Values long enough for the eight-byte reads: a control byte at any
    /// place is refused, spaces at the end are no part of the value, and
    /// obs-text and inner spaces are kept.
    func testLongValuesAreReadWhole() {
        for length in [7, 8, 9, 15, 16, 17, 40] {
            let value = String((0..<length).map { index in index % 5 == 4 ? " " : "v" })
            for trailing in ["", " ", "        ", " \t  \t          "] {
                let raw = "GET / HTTP/1.1\r\nHost: b\r\nX-Long:  \(value)\(trailing)\r\nX-Next: n\r\n\r\n"
                let trimmed = String(value.reversed().drop { $0 == " " }.reversed())
                assertParses(raw, ["GET / HTTP/1.1 [\"host: b\", \"x-long: \(trimmed)\", \"x-next: n\"]", "end []"])
            }
            for place in [0, length / 2, length - 1] {
                for bad in ["\u{01}", "\u{7F}", "\r", "\n", "\u{00}"] {
                    var broken = Array(value)
                    broken[place] = Character(bad)
                    let raw = "GET / HTTP/1.1\r\nHost: b\r\nX-Long: \(String(broken))x\r\n\r\n"
                    XCTAssertNotNil(parse(raw).error, "\(bad.debugDescription) at \(place) of \(length)")
                }
            }
        }
    }

    /// A head ends at its first empty line wherever that falls in the
    /// eight-byte words the search reads, fed whole or split anywhere, and
    /// an LF or CR LF short of it ends nothing.
    func testAHeadEndsAtItsEmptyLineWhereverItFalls() {
        for pad in 0..<20 {
            let padding = String(repeating: "p", count: pad)
            let raw = "GET /\(padding) HTTP/1.1\r\nHost: a\r\nX-P: \(padding)\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n"
            assertParses(raw, ["GET /\(padding) HTTP/1.1 [\"host: a\", \"x-p: \(padding)\"]", "end []",
                               "GET /2 HTTP/1.1 [\"host: b\"]", "end []"])
            for step in [2, 3, 5, 8, 9] {
                XCTAssertEqual(parse(raw, step: step).events.count, 4, "pad \(pad), step \(step)")
            }
            // No empty line yet: the head waits, whatever its last bytes.
            for unfinished in ["\r\n", "\r\n\r", "\n\r\n", "\r\r\n"] {
                let partial = "GET /\(padding) HTTP/1.1\r\nHost: a\r\nX-P: \(padding)" + unfinished
                let got = parse(partial)
                XCTAssertEqual(got.events, [], "pad \(pad), \(unfinished.debugDescription)")
                XCTAssertEqual(got.error, .truncated, "pad \(pad), \(unfinished.debugDescription)")
            }
        }
    }

    /// Framing fields in trailers are refused, as llhttp does; others are
    /// read.
    func testFramingFieldsInTrailersAreRefused() {
        let chunked = "POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
        XCTAssertEqual(parse(chunked + "Content-Length: 2\r\n\r\n").error, .badField)
        XCTAssertEqual(parse(chunked + "transfer-encoding: chunked\r\n\r\n").error, .badField)
        XCTAssertNil(parse(chunked + "X-Checksum: 1\r\n\r\n").error)
    }

    /// A tab after a Content-Length's digits is refused, as llhttp does;
    /// spaces there are read.
    func testATabAfterALengthIsRefused() {
        XCTAssertEqual(parse("POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 2\t\r\n\r\nok").error, .badContentLength)
        XCTAssertNil(parse("POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 2 \r\n\r\nok").error)
    }

    func testRequestsAreReadWithTheirBodiesInTurn() {
        assertParses("GET /a?b=1 HTTP/1.1\r\nHost: svc\r\nX-Pad:  a b \t\r\n\r\n"
                     + "POST /p HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello"
                     + "\r\n"  // an empty line between requests is skipped
                     + "PUT http://svc:8080/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + "3;x=y;z=\"q;\"\r\nabc\r\n0\r\nGrpc-Status: 0\r\n\r\n",
                     ["GET /a?b=1 HTTP/1.1 [\"host: svc\", \"x-pad: a b\"]", "end []",
                      "POST /p HTTP/1.1 [\"host: svc\", \"content-length: 5\"]", "body hello", "end []",
                      "PUT http://svc:8080/x HTTP/1.0 [\"transfer-encoding: chunked\"]", "body abc",
                      "end [\"grpc-status: 0\"]"])
        assertParses("OPTIONS * HTTP/1.1\r\nHost: svc\r\n\r\nM-SEARCH / HTTP/1.1\r\nHost: svc\r\n\r\n"
                     + "QUERY /q HTTP/1.1\r\nHost: svc\r\n\r\nSOURCE /s HTTP/1.1\r\nHost: svc\r\n\r\n",
                     ["OPTIONS * HTTP/1.1 [\"host: svc\"]", "end []", "M-SEARCH / HTTP/1.1 [\"host: svc\"]", "end []",
                      "QUERY /q HTTP/1.1 [\"host: svc\"]", "end []", "SOURCE /s HTTP/1.1 [\"host: svc\"]", "end []"])
    }

    /// The bytes after a tunnelling request belong to the tunnel: they are
    /// neither read nor taken.
    func testATunnellingRequestIsTheLastOneRead() {
        assertParses("CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\nContent-Length: 3\r\n\r\nGET / HTTP/1.1\r\n\r\n",
                     ["CONNECT svc:443 HTTP/1.1 [\"host: svc:443\", \"content-length: 3\"]", "end []"],
                     left: "GET / HTTP/1.1\r\n\r\n")
        assertParses("GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
                     + "Content-Length: 0\r\n\r\n\u{81}\u{05}frame",
                     ["GET /ws HTTP/1.1 [\"host: svc\", \"connection: keep-alive, Upgrade\", \"upgrade: websocket\", "
                      + "\"content-length: 0\"]", "end []"],
                     left: "\u{81}\u{05}frame")
    }

    /// An Upgrade with a body is declined (`MeshTranslation.opensTunnel`):
    /// its body is read, and so is the request after it.
    func testAnUpgradeWithABodyIsReadAsAnOrdinaryRequest() {
        assertParses("POST /up HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                     + "Content-Length: 2\r\n\r\nhiGET /next HTTP/1.1\r\nHost: svc\r\n\r\n",
                     ["POST /up HTTP/1.1 [\"host: svc\", \"connection: Upgrade\", \"upgrade: h2c\", "
                      + "\"content-length: 2\"]", "body hi", "end []",
                      "GET /next HTTP/1.1 [\"host: svc\"]", "end []"])
    }

    /// A value with bytes that are not UTF-8 (obs-text) goes on as the
    /// bytes that came: the request rules' size of the fields counts those,
    /// whether the parser gathered it or a walk over the head did
    /// (FuzzTranslation once found them apart).
    func testTheFieldsSizeCountsWhatGoesOn() throws {
        var parser = HTTP1RequestParser()
        var buffer = ByteBuffer(bytes: Array("GET / HTTP/1.1\r\nHost: a\r\nX-Latin: caf".utf8) + [0xE9]
                                + Array("\r\n\r\n".utf8))
        guard case .head(let head, let facts)? = try parser.next(&buffer) else { return XCTFail("no head") }
        let value = head.fields.firstResult { name, value in name.equals("x-latin") ? Array(value) : nil }
        XCTAssertEqual(value, Array("caf".utf8) + [0xE9])
        XCTAssertEqual(facts, HTTP1HeadFacts(of: head.fields))
        XCTAssertEqual(facts.listBytes, (4 + 1 + 32) + (7 + 4 + 32))
    }

    func testWhetherAHeadAnnouncesABodyIsReadFromItsFacts() throws {
        let cases: [(String, Bool)] = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", false),
            ("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", false),
            ("POST / HTTP/1.1\r\nContent-Length: 000\r\n\r\n", false),
            ("POST / HTTP/1.1\r\nContent-Length: 7\r\n\r\npayload", true),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true),
        ]
        for (raw, declares) in cases {
            var parser = HTTP1RequestParser()
            var buffer = ByteBuffer(string: raw)
            guard case .head(let head, _)? = try parser.next(&buffer) else { return XCTFail("no head: \(raw)") }
            XCTAssertEqual(head.declaresBody, declares, raw)
            XCTAssertEqual(head.declaresBody, MeshTranslation.declaresBody(head.fields), raw)
        }
        // A head made elsewhere reads it from its fields.
        let made = HTTP1RequestHead(method: .PUT, uri: "/", version: .http1_1,
                                    fields: [HTTP2Header("content-length", "3")])
        XCTAssertTrue(made.declaresBody)
    }

    func testTheInputEndingInsideARequestIsTruncated() {
        for raw in ["GET / HTT", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab",
                    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"] {
            XCTAssertEqual(parse(raw).error, .truncated, raw)
        }
        XCTAssertNil(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n").error, "an idle end is clean")
    }

    /// Each refused with its reason; a refusal is final.
    func testBrokenRequestsAreRefused() {
        let cases: [(String, HTTP1ParseError)] = [
            ("get / HTTP/1.1\r\n\r\n", .unknownMethod),
            ("BREW / HTTP/1.1\r\n\r\n", .unknownMethod),
            ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", .unknownMethod),
            ("GET  / HTTP/1.1\r\n\r\n", .badRequestTarget),
            ("GET /a b HTTP/1.1\r\n\r\n", .badRequestLine),
            ("GET /\u{7F} HTTP/1.1\r\n\r\n", .badRequestTarget),
            ("GET /caf\u{E9} HTTP/1.1\r\n\r\n", .badRequestTarget),
            ("GET / HTTP/1.1 \r\n\r\n", .badRequestLine),
            ("GET /\r\n\r\n", .badRequestLine),
            ("GET a/b HTTP/1.1\r\n\r\n", .badRequestTarget),
            ("GET ** HTTP/1.1\r\n\r\n", .badRequestTarget),
            ("GET http:/a HTTP/1.1\r\n\r\n", .badRequestTarget),
            ("GET http://user@a/ HTTP/1.1\r\n\r\n", .badRequestTarget),
            ("CONNECT /a HTTP/1.1\r\n\r\n", .badRequestTarget),
            ("CONNECT a: HTTP/1.1\r\n\r\n", .badRequestTarget),
            ("GET / HTTP/2.0\r\n\r\n", .badVersion),
            ("GET / HTTP/1.2\r\n\r\n", .badVersion),
            ("GET / HTTP/1.1\nHost: a\r\n\r\n", .badRequestLine),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", .badField),
            ("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", .foldedField),
            ("GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n", .badField),
            ("POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", .conflictingFraming),
            ("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", .badContentLength),
            ("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", .badContentLength),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", .unsupportedTransferCoding),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", .unsupportedTransferCoding),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
             .unsupportedTransferCoding),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", .badChunk),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", .badChunk),
            // Found by FuzzTranslation: llhttp refuses an empty extension.
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y;\r\nabc\r\n0\r\n\r\n", .badChunk),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=\"a b\"\r\nabc\r\n0\r\n\r\n", .badChunk),
            // llhttp too: nothing may follow a request that closes.
            ("GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n", .dataAfterClose),
            ("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", .dataAfterClose),
        ]
        for (raw, expected) in cases {
            for step in [Int.max, 1, 7] {
                XCTAssertEqual(parse(raw, step: step).error, expected, "\(raw.debugDescription), step \(step)")
            }
        }
        var parser = HTTP1RequestParser()
        var buffer = ByteBuffer(string: "get / HTTP/1.1\r\n\r\n")
        XCTAssertThrowsError(try parser.next(&buffer))
        var good = ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n")
        XCTAssertThrowsError(try parser.next(&good), "a refusal is final")
    }

    func testHeadsPastTheLimitAreRefusedWhetherWholeOrSplit() {
        let big = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: HTTP1MessageReader.maxHeadBytes) + "\r\n\r\n"
        for step in [Int.max, 4096] {
            XCTAssertEqual(parse(big, step: step).error, .headTooLarge, "step \(step)")
        }
        let fits = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: HTTP1MessageReader.maxHeadBytes - 40) + "\r\n\r\n"
        XCTAssertNil(parse(fits, step: 4096).error)
    }

    /// llhttp (NIO's decoder, the oracle of the fuzzer too) reads what
    /// the parser reads, for requests of every framing.
    func testLLHTTPReadsTheSameRequests() throws {
        let raw = "GET /a HTTP/1.1\r\nHost: svc\r\nX-A: 1\r\n\r\n"
            + "POST /p HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello"
            + "PATCH /c HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder()))
        defer { _ = try? channel.finish() }
        try channel.writeInbound(ByteBuffer(string: raw))
        var llhttp: [String] = []
        while let part = try channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let head):
                llhttp.append("\(head.method.rawValue) \(head.uri) \(head.version) "
                              + "\(head.headers.map { "\($0.name.lowercased()): \($0.value)" })")
            case .body(let body): llhttp.append("body " + String(buffer: body))
            case .end(let trailers):
                llhttp.append("end \(trailers.map { $0.map { "\($0.name.lowercased()): \($0.value)" } } ?? [])")
            }
        }
        XCTAssertEqual(parse(raw).events, llhttp)
    }
}
