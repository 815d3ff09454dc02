import Foundation

/// Why `weft init` could not finish; the description is one line.
public enum InitError: Error, Equatable, CustomStringConvertible {
    /// Neither iptables-nft nor iptables-legacy tools are installed.
    case noBackend
    /// A tool that the chosen backend or family needs is missing.
    case toolMissing(String)
    /// A tool could not be started.
    case cannotRun(String, String)
    /// A tool ran and failed.
    case commandFailed(command: String, status: Int32, output: String)

    public var description: String {
        switch self {
        case .noBackend:
            return "no iptables found: neither iptables-nft-restore nor iptables-legacy-restore is installed"
        case .toolMissing(let tool):
            return "\(tool) not found (looked in PATH and the sbin directories)"
        case .cannotRun(let path, let reason):
            return "cannot run \(path): \(reason)"
        case .commandFailed(let command, let status, let output):
            let detail = output.split(whereSeparator: \.isNewline)
                .map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
                .joined(separator: "; ")
            return "\(command) failed (exit status \(status))" + (detail.isEmpty ? "" : ": \(detail)")
        }
    }
}
