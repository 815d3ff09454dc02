#if canImport(Glibc)
import Glibc
#endif

/// A header block as bytes, in one buffer: each field is a record of its
/// name's and value's lengths (4 bytes each, little-endian) followed by the
/// name's and the value's bytes.
///
/// A block received from nghttp2 is copied in from its callbacks with no
/// String made; a block to send is handed to nghttp2 as pointers into the
/// buffer. The fields read as `HTTP2Header`s (their Strings made on each
/// access); the paths every request takes read bytes (`forEach`,
/// `withField`, `first(name:)`).
///
/// Indices are record offsets, so `fields[0]` does not compile: use
/// `first`, `startIndex` or iteration.
/// Sendable as `Array` is: the storage is copied before a write whenever
/// another value shares it, so no two values write or see writes at once.
public struct HTTP2Fields: @unchecked Sendable {
    /// The records; nil until the first field (or a capacity) is asked for.
    @usableFromInline var storage: FieldBytes?
    /// How many bytes of `storage` the records fill.
    @usableFromInline var byteCount: Int
    /// The number of fields.
    public private(set) var count: Int
    /// Whether every name is known to be lower-case, as HTTP/2 wants them:
    /// then nghttp2 may send them from these bytes without lower-casing a
    /// copy. Names from weft's parsers and from nghttp2 are; a name of
    /// unknown case is checked as it is appended.
    public private(set) var namesAreLowercase: Bool

    @usableFromInline static let recordHeader = 8

    public init() {
        storage = nil
        byteCount = 0
        count = 0
        namesAreLowercase = true
    }

    /// Empty, with room for `fields` fields of `bytes` name and value bytes
    /// in all.
    public init(capacity fields: Int, bytes: Int) {
        self.init()
        let capacity = fields * Self.recordHeader + bytes
        if capacity > 0 { storage = FieldBytes.make(capacity: capacity) }
    }

    public init(_ headers: some Sequence<HTTP2Header>) {
        self.init()
        for header in headers { append(header) }
    }

    // MARK: appending

    /// Appends a field from raw bytes, its name in any case.
    public mutating func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        if namesAreLowercase && name.contains(where: Self.isUppercase) { namesAreLowercase = false }
        appendRecord(name: name, value: value)
    }

    /// Appends a field whose name the caller knows to be lower-case: one
    /// nghttp2 delivered (it refuses any other), or a literal.
    public mutating func append(lowercaseName name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        assert(!name.contains(where: Self.isUppercase), "an upper-case name")
        appendRecord(name: name, value: value)
    }

    private mutating func appendRecord(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        appendRecord(name: name, value: value) { target, name in
            if let from = name.baseAddress { target.copyMemory(from: from, byteCount: name.count) }
        }
    }

    /// Appends one record: its header, the name as `copyName` writes it
    /// (into room for `name.count` bytes), the value.
    @inline(__always)
    private mutating func appendRecord(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
                                       copyName: (UnsafeMutableRawPointer, UnsafeRawBufferPointer) -> Void) {
        let size = Self.recordHeader + name.count + value.count
        let base = reserve(size)
        base.storeBytes(of: UInt32(truncatingIfNeeded: name.count).littleEndian, as: UInt32.self)
        (base + 4).storeBytes(of: UInt32(truncatingIfNeeded: value.count).littleEndian, as: UInt32.self)
        copyName(base + Self.recordHeader, name)
        if let from = value.baseAddress {
            (base + Self.recordHeader + name.count).copyMemory(from: from, byteCount: value.count)
        }
        byteCount += size
        count += 1
    }

    private static func isUppercase(_ byte: UInt8) -> Bool { byte &- UInt8(ascii: "A") < 26 }

    /// Appends a field whose name is lower-cased on the way in (an HTTP/1
    /// name, as HTTP/2 wants it).
    public mutating func append(lowercasing name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        appendRecord(name: name, value: value) { nameTarget, name in Self.writeLowercased(name, to: nameTarget) }
    }

    /// `name` lower-cased into `nameTarget`.
    @inline(__always)
    private static func writeLowercased(_ name: UnsafeRawBufferPointer, to nameTarget: UnsafeMutableRawPointer) {
        let length = name.count
        if length >= 8, let source = name.baseAddress {
            // Eight bytes at a time, the last word overlapping the one
            // before when the length is no multiple of eight.
            var offset = 0
            while true {
                let word = source.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                nameTarget.storeBytes(of: Self.lowercased(word), toByteOffset: offset, as: UInt64.self)
                if offset == length - 8 { break }
                offset = Swift.min(offset + 8, length - 8)
            }
        } else {
            // The storage's bytes are bound to UInt8 (its elements).
            let lowered = nameTarget.assumingMemoryBound(to: UInt8.self)
            for index in 0..<length {
                let byte = name[index]
                lowered[index] = isUppercase(byte) ? byte | 0x20 : byte
            }
        }
    }

    /// `word`'s eight bytes with each ASCII upper-case letter lower-cased
    /// (any other byte, 0x80 and up too, as it is).
    @inline(__always)
    static func lowercased(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        // Each lane's low seven bits, so that no sum carries into the next.
        let low = word & (ones &* 0x7F)
        let atLeastA = low &+ ones &* (0x80 - 0x41)
        let pastZ = low &+ ones &* (0x80 - 0x5B)
        let upper = atLeastA & ~pastZ & ~word & (ones &* 0x80)
        return word | (upper >> 2)
    }

    /// Where `size` more bytes go: the storage made this value's own, with
    /// room (doubling) for them.
    @inline(__always)
    private mutating func reserve(_ size: Int) -> UnsafeMutableRawPointer {
        let needed = byteCount + size
        // Checked before `storage` is bound to a local, which would be a
        // second reference.
        if isKnownUniquelyReferenced(&storage), let storage, storage.header >= needed {
            return storage.bytes + byteCount
        }
        return grow(to: needed)
    }

    /// The storage copied into a new one with room for `needed` bytes.
    @inline(never)
    private mutating func grow(to needed: Int) -> UnsafeMutableRawPointer {
        let grown = FieldBytes.make(capacity: Swift.max(needed, 2 * byteCount, 64))
        if let storage, byteCount > 0 { grown.bytes.copyMemory(from: storage.bytes, byteCount: byteCount) }
        storage = grown
        return grown.bytes + byteCount
    }

    /// The records' bytes.
    @inlinable
    func withRecords<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        guard let storage else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try withExtendedLifetime(storage) {
            try body(UnsafeRawBufferPointer(start: storage.bytes, count: byteCount))
        }
    }

    public mutating func append(name: String, value: String) {
        // A native String's bytes are contiguous: `withUTF8` copies none.
        var name = name, value = value
        name.withUTF8 { name in
            value.withUTF8 { value in append(name: UnsafeRawBufferPointer(name), value: UnsafeRawBufferPointer(value)) }
        }
    }

    public mutating func append(_ header: HTTP2Header) {
        append(name: header.name, value: header.value)
    }

    /// Appends every field of `other`.
    public mutating func append(contentsOf other: HTTP2Fields) {
        other.withRecords { appendRecords($0, count: other.count, namesAreLowercase: other.namesAreLowercase) }
    }

    /// What ``append(from:_:)`` does with one field of the other block.
    @frozen
    public enum Transfer {
        case keep, drop
        /// The field goes on with this value instead.
        case replaceValue(StaticString)
    }

    /// Appends the fields of `other` as `decide` says, in order. Each run
    /// of kept fields is copied at once, as the bytes they are, so a block
    /// that mostly goes on unchanged costs a copy or two, not one append a
    /// field.
    /// Inlinable, so that `decide` is inlined into its caller.
    @inlinable
    public mutating func append(from other: HTTP2Fields,
                                _ decide: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Transfer) {
        guard let source = other.storage, other.byteCount > 0 else { return }
        // `other` may share this block's storage, which an append can
        // replace: its records are read through their own reference.
        withExtendedLifetime(source) {
            let raw = UnsafeRawBufferPointer(start: source.bytes, count: other.byteCount)
            var runStart = 0, runCount = 0, offset = 0
            while offset < raw.count {
                let (name, value, next) = Self.record(in: raw, at: offset)
                let transfer = decide(name, value)
                if case .keep = transfer {
                    runCount += 1
                } else {
                    // The run ends before this field.
                    appendRecords(UnsafeRawBufferPointer(rebasing: raw[runStart..<offset]), count: runCount,
                                  namesAreLowercase: other.namesAreLowercase)
                    if case .replaceValue(let replacement) = transfer {
                        append(name: name, value: UnsafeRawBufferPointer(replacement))
                    }
                    runStart = next
                    runCount = 0
                }
                offset = next
            }
            appendRecords(UnsafeRawBufferPointer(rebasing: raw[runStart..<raw.count]), count: runCount,
                          namesAreLowercase: other.namesAreLowercase)
        }
    }

    /// Appends `count` whole records, from a block whose names are all
    /// lower-case or not.
    @usableFromInline
    mutating func appendRecords(_ records: UnsafeRawBufferPointer, count: Int, namesAreLowercase lowercase: Bool) {
        if !lowercase && count > 0 { namesAreLowercase = false }
        if let from = records.baseAddress, records.count > 0 {
            reserve(records.count).copyMemory(from: from, byteCount: records.count)
            byteCount += records.count
        }
        self.count += count
    }

    // MARK: reading bytes

    /// Calls `body` with each field's name and value bytes, in order.
    @inlinable
    public func forEach(_ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Void)
        rethrows {
        try withRecords { raw in
            var offset = 0
            while offset < raw.count {
                let (name, value, next) = Self.record(in: raw, at: offset)
                try body(name, value)
                offset = next
            }
        }
    }

    /// The first non-nil result of `body` for the fields in order (the walk
    /// stops there), or nil.
    @inlinable
    public func firstResult<R>(_ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> R?) -> R? {
        withRecords { raw in
            var offset = 0
            while offset < raw.count {
                let (name, value, next) = Self.record(in: raw, at: offset)
                if let result = body(name, value) { return result }
                offset = next
            }
            return nil
        }
    }

    /// Calls `body` with the name and value bytes of the field at `index`.
    @inlinable
    public func withField<R>(at index: Index,
                             _ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> R)
        rethrows -> R {
        try withRecords { raw in
            let (name, value, _) = Self.record(in: raw, at: index.offset)
            return try body(name, value)
        }
    }

    @inlinable
    static func record(in raw: UnsafeRawBufferPointer, at offset: Int)
        -> (name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, next: Int) {
        let place = recordPlace(in: raw, at: offset)
        return (UnsafeRawBufferPointer(rebasing: raw[place.name]), UnsafeRawBufferPointer(rebasing: raw[place.value]),
                place.value.upperBound)
    }

    /// Where the name and the value of the record at `offset` lie.
    @inlinable
    static func recordPlace(in raw: UnsafeRawBufferPointer, at offset: Int) -> (name: Range<Int>, value: Range<Int>) {
        let nameCount = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        let valueCount = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)))
        let nameStart = offset + recordHeader
        let valueStart = nameStart + nameCount
        return (nameStart..<valueStart, valueStart..<(valueStart + valueCount))
    }

    /// The value of the first field named `name` (lower case), or nil.
    public func first(name: String) -> String? {
        var name = name
        return name.withUTF8 { wanted in
            firstResult { fieldName, value in
                fieldName.equals(UnsafeRawBufferPointer(wanted)) ? String(decoding: value, as: UTF8.self) : nil
            }
        }
    }

    /// The value of the first field named `name`, from static text (lower
    /// case), or nil: a String is made only of a value found.
    public func first(lowercaseName name: StaticString) -> String? {
        let wanted = UnsafeRawBufferPointer(name)
        return firstResult { fieldName, value in
            fieldName.equals(wanted) ? String(decoding: value, as: UTF8.self) : nil
        }
    }

    /// Whether a field is named `name`, from static text (lower case).
    public func contains(lowercaseName name: StaticString) -> Bool {
        let wanted = UnsafeRawBufferPointer(name)
        return firstResult { fieldName, _ in fieldName.equals(wanted) ? true : nil } ?? false
    }

    /// Whether a field is named `name` (lower case).
    public func contains(name: String) -> Bool {
        var name = name
        return name.withUTF8 { wanted in
            firstResult { fieldName, _ in fieldName.equals(UnsafeRawBufferPointer(wanted)) ? true : nil } ?? false
        }
    }

    /// The fields for which `isIncluded` (given name and value bytes) is
    /// true, copied as bytes.
    public func filter(_ isIncluded: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool)
        -> HTTP2Fields {
        var kept = HTTP2Fields(capacity: 0, bytes: byteCount)
        forEach { name, value in
            if isIncluded(name, value) { kept.append(name: name, value: value) }
        }
        return kept
    }

    /// Names and values in bytes, with HPACK's 32 per field (RFC 7541 §4.1).
    public var listSize: Int { byteCount + count * (32 - Self.recordHeader) }
}

extension HTTP2Fields: BidirectionalCollection {
    /// A field's place: its record's offset in the storage.
    public struct Index: Comparable, Hashable, Sendable {
        @usableFromInline let offset: Int
        @usableFromInline init(offset: Int) { self.offset = offset }
        public static func < (lhs: Index, rhs: Index) -> Bool { lhs.offset < rhs.offset }
    }

    public var startIndex: Index { Index(offset: 0) }
    public var endIndex: Index { Index(offset: byteCount) }
    public var isEmpty: Bool { count == 0 }

    public func index(after i: Index) -> Index {
        withRecords { Index(offset: Self.record(in: $0, at: i.offset).next) }
    }

    /// Records have no backward link: this walks from the start (rarely
    /// used; `last` does).
    public func index(before i: Index) -> Index {
        var previous = startIndex
        var current = startIndex
        while current < i {
            previous = current
            current = index(after: current)
        }
        return previous
    }

    public func distance(from start: Index, to end: Index) -> Int {
        if start == startIndex && end == endIndex { return count }
        var steps = 0
        var index = Swift.min(start, end)
        while index < Swift.max(start, end) {
            index = self.index(after: index)
            steps += 1
        }
        return start <= end ? steps : -steps
    }

    public func index(_ i: Index, offsetBy distance: Int) -> Index {
        if distance >= 0 {
            var index = i
            for _ in 0..<distance { index = self.index(after: index) }
            return index
        }
        var index = i
        for _ in 0..<(-distance) { index = self.index(before: index) }
        return index
    }

    public subscript(position: Index) -> HTTP2Header {
        withField(at: position) { name, value in
            HTTP2Header(HTTP2Header.name(from: name), String(decoding: value, as: UTF8.self))
        }
    }
}

extension HTTP2Fields: RangeReplaceableCollection {
    public mutating func replaceSubrange<C: Collection>(_ subrange: Range<Index>, with newElements: C)
        where C.Element == HTTP2Header {
        var rebuilt = HTTP2Fields(capacity: 0, bytes: byteCount)
        withRecords { raw in
            rebuilt.appendRecords(UnsafeRawBufferPointer(rebasing: raw[..<subrange.lowerBound.offset]),
                                  count: distance(from: startIndex, to: subrange.lowerBound),
                                  namesAreLowercase: namesAreLowercase)
            for header in newElements { rebuilt.append(header) }
            rebuilt.appendRecords(UnsafeRawBufferPointer(rebasing: raw[subrange.upperBound.offset...]),
                                  count: count - distance(from: startIndex, to: subrange.upperBound),
                                  namesAreLowercase: namesAreLowercase)
        }
        self = rebuilt
    }
}

extension HTTP2Fields: Hashable {
    public static func == (lhs: HTTP2Fields, rhs: HTTP2Fields) -> Bool {
        lhs.count == rhs.count && lhs.withRecords { left in rhs.withRecords { right in left.equals(right) } }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        withRecords { hasher.combine(bytes: $0) }
    }
}

extension HTTP2Fields: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: HTTP2Header...) {
        self.init(elements)
    }
}

extension HTTP2Fields: CustomStringConvertible {
    public var description: String { "[" + map(\.description).joined(separator: ", ") + "]" }
}

/// The storage of `HTTP2Fields`: its header is its capacity in bytes.
@usableFromInline
final class FieldBytes: ManagedBuffer<Int, UInt8> {
    static func make(capacity: Int) -> FieldBytes {
        let made = create(minimumCapacity: capacity) { _ in capacity }
        return unsafeDowncast(made, to: FieldBytes.self)
    }

    /// The first byte; stable while the buffer lives.
    @inlinable
    var bytes: UnsafeMutableRawPointer {
        withUnsafeMutablePointerToElements { UnsafeMutableRawPointer($0) }
    }
}

extension UnsafeRawBufferPointer {
    /// The bytes of `text` (a literal's: they live as long as the program).
    @inlinable
    public init(_ text: StaticString) {
        self.init(start: text.utf8Start, count: text.utf8CodeUnitCount)
    }

    /// Whether these bytes begin with `prefix`.
    @inlinable
    public func hasPrefix(_ prefix: StaticString) -> Bool {
        guard count >= prefix.utf8CodeUnitCount, let base = baseAddress else { return prefix.utf8CodeUnitCount == 0 }
        return memcmp(base, prefix.utf8Start, prefix.utf8CodeUnitCount) == 0
    }

    /// Whether these bytes are `other`'s.
    @inlinable
    public func equals(_ other: UnsafeRawBufferPointer) -> Bool {
        guard count == other.count else { return false }
        guard count > 0, let base = baseAddress, let otherBase = other.baseAddress else { return true }
        return memcmp(base, otherBase, count) == 0
    }

    /// Whether these bytes spell `text` exactly.
    @inlinable
    public func equals(_ text: StaticString) -> Bool {
        guard count == text.utf8CodeUnitCount, let base = baseAddress else { return count == 0 && text.utf8CodeUnitCount == 0 }
        return memcmp(base, text.utf8Start, count) == 0
    }
}
