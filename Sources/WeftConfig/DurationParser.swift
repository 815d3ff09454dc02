/// Parses config durations: a positive decimal number and a unit, such as
/// `250ms`, `5s`, `1.5s`, `1m` or `1h`.
///
/// A bare number (`5`) is refused: the unit is never guessed.
public enum DurationParser {
    /// Units, longest first so that `ms` wins over `m`, with their length in nanoseconds.
    private static let units: [(suffix: String, nanoseconds: Int64)] = [
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ]

    /// At most this many digits after the decimal point (`1.000001s`).
    private static let maxFractionDigits = 6

    public static func parse(_ text: String) throws(DurationParseError) -> Duration {
        if text.hasPrefix("-") { throw .notPositive }
        let number = text.prefix { $0 == "." || ($0.isASCII && $0.isNumber) }
        let unitText = text.dropFirst(number.count)
        guard !number.isEmpty else { throw .notANumber }
        guard !unitText.isEmpty else { throw .missingUnit }
        guard let unit = units.first(where: { $0.suffix == unitText }) else {
            throw .unknownUnit(String(unitText))
        }

        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, parts.allSatisfy({ !$0.isEmpty }) else { throw .notANumber }
        let fraction = parts.count == 2 ? parts[1] : ""
        guard fraction.count <= maxFractionDigits else { throw .tooPrecise }
        guard parts[0].count <= 18, let whole = Int64(parts[0]) else { throw .tooLarge }

        let (wholeNanos, overflow) = whole.multipliedReportingOverflow(by: unit.nanoseconds)
        guard !overflow else { throw .tooLarge }
        var fractionNanos: Int64 = 0
        if let digits = Int64(fraction) {
            var scale: Int64 = 1
            for _ in 0..<fraction.count { scale *= 10 }
            fractionNanos = digits * unit.nanoseconds / scale
        }
        let (total, sumOverflow) = wholeNanos.addingReportingOverflow(fractionNanos)
        guard !sumOverflow else { throw .tooLarge }
        guard total > 0 else { throw .notPositive }
        return .nanoseconds(total)
    }
}

/// Why a duration was refused; `description` is a short reason.
public enum DurationParseError: Error, Sendable, Equatable, CustomStringConvertible {
    case notANumber
    case missingUnit
    case unknownUnit(String)
    case notPositive
    case tooLarge
    case tooPrecise

    public var description: String {
        switch self {
        case .notANumber: return "expected a number and a unit, such as 250ms, 5s, 1m or 1h"
        case .missingUnit: return "missing unit (ms, s, m or h, such as 5s)"
        case .unknownUnit(let unit): return "unknown unit \"\(unit)\" (use ms, s, m or h)"
        case .notPositive: return "must be greater than zero"
        case .tooLarge: return "too large"
        case .tooPrecise: return "at most 6 digits after the decimal point"
        }
    }
}
