/// Byte-level reading of the ASCII text protocols are made of (field
/// names, tokens, lists), with no Unicode rules: the request path reads
/// every header of every message with these.

extension UnsafeBufferPointer<UInt8> {
    /// Starts with the ASCII `prefix`, byte for byte.
    public func hasASCIIPrefix(_ prefix: StaticString) -> Bool {
        let count = prefix.utf8CodeUnitCount
        guard self.count >= count else { return false }
        let expected = prefix.utf8Start
        for index in 0..<count where self[index] != expected[index] { return false }
        return true
    }

    /// Equal to the lower-case ASCII `lower`, in any ASCII case (field
    /// names and most tokens are case-insensitive, RFC 9110 §5.1).
    public func equalsASCIICaseInsensitive(_ lower: StaticString) -> Bool {
        let count = lower.utf8CodeUnitCount
        guard self.count == count else { return false }
        guard count >= 8, let base = baseAddress else { return hasASCIIPrefixCaseInsensitive(lower) }
        // Eight bytes at a time, the last word overlapping the one before
        // when the length is no multiple of eight.
        let expected = UnsafeRawPointer(lower.utf8Start)
        var offset = 0
        while true {
            let word = UnsafeRawPointer(base).loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            let wanted = expected.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            if word | Self.letterBits(wanted) != wanted { return false }
            if offset == count - 8 { return true }
            offset = Swift.min(offset + 8, count - 8)
        }
    }

    /// 0x20 in each byte of `word` that is a lower-case ASCII letter, 0 in
    /// the others (for ASCII bytes): the bit that folds an upper-case
    /// letter onto it, and that must match exactly anywhere else (0x0D | 0x20
    /// is `-`).
    @inline(__always)
    static func letterBits(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        // High bit of each lane: at least "a", and below "{" (past "z").
        let atLeastA = word &+ ones &* (0x80 - 0x61)
        let pastZ = word &+ ones &* (0x80 - 0x7B)
        return ((atLeastA & ~pastZ) & (ones &* 0x80)) >> 2
    }

    /// Starts with the lower-case ASCII `lower`, in any ASCII case.
    public func hasASCIIPrefixCaseInsensitive(_ lower: StaticString) -> Bool {
        let count = lower.utf8CodeUnitCount
        guard self.count >= count else { return false }
        let expected = lower.utf8Start
        for index in 0..<count {
            let byte = self[index]
            let folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            if folded != expected[index] { return false }
        }
        return true
    }
}

extension String {
    /// Starts with the ASCII `prefix`, compared byte for byte (unlike
    /// `hasPrefix`, no Unicode rules).
    public func hasASCIIPrefix(_ prefix: StaticString) -> Bool {
        guard utf8.count >= prefix.utf8CodeUnitCount else { return false }
        return utf8.withContiguousStorageIfAvailable { $0.hasASCIIPrefix(prefix) }
            ?? utf8.prefix(prefix.utf8CodeUnitCount).elementsEqual(UnsafeBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
    }

    /// Equal to the lower-case ASCII `lower` in any ASCII case, without
    /// making a lower-cased copy.
    public func equalsASCIICaseInsensitive(_ lower: StaticString) -> Bool {
        guard utf8.count == lower.utf8CodeUnitCount else { return false }
        if let equal = utf8.withContiguousStorageIfAvailable({ $0.equalsASCIICaseInsensitive(lower) }) { return equal }
        return Array(utf8).withUnsafeBufferPointer { $0.equalsASCIICaseInsensitive(lower) }
    }
}

extension String {
    /// ASCII with no upper-case letter, so `lowercased()` would give it
    /// back unchanged: a scan, where `lowercased()` builds a new string.
    public var isLowercaseASCII: Bool {
        let lower = { (byte: UInt8) in !((byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) || byte >= 0x80) }
        // Contiguous bytes when the string has them: iterating the UTF-8
        // view costs several times more.
        if let result = utf8.withContiguousStorageIfAvailable({ bytes in
            for byte in bytes where !lower(byte) { return false }
            return true
        }) { return result }
        return utf8.allSatisfy(lower)
    }
}

extension StringProtocol {
    /// Without the spaces and tabs around it.
    public var trimmingSpaces: Substring {
        let view = Substring(self)
        guard let start = view.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return view[view.endIndex...] }
        let end = view.lastIndex(where: { $0 != " " && $0 != "\t" }) ?? start
        return view[start...end]
    }
}

/// HTTP field values read as bytes (RFC 9110 §5).
public enum HTTPFieldSyntax {
    /// Space or horizontal tab: the whitespace around values and list
    /// members (OWS).
    public static func isSpaceOrTab(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")
    }

    /// Calls `body` with each member of a comma-separated list value (RFC
    /// 9110 §5.6.1), as bytes without the whitespace around it; empty
    /// members are skipped.
    public static func forEachListMember(of value: String, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        var value = value
        value.withUTF8 { forEachListMember(of: $0, body) }
    }

    /// `forEachListMember(of:_:)` of a value's bytes.
    public static func forEachListMember(of bytes: UnsafeBufferPointer<UInt8>,
                                         _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: ",") { end += 1 }
            var first = start, last = end
            while first < last && isSpaceOrTab(bytes[first]) { first += 1 }
            while last > first && isSpaceOrTab(bytes[last - 1]) { last -= 1 }
            if first < last { body(UnsafeBufferPointer(rebasing: bytes[first..<last])) }
            start = end + 1
        }
    }
}
