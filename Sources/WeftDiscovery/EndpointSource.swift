import Dispatch
import NIOCore
import Synchronization
import WeftConfig

/// Where a cluster's endpoints come from when they can change while the
/// node runs (SPEC §5, Discovery): a source reports the whole current list
/// each time it changes, from its own queue, never from an event loop.
public protocol EndpointSource: AnyObject, Sendable {
    /// What the source watches: a source with equal settings after a reload
    /// is kept running, a different one replaces it.
    var settings: String { get }
    /// Starts watching; `update` gets the full list after each change
    /// (and once at start, when the first answer is in).
    func start(update: @escaping @Sendable ([Endpoint]) -> Void)
    func stop()
}

public enum EndpointSources {
    /// The source a cluster's `discovery` asks for; nil for `static`.
    /// `onProblem` hears why an answer could not be had (the last good
    /// list stays in force). A `kubernetes` source runs on one loop of
    /// `eventLoops` and reaches the API server `kubernetesAPI` names (nil:
    /// the in-cluster one).
    public static func make(for cluster: Cluster, resolver: any HostResolver = SystemResolver(),
                            eventLoops: any EventLoopGroup, kubernetesAPI: KubernetesAPISettings?,
                            onProblem: @escaping @Sendable (String) -> Void) -> (any EndpointSource)? {
        switch cluster.discovery {
        case .static:
            return nil
        case .file:
            guard let path = cluster.file else { return nil }
            return FileEndpointSource(path: path, onProblem: onProblem)
        case .dns:
            return DNSEndpointSource(names: cluster.namedEndpoints, refresh: cluster.dnsRefresh, resolver: resolver,
                                     onProblem: onProblem)
        case .kubernetes:
            guard let service = cluster.kubernetes else { return nil }
            return KubernetesEndpointSource(service: service, api: kubernetesAPI, eventLoop: eventLoops.next(),
                                            onProblem: onProblem)
        }
    }
}

/// A repeating dispatch timer, made when started (libdispatch must not
/// release a source that was never resumed). Dispatch sources are
/// thread-safe; this one is made, resumed and cancelled under a lock.
public final class RepeatingTimer: @unchecked Sendable {
    private let queue: DispatchQueue
    private let lock = Mutex<Bool>(false)  // started
    private var source: (any DispatchSourceTimer)?

    public init(queue: DispatchQueue) {
        self.queue = queue
    }

    /// Runs `handler` now and every `interval`; only the first call starts it.
    public func start(every interval: DispatchTimeInterval, _ handler: @escaping @Sendable () -> Void) {
        lock.withLock { started in
            guard !started else { return }
            started = true
            let timer = DispatchSource.makeTimerSource(queue: queue)
            timer.schedule(deadline: .now(), repeating: interval, leeway: .milliseconds(100))
            timer.setEventHandler(handler: handler)
            timer.resume()
            source = timer
        }
    }

    public func cancel() {
        lock.withLock { _ in
            source?.cancel()
            source = nil
        }
    }
}
