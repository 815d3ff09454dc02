import Foundation
import XCTest

/// Compares text with a file in the source tree; `UPDATE_GOLDEN=1` rewrites
/// the file instead. Files are read and written through `#filePath`, so an
/// update lands in the repository, not in the built bundle.
enum GoldenFile {
    static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let goldenDirectory = testsDirectory.appendingPathComponent("Golden")
    /// The repository's `iptables/` directory.
    static let iptablesDirectory = testsDirectory.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("iptables")

    static var updating: Bool { ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" }

    static func assertMatches(_ actual: String, _ url: URL, file: StaticString = #filePath, line: UInt = #line) {
        if updating {
            XCTAssertNoThrow(try Data(actual.utf8).write(to: url), file: file, line: line)
            return
        }
        guard let expected = try? String(contentsOf: url, encoding: .utf8) else {
            XCTFail("\(url.path) is missing; run UPDATE_GOLDEN=1 swift test to create it", file: file, line: line)
            return
        }
        guard actual != expected else { return }
        XCTFail("\(url.lastPathComponent) differs (UPDATE_GOLDEN=1 rewrites it if intended): "
                + firstDifference(expected, actual), file: file, line: line)
    }

    /// `line N: expected "...", got "..."`.
    static func firstDifference(_ expected: String, _ actual: String) -> String {
        let a = expected.components(separatedBy: "\n"), b = actual.components(separatedBy: "\n")
        for index in 0..<max(a.count, b.count) {
            let left = index < a.count ? a[index] : "<end>", right = index < b.count ? b[index] : "<end>"
            if left != right { return "line \(index + 1): expected \"\(left)\", got \"\(right)\"" }
        }
        return "same lines"
    }
}
