import NIOHTTP1
import XCTest
@testable import WeftProxy

/// Which app requests the outbound handler treats as an Upgrade (carried
/// as a tunnel rather than a request).
final class UpgradeRequestTests: XCTestCase {
    private func head(_ headers: [(String, String)], method: HTTPMethod = .GET) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: method, uri: "/", headers: HTTPHeaders(headers))
    }

    func testOnlyAnUpgradeNamedInConnectionIsAnUpgrade() {
        XCTAssertTrue(OutboundHTTPHandler.isUpgradeRequest(head([("Connection", "Upgrade"), ("Upgrade", "websocket")])))
        XCTAssertTrue(OutboundHTTPHandler.isUpgradeRequest(head([("Connection", "keep-alive, upgrade"), ("Upgrade", "h2c")])))
        XCTAssertFalse(OutboundHTTPHandler.isUpgradeRequest(head([("Upgrade", "foo/1")])))
        XCTAssertFalse(OutboundHTTPHandler.isUpgradeRequest(head([("Connection", "keep-alive"), ("Upgrade", "foo/1")])))
        XCTAssertFalse(OutboundHTTPHandler.isUpgradeRequest(head([("Connection", "upgrade")])))
    }
}
