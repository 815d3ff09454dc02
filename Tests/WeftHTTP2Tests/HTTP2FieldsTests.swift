import XCTest
@testable import WeftHTTP2

/// A header block held as bytes: what goes in comes out, in order, by
/// every way of reading it, and edits keep the records whole.
final class HTTP2FieldsTests: XCTestCase {
    private let sample: [HTTP2Header] = [
        HTTP2Header(":status", "200"),
        HTTP2Header("content-type", "text/plain; charset=utf-8"),
        HTTP2Header("x-empty", ""),
        HTTP2Header("x-long", String(repeating: "v", count: 70_000)),
        HTTP2Header("set-cookie", "a=1"),
        HTTP2Header("set-cookie", "b=2"),
    ]

    func testFieldsReadBackAsTheyWereAppended() {
        let fields = HTTP2Fields(sample)
        XCTAssertEqual(fields.count, sample.count)
        XCTAssertEqual(Array(fields), sample)
        XCTAssertEqual(fields.last, sample.last)
        XCTAssertEqual(fields.reversed().map(\.name), sample.reversed().map(\.name))
        XCTAssertEqual(fields.distance(from: fields.startIndex, to: fields.endIndex), sample.count)
        let third = fields.index(fields.startIndex, offsetBy: 2)
        XCTAssertEqual(fields[third], sample[2])
        XCTAssertEqual(fields.distance(from: third, to: fields.startIndex), -2)
        XCTAssertEqual(fields.index(third, offsetBy: -2), fields.startIndex)

        var seen: [HTTP2Header] = []
        fields.forEach { name, value in
            seen.append(HTTP2Header(String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        XCTAssertEqual(seen, sample)
        XCTAssertTrue(fields.withField(at: third) { name, value in name.equals("x-empty") && value.isEmpty })
    }

    /// A name lower-cased on the way in has A–Z made a–z and every other
    /// byte kept, whatever the name's length and bytes: every byte value in
    /// every place, and random names of up to 40 bytes.
    func testANameIsLowerCasedByteForByte() {
        func expected(_ name: [UInt8]) -> [UInt8] {
            name.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 + 32 : $0 }
        }
        func lowered(_ name: [UInt8]) -> [UInt8] {
            var fields = HTTP2Fields()
            name.withUnsafeBytes { name in fields.append(lowercasing: name, value: .init("v")) }
            return fields.firstResult { name, value in value.equals("v") ? Array(name) : nil } ?? []
        }
        var names: [[UInt8]] = []
        // Every byte value in every place of names read bytewise (seven
        // bytes), in one word (eight) and in two overlapping ones (ten).
        for base in ["Content", "Content-", "Content-Ty"] {
            for byte in 0...255 {
                for place in 0..<base.utf8.count {
                    var name = Array(base.utf8)
                    name[place] = UInt8(byte)
                    names.append(name)
                }
            }
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let length = Int.random(in: 0...40, using: &generator)
            names.append((0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
        for name in names {
            XCTAssertEqual(lowered(name), expected(name), "\(name)")
        }
        XCTAssertEqual(lowered(Array("X-Forwarded-For-Original-Host".utf8)), Array("x-forwarded-for-original-host".utf8))
    }

    func testBytesAndStringsMakeTheSameBlock() {
        var fromBytes = HTTP2Fields()
        for header in sample {
            var name = header.name, value = header.value
            name.withUTF8 { name in
                value.withUTF8 { value in
                    fromBytes.append(name: UnsafeRawBufferPointer(name), value: UnsafeRawBufferPointer(value))
                }
            }
        }
        XCTAssertEqual(fromBytes, HTTP2Fields(sample))
        XCTAssertNotEqual(fromBytes, HTTP2Fields(sample.dropLast()))
        var joined = HTTP2Fields(sample.prefix(2))
        joined.append(contentsOf: HTTP2Fields(sample.dropFirst(2)))
        XCTAssertEqual(joined, fromBytes)
    }

    func testLookupsMatchWholeNamesOnly() {
        let fields = HTTP2Fields(sample)
        XCTAssertEqual(fields.first(name: "set-cookie"), "a=1")
        XCTAssertEqual(fields.first(name: "x-empty"), "")
        XCTAssertNil(fields.first(name: "set-cookie2"))
        XCTAssertNil(fields.first(name: "set-cooki"))
        XCTAssertTrue(fields.contains(name: ":status"))
        XCTAssertFalse(fields.contains(name: ":path"))
        XCTAssertTrue(fields.contains(lowercaseName: "set-cookie"))
        XCTAssertTrue(fields.contains(lowercaseName: "x-empty"))
        XCTAssertFalse(fields.contains(lowercaseName: "set-cooki"))
        XCTAssertFalse(fields.contains(lowercaseName: "set-cookie2"))
        XCTAssertEqual(fields.first(lowercaseName: "set-cookie"), "a=1")
        XCTAssertEqual(fields.first(lowercaseName: "x-empty"), "")
        XCTAssertNil(fields.first(lowercaseName: "set-cooki"))
        XCTAssertFalse(HTTP2Fields().contains(name: ":status"))
    }

    func testFilterAndEditsKeepTheRecordsWhole() {
        let fields = HTTP2Fields(sample)
        let cookies = fields.filter { name, _ in name.equals("set-cookie") }
        XCTAssertEqual(Array(cookies), Array(sample.suffix(2)))

        var edited = fields
        edited.removeAll { $0.name.hasPrefix("x-") }
        XCTAssertEqual(Array(edited), sample.filter { !$0.name.hasPrefix("x-") })
        XCTAssertEqual(edited.count, 4)
        edited.insert(HTTP2Header("x-new", "1"), at: edited.index(after: edited.startIndex))
        XCTAssertEqual(edited.map(\.name), [":status", "x-new", "content-type", "set-cookie", "set-cookie"])
        edited.remove(at: edited.startIndex)
        XCTAssertEqual(edited.first, HTTP2Header("x-new", "1"))
        XCTAssertEqual(edited.count, 4)
        XCTAssertEqual(edited.first(name: "set-cookie"), "a=1")
    }

    /// A copy is a value: writing to one leaves the other as it was, and
    /// a block grows far past its first room.
    func testAppendingFromAnotherBlockKeepsDropsAndReplacesInOrder() {
        let names = ["a", "drop-1", "b", "c", "swap", "drop-2", "d"]
        let other = HTTP2Fields(names.map { HTTP2Header($0, "v-" + $0) })
        let decide: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> HTTP2Fields.Transfer = { name, _ in
            if name.hasPrefix("drop") { return .drop }
            return name.equals("swap") ? .replaceValue("new") : .keep
        }
        var fields: HTTP2Fields = [HTTP2Header(":status", "200")]
        fields.append(from: other, decide)
        let expected = [HTTP2Header(":status", "200"), HTTP2Header("a", "v-a"), HTTP2Header("b", "v-b"),
                        HTTP2Header("c", "v-c"), HTTP2Header("swap", "new"), HTTP2Header("d", "v-d")]
        XCTAssertEqual(Array(fields), expected)
        XCTAssertEqual(fields.count, expected.count, "the count follows the records kept")
        XCTAssertEqual(fields.listSize, HTTP2Fields(expected).listSize)
        XCTAssertEqual(Array(other), names.map { HTTP2Header($0, "v-" + $0) }, "the source is left as it was")

        // Every field dropped, or none: nothing, or everything, comes over.
        var none = HTTP2Fields()
        none.append(from: other) { _, _ in .drop }
        XCTAssertEqual(none.count, 0)
        XCTAssertTrue(Array(none).isEmpty)
        var all = HTTP2Fields()
        all.append(from: other) { _, _ in .keep }
        XCTAssertEqual(Array(all), Array(other))
        all.append(from: HTTP2Fields()) { _, _ in .keep }
        XCTAssertEqual(all.count, names.count, "an empty block adds nothing")

        // From a block sharing this one's storage: the records read are the
        // ones that were there before the append.
        var twice = other
        twice.append(from: twice) { name, _ in name.hasPrefix("drop") ? .drop : .keep }
        XCTAssertEqual(Array(twice).map(\.name), names + ["a", "b", "c", "swap", "d"])
    }

    func testABlockKnowsWhetherItsNamesAreLowerCase() {
        var fields = HTTP2Fields()
        XCTAssertTrue(fields.namesAreLowercase)
        fields.append(name: "content-type", value: "Text/Plain")
        "X-Lowered".utf8.withContiguousStorageIfAvailable {
            fields.append(lowercasing: UnsafeRawBufferPointer($0), value: UnsafeRawBufferPointer($0))
        }
        XCTAssertTrue(fields.namesAreLowercase, "a value's case does not matter; a lower-cased name is lower-case")
        var copied = HTTP2Fields()
        copied.append(contentsOf: fields)
        copied.append(from: fields) { _, _ in .keep }
        XCTAssertTrue(copied.namesAreLowercase)

        var mixed = fields
        mixed.append(name: "X-Upper", value: "1")
        XCTAssertFalse(mixed.namesAreLowercase)
        XCTAssertTrue(fields.namesAreLowercase, "a copy's append leaves the original's flag")
        for build in [{ (block: inout HTTP2Fields) in block.append(contentsOf: mixed) },
                      { block in block.append(from: mixed) { _, _ in .keep } }] {
            var block = fields
            build(&block)
            XCTAssertFalse(block.namesAreLowercase, "the other block's upper-case names come along")
        }
        var none = fields
        none.append(from: mixed) { name, _ in name.equals("x-upper") || name.equals("X-Upper") ? .drop : .keep }
        XCTAssertFalse(none.namesAreLowercase, "a block's flag is for the whole block, so a part of it is not vouched for")
        mixed.removeAll { $0.name == "X-Upper" }
        XCTAssertEqual(Array(mixed), Array(fields))
        XCTAssertTrue(!mixed.namesAreLowercase || mixed.allSatisfy { $0.name == $0.name.lowercased() },
                      "an edited block vouches only for names that are lower-case")
        mixed.insert(h("Late-Upper", "1"), at: mixed.startIndex)
        XCTAssertFalse(mixed.namesAreLowercase, "an edit that brings an upper-case name in says so")
    }

    func testCopiesAreIndependentAndBlocksGrow() {
        var first = HTTP2Fields(capacity: 1, bytes: 8)
        first.append(name: "a", value: "1")
        var second = first
        second.append(name: "b", value: "2")
        first.append(name: "c", value: "3")
        XCTAssertEqual(first.map(\.name), ["a", "c"])
        XCTAssertEqual(second.map(\.name), ["a", "b"])

        var many = HTTP2Fields()
        for index in 0..<2_000 { many.append(name: "x-\(index)", value: String(repeating: "v", count: index % 50)) }
        XCTAssertEqual(many.count, 2_000)
        XCTAssertEqual(many.last, HTTP2Header("x-1999", String(repeating: "v", count: 49)))
        XCTAssertEqual(many.first(name: "x-1000"), "")
        XCTAssertEqual(Array(many).count, 2_000)
    }

    func testTheListSizeIsHPACKs() {
        let fields: HTTP2Fields = [HTTP2Header(":status", "200"), HTTP2Header("a", "")]
        XCTAssertEqual(fields.listSize, (7 + 3 + 32) + (1 + 0 + 32))
        XCTAssertEqual(HTTP2Fields().listSize, 0)
    }

    func testByteComparisons() {
        let bytes: [UInt8] = Array("weft-dst".utf8)
        bytes.withUnsafeBytes { raw in
            XCTAssertTrue(raw.equals("weft-dst"))
            XCTAssertFalse(raw.equals("weft-ds"))
            XCTAssertFalse(raw.equals("weft-dsT"))
            XCTAssertTrue(raw.hasPrefix("weft-"))
            XCTAssertTrue(raw.hasPrefix(""))
            XCTAssertFalse(raw.hasPrefix("weft-dst-"))
        }
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        XCTAssertTrue(empty.equals(""))
        XCTAssertFalse(empty.equals("a"))
        XCTAssertTrue(empty.hasPrefix(""))
        XCTAssertFalse(empty.hasPrefix("a"))
    }
}
