import Yams

/// A YAML node together with where it sits in the document.
struct ConfigValue {
    let node: Node
    let path: ConfigPath
}

/// How the validator reads YAML scalars. Stricter than YAML 1.1 (which Yams
/// resolves by default): integers are plain decimals only (no `0x`, octal or
/// `1_000`), booleans are only `true`/`false`, and a quoted scalar is always a
/// string, so `port: "15001"` is refused like any other string.
extension Node {
    /// A plain scalar, as opposed to a quoted or `!!str`-tagged one.
    var isPlainScalar: Bool {
        guard case .scalar(let scalar) = self else { return false }
        return (scalar.style == .plain || scalar.style == .any) && tag.rawValue != Tag.Name.str.rawValue
    }

    /// The text of a scalar of any style; nil for mappings and lists.
    var scalarText: String? {
        guard case .scalar(let scalar) = self else { return nil }
        return scalar.string
    }

    /// `~`, `null` or an empty value: treated as if the key were absent.
    var isNull: Bool {
        guard isPlainScalar, let text = scalarText else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(text)
    }

    /// A plain decimal integer such as `15001` or `-3`.
    var decimalInteger: Int? {
        guard isPlainScalar, let text = scalarText else { return nil }
        let digits = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        guard !digits.isEmpty, digits.count <= 18,
              digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              digits == "0" || !digits.hasPrefix("0") else { return nil }
        return Int(text)
    }

    /// A plain `true` or `false` (also capitalised).
    var boolean: Bool? {
        guard isPlainScalar, let text = scalarText else { return nil }
        switch text {
        case "true", "True", "TRUE": return true
        case "false", "False", "FALSE": return false
        default: return nil
        }
    }

    /// The node as an error message shows it: `"abc"`, `5`, `true`, `null`,
    /// `a list`, `a mapping`.
    var shown: String {
        switch self {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if isNull { return "null" }
            if decimalInteger != nil || boolean != nil || (isPlainScalar && Double(scalar.string) != nil) {
                return scalar.string
            }
            return quoted(scalar.string)
        }
    }
}

/// `text` in double quotes with quotes, backslashes and control characters
/// escaped; long values are shortened.
func quoted(_ text: String) -> String {
    let limit = 100
    var body = ""
    for scalar in text.unicodeScalars.prefix(limit) {
        switch scalar {
        case "\"": body += "\\\""
        case "\\": body += "\\\\"
        case "\n": body += "\\n"
        case "\t": body += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7f {
                body += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                body.unicodeScalars.append(scalar)
            }
        }
    }
    if text.unicodeScalars.count > limit { body += "…" }
    return "\"\(body)\""
}
