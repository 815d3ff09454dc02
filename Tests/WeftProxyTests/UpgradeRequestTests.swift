import NIOHTTP1
import XCTest
import WeftMesh

/// Which app requests open a tunnel (carried as bytes on a CONNECT stream,
/// never translated): an Upgrade named in Connection, and CONNECT.
final class UpgradeRequestTests: XCTestCase {
    private func head(_ headers: [(String, String)], method: HTTPMethod = .GET) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: method, uri: "/", headers: HTTPHeaders(headers))
    }

    func testOnlyAnUpgradeNamedInConnectionIsAnUpgrade() {
        XCTAssertTrue(MeshTranslation.opensTunnel(head([("Connection", "Upgrade"), ("Upgrade", "websocket")])))
        XCTAssertTrue(MeshTranslation.opensTunnel(head([("Connection", "keep-alive, upgrade"), ("Upgrade", "h2c")])))
        XCTAssertFalse(MeshTranslation.opensTunnel(head([("Upgrade", "foo/1")])))
        XCTAssertFalse(MeshTranslation.opensTunnel(head([("Connection", "keep-alive"), ("Upgrade", "foo/1")])))
        XCTAssertFalse(MeshTranslation.opensTunnel(head([("Connection", "upgrade")])))
    }

    /// An Upgrade with a body is declined and served as a plain request.
    func testAnUpgradeWithABodyIsNotATunnel() {
        let upgrade = [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c")]
        XCTAssertFalse(MeshTranslation.opensTunnel(head(upgrade + [("Content-Length", "5")], method: .POST)))
        XCTAssertFalse(MeshTranslation.opensTunnel(head(upgrade + [("Transfer-Encoding", "chunked")], method: .POST)))
        XCTAssertTrue(MeshTranslation.opensTunnel(head(upgrade + [("Content-Length", "0")], method: .POST)))
        XCTAssertTrue(MeshTranslation.opensTunnel(head(upgrade)))
    }

    func testCONNECTOpensATunnel() {
        XCTAssertTrue(MeshTranslation.opensTunnel(head([("Host", "backend:443")], method: .CONNECT)))
        XCTAssertFalse(MeshTranslation.opensTunnel(head([("Host", "backend")], method: .POST)))
    }
}
