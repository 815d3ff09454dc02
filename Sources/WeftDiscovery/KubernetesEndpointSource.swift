import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import WeftConfig
import WeftCore
import WeftTLS

/// How to reach the API server: `kubernetes_api` from the config, or the
/// pod's in-cluster environment (SPEC §7).
public struct KubernetesAPIAccess: Sendable, Equatable {
    public var server: KubernetesServerURL
    public var tokenFile: String?
    public var caFile: String?
    /// The node's own namespace, for services that name none.
    public var namespace: String

    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// `settings` when given, else the in-cluster environment
    /// (`KUBERNETES_SERVICE_HOST`/`_PORT` and the service account's token and
    /// CA); a failure says what is missing.
    public static func resolve(_ settings: KubernetesAPISettings?,
                               environment: [String: String] = ProcessInfo.processInfo.environment,
                               serviceAccount directory: String = serviceAccountDirectory) -> Result<Self, KubernetesAccessError> {
        let namespaceText = (try? String(contentsOfFile: directory + "/namespace", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let namespace = namespaceText.flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        guard KubernetesServiceRef.isLabel(namespace) else {
            return .failure(KubernetesAccessError("\(directory)/namespace holds no namespace name"))
        }
        if let settings {
            return .success(Self(server: settings.server, tokenFile: settings.tokenFile, caFile: settings.caFile,
                                 namespace: namespace))
        }
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
              let portText = environment["KUBERNETES_SERVICE_PORT"] else {
            return .failure(KubernetesAccessError(
                "no API server: not in a pod (KUBERNETES_SERVICE_HOST is not set) and no kubernetes_api in the config"))
        }
        let shown = host.contains(":") ? "[\(host)]" : host
        switch KubernetesServerURL.parse("https://\(shown):\(portText)") {
        case .success(let server):
            return .success(Self(server: server, tokenFile: directory + "/token", caFile: directory + "/ca.crt",
                                 namespace: namespace))
        case .failure(let error):
            return .failure(KubernetesAccessError("KUBERNETES_SERVICE_HOST/_PORT make no API server URL: it \(error)"))
        }
    }
}

public struct KubernetesAccessError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// `discovery: kubernetes`: a ``KubernetesWatch`` driven over HTTP/1.1 on
/// one event loop, one connection per request (a list page, or a watch that
/// lasts minutes), TLS verified against the CA and the server's name, the
/// bearer token read from its file for each request (kubelet rotates it).
/// Endpoints are reported from the source's own queue.
public final class KubernetesEndpointSource: EndpointSource, @unchecked Sendable {
    public let service: KubernetesServiceRef
    private let access: Result<KubernetesAPIAccess, KubernetesAccessError>
    private let loop: any EventLoop
    private let queue = DispatchQueue(label: "weft.discovery.kubernetes")
    private let onProblem: @Sendable (String) -> Void
    /// How long a watch may go without a byte from the server: it gets
    /// bookmarks about once a minute, and ends by itself after
    /// `timeoutSeconds`; beyond that the connection is taken for dead.
    private let watchSilenceLimit: TimeAmount
    /// The same for a list page, which the server answers at once.
    static let listSilenceLimit = TimeAmount.seconds(30)

    // Confined to `loop`.
    private var machine: KubernetesWatch?
    private var channel: (any Channel)?
    /// Tells the current request's answers from those of dropped ones.
    private var generation = 0
    private var timer: Scheduled<Void>?
    private var update: (@Sendable ([Endpoint]) -> Void)?
    private var stopped = false

    public init(service: KubernetesServiceRef, api: KubernetesAPISettings?, eventLoop: any EventLoop,
                environment: [String: String] = ProcessInfo.processInfo.environment,
                watchSeconds: Int = Int.random(in: 300...600),
                onProblem: @escaping @Sendable (String) -> Void = { _ in }) {
        self.service = service
        self.access = KubernetesAPIAccess.resolve(api, environment: environment)
        self.loop = eventLoop
        self.onProblem = onProblem
        self.watchSilenceLimit = .seconds(Int64(watchSeconds) + 90)
        if case .success(let access) = access {
            machine = KubernetesWatch(service: service, namespace: access.namespace,
                                      pathPrefix: access.server.pathPrefix, watchSeconds: watchSeconds)
        }
    }

    public var settings: String {
        let target = "kubernetes \(service.namespace ?? "-")/\(service.service):\(service.port)"
        switch access {
        case .success(let access):
            return "\(target) via \(access.server) token \(access.tokenFile ?? "-") ca \(access.caFile ?? "-")"
        case .failure(let error):
            return "\(target) \(error)"
        }
    }

    public func start(update: @escaping @Sendable ([Endpoint]) -> Void) {
        if case .failure(let error) = access {
            onProblem(error.description)
            return
        }
        loop.execute { [self] in
            guard !stopped, self.update == nil else { return }
            self.update = update
            perform(machine?.start() ?? [])
        }
    }

    public func stop() {
        loop.execute { [self] in
            stopped = true
            machine?.stop()
            timer?.cancel()
            timer = nil
            generation += 1
            channel?.close(promise: nil)
            channel = nil
            update = nil
        }
    }

    // MARK: Actions

    private func perform(_ actions: [KubernetesWatch.Action]) {
        for action in actions {
            guard !stopped else { return }
            switch action {
            case .send(let request):
                send(request)
            case .report(let endpoints):
                if let update { queue.async { update(endpoints) } }
            case .problem(let problem):
                let onProblem = self.onProblem
                let described = "\(service.service): \(problem)"
                queue.async { onProblem(described) }
            case .close:
                generation += 1
                channel?.close(promise: nil)
                channel = nil
            case .wait(let delay):
                let (seconds, attoseconds) = delay.components
                let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
                timer = loop.scheduleTask(in: .nanoseconds(nanoseconds)) { [self] in
                    timer = nil
                    perform(machine?.retry() ?? [])
                }
            }
        }
    }

    /// Opens a connection for `request` and sends it; what comes back is
    /// fed to the machine while `generation` is unchanged.
    private func send(_ request: KubernetesWatch.Request) {
        guard case .success(let access) = access else { return }
        generation += 1
        let mine = generation
        channel?.close(promise: nil)
        channel = nil

        let head: HTTPRequestHead
        let tls: TLSClientContext?
        do {
            head = try requestHead(request, access: access)
            tls = try access.server.tls ? TLSClientContext(trustAnchors: read(access.caFile ?? "", what: "the CA file")) : nil
        } catch {
            perform(machine?.failed("\(error)") ?? [])
            return
        }
        let server = access.server
        let silence = request.isWatch ? watchSilenceLimit : Self.listSilenceLimit
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handlers = channel.pipeline.syncOperations
                    // Events count only from the connection the request went
                    // on (Happy Eyeballs may open and drop others).
                    // The channel runs on `loop`: its events are handled in place.
                    let connection = ObjectIdentifier(channel)
                    let response = KubernetesResponseHandler { [self] event in
                        received(event, generation: mine, connection: connection)
                    }
                    if let tls {
                        let session = try TLSConnection(client: tls, serverName: server.host)
                        try handlers.addHandler(TLSHandler(connection: session) { event in
                            if case .refused(let failure) = event { response.failure = "TLS: \(failure)" }
                        })
                    }
                    try handlers.addHTTPClientHandlers()
                    try handlers.addHandler(IdleStateHandler(readTimeout: silence))
                    try handlers.addHandler(response)
                }
            }
            .connect(host: server.host, port: Int(server.port))
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    guard mine == generation, !stopped else {
                        channel.close(promise: nil)
                        return
                    }
                    self.channel = channel
                    channel.writeAndFlush(HTTPClientRequestPart.head(head), promise: nil)
                    channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                case .failure(let error):
                    received(.failed("cannot connect to \(server): \(error)"), generation: mine, connection: nil)
                }
            }
    }

    private func requestHead(_ request: KubernetesWatch.Request, access: KubernetesAPIAccess) throws -> HTTPRequestHead {
        var headers = HTTPHeaders()
        let server = access.server
        let shownHost = server.host.contains(":") ? "[\(server.host)]" : server.host
        let defaultPort: UInt16 = server.tls ? 443 : 80
        headers.add(name: "host", value: server.port == defaultPort ? shownHost : "\(shownHost):\(server.port)")
        headers.add(name: "accept", value: "application/json")
        headers.add(name: "user-agent", value: "weft")
        if let tokenFile = access.tokenFile {
            let token = try read(tokenFile, what: "the token file").trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty, token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw KubernetesAccessError("the token file \(tokenFile) holds no token")
            }
            headers.add(name: "authorization", value: "Bearer \(token)")
        }
        // A watch is one long answer; a list page is read to its end.
        headers.add(name: "connection", value: "close")
        return HTTPRequestHead(version: .http1_1, method: .GET, uri: request.path, headers: headers)
    }

    private func read(_ path: String, what: String) throws -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw KubernetesAccessError("cannot read \(what) \(path)")
        }
    }

    fileprivate enum ResponseEvent {
        case head(Int)
        case body(ByteBuffer)
        case end
        case failed(String)
    }

    /// What the server or the connection did; `connection` nil for a
    /// connect that failed. On `loop`; a call made while the previous one
    /// closes its connection finds the generation moved on and is dropped.
    private func received(_ event: ResponseEvent, generation answered: Int, connection: ObjectIdentifier?) {
        guard answered == generation, !stopped, var machine else { return }
        if let connection, channel.map(ObjectIdentifier.init) != connection { return }
        // Out of the property while it changes, so its buffers are not
        // shared (a copy would be made at each chunk).
        self.machine = nil
        let actions: [KubernetesWatch.Action]
        switch event {
        case .head(let status): actions = machine.received(status: status)
        case .body(let bytes): actions = machine.received(body: bytes)
        case .end:
            channel = nil
            actions = machine.ended()
        case .failed(let reason):
            channel = nil
            actions = machine.failed(reason)
        }
        self.machine = machine
        perform(actions)
    }

    /// The last handler: turns the HTTP/1 answer into events for the source.
    private final class KubernetesResponseHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        private let deliver: (ResponseEvent) -> Void
        private var done = false
        /// Why the connection is ending, when known before it closes.
        var failure: String?

        init(deliver: @escaping (ResponseEvent) -> Void) {
            self.deliver = deliver
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !done else { return }
            switch unwrapInboundIn(data) {
            case .head(let head): deliver(.head(Int(head.status.code)))
            case .body(let bytes): deliver(.body(bytes))
            case .end:
                done = true
                deliver(.end)
                context.close(promise: nil)
            }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if event is IdleStateHandler.IdleStateEvent {
                failure = "no data from the API server for a long time"
                context.close(promise: nil)
            }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if failure == nil { failure = "\(error)" }
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            if !done {
                done = true
                deliver(.failed(failure ?? "the connection closed"))
            }
            context.fireChannelInactive()
        }
    }
}
