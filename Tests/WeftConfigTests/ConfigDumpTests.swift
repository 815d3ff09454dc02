import Foundation
import XCTest
@testable import WeftConfig

/// `/config_dump`'s rendering: every setting, defaults included, in the
/// file's names and duration notation.
final class ConfigDumpTests: XCTestCase {
    func testEverySettingIsThereWithDefaultsInTheFilesNotation() throws {
        let configuration = try ConfigLoader.load(yaml: """
            node: { id: client }
            clusters:
              - name: backend
                addresses: ["198.19.0.1:80"]
                mesh: true
                retries: { attempts: 3, on: ["503", reset] }
                endpoints: [{ address: "198.18.0.10:8080", weight: 2 }]
            """)
        let text = ConfigDump.json(configuration, version: 3)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(object["version"] as? Int, 3)
        let config = try XCTUnwrap(object["config"] as? [String: Any])
        XCTAssertEqual((config["node"] as? [String: Any])?["id"] as? String, "client")
        let listeners = try XCTUnwrap(config["listeners"] as? [String: Any])
        let admin = try XCTUnwrap(listeners["admin"] as? [String: Any])
        XCTAssertEqual(admin["address"] as? String, "127.0.0.1")
        XCTAssertEqual(admin["port"] as? Int, 15000)
        let cluster = try XCTUnwrap((config["clusters"] as? [[String: Any]])?.first)
        XCTAssertEqual(cluster["name"] as? String, "backend")
        XCTAssertEqual(cluster["addresses"] as? [String], ["198.19.0.1:80"])
        XCTAssertEqual(cluster["lb"] as? String, "round_robin")
        XCTAssertEqual(cluster["timeouts"] as? [String: String], ["connect": "5s", "request": "15s", "idle": "1h"])
        XCTAssertTrue(cluster["rate_limit"] is NSNull, "an unset policy is null, not missing")
        let retries = try XCTUnwrap(cluster["retries"] as? [String: Any])
        XCTAssertEqual(retries["attempts"] as? Int, 3)
        XCTAssertEqual(retries["budget_percent"] as? Int, 20)
        let endpoint = try XCTUnwrap((cluster["endpoints"] as? [[String: Any]])?.first)
        XCTAssertEqual(endpoint["address"] as? String, "198.18.0.10:8080")
        XCTAssertEqual(endpoint["weight"] as? Int, 2)
    }

    func testDurationsAndNamesReadAsInTheFile() {
        XCTAssertEqual(ConfigDump.format(.milliseconds(250)), "250ms")
        XCTAssertEqual(ConfigDump.format(.milliseconds(1500)), "1500ms")
        XCTAssertEqual(ConfigDump.format(.seconds(15)), "15s")
        XCTAssertEqual(ConfigDump.format(.seconds(300)), "5m")
        XCTAssertEqual(ConfigDump.format(.seconds(7200)), "2h")
        XCTAssertEqual(ConfigDump.format(.zero), "0ms")
        XCTAssertEqual(ConfigDump.snakeCase("maxEjectionPercent"), "max_ejection_percent")
        XCTAssertEqual(ConfigDump.snakeCase("proxyUID"), "proxy_uid")
        XCTAssertEqual(ConfigDump.snakeCase("kubernetesAPI"), "kubernetes_api")
        XCTAssertEqual(ConfigDump.snakeCase("kubernetesAPIServer"), "kubernetes_api_server")
        XCTAssertEqual(ConfigDump.snakeCase("caFile"), "ca_file")
    }
}
