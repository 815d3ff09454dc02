#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers

/// The mesh TLS context, made from three PEM files and made again when they
/// change (rotation): connections opened later use the new context, those
/// already open keep theirs. A change that does not load (a key written
/// before its certificate, a bad file) leaves the old context in force and
/// is tried again at the next check.
public final class TLSCredentialFiles: Sendable {
    public let certificatePath: String
    public let keyPath: String
    public let caPath: String

    /// What a file looked like when read: a rewrite or a symlink swap
    /// (Kubernetes secret volumes) changes one of these.
    struct Stamp: Equatable, Sendable {
        var device: UInt64 = 0
        var inode: UInt64 = 0
        var size: Int64 = 0
        var modified: Int = 0
        var modifiedNanoseconds: Int = 0
    }

    private struct Loaded: Sendable {
        var context: TLSContext
        var stamps: [Stamp]
        /// The stamps of the last change that did not load, so it is
        /// reported once, not at every check.
        var refused: [Stamp]?
    }

    private let loaded: NIOLockedValueBox<Loaded>

    /// Loads the files now; throws a message naming the file at fault.
    public init(certificate: String, key: String, ca: String) throws {
        certificatePath = certificate
        keyPath = key
        caPath = ca
        let stamps = Self.stamps([certificate, key, ca])
        let context = try Self.load(certificate: certificate, key: key, ca: ca)
        loaded = NIOLockedValueBox(Loaded(context: context, stamps: stamps, refused: nil))
    }

    /// The context new connections use.
    public var context: TLSContext {
        loaded.withLockedValue { $0.context }
    }

    public enum CheckResult: Sendable {
        case unchanged
        /// The files changed and the new context is in force.
        case reloaded(TLSContext)
        /// The files changed but do not load; the old context stays.
        case refused(String)
    }

    /// Re-reads the files if any changed since the last check.
    public func reloadIfChanged() -> CheckResult {
        let stamps = Self.stamps([certificatePath, keyPath, caPath])
        let (current, refused) = loaded.withLockedValue { ($0.stamps, $0.refused) }
        guard stamps != current, stamps != refused else { return .unchanged }
        do {
            let context = try Self.load(certificate: certificatePath, key: keyPath, ca: caPath)
            loaded.withLockedValue { $0 = Loaded(context: context, stamps: stamps, refused: nil) }
            return .reloaded(context)
        } catch {
            loaded.withLockedValue { $0.refused = stamps }
            return .refused("\(error)")
        }
    }

    static func load(certificate: String, key: String, ca: String) throws -> TLSContext {
        let credentials = PEMCredentials(certificate: try read(certificate, what: "certificate"),
                                         privateKey: try read(key, what: "key"))
        do {
            return try TLSContext(credentials: credentials, trustAnchors: try read(ca, what: "CA certificate"))
        } catch {
            throw TLSFilesError(message: "mesh TLS files \(certificate), \(key), \(ca): \(error)")
        }
    }

    private static func read(_ path: String, what: String) throws -> String {
        guard let file = fopen(path, "r") else {
            throw TLSFilesError(message: "mesh TLS \(what) \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count > 0 { bytes += chunk[0..<count] }
            if count < chunk.count { break }
            guard bytes.count <= 1 << 20 else {
                throw TLSFilesError(message: "mesh TLS \(what) \(path): larger than 1 MiB")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func stamps(_ paths: [String]) -> [Stamp] {
        paths.map { path in
            var info = stat()
            guard stat(path, &info) == 0 else { return Stamp() }
            return Stamp(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                         modified: info.st_mtim.tv_sec, modifiedNanoseconds: info.st_mtim.tv_nsec)
        }
    }
}

/// Mesh TLS files that cannot be read or do not make a context.
public struct TLSFilesError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
