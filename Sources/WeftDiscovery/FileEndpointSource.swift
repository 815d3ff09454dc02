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
/// cannot be read or parsed keeps the last good list, and says why once
/// per change.
public final class FileEndpointSource: EndpointSource {
    public let path: String
    private let queue = DispatchQueue(label: "weft.discovery.file")
    private let timer: RepeatingTimer
    private let state = Mutex<State>(State())
    private let onProblem: @Sendable (String) -> Void

    private struct State {
        var seen: FileIdentity?
        var started = false
    }

    public init(path: String, onProblem: @escaping @Sendable (String) -> Void = { _ in }) {
        self.path = path
        self.onProblem = onProblem
        timer = RepeatingTimer(queue: queue)
    }

    public var settings: String { "file \(path)" }

    public func start(update: @escaping @Sendable ([Endpoint]) -> Void) {
        let first = state.withLock { state -> Bool in
            defer { state.started = true }
            return !state.started
        }
        guard first else { return }
        timer.start(every: .seconds(1)) { [self] in
            let now = FileIdentity(path: path)
            let changed = state.withLock { state -> Bool in
                defer { state.seen = now }
                return now != nil && now != state.seen
            }
            guard changed else { return }
            do throws(ConfigErrors) {
                update(try ConfigLoader.loadEndpoints(yaml: try ConfigLoader.text(path: path)))
            } catch {
                onProblem(error.problems.map(\.description).joined(separator: "; "))
            }
        }
    }

    public func stop() { timer.cancel() }
}

/// A file's identity as far as change detection needs it.
struct FileIdentity: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedSeconds: Int
    var modifiedNanoseconds: Int

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedSeconds = Int(info.st_mtim.tv_sec)
        modifiedNanoseconds = Int(info.st_mtim.tv_nsec)
    }
}
