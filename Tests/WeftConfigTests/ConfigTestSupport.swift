import WeftConfig
import XCTest

/// The problems `yaml` is refused with, one description per problem; fails
/// the test if it is accepted.
func problems(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
    do {
        _ = try ConfigLoader.load(yaml: yaml)
        XCTFail("expected the config to be refused", file: file, line: line)
        return []
    } catch {
        XCTAssertFalse(error.problems.isEmpty, "thrown with no problems", file: file, line: line)
        return error.problems.map(\.description)
    }
}

/// Asserts that `yaml` is refused with exactly `expected`, in order.
func assertProblems(_ yaml: String, _ expected: [String], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(problems(yaml, file: file, line: line), expected, file: file, line: line)
}

/// A minimal valid cluster list entry, for tests about other keys.
let oneCluster = """
    clusters:
      - name: backend
        endpoints: [{ address: "198.18.0.2:9090" }]
    """
