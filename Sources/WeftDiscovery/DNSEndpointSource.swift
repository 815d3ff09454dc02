#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization
import WeftConfig
import WeftCore

/// Resolves a host name to its addresses (A and AAAA).
public protocol HostResolver: Sendable {
    func resolve(_ host: String) -> Result<[IPAddress], HostResolutionError>
}

public struct HostResolutionError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// The system's resolver (`getaddrinfo`: /etc/hosts, then DNS, as the
/// node's resolv.conf says). Blocking: called on the source's queue.
public struct SystemResolver: HostResolver {
    public init() {}

    public func resolve(_ host: String) -> Result<[IPAddress], HostResolutionError> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let code = getaddrinfo(host, nil, &hints, &list)
        guard code == 0 else { return .failure(HostResolutionError(String(cString: gai_strerror(code)))) }
        defer { freeaddrinfo(list) }
        var addresses: [IPAddress] = []
        var next = list
        while let entry = next {
            if let raw = entry.pointee.ai_addr {
                switch Int32(raw.pointee.sa_family) {
                case AF_INET:
                    let v4 = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                    addresses.append(.v4(UInt32(bigEndian: v4)))
                case AF_INET6:
                    let bytes = raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                        withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
                    }
                    if let address = IPAddress(bytes: bytes) { addresses.append(address) }
                default:
                    break
                }
            }
            next = entry.pointee.ai_next
        }
        return .success(addresses)
    }
}

/// `discovery: dns`: each named endpoint resolved every `refresh`; every
/// address becomes an endpoint with the name's port, weight and `mesh`. A
/// failed lookup keeps that name's last answer (SPEC §5); the list is
/// reported only when it changes, and a name's problem only when it is
/// new (not once per refresh).
public final class DNSEndpointSource: EndpointSource {
    public let names: [NamedEndpoint]
    public let refresh: Duration
    private let resolver: any HostResolver
    private let queue = DispatchQueue(label: "weft.discovery.dns")
    private let timer: RepeatingTimer
    private let state = Mutex<State>(State())
    private let onProblem: @Sendable (String) -> Void

    private struct State {
        var lastAnswers: [String: [IPAddress]] = [:]
        var reported: [Endpoint]?
        /// The problem last told for each failing name.
        var problems: [String: String] = [:]
    }

    public init(names: [NamedEndpoint], refresh: Duration, resolver: any HostResolver = SystemResolver(),
                onProblem: @escaping @Sendable (String) -> Void = { _ in }) {
        self.names = names
        self.refresh = refresh
        self.resolver = resolver
        self.onProblem = onProblem
        timer = RepeatingTimer(queue: queue)
    }

    public var settings: String {
        "dns \(refresh) " + names.map { "\($0.host):\($0.port)/\($0.weight)/\($0.mesh.map(String.init) ?? "-")" }
            .joined(separator: ",")
    }

    public func start(update: @escaping @Sendable ([Endpoint]) -> Void) {
        let (seconds, attoseconds) = refresh.components
        let interval = DispatchTimeInterval.nanoseconds(Int(min(seconds, 86_400) * 1_000_000_000 + attoseconds / 1_000_000_000))
        timer.start(every: interval) { [self] in
            if let endpoints = resolveAll() { update(endpoints) }
        }
    }

    public func stop() { timer.cancel() }

    /// One round: every name resolved; the list if it changed, else nil.
    func resolveAll() -> [Endpoint]? {
        var answers: [String: [IPAddress]] = [:]
        var failures: [String: String] = [:]
        for host in Set(names.map(\.host)) {
            switch resolver.resolve(host) {
            case .success(let addresses) where !addresses.isEmpty:
                answers[host] = addresses
            case .success:
                failures[host] = "\(host): no addresses"
            case .failure(let error):
                failures[host] = "\(host): \(error)"
            }
        }
        let news = state.withLock { state -> [String] in
            for host in answers.keys { state.problems[host] = nil }
            var news: [String] = []
            for (host, problem) in failures where state.problems[host] != problem {
                state.problems[host] = problem
                news.append(state.lastAnswers[host] == nil ? problem + " (never resolved)" : problem)
            }
            return news
        }
        for problem in news.sorted() { onProblem(problem) }
        return state.withLock { state -> [Endpoint]? in
            for (host, addresses) in answers { state.lastAnswers[host] = addresses }
            var seen = Set<IPEndpoint>()
            var endpoints: [Endpoint] = []
            for name in names {
                for address in state.lastAnswers[name.host] ?? [] {
                    let endpoint = IPEndpoint(address: address, port: name.port)
                    if seen.insert(endpoint).inserted {
                        endpoints.append(Endpoint(address: endpoint, weight: name.weight, mesh: name.mesh, locality: name.locality))
                    }
                }
            }
            // Order does not matter to the balancers' plans beyond
            // round robin's; sorting keeps a reshuffled answer a non-change.
            endpoints.sort { $0.address.description < $1.address.description }
            guard endpoints != state.reported else { return nil }
            state.reported = endpoints
            return endpoints
        }
    }
}
