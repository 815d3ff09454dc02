#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization
import WeftConfig

/// `discovery: file`: a YAML list of endpoints (the shape of a cluster's
/// `endpoints`), re-read when the file changes. Polled once a second by
/// its identity (device, inode, size, modification time, after symlinks),
/// so an atomic rename or a ConfigMap's symlink swap is seen. A file that
/// is missing, empty, unreadable or invalid keeps the last good list, and
/// says why once per change (an empty file is more likely a writer caught
/// halfway than a wish for no endpoints: that is written `[]`).
public final class FileEndpointSource: EndpointSource {
    public let path: String
    private let queue = DispatchQueue(label: "weft.discovery.file")
    private let timer: RepeatingTimer
    private let state = Mutex<State>(State())
    private let onProblem: @Sendable (String) -> Void

    private struct State {
        var seen: FileIdentity?
        var missingReported = false
    }

    public init(path: String, onProblem: @escaping @Sendable (String) -> Void = { _ in }) {
        self.path = path
        self.onProblem = onProblem
        timer = RepeatingTimer(queue: queue)
    }

    public var settings: String { "file \(path)" }

    public func start(update: @escaping @Sendable ([Endpoint]) -> Void) {
        timer.start(every: .seconds(1)) { [self] in
            let now = FileIdentity(path: path)
            let (changed, reportMissing) = state.withLock { state -> (Bool, Bool) in
                defer { state.seen = now }
                guard now != nil else {
                    defer { state.missingReported = true }
                    return (false, !state.missingReported)
                }
                state.missingReported = false
                return (now != state.seen, false)
            }
            if reportMissing { onProblem("cannot read \(path): no such file") }
            guard changed else { return }
            do throws(ConfigErrors) {
                let text = try ConfigLoader.text(path: path)
                guard !text.allSatisfy(\.isWhitespace) else {
                    return onProblem("\(path) is empty (write [] for no endpoints)")
                }
                update(try ConfigLoader.loadEndpoints(yaml: text))
            } catch {
                onProblem(error.problems.map(\.description).joined(separator: "; "))
            }
        }
    }

    public func stop() { timer.cancel() }
}

/// A file's identity as far as change detection needs it (after
/// symlinks): a rename over it, a symlink swap or a write changes it.
public struct FileIdentity: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedSeconds: Int
    var modifiedNanoseconds: Int

    /// Nil when the file cannot be seen.
    public init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedSeconds = Int(info.st_mtim.tv_sec)
        modifiedNanoseconds = Int(info.st_mtim.tv_nsec)
    }
}
