import Foundation
import NIOCore
import WeftConfig

/// The list-then-watch loop over one Service's EndpointSlices (what
/// client-go's reflector does), as a state machine with no I/O: the
/// adapter (``KubernetesEndpointSource``) opens one connection per
/// request, feeds in what the server answers, and performs the actions.
///
/// - A list (paged, 500 slices a page) gives the whole state and a
///   resourceVersion; a watch from there streams one JSON event per line.
/// - A watch that ends cleanly (its `timeoutSeconds`) or breaks is opened
///   again from the last resourceVersion seen (events and bookmarks carry
///   it), so nothing is missed and nothing is listed again.
/// - `410 Gone` (the version is older than the server keeps, as a status or
///   as an ERROR event) lists again from scratch: at once the first time,
///   after the backoff when it comes again before a watch has delivered
///   anything (a server that answers nothing else is not hammered).
/// - Everything else (refusals, server errors, broken connections,
///   undecodable answers) waits a backoff that doubles from 500 ms to 30 s,
///   jittered, and is told as a problem; the last endpoints stay in force.
public struct KubernetesWatch {
    /// One request to make: a path with its query, under the server's prefix.
    public struct Request: Equatable, Sendable {
        public var path: String
        public var isWatch: Bool
    }

    public enum Action: Equatable, Sendable {
        /// Open a connection and send this request.
        case send(Request)
        /// The endpoints changed: tell the cluster.
        case report([Endpoint])
        /// Why things are not going well (logged; endpoints stay).
        case problem(String)
        /// Drop the connection of the current request (its answer is unwanted).
        case close
        /// Call ``retry()`` after this long.
        case wait(Duration)
    }

    /// Bounds on what the server may send, so a broken or hostile one
    /// cannot grow the node: a whole list answer (all its pages), and one
    /// watch event.
    public static let maxListBytes = 64 << 20
    public static let maxEventBytes = 8 << 20
    static let firstBackoff = Duration.milliseconds(500)
    static let maxBackoff = Duration.seconds(30)

    private enum Phase {
        case idle
        /// A list page was asked for; `listed` holds the earlier pages' slices.
        case listing
        case watching
        case waiting
        case stopped
    }

    public let service: KubernetesServiceRef
    public let namespace: String
    /// The `timeoutSeconds` a watch asks for.
    public let watchSeconds: Int
    private let pathPrefix: String
    private var slices: EndpointSlices
    private var phase = Phase.idle
    /// The current answer's status, once its head came.
    private var status: Int?
    private var body = ByteBuffer()
    private var listed: [EndpointSlices.Slice] = []
    /// Bytes of the list's earlier pages.
    private var listedBytes = 0
    /// A 410 came and no watch has delivered anything since.
    private var goneRecently = false
    /// Lines the current watch delivered (a watch that ends with none
    /// waits before the next, so a server that drops watches at once is
    /// not hammered).
    private var linesThisWatch = 0
    private var lastReported: [Endpoint]?
    private var failures = 0
    /// What ``retry()`` asks for: a watch from the version in hand, or a list.
    private var resumeWatch = false
    private let jitter: () -> Double

    /// - Parameters:
    ///   - namespace: the namespace to use when `service` names none.
    ///   - jitter: a factor in 0.5...1 applied to each backoff.
    public init(service: KubernetesServiceRef, namespace: String, pathPrefix: String = "",
                watchSeconds: Int = Int.random(in: 300...600),
                jitter: @escaping () -> Double = { Double.random(in: 0.5...1) }) {
        self.service = service
        self.namespace = service.namespace ?? namespace
        self.pathPrefix = pathPrefix
        self.watchSeconds = watchSeconds
        self.jitter = jitter
        slices = EndpointSlices(port: service.port)
    }

    /// The resourceVersion a watch would resume from.
    public var resourceVersion: String? { slices.resourceVersion }

    // MARK: Inputs

    public mutating func start() -> [Action] {
        guard case .idle = phase else { return [] }
        return [list(continueToken: nil)]
    }

    /// The backoff has passed.
    public mutating func retry() -> [Action] {
        guard case .waiting = phase else { return [] }
        return [resumeWatch ? watch() : list(continueToken: nil)]
    }

    public mutating func stop() {
        phase = .stopped
        body = ByteBuffer()
        listed = []
    }

    /// The answer's status line came.
    public mutating func received(status code: Int) -> [Action] {
        switch phase {
        case .listing, .watching: break
        default: return []
        }
        status = code
        if code == 200 { return [] }
        if code == 410 {
            // The version (or a list's continue token) expired: from scratch.
            return [.close] + listAfterGone()
        }
        let what = isWatching ? "watch" : "list"
        var hint = ""
        if code == 401 { hint = " (the token was refused)" }
        if code == 403 { hint = " (the service account may not \(what) endpointslices in \(namespace): see k8s/rbac.yaml)" }
        return [.close] + fail("the API server answered the \(what) with \(code)\(hint)", resume: isWatching)
    }

    /// Bytes of the answer's body.
    public mutating func received(body bytes: ByteBuffer) -> [Action] {
        guard status == 200 else { return [] }
        switch phase {
        case .listing:
            guard listedBytes + body.readableBytes + bytes.readableBytes <= Self.maxListBytes else {
                body = ByteBuffer()
                return [.close] + fail("the list answer is larger than \(Self.maxListBytes >> 20) MiB", resume: false)
            }
            var bytes = bytes
            body.writeBuffer(&bytes)
            return []
        case .watching:
            var bytes = bytes
            body.writeBuffer(&bytes)
            return watchLines()
        default:
            return []
        }
    }

    /// The answer ended (the server's side of the request is complete).
    public mutating func ended() -> [Action] {
        defer { status = nil }
        guard status == 200 else { return [] }
        switch phase {
        case .listing:
            return listPageEnded()
        case .watching:
            // The watch's timeoutSeconds ran out: go on from where it was.
            var actions = body.readableBytes > 0 ? watchLines(final: true) : []
            guard case .watching = phase else { return actions }
            if linesThisWatch > 0 {
                actions.append(watch())  // (its first line reset the backoff)
            } else {
                actions += fail("the watch ended without an event", resume: true, quiet: true)
            }
            return actions
        default:
            return []
        }
    }

    /// The connection failed or closed before the answer ended.
    public mutating func failed(_ reason: String) -> [Action] {
        defer { status = nil }
        switch phase {
        case .listing:
            return fail("list: \(reason)", resume: false)
        case .watching:
            return fail("watch: \(reason)", resume: true)
        default:
            return []
        }
    }

    // MARK: Steps

    private var isWatching: Bool {
        if case .watching = phase { return true }
        return false
    }

    private var basePath: String {
        "\(pathPrefix)/apis/discovery.k8s.io/v1/namespaces/\(namespace)/endpointslices"
            + "?labelSelector=kubernetes.io%2Fservice-name%3D\(service.service)"
    }

    private mutating func list(continueToken: String?) -> Action {
        phase = .listing
        if continueToken == nil {
            listed = []
            listedBytes = 0
        }
        body.clear()
        var path = basePath + "&limit=500"
        if let continueToken { path += "&continue=" + Self.queryEscaped(continueToken) }
        return .send(Request(path: path, isWatch: false))
    }

    private mutating func watch() -> Action {
        phase = .watching
        body.clear()
        linesThisWatch = 0
        var path = basePath + "&watch=1&allowWatchBookmarks=true&timeoutSeconds=\(watchSeconds)"
        if let version = slices.resourceVersion { path += "&resourceVersion=" + Self.queryEscaped(version) }
        return .send(Request(path: path, isWatch: true))
    }

    private mutating func listPageEnded() -> [Action] {
        guard case .listing = phase else { return [] }
        let page: EndpointSlices.List
        do {
            page = try JSONDecoder().decode(EndpointSlices.List.self, from: Data(body.readableBytesView))
        } catch {
            return fail("the list answer is not an EndpointSliceList: \(Self.describe(error))", resume: false)
        }
        listedBytes += body.readableBytes
        body.clear()
        listed += page.items
        if let next = page.metadata.continue, !next.isEmpty {
            return [list(continueToken: next)]
        }
        slices.replace(with: listed, resourceVersion: page.metadata.resourceVersion)
        listed = []
        listedBytes = 0
        var actions = reportIfChanged()
        actions.append(watch())
        return actions
    }

    /// Applies every complete line of the watch body.
    private mutating func watchLines(final: Bool = false) -> [Action] {
        var actions: [Action] = []
        var changed = false
        while case .watching = phase {
            let view = body.readableBytesView
            guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) ?? (final && !view.isEmpty ? view.endIndex : nil) else {
                if body.readableBytes > Self.maxEventBytes {
                    return actions + [.close] + fail("a watch event is larger than \(Self.maxEventBytes >> 20) MiB",
                                                     resume: false)
                }
                break
            }
            let length = newline - view.startIndex
            let line = body.readSlice(length: length) ?? ByteBuffer()
            if newline != view.endIndex { body.moveReaderIndex(forwardBy: 1) }
            guard line.readableBytesView.contains(where: { $0 > 0x20 }) else { continue }
            linesThisWatch += 1
            if linesThisWatch == 1 {
                // The watch works: what went wrong before is over.
                failures = 0
                goneRecently = false
            }
            let outcome: EndpointSlices.Outcome
            do {
                outcome = try slices.apply(event: Data(line.readableBytesView))
            } catch {
                return actions + [.close] + fail("a watch event is not an EndpointSlice event: \(Self.describe(error))",
                                                 resume: false)
            }
            switch outcome {
            case .changed:
                changed = true
            case .unchanged:
                break
            case .gone:
                if changed { actions += reportIfChanged() }
                return actions + [.close] + listAfterGone()
            case .failed(let code):
                if changed { actions += reportIfChanged() }
                return actions + [.close] + fail("the watch reported an error (\(code.map(String.init) ?? "no code"))",
                                                 resume: false)
            }
        }
        body.discardReadBytes()
        if changed { actions += reportIfChanged() }
        return actions
    }

    /// Lists again after a 410: at once, unless one came just before.
    private mutating func listAfterGone() -> [Action] {
        guard goneRecently else {
            goneRecently = true
            return [list(continueToken: nil)]
        }
        return fail("the API server answered 410 Gone again", resume: false)
    }

    private mutating func reportIfChanged() -> [Action] {
        let endpoints = slices.endpoints
        guard endpoints != lastReported else { return [] }
        lastReported = endpoints
        return [.report(endpoints)]
    }

    /// Waits a backoff; `resume` watches from the version in hand after it
    /// (when there is one), else lists again.
    private mutating func fail(_ problem: String, resume: Bool, quiet: Bool = false) -> [Action] {
        phase = .waiting
        body.clear()
        listed = []
        listedBytes = 0
        resumeWatch = resume && slices.resourceVersion != nil
        let exponent = min(failures, 6)
        failures += 1
        let ceiling = min(Self.firstBackoff * (1 << exponent), Self.maxBackoff)
        let delay = ceiling * jitter()
        return quiet ? [.wait(delay)] : [.problem(problem), .wait(delay)]
    }

    static func queryEscaped(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): return context.debugDescription
        case DecodingError.keyNotFound(let key, _): return "no \(key.stringValue)"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        default: return "\(error)"
        }
    }
}
