import XCTest

@testable import WeftDNS

final class DNSMessageTests: XCTestCase {
    /// A query as a stub resolver sends it: id, RD, one question.
    static func query(_ name: String, type: UInt16 = DNSQuery.typeA, id: UInt16 = 0x1234, flags: UInt16 = 0x0100) -> [UInt8] {
        var out: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), UInt8(flags >> 8), UInt8(flags & 0xFF), 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.split(separator: ".") {
            out.append(UInt8(label.utf8.count))
            out += Array(label.utf8)
        }
        out += [0, UInt8(type >> 8), UInt8(type & 0xFF), 0, 1]
        return out
    }

    func testAQueryIsReadAndAnsweredWithTheQuestionEchoed() throws {
        let query = try DNSQuery(parsing: Self.query("Backend.Default.svc"))
        XCTAssertEqual(query.id, 0x1234)
        XCTAssertEqual(query.name, "backend.default.svc")
        XCTAssertEqual(query.type, DNSQuery.typeA)
        let answer = query.answer(addresses: [[198, 19, 0, 10]], ttl: 30)
        XCTAssertEqual(Array(answer[0..<2]), [0x12, 0x34])
        XCTAssertEqual(answer[2] & 0x80, 0x80, "QR")
        XCTAssertEqual(answer[2] & 0x01, 0x01, "RD echoed")
        XCTAssertEqual(answer[3] & 0x0F, 0, "NOERROR")
        XCTAssertEqual(Array(answer[4..<8]), [0, 1, 0, 1], "one question, one answer")
        let questionEnd = 12 + query.question.count
        XCTAssertEqual(Array(answer[12..<questionEnd]), Array(query.question))
        XCTAssertEqual(Array(answer[questionEnd...]), [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 198, 19, 0, 10])
    }

    func testNoAddressIsNoDataNotAnError() throws {
        let query = try DNSQuery(parsing: Self.query("backend", type: DNSQuery.typeAAAA))
        let answer = query.answer(addresses: [], ttl: 30)
        XCTAssertEqual(Array(answer[4..<8]), [0, 1, 0, 0])
        XCTAssertEqual(answer[3] & 0x0F, 0)
        XCTAssertEqual(answer.count, 12 + query.question.count)
    }

    func testMalformedAndNonQueryMessagesAreRefused() {
        var pointer = Self.query("backend")
        pointer.replaceSubrange(12..<13, with: [0xC0])  // a pointer instead of a label
        var response = Self.query("backend")
        response[2] |= 0x80
        var update = Self.query("backend")
        update[2] |= 5 << 3  // OPCODE UPDATE
        var noQuestion = Self.query("backend")
        noQuestion[5] = 0
        let long = Array(repeating: "a", count: 130).joined(separator: ".")  // 260 bytes of name
        var dotted = Self.query("backend")
        dotted[15] = UInt8(ascii: ".")  // "ba.kend" as one label
        var binary = Self.query("backend")
        binary[15] = 0xC3  // not ASCII (a UTF-8 lead byte)
        let cases: [([UInt8], DNSQuery.ParseError)] = [
            ([], .tooShort), (Array(Self.query("backend").prefix(11)), .tooShort),
            (Array(Self.query("backend").dropLast(2)), .tooShort),
            (Array(Self.query("backend").prefix(15)), .badName),
            (pointer, .badName), (response, .notAQuery), (update, .notAQuery), (noQuestion, .noQuestion),
            (Self.query(long), .badName), (dotted, .badName), (binary, .badName),
        ]
        for (bytes, expected) in cases {
            XCTAssertThrowsError(try DNSQuery(parsing: bytes)) { XCTAssertEqual($0 as? DNSQuery.ParseError, expected) }
        }
    }

    func testNamesMatchAsAskedAndWithEachSearchDomain() {
        var names = DNSNames()
        names.add("Backend", .init(v4: [198, 19, 0, 10]), searchDomains: ["default.svc.cluster.local", "corp.example."])
        XCTAssertEqual(names.lookup("backend")?.v4, [198, 19, 0, 10])
        XCTAssertEqual(names.lookup("BACKEND.")?.v4, [198, 19, 0, 10])
        XCTAssertEqual(names.lookup("backend.corp.example")?.v4, [198, 19, 0, 10])
        XCTAssertEqual(names.lookup("backend.default.svc.cluster.local")?.v4, [198, 19, 0, 10])
        XCTAssertNil(names.lookup("backend.other.example"))
        XCTAssertNil(names.lookup("frontend"))
    }

    func testResolvConfGivesNameserversAndSearchDomains() {
        let conf = ResolvConf(text: """
            # generated
            nameserver 198.18.0.53
            nameserver 2001:2::53
            search default.svc.cluster.local svc.cluster.local
            options ndots:5
            """)
        XCTAssertEqual(conf.nameservers, ["198.18.0.53", "2001:2::53"])
        XCTAssertEqual(conf.search, ["default.svc.cluster.local", "svc.cluster.local"])
    }
}
