import WeftCore
import Yams

/// Walks the YAML tree, builds the validated values and collects every
/// problem with its path. The typed readers return nil both for an absent
/// value and for a bad one; a bad one has always been reported.
///
/// The sections are in `ConfigValidator+Document.swift` (top level, node,
/// listeners), `+Clusters.swift` and `+CrossChecks.swift`.
struct ConfigValidator {
    private var found: [(problem: ConfigProblem, mark: Mark?)] = []
    /// `listeners.egress[].cluster` values, checked once the clusters are known.
    var egressClusters: [(name: String, value: ConfigValue)] = []

    /// Every problem, in document order (by line and column of the value).
    var problems: [ConfigProblem] {
        func order(_ entry: (offset: Int, element: (problem: ConfigProblem, mark: Mark?))) -> (Int, Int, Int) {
            (entry.element.mark?.line ?? .max, entry.element.mark?.column ?? .max, entry.offset)
        }
        return found.enumerated().sorted { order($0) < order($1) }.map(\.element.problem)
    }

    /// A problem with `value`.
    mutating func report(_ value: ConfigValue, _ message: String) {
        report(value.path, near: value.node, message)
    }

    /// A problem at `path`, sorted where `node` is in the document.
    mutating func report(_ path: ConfigPath, near node: Node?, _ message: String) {
        found.append((ConfigProblem(path: path.description, message: message), node?.mark))
    }

    // MARK: Structure

    /// The entries of a mapping, after checking its keys: a key not in
    /// `keys` is a problem.
    mutating func mapping(_ value: ConfigValue?, keys: [String]) -> Fields? {
        guard let value else { return nil }
        guard case .mapping(let mapping) = value.node else {
            let what = value.path == .root ? "expected a mapping at the top level" : "expected a mapping"
            report(value, "\(what), got \(value.node.shown)")
            return nil
        }
        var entries: [String: ConfigValue] = [:]
        for (keyNode, node) in mapping {
            guard case .scalar = keyNode, let key = keyNode.scalarText else {
                report(value.path, near: keyNode, "keys must be strings, got \(keyNode.shown)")
                continue
            }
            let path = value.path.key(key)
            if !keys.contains(key) {
                let hint = KeySuggestion.closest(to: key, among: keys)
                    .map { " (did you mean \"\($0)\"?)" } ?? ""
                report(path, near: keyNode, "unknown key\(hint)")
            } else if !node.isNull {
                entries[key] = ConfigValue(node: node, path: path)
            }
        }
        return Fields(path: value.path, node: value.node, entries: entries)
    }

    /// The elements of a list, each with its path.
    mutating func list(_ value: ConfigValue?) -> [ConfigValue]? {
        guard let value else { return nil }
        guard case .sequence(let sequence) = value.node else {
            report(value, "expected a list, got \(value.node.shown)")
            return nil
        }
        return sequence.enumerated().map { ConfigValue(node: $1, path: value.path.index($0)) }
    }

    /// The value of a key that must be present.
    mutating func required(_ fields: Fields, _ key: String) -> ConfigValue? {
        guard let value = fields[key] else {
            report(fields.path.key(key), near: fields.node, "required key is missing")
            return nil
        }
        return value
    }

    // MARK: Scalars

    /// A non-empty scalar, taken as text.
    mutating func string(_ value: ConfigValue?) -> String? {
        guard let value else { return nil }
        guard let text = value.node.scalarText, !value.node.isNull, !text.isEmpty else {
            report(value, "expected a non-empty string, got \(value.node.shown)")
            return nil
        }
        return text
    }

    /// A non-empty string that is an absolute file path.
    mutating func absolutePath(_ value: ConfigValue?) -> String? {
        guard let value, let path = string(value) else { return nil }
        guard path.hasPrefix("/") else {
            report(value, "\(quoted(path)) must be an absolute path")
            return nil
        }
        return path
    }

    mutating func integer(_ value: ConfigValue?, in range: ClosedRange<Int>) -> Int? {
        guard let value else { return nil }
        guard let number = value.node.decimalInteger else {
            report(value, "expected an integer, got \(value.node.shown)")
            return nil
        }
        guard range.contains(number) else {
            report(value, "\(number) is out of range (\(range.lowerBound)-\(range.upperBound))")
            return nil
        }
        return number
    }

    /// A TCP/UDP port, 1...65535.
    mutating func port(_ value: ConfigValue?) -> UInt16? {
        guard let value else { return nil }
        guard let number = value.node.decimalInteger else {
            report(value, "expected an integer, got \(value.node.shown)")
            return nil
        }
        guard let port = UInt16(exactly: number), port > 0 else {
            report(value, "\(number) is not a valid port (1-65535)")
            return nil
        }
        return port
    }

    mutating func bool(_ value: ConfigValue?) -> Bool? {
        guard let value else { return nil }
        guard let flag = value.node.boolean else {
            report(value, "expected true or false, got \(value.node.shown)")
            return nil
        }
        return flag
    }

    /// A duration such as `250ms`, `5s`, `1.5s`, `1m`, `1h`.
    mutating func duration(_ value: ConfigValue?) -> Duration? {
        guard let value else { return nil }
        guard let text = value.node.scalarText else {
            report(value, "expected a duration such as 250ms or 5s, got \(value.node.shown)")
            return nil
        }
        do {
            return try DurationParser.parse(text)
        } catch {
            report(value, "\(value.node.shown) is not a valid duration: \(error)")
            return nil
        }
    }

    /// One of an enum's raw values.
    mutating func choice<T: RawRepresentable<String> & CaseIterable>(_ value: ConfigValue?, as type: T.Type) -> T? {
        guard let value else { return nil }
        let supported = T.allCases.map(\.rawValue).joined(separator: ", ")
        if let text = value.node.scalarText, !value.node.isNull, let choice = T(rawValue: text) {
            return choice
        }
        report(value, "expected one of \(supported), got \(value.node.shown)")
        return nil
    }

    mutating func ipAddress(_ value: ConfigValue?) -> IPAddress? {
        guard let value else { return nil }
        guard let text = value.node.scalarText, let address = IPAddress(text) else {
            report(value, "\(value.node.shown) is not a valid IP address")
            return nil
        }
        return address
    }

    /// `1.2.3.4:80` or `[2001:db8::1]:80`.
    mutating func ipEndpoint(_ value: ConfigValue?) -> IPEndpoint? {
        guard let value else { return nil }
        guard let text = value.node.scalarText, let endpoint = IPEndpoint(text) else {
            report(value, "\(value.node.shown) is not a valid IP:port")
            return nil
        }
        return endpoint
    }
}

/// The non-null entries of a checked mapping, by key.
struct Fields {
    let path: ConfigPath
    /// The mapping itself.
    let node: Node
    let entries: [String: ConfigValue]

    subscript(key: String) -> ConfigValue? { entries[key] }
}
