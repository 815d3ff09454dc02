import XCTest

@testable import WeftCore

final class SPIFFEIDTests: XCTestCase {
    func testAWorkloadIDParsesIntoTrustDomainAndPath() throws {
        let id = try SPIFFEID(parsing: "spiffe://mesh.local/ns/default/sa/frontend")
        XCTAssertEqual(id.trustDomain, "mesh.local")
        XCTAssertEqual(id.path, "ns/default/sa/frontend")
        XCTAssertEqual(id.workload?.namespace, "default")
        XCTAssertEqual(id.workload?.serviceAccount, "frontend")
        XCTAssertEqual(id.description, "spiffe://mesh.local/ns/default/sa/frontend")
        XCTAssertEqual(try SPIFFEID(trustDomain: "mesh.local", path: "ns/default/sa/frontend"), id)
    }

    func testATrustDomainIDHasNoPathAndNoWorkload() throws {
        let id = try SPIFFEID(parsing: "spiffe://mesh.local")
        XCTAssertEqual(id.path, "")
        XCTAssertNil(id.workload)
        XCTAssertEqual(id.description, "spiffe://mesh.local")
    }

    func testMalformedIDsAreRefusedWithTheirReason() {
        let cases: [(String, SPIFFEID.ParseError)] = [
            ("https://mesh.local/ns/a/sa/b", .notSPIFFE),
            ("SPIFFE://mesh.local/ns/a/sa/b", .notSPIFFE),
            ("spiffe:/mesh.local/ns/a", .notSPIFFE),
            ("spiffe:///ns/a/sa/b", .emptyTrustDomain),
            ("spiffe://Mesh.local/ns/a", .badTrustDomain("M")),
            ("spiffe://mesh.local:8443/ns/a", .badTrustDomain(":")),
            ("spiffe://user@mesh.local/ns/a", .badTrustDomain("@")),
            ("spiffe://mesh.local/", .badPathSegment("")),
            ("spiffe://mesh.local/ns//sa/b", .badPathSegment("")),
            ("spiffe://mesh.local/ns/a/sa/b/", .badPathSegment("")),
            ("spiffe://mesh.local/ns/../sa/b", .badPathSegment("..")),
            ("spiffe://mesh.local/ns/./sa/b", .badPathSegment(".")),
            ("spiffe://mesh.local/ns/a%20b", .badPathSegment("a%20b")),
            ("spiffe://mesh.local/ns/a?x=1", .badPathSegment("a?x=1")),
            ("spiffe://mesh.local/ns/a#f", .badPathSegment("a#f")),
            ("spiffe://mesh.local/ns/é", .badPathSegment("é")),
            ("spiffe://mesh.local/" + String(repeating: "a", count: 2040), .tooLong),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try SPIFFEID(parsing: text), text) { error in
                XCTAssertEqual(error as? SPIFFEID.ParseError, expected, text)
            }
        }
    }

    func testOnlyTheNamespaceAndAccountFormIsAWorkload() throws {
        XCTAssertNil(try SPIFFEID(parsing: "spiffe://mesh.local/ns/a/sa").workload)
        XCTAssertNil(try SPIFFEID(parsing: "spiffe://mesh.local/ns/a/sa/b/c").workload)
        XCTAssertNil(try SPIFFEID(parsing: "spiffe://mesh.local/ns/a/acct/b").workload)
    }
}
