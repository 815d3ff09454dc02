#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// One log line per event in logfmt, on stderr:
/// `ts=2026-11-22T19:30:00.123Z level=info logger=weft msg="node ready" node=a`.
///
/// Each line is a single `write(2)`, so lines from event loops never interleave.
struct LogfmtLogHandler: LogHandler {
    /// The node's level (`LogLevelControl`), unless this logger was given
    /// its own.
    var logLevel: Logger.Level {
        get { ownLevel ?? LogLevelControl.shared.level }
        set { ownLevel = newValue }
    }
    private var ownLevel: Logger.Level?
    var metadata: Logger.Metadata = [:]
    private let label: String

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var line = "ts=\(Self.timestamp()) level=\(event.level) logger=\(label) msg=\(Self.quoted(event.message.description))"
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(Self.quoted(value.description))"
        }
        line += "\n"
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    /// Quotes a value when logfmt needs it (spaces, quotes, `=`, empty).
    static func quoted(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.contains { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" }
        guard needsQuotes else { return value }
        var escaped = value.replacingOccurrences("\\", "\\\\")
        escaped = escaped.replacingOccurrences("\"", "\\\"")
        escaped = escaped.replacingOccurrences("\n", "\\n")
        return "\"\(escaped)\""
    }

    /// RFC 3339 UTC with milliseconds.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}

private extension String {
    func replacingOccurrences(_ target: Character, _ replacement: String) -> String {
        var result = ""
        result.reserveCapacity(count)
        for character in self {
            if character == target { result += replacement } else { result.append(character) }
        }
        return result
    }
}

/// The level every node logger follows, changeable while the node runs
/// (`--log-level`, then `POST /logging?level=` on the admin API).
final class LogLevelControl: Sendable {
    static let shared = LogLevelControl()
    private let index = Atomic<Int>(Logger.Level.allCases.firstIndex(of: .info) ?? 2)

    var level: Logger.Level {
        get { Logger.Level.allCases[index.load(ordering: .relaxed)] }
        set { index.store(Logger.Level.allCases.firstIndex(of: newValue) ?? 2, ordering: .relaxed) }
    }
}
