import XCTest
import WeftCore

/// Case-insensitive comparison of field names, eight bytes at a time,
/// against the byte-at-a-time reading it replaces.
final class ASCIITextTests: XCTestCase {
    private func byteWise(_ bytes: [UInt8], _ lower: StaticString) -> Bool {
        bytes.count == lower.utf8CodeUnitCount
            && bytes.withUnsafeBufferPointer { $0.hasASCIIPrefixCaseInsensitive(lower) }
    }

    private func wordWise(_ bytes: [UInt8], _ lower: StaticString) -> Bool {
        bytes.withUnsafeBufferPointer { $0.equalsASCIICaseInsensitive(lower) }
    }

    private func check(_ lower: StaticString, file: StaticString = #filePath, line: UInt = #line) {
        let name = Array(UnsafeBufferPointer(start: lower.utf8Start, count: lower.utf8CodeUnitCount))
        XCTAssertTrue(wordWise(name, lower), file: file, line: line)
        XCTAssertTrue(wordWise(name.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }, lower), "upper case",
                      file: file, line: line)
        // Every byte value in every place: equal exactly when the bytes are.
        var mismatches = 0
        for place in name.indices {
            for value in 0...255 {
                var changed = name
                changed[place] = UInt8(value)
                if wordWise(changed, lower) != byteWise(changed, lower) { mismatches += 1 }
            }
        }
        XCTAssertEqual(mismatches, 0, "\(lower)", file: file, line: line)
        // Mixed case, one byte short, one byte long.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let mixed = name.map { $0 >= 0x61 && $0 <= 0x7A && Bool.random(using: &generator) ? $0 - 0x20 : $0 }
            XCTAssertTrue(wordWise(mixed, lower), file: file, line: line)
        }
        XCTAssertFalse(wordWise(Array(name.dropLast()), lower), file: file, line: line)
        XCTAssertFalse(wordWise(name + [0x61], lower), file: file, line: line)
    }

    func testWordWiseComparisonAgreesWithTheByteWiseOne() {
        check("a")
        check("te")
        check("host")
        check("chunked")
        check("trailers")          // eight: one word
        check("keep-alive")        // ten: two overlapping words
        check("connection")
        check("content-length")
        check("proxy-connection")  // sixteen: two whole words
        check("transfer-encoding")
        check("x-forwarded-for-0123456789")
    }

    func testOnlyLettersFoldCase() {
        // CR | 0x20 is "-", "@" | 0x20 is "`": neither matches.
        XCTAssertFalse(wordWise(Array("content\rlength".utf8), "content-length"))
        XCTAssertFalse(wordWise(Array("trailer@".utf8), "trailer`"))
        XCTAssertFalse(wordWise(Array("keep\u{0D}alive".utf8), "keep-alive"))
        XCTAssertTrue(wordWise(Array("Content-Length".utf8), "content-length"))
    }
}
