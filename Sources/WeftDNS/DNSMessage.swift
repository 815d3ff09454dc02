/// The little of the DNS wire format (RFC 1035) weft needs to answer for
/// cluster hostnames: a query's header and first question, read without
/// trusting a byte, and an answer built from them. Anything else is passed
/// on to the upstream resolver as it came, unread.
public struct DNSQuery: Equatable, Sendable {
    public let id: UInt16
    /// Header flags as sent (RD is echoed in the answer).
    public let flags: UInt16
    /// The question's name, lowercased, without the root's trailing dot.
    public let name: String
    public let type: UInt16
    public let qclass: UInt16
    /// The question's bytes on the wire (name, type, class), to echo.
    public let question: ArraySlice<UInt8>

    public static let typeA: UInt16 = 1
    public static let typeAAAA: UInt16 = 28
    public static let classIN: UInt16 = 1

    public enum ParseError: Error, Equatable {
        case tooShort
        case notAQuery
        case noQuestion
        case badName
    }

    /// Parses a message that should be a standard query with at least one
    /// question. Names in queries are plain labels; a compression pointer
    /// there is refused rather than followed.
    public init(parsing bytes: [UInt8]) throws(ParseError) {
        guard bytes.count >= 12 else { throw .tooShort }
        let flags = UInt16(bytes[2]) << 8 | UInt16(bytes[3])
        // QR must be 0 (a query) and OPCODE 0 (QUERY).
        guard flags & 0x8000 == 0, (flags >> 11) & 0xF == 0 else { throw .notAQuery }
        let questions = UInt16(bytes[4]) << 8 | UInt16(bytes[5])
        guard questions >= 1 else { throw .noQuestion }
        var index = 12
        var labels: [String] = []
        var nameBytes = 0
        while true {
            guard index < bytes.count else { throw .badName }
            let length = Int(bytes[index])
            index += 1
            if length == 0 { break }
            // 0xC0: a compression pointer; 0x40, 0x80: reserved label types.
            guard length <= 63, index + length <= bytes.count else { throw .badName }
            nameBytes += length + 1
            guard nameBytes <= 255 else { throw .badName }
            // A dot inside a label, or a byte past ASCII, is legal on the
            // wire but in no hostname of ours (IDNs travel as punycode):
            // such a name is not read, so it goes upstream as it came.
            guard !bytes[index..<index + length].contains(where: { $0 == UInt8(ascii: ".") || $0 >= 0x80 }) else {
                throw .badName
            }
            labels.append(String(decoding: bytes[index..<index + length], as: UTF8.self).lowercased())
            index += length
        }
        guard index + 4 <= bytes.count else { throw .tooShort }
        self.id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        self.flags = flags
        self.name = labels.joined(separator: ".")
        self.type = UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1])
        self.qclass = UInt16(bytes[index + 2]) << 8 | UInt16(bytes[index + 3])
        self.question = bytes[12..<index + 4]
    }

    /// The answer to this query: NOERROR with `addresses` (4 or 16 bytes
    /// each, all of the question's type) as records of `ttl` seconds; none
    /// is NODATA (the name exists, not with that type).
    public func answer(addresses: [[UInt8]], ttl: UInt32) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(12 + question.count + addresses.count * 28)
        out += [UInt8(id >> 8), UInt8(id & 0xFF)]
        // QR, AA, RD as asked, RA; RCODE 0.
        let answerFlags: UInt16 = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080
        out += [UInt8(answerFlags >> 8), UInt8(answerFlags & 0xFF)]
        out += [0, 1]  // QDCOUNT: the one question answered
        out += [UInt8(addresses.count >> 8), UInt8(addresses.count & 0xFF)]
        out += [0, 0, 0, 0]  // NSCOUNT, ARCOUNT
        out += question
        for address in addresses {
            out += [0xC0, 12]  // the name: a pointer to the question's
            out += [UInt8(type >> 8), UInt8(type & 0xFF), 0, 1]
            out += [UInt8(ttl >> 24), UInt8(ttl >> 16 & 0xFF), UInt8(ttl >> 8 & 0xFF), UInt8(ttl & 0xFF)]
            out += [UInt8(address.count >> 8), UInt8(address.count & 0xFF)]
            out += address
        }
        return out
    }
}
