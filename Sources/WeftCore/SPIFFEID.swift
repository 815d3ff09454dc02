/// A SPIFFE ID, `spiffe://<trust-domain>/<path>`, as the SPIFFE ID
/// standard spells it: a lowercase trust domain of `[a-z0-9._-]`, path
/// segments of `[A-Za-z0-9._-]` that are neither empty, `.` nor `..`, no
/// port, user info, query, fragment or percent-encoding, 2048 bytes at most.
public struct SPIFFEID: Hashable, Sendable, CustomStringConvertible {
    public let trustDomain: String
    /// The path without its leading `/`; empty for the trust domain's own ID.
    public let path: String

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case notSPIFFE
        case tooLong
        case emptyTrustDomain
        case badTrustDomain(Character)
        case badPathSegment(String)

        public var description: String {
            switch self {
            case .notSPIFFE: "does not start with spiffe://"
            case .tooLong: "longer than 2048 bytes"
            case .emptyTrustDomain: "has no trust domain"
            case .badTrustDomain(let c): "has \"\(c)\" in its trust domain (lowercase letters, digits, . - _ only)"
            case .badPathSegment(let s): "has an invalid path segment \"\(s)\""
            }
        }
    }

    public init(trustDomain: String, path: String) throws {
        try self.init(parsing: path.isEmpty ? "spiffe://\(trustDomain)" : "spiffe://\(trustDomain)/\(path)")
    }

    public init(parsing text: String) throws {
        guard text.utf8.count <= 2048 else { throw ParseError.tooLong }
        let scheme = "spiffe://"
        guard text.hasPrefix(scheme) else { throw ParseError.notSPIFFE }
        let rest = text.dropFirst(scheme.count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let domain = rest[..<slash]
        guard !domain.isEmpty else { throw ParseError.emptyTrustDomain }
        if let bad = domain.first(where: { !Self.isTrustDomainCharacter($0) }) {
            throw ParseError.badTrustDomain(bad)
        }
        var path = ""
        if slash < rest.endIndex {
            let segments = rest[rest.index(after: slash)...].split(separator: "/", omittingEmptySubsequences: false)
            for segment in segments where segment.isEmpty || segment == "." || segment == ".."
                || !segment.allSatisfy(Self.isPathCharacter) {
                throw ParseError.badPathSegment(String(segment))
            }
            path = segments.joined(separator: "/")
        }
        trustDomain = String(domain)
        self.path = path
    }

    /// The `ns/<namespace>/sa/<account>` form weft's node identities take,
    /// parsed; nil for any other path.
    public var workload: (namespace: String, serviceAccount: String)? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "ns", parts[2] == "sa" else { return nil }
        return (String(parts[1]), String(parts[3]))
    }

    public var description: String {
        path.isEmpty ? "spiffe://\(trustDomain)" : "spiffe://\(trustDomain)/\(path)"
    }

    private static func isTrustDomainCharacter(_ c: Character) -> Bool {
        guard c.isASCII else { return false }
        return ("a"..."z").contains(c) || ("0"..."9").contains(c) || c == "." || c == "-" || c == "_"
    }

    private static func isPathCharacter(_ c: Character) -> Bool {
        guard c.isASCII else { return false }
        return ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c)
            || c == "." || c == "-" || c == "_"
    }
}
