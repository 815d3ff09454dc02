import NIOCore
import XCTest
import WeftCore
import WeftHTTP2
import WeftTLS
@testable import WeftNetfilter

final class InterfaceAddressesTests: XCTestCase {
    /// Every namespace has loopback; rtnetlink over libmnl must report it.
    func testReportsLoopback() throws {
        let addresses = try InterfaceAddresses.current()
        XCTAssertTrue(addresses.contains(.loopbackV4), "\(addresses)")
    }
}

final class SocketAddressConversionTests: XCTestCase {
    func testRoundTripsBothFamilies() throws {
        for text in ["198.18.0.2:9090", "[2001:2::3]:443", "127.0.0.1:1"] {
            let endpoint = try XCTUnwrap(IPEndpoint(text))
            let socketAddress = SocketAddress(endpoint)
            XCTAssertEqual(IPEndpoint(socketAddress), endpoint)
            XCTAssertEqual(socketAddress.port, Int(endpoint.port))
        }
    }

    func testMatchesNIOsOwnParsing() throws {
        let ours = SocketAddress(try XCTUnwrap(IPEndpoint("[2001:2::3]:443")))
        XCTAssertEqual(ours, try SocketAddress(ipAddress: "2001:2::3", port: 443))
        let mapped = try SocketAddress(ipAddress: "::ffff:198.18.0.2", port: 80)
        XCTAssertEqual(IPEndpoint(mapped), IPEndpoint("198.18.0.2:80"))
    }
}

final class LinkedLibrariesTests: XCTestCase {
    func testReportsRuntimeVersions() {
        XCTAssertTrue(NGHTTP2Library.version.hasPrefix("1."), NGHTTP2Library.version)
        XCTAssertTrue(OpenSSLLibrary.version.hasPrefix("OpenSSL 3"), OpenSSLLibrary.version)
    }
}
