/// One thing wrong with a config file: where it is and what is wrong.
///
/// Printed as `clusters[0].endpoints[0].address: "198.18.0.2:99999" is not a valid IP:port`.
/// Problems about the file as a whole (unreadable, YAML syntax) have an empty path.
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    /// The key path, such as `clusters[0].endpoints[0].address`; empty for the whole file.
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String {
        path.isEmpty ? message : "\(path): \(message)"
    }
}

/// Every problem found in a config, in document order; never empty when thrown.
public struct ConfigErrors: Error, Sendable, Equatable, CustomStringConvertible {
    public var problems: [ConfigProblem]

    public init(_ problems: [ConfigProblem]) {
        self.problems = problems
    }

    /// One problem per line.
    public var description: String {
        problems.map(\.description).joined(separator: "\n")
    }
}
