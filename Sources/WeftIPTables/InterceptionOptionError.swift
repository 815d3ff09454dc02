/// Why a `weft init` flag value was refused; its description is the
/// one-line reason printed after `weft init: `.
public struct InterceptionOptionError: Error, Equatable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }

    /// `--flag: "value" is not a valid <what>`.
    static func invalid(_ flag: String, _ value: String, _ what: String) -> Self {
        Self("\(flag): \"\(value)\" is not a valid \(what)")
    }

    /// Two flags (or values) that contradict each other.
    static func conflict(_ reason: String) -> Self {
        Self(reason)
    }
}
