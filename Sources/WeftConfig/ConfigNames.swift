/// Syntax rules for names in the config: cluster names and DNS hostnames.
enum ConfigNames {
    /// `[a-z0-9]([-a-z0-9._]*[a-z0-9])?`: safe in metric labels, log lines and URLs.
    static func isClusterName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, let last = bytes.last,
              isLowerAlphanumeric(first), isLowerAlphanumeric(last) else { return false }
        return bytes.allSatisfy { isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") }
    }

    /// The hostname lowercased, without a trailing dot, if it is a valid DNS
    /// name: dot-separated labels of 1-63 letters, digits and hyphens, not
    /// starting or ending with a hyphen, 253 characters at most.
    static func dnsName(_ text: String) -> String? {
        var name = text.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        guard !name.isEmpty, name.utf8.count <= 253 else { return nil }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            let bytes = Array(label.utf8)
            guard let first = bytes.first, let last = bytes.last, bytes.count <= 63,
                  first != UInt8(ascii: "-"), last != UInt8(ascii: "-"),
                  bytes.allSatisfy({ isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }) else { return nil }
        }
        return name
    }

    /// An HTTP field name (RFC 9110 §5.1: a token), or a cookie name (the
    /// same token rule, RFC 6265 §4.1.1).
    static func isHeaderName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}
