import WeftConfig
import XCTest

final class DurationParserTests: XCTestCase {
    func testAccepted() throws {
        let table: [(String, Duration)] = [
            ("250ms", .milliseconds(250)),
            ("1ms", .milliseconds(1)),
            ("5s", .seconds(5)),
            ("1.5s", .milliseconds(1500)),
            ("0.25s", .milliseconds(250)),
            ("0.5ms", .microseconds(500)),
            ("1m", .seconds(60)),
            ("1.5m", .seconds(90)),
            ("1h", .seconds(3600)),
            ("24h", .seconds(86_400)),
            ("0.000001s", .microseconds(1)),
            ("007s", .seconds(7)),
        ]
        for (text, expected) in table {
            XCTAssertEqual(try DurationParser.parse(text), expected, text)
        }
    }

    func testRefused() {
        let table: [(String, DurationParseError)] = [
            ("5", .missingUnit),
            ("1.5", .missingUnit),
            ("", .notANumber),
            ("s", .notANumber),
            ("abc", .notANumber),
            (".5s", .notANumber),
            ("1.s", .notANumber),
            ("1.2.3s", .notANumber),
            ("5sec", .unknownUnit("sec")),
            ("5 s", .unknownUnit(" s")),
            ("5d", .unknownUnit("d")),
            ("5S", .unknownUnit("S")),
            ("1m30s", .unknownUnit("m30s")),
            ("0s", .notPositive),
            ("0.0ms", .notPositive),
            ("-1s", .notPositive),
            ("99999999999h", .tooLarge),
            ("9999999999999999999s", .tooLarge),
            ("1.0000001s", .tooPrecise),
        ]
        for (text, expected) in table {
            XCTAssertThrowsError(try DurationParser.parse(text), text) { error in
                XCTAssertEqual(error as? DurationParseError, expected, text)
            }
        }
    }
}
