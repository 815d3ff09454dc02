import XCTest
@testable import WeftIPTables

final class IPv6SupportTests: XCTestCase {
    private func enabled(_ files: [String: String]) -> Bool {
        IPv6Support.kernelEnabled { files[$0] }
    }

    func testKernelIPv6Detection() {
        let addresses = "00000000000000000000000000000001 01 80 10 80       lo\n"
        XCTAssertTrue(enabled(["/proc/net/if_inet6": addresses]))
        XCTAssertTrue(enabled(["/proc/net/if_inet6": "", "/proc/sys/net/ipv6/conf/all/disable_ipv6": "0\n"]))
        XCTAssertFalse(enabled(["/proc/net/if_inet6": "", "/proc/sys/net/ipv6/conf/all/disable_ipv6": "1\n"]))
        XCTAssertFalse(enabled([:]))
    }
}
