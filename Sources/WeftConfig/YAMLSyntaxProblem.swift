import Yams

/// Turns a Yams parse error into one problem with the line and column, e.g.
/// `YAML syntax error at line 3, column 9: mapping values are not allowed in this context`.
enum YAMLSyntaxProblem {
    static func problem(for error: any Error, in yaml: String) -> ConfigProblem {
        ConfigProblem(path: "", message: message(for: error, in: yaml))
    }

    private static func message(for error: any Error, in yaml: String) -> String {
        guard let yamlError = error as? YamlError else { return "YAML error: \(error)" }
        switch yamlError {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let during = context.map { " (\($0.text) at \(position($0.mark)))" } ?? ""
            return "YAML syntax error at \(position(mark)): \(problem)\(during)"
        case .reader(let problem, let offset, _, _):
            let at = offset.map { " at \(position(ofCharacter: $0, in: yaml))" } ?? ""
            return "YAML syntax error\(at): \(problem)"
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.sorted().map { quoted($0) }.joined(separator: ", ")
            return "YAML error at \(position(context.mark)): duplicate key \(keys) in one mapping"
        default:
            return "YAML error: \(yamlError)"
        }
    }

    private static func position(_ mark: Mark) -> String {
        "line \(mark.line), column \(mark.column)"
    }

    /// Line and column (from 1) of the character at `offset`.
    private static func position(ofCharacter offset: Int, in yaml: String) -> String {
        var line = 1, column = 1
        for character in yaml.prefix(offset) {
            if character == "\n" { line += 1; column = 1 } else { column += 1 }
        }
        return "line \(line), column \(column)"
    }
}
