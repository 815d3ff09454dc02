import Foundation
import Yams

/// Reads a weft YAML config (SPEC §5) into a validated `Configuration`.
///
/// Every problem is collected before anything is thrown, each named by its
/// path, so one run of `weft check` shows all of them.
public enum ConfigLoader {
    /// Parses and validates YAML text. An empty document (or `{}`) is a node
    /// with all defaults and no clusters.
    public static func load(yaml: String) throws(ConfigErrors) -> Configuration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigErrors([YAMLSyntaxProblem.problem(for: error, in: yaml)])
        }
        var validator = ConfigValidator()
        let configuration = validator.configuration(from: root)
        guard validator.problems.isEmpty else { throw ConfigErrors(validator.problems) }
        return configuration
    }

    /// Reads the file at `path` (UTF-8), then as `load(yaml:)`. An unreadable
    /// file is one problem that names it.
    public static func load(path: String) throws(ConfigErrors) -> Configuration {
        try load(yaml: try text(path: path))
    }

    /// A `discovery: file` cluster's endpoint list: a YAML sequence of
    /// endpoints, each as in a cluster's `endpoints` (SPEC §5). An empty
    /// document or list is no endpoints.
    public static func loadEndpoints(yaml: String) throws(ConfigErrors) -> [Endpoint] {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigErrors([YAMLSyntaxProblem.problem(for: error, in: yaml)])
        }
        guard let root, !root.isNull else { return [] }
        var validator = ConfigValidator()
        var endpoints: [Endpoint] = []
        for item in validator.list(ConfigValue(node: root, path: .root)) ?? [] {
            if let (endpoint, _) = validator.endpoint(item) { endpoints.append(endpoint) }
        }
        guard validator.problems.isEmpty else { throw ConfigErrors(validator.problems) }
        return endpoints
    }

    /// Reads a whole file as UTF-8 text; an unreadable file is one problem.
    public static func text(path: String) throws(ConfigErrors) -> String {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ConfigErrors([ConfigProblem(path: "", message: "cannot read \(path): \(reason(error))")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigErrors([ConfigProblem(path: "", message: "cannot read \(path): not UTF-8 text")])
        }
        return text
    }

    /// The operating system's reason (`No such file or directory`) when there is one.
    private static func reason(_ error: any Error) -> String {
        if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? any Error {
            let posix = underlying as NSError
            if posix.domain == NSPOSIXErrorDomain {
                return String(cString: strerror(Int32(posix.code)))
            }
        }
        return error.localizedDescription
    }
}
