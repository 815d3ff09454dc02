import XCTest
import WeftUpstream
@testable import WeftProxy

/// The `x-request-id` weft makes: 15 characters of [0-9A-Za-z], every
/// character as likely in every place.
final class RequestIDTests: XCTestCase {
    func testIDsAreFifteenAlphanumericsSpreadEvenlyOverEveryPlace() {
        var random = SplitMix64(seed: 12_345)
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
        let draws = 31_000  // 500 expected per character and place
        var counts = [[Int]](repeating: [Int](repeating: 0, count: 62), count: 15)
        var seen = Set<String>()
        var repeatedNeighbours = 0
        for _ in 0..<draws {
            let id = LoopServices.requestID(using: &random)
            XCTAssertEqual(id.utf8.count, 15)
            repeatedNeighbours += zip(id.utf8, id.utf8.dropFirst()).filter { $0 == $1 }.count
            for (place, byte) in id.utf8.enumerated() {
                guard let character = alphabet.firstIndex(of: byte) else { return XCTFail("\(id) is not alphanumeric") }
                counts[place][character] += 1
            }
            seen.insert(id)
        }
        XCTAssertEqual(seen.count, draws, "no id repeats")
        // Neighbours are independent: the same character twice in a row
        // one time in 62 (7,000 of the 434,000 pairs).
        XCTAssertTrue((6_000...8_000).contains(repeatedNeighbours), "\(repeatedNeighbours) repeated neighbours")
        for (place, spread) in counts.enumerated() {
            // 500 expected; a fair draw stays well within 400...600 (about
            // 4.5 standard deviations), a skewed place does not.
            XCTAssertGreaterThan(spread.min() ?? 0, 400, "place \(place): \(spread)")
            XCTAssertLessThan(spread.max() ?? .max, 600, "place \(place): \(spread)")
        }
    }
}
