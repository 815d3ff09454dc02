import WeftConfig
import WeftCore

/// The request's key for a consistent-hash balancer (`hash_on`), hashed
/// with `StableHash` so every node places it alike. Nil when the request
/// has no such key: the balancer then picks at random (SPEC §5).
public enum HashKey {
    /// `header` finds a header's first value by lowercase name.
    public static func hash(_ hashOn: HashOn, header: (String) -> String?, source: IPAddress?) -> UInt64? {
        switch hashOn {
        case .header(let name):
            return header(name).map { StableHash.hash($0) }
        case .cookie(let name):
            guard let cookies = header("cookie"), let value = cookie(name, in: cookies) else { return nil }
            return StableHash.hash(value)
        case .sourceIP:
            return source.map { StableHash.hash($0.description) }
        }
    }

    /// The value of cookie `name` in a `Cookie` header (RFC 6265 §5.4:
    /// `name=value` pairs separated by `; `).
    static func cookie(_ name: String, in header: String) -> Substring? {
        for pair in header.split(separator: ";") {
            let trimmed = pair.drop { $0 == " " || $0 == "\t" }
            guard let equals = trimmed.firstIndex(of: "="), trimmed[..<equals] == name else { continue }
            return trimmed[trimmed.index(after: equals)...]
        }
        return nil
    }
}

extension StableHash {
    static func hash(_ text: Substring, seed: UInt64 = 0) -> UInt64 {
        hash(text.utf8, seed: seed)
    }
}
