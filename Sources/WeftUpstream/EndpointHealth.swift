import Atomics
import WeftCore

/// One endpoint's health as the whole node sees it: whether its active
/// health check fails, and whether outlier detection has ejected it. Every
/// loop's balancer reads it (one relaxed load per candidate); it is written
/// rarely (a failed request, a check that changes its verdict). Kept by its
/// cluster's `EndpointRegistry` by address, so it outlives reloads and
/// discovery changes while the endpoint stays.
public final class EndpointHealth: @unchecked Sendable {
    public let address: IPEndpoint
    /// Bit 0: failing its health check; bit 1: ejected. Zero: usable.
    private let flags = ManagedAtomic<UInt8>(0)
    private static let failingCheck: UInt8 = 1
    private static let ejectedFlag: UInt8 = 2
    /// When the current ejection ends (monotonic nanoseconds).
    let ejectedUntil = ManagedAtomic<UInt64>(0)
    let consecutive5xx = ManagedAtomic<Int>(0)
    let consecutiveGatewayErrors = ManagedAtomic<Int>(0)
    /// Guarded by the registry's lock: how many times it was ejected (the
    /// n of `base_ejection × n`, forgiven with time back in service), and
    /// when its last ejection ended.
    var ejections = 0
    var returnedAt: UInt64 = 0
    /// Its registry, told of failures; weak, since the registry holds it.
    weak var registry: EndpointRegistry?

    init(address: IPEndpoint, registry: EndpointRegistry?) {
        self.address = address
        self.registry = registry
    }

    /// Neither failing its check nor ejected.
    public var isUsable: Bool { flags.load(ordering: .relaxed) == 0 }
    public var isEjected: Bool { flags.load(ordering: .relaxed) & Self.ejectedFlag != 0 }
    public var isFailingHealthCheck: Bool { flags.load(ordering: .relaxed) & Self.failingCheck != 0 }
    /// Ejections so far, less what time back in service forgave.
    public var ejectionCount: Int { registry?.ejectionCount(of: self) ?? ejections }

    /// The active health check's verdict. Returns whether it changed.
    @discardableResult
    public func setFailingHealthCheck(_ failing: Bool) -> Bool {
        let old = failing
            ? flags.loadThenBitwiseOr(with: Self.failingCheck, ordering: .relaxed)
            : flags.loadThenBitwiseAnd(with: ~Self.failingCheck, ordering: .relaxed)
        return (old & Self.failingCheck != 0) != failing
    }

    func setEjected(_ ejected: Bool) {
        if ejected {
            flags.loadThenBitwiseOr(with: Self.ejectedFlag, ordering: .relaxed)
        } else {
            flags.loadThenBitwiseAnd(with: ~Self.ejectedFlag, ordering: .relaxed)
        }
    }

    /// What an attempt on the endpoint came to, for outlier detection. The
    /// common case (a good answer while nothing was failing) is two loads.
    func record(_ outcome: LeaseOutcome, now: UInt64) {
        switch outcome {
        case .abandoned:
            return
        case .success:
            if consecutive5xx.load(ordering: .relaxed) != 0 { consecutive5xx.store(0, ordering: .relaxed) }
            if consecutiveGatewayErrors.load(ordering: .relaxed) != 0 {
                consecutiveGatewayErrors.store(0, ordering: .relaxed)
            }
        case .serverError(let gateway):
            let fives = consecutive5xx.wrappingIncrementThenLoad(ordering: .relaxed)
            let gateways = gateway
                ? consecutiveGatewayErrors.wrappingIncrementThenLoad(ordering: .relaxed)
                : { consecutiveGatewayErrors.store(0, ordering: .relaxed); return 0 }()
            registry?.failed(self, consecutive5xx: fives, consecutiveGatewayErrors: gateways, now: now)
        case .failure:
            let fives = consecutive5xx.wrappingIncrementThenLoad(ordering: .relaxed)
            let gateways = consecutiveGatewayErrors.wrappingIncrementThenLoad(ordering: .relaxed)
            registry?.failed(self, consecutive5xx: fives, consecutiveGatewayErrors: gateways, now: now)
        }
    }
}
