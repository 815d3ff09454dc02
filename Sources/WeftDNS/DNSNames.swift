/// Which names weft answers itself: each cluster hostname, as asked and with
/// each search domain of the host's resolver appended (the stub resolver
/// tries those first for a short name), mapped to the cluster's first VIP
/// of each family.
public struct DNSNames: Sendable, Equatable {
    public struct Addresses: Sendable, Equatable {
        public var v4: [UInt8]?
        public var v6: [UInt8]?
        public init(v4: [UInt8]? = nil, v6: [UInt8]? = nil) {
            self.v4 = v4
            self.v6 = v6
        }
    }

    private var table: [String: Addresses] = [:]

    public init() {}

    /// Adds `hostname` (and `hostname.<domain>` for each search domain).
    public mutating func add(_ hostname: String, _ addresses: Addresses, searchDomains: [String]) {
        let name = Self.normalized(hostname)
        guard !name.isEmpty else { return }
        table[name] = table[name] ?? addresses
        for domain in searchDomains.map(Self.normalized) where !domain.isEmpty {
            let long = "\(name).\(domain)"
            table[long] = table[long] ?? addresses
        }
    }

    /// The addresses for `name`, if weft answers it.
    public func lookup(_ name: String) -> Addresses? {
        table[Self.normalized(name)]
    }

    public var isEmpty: Bool { table.isEmpty }

    static func normalized(_ name: String) -> String {
        var name = name.lowercased()
        while name.hasSuffix(".") { name.removeLast() }
        return name
    }
}

/// What /etc/resolv.conf says: the nameservers and the search domains.
public struct ResolvConf: Sendable, Equatable {
    public var nameservers: [String] = []
    public var search: [String] = []

    public init(text: String) {
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let key = words.first, !key.hasPrefix("#"), !key.hasPrefix(";") else { continue }
            switch key {
            case "nameserver": if words.count > 1 { nameservers.append(words[1]) }
            case "search", "domain": search = Array(words.dropFirst())
            default: break
            }
        }
    }
}
