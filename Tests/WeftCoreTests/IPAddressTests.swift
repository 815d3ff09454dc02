import XCTest
@testable import WeftCore

final class IPAddressTests: XCTestCase {
    func testParsesAndPrintsCanonicalForms() {
        XCTAssertEqual(IPAddress("198.18.0.2")?.description, "198.18.0.2")
        XCTAssertEqual(IPAddress("2001:0002:0000::0001")?.description, "2001:2::1")
        XCTAssertEqual(IPAddress("::1"), .loopbackV6)
        XCTAssertEqual(IPAddress("127.0.0.1"), .loopbackV4)
        XCTAssertEqual(IPAddress("198.18.0.2")?.family, .ipv4)
        XCTAssertEqual(IPAddress("2001:2::1")?.family, .ipv6)
    }

    /// The dotted quad is written by hand; inet_ntop is the reference.
    func testIPv4TextMatchesInetNtopForEveryOctetWidth() {
        var values: [UInt32] = [0, 0xffff_ffff, 0x0a00_0001, 0x6409_630a, 0xc612_0002]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<500 { values.append(generator.next()) }
        for value in values {
            var raw = in_addr(s_addr: value.bigEndian)
            var buffer = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            XCTAssertNotNil(inet_ntop(AF_INET, &raw, &buffer, socklen_t(buffer.count)))
            let expected = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            XCTAssertEqual(IPAddress.v4(value).description, expected)
            XCTAssertEqual(IPAddress(expected), .v4(value))
        }
        XCTAssertEqual(IPEndpoint(address: .v4(0xffff_ffff), port: 65535).description, "255.255.255.255:65535")
        XCTAssertEqual(IPAddress("::ffff:198.18.0.2")?.description, "::ffff:198.18.0.2")
    }

    func testRejectsMalformedText() {
        for bad in ["", "1.2.3", "1.2.3.256", "01.2.3.4x", "::g", "1.2.3.4/8", "[::1]", " 1.2.3.4", "2001:2::1%eth0"] {
            XCTAssertNil(IPAddress(bad), bad)
        }
    }

    func testBytesRoundTrip() {
        for text in ["0.0.0.0", "255.255.255.255", "198.19.0.10", "::", "2001:2::ff", "fe80::1:2:3:4"] {
            let address = IPAddress(text)
            XCTAssertNotNil(address, text)
            XCTAssertEqual(address.flatMap { IPAddress(bytes: $0.bytes) }, address, text)
        }
        XCTAssertNil(IPAddress(bytes: [1, 2, 3]))
    }

    func testLoopbackAndMappedAddresses() {
        XCTAssertTrue(IPAddress("127.5.6.7")!.isLoopback)
        XCTAssertFalse(IPAddress("128.0.0.1")!.isLoopback)
        XCTAssertTrue(IPAddress("::1")!.isLoopback)
        XCTAssertFalse(IPAddress("::2")!.isLoopback)
        XCTAssertEqual(IPAddress("::ffff:198.18.0.2")!.unmappingIPv4, IPAddress("198.18.0.2"))
        XCTAssertEqual(IPAddress("2001:2::1")!.unmappingIPv4, IPAddress("2001:2::1"))
    }
}

final class IPEndpointTests: XCTestCase {
    func testParsesBothFamilies() {
        XCTAssertEqual(IPEndpoint("198.18.0.2:9090"), IPEndpoint(address: IPAddress("198.18.0.2")!, port: 9090))
        XCTAssertEqual(IPEndpoint("[2001:2::3]:80"), IPEndpoint(address: IPAddress("2001:2::3")!, port: 80))
        XCTAssertEqual(IPEndpoint("[2001:2::3]:80")?.description, "[2001:2::3]:80")
        XCTAssertEqual(IPEndpoint("198.18.0.2:65535")?.description, "198.18.0.2:65535")
    }

    /// The text, written without a String, has every port width and both
    /// families, and reads back to the same endpoint.
    func testTextOfEveryPortWidthReadsBack() {
        let addresses = ["0.0.0.0", "198.18.0.2", "255.255.255.255", "2001:2::3", "::", "::ffff:198.18.0.2",
                         "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"].compactMap { IPAddress($0) }
        XCTAssertEqual(addresses.count, 7)
        for address in addresses {
            for port: UInt16 in [1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 65535] {
                let endpoint = IPEndpoint(address: address, port: port)
                var text = ""
                endpoint.withText { text = String(decoding: $0, as: UTF8.self) }
                let expected = address.family == .ipv4 ? "\(address.description):\(port)"
                    : "[\(address.description)]:\(port)"
                XCTAssertEqual(text, expected)
                XCTAssertEqual(endpoint.description, expected)
                XCTAssertEqual(IPEndpoint(text), endpoint, text)
            }
        }
    }

    /// From bytes as from text, both families, and the bad forms refused.
    func testParsesFromBytesAsFromText() {
        for text in ["198.18.0.2:9090", "[2001:2::3]:80", "1.2.3.4:0", "2001:2::3:80", "01.2.3.4:80", "x", ""] {
            let fromBytes = Array(text.utf8).withUnsafeBytes { IPEndpoint(utf8: $0) }
            XCTAssertEqual(fromBytes, IPEndpoint(text), text)
        }
        XCTAssertNotNil(Array("[2001:2::3]:80".utf8).withUnsafeBytes { IPEndpoint(utf8: $0) })
    }

    /// The byte parser of `a.b.c.d:port` accepts exactly what the general
    /// one (inet_pton) does, with the same result: on edge cases, and on
    /// inputs made from the characters that matter.
    func testTheIPv4FastPathAgreesWithTheGeneralParser() {
        let cases = ["198.18.0.2:9090", "0.0.0.0:1", "255.255.255.255:65535", "256.1.1.1:80", "1.2.3.4:65536",
                     "01.2.3.4:80", "1.2.3.04:80", "0.0.0.0:080", "1.2.3.4:000080", "1.2.3:80", "1.2.3.4.5:80",
                     "1..3.4:80", ".1.2.3:80", "1.2.3.4.:80", "1.2.3.4::80", "1.2.3.4:", ":80", "1.2.3.4:8a",
                     "1.2.3.4: 80", " 1.2.3.4:80", "1.2.3.4:80 ", "1.2.3.4:-1", "1234.1.1.1:80", "1.2.3.4:0"]
        var generated = cases
        var random = SystemRandomNumberGenerator()
        let octets = ["0", "1", "9", "10", "99", "100", "199", "255", "256", "300", "01", "001", "1000", "", "a"]
        let ports = ["1", "80", "080", "8080", "65535", "65536", "0", "00000", "123456", "", "8a"]
        for _ in 0..<20_000 {
            let count = [3, 4, 4, 4, 4, 5].randomElement(using: &random) ?? 4
            var text = (0..<count).map { _ in octets.randomElement(using: &random) ?? "" }.joined(separator: ".")
            if Int.random(in: 0..<8, using: &random) > 0 { text += ":" + (ports.randomElement(using: &random) ?? "") }
            generated.append(text)
        }
        var accepted = 0
        for text in generated {
            var copy = text
            let fast = copy.withUTF8(IPEndpoint.parseIPv4)
            let general = IPEndpoint.parseAny(text)
            if let fast {
                XCTAssertEqual(fast, general, text)
                accepted += 1
            } else if let general, general.address.family == .ipv4 {
                XCTFail("\(text): the general parser reads \(general), the fast path nothing")
            }
        }
        XCTAssertGreaterThan(accepted, 100, "the generated inputs reach the accepting paths (about 450 of 20,000)")
    }

    func testRejectsBadPortsAndShapes() {
        for bad in ["198.18.0.2:99999", "198.18.0.2:0", "198.18.0.2:", "198.18.0.2", "198.18.0.2:+80",
                    "2001:2::3:80", "[2001:2::3]80", "[198.18.0.2]:80", "host:80", "198.18.0.2:8 0"] {
            XCTAssertNil(IPEndpoint(bad), bad)
        }
    }
}

final class CIDRTests: XCTestCase {
    func testNormalisesAndContains() throws {
        let block = try XCTUnwrap(CIDR("198.18.7.9/16"))
        XCTAssertEqual(block.description, "198.18.0.0/16")
        XCTAssertTrue(block.contains(IPAddress("198.18.255.1")!))
        XCTAssertFalse(block.contains(IPAddress("198.19.0.1")!))
        XCTAssertFalse(block.contains(IPAddress("2001:2::1")!))

        let v6 = try XCTUnwrap(CIDR("2001:2::1/48"))
        XCTAssertEqual(v6.description, "2001:2::/48")
        XCTAssertTrue(v6.contains(IPAddress("2001:2:0:ffff::1")!))
        XCTAssertFalse(v6.contains(IPAddress("2001:3::1")!))

        XCTAssertEqual(CIDR("10.1.2.3")?.description, "10.1.2.3/32")
        XCTAssertEqual(CIDR("::/0")?.description, "::/0")
        XCTAssertEqual(CIDR("0.0.0.0/0")?.contains(IPAddress("8.8.8.8")!), true)
        XCTAssertEqual(CIDR("2001:2::1:2/100")?.description, "2001:2::/100")
    }

    func testRejectsMalformed() {
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0/8", "10.0.0.0/8/8", "/8", "10.0.0.0/a"] {
            XCTAssertNil(CIDR(bad), bad)
        }
    }
}
