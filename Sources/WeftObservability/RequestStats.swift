import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Finished requests and TCP sessions counted by direction, cluster, status
/// class and reason, with a latency histogram (SPEC §6): the figures behind
/// `weft_requests_total`, `weft_request_duration_seconds` and the per-cluster
/// TCP session metrics.
///
/// Each event loop counts into a table of its own, without a lock or an
/// atomic; a scrape asks every loop for a copy of its table and adds them
/// up. (swift-prometheus's instruments take a lock per observation, and its
/// histograms cannot be handed counts folded elsewhere, so the node renders
/// the text itself with `ProxyMetrics.family`.) Label values come from the
/// configuration (cluster names) and from weft's own enums, never from
/// request data, so the number of series stays bounded.
final class RequestStats: Sendable {
    /// Each loop's table, beside its loop and the loop's id. `add` finds
    /// the running loop's by a scan of the ids (a handful of loops, one per
    /// core, are compared faster than an identifier is hashed) and counts
    /// into it only there; a scrape asks each loop for a copy of its own.
    private let loops: [EventLoop]
    private let loopIDs: [ObjectIdentifier]
    private let loopTables: [StatsTable]
    /// Records made off those loops (tests, embedded loops).
    private let fallback = NIOLockedValueBox(StatsTable())

    /// One table per loop of `group` (made on each loop; call off them).
    init(group: EventLoopGroup?) {
        var loops: [EventLoop] = []
        var loopTables: [StatsTable] = []
        for loop in group?.makeIterator() ?? EventLoopIterator([]) {
            if let table = try? loop.submit({ StatsTable() }).wait() {
                loops.append(loop)
                loopTables.append(table)
            }
        }
        self.loops = loops
        self.loopIDs = loops.map { ObjectIdentifier($0) }
        self.loopTables = loopTables
    }

    func add(_ record: RequestRecord, seconds: Double) {
        if let loop = MultiThreadedEventLoopGroup.currentEventLoop {
            let running = ObjectIdentifier(loop)
            for index in loopIDs.indices where loopIDs[index] == running {
                loopTables[index].add(record, seconds: seconds)  // a class: counted in place
                return
            }
        }
        fallback.withLockedValue { $0.add(record, seconds: seconds) }
    }

    /// Every loop's counts added up.
    func totals(on loop: EventLoop) -> EventLoopFuture<[StatsKey: Tally]> {
        let copies = zip(loops, loopTables).map { loop, table in loop.submit { table.tallies } }
        let fallback = self.fallback
        return EventLoopFuture.whenAllSucceed(copies, on: loop).map { perLoop in
            var total = fallback.withLockedValue { $0.tallies }
            for tallies in perLoop {
                for (key, tally) in tallies { total[key, default: Tally()] += tally }
            }
            return total
        }
    }
}

/// What a request or session is counted under.
public struct StatsKey: Hashable, Sendable {
    public var direction: Direction
    /// The cluster's name; `none` for passthrough and inbound delivery.
    public var cluster: String
    /// 1 to 5 for 1xx to 5xx; 0 when no response head reached the client.
    public var statusClass: Int
    public var reason: ErrorReason?
    public var isSession: Bool

    public var statusClassLabel: String { statusClass == 0 ? "none" : "\(statusClass)xx" }
}

/// The counts under one key.
public struct Tally: Sendable, Equatable {
    /// Upper bounds (seconds) of the latency buckets; one more counts the rest.
    public static let bounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                          5, 10, 30]
    public var count = 0
    /// Per bucket, not cumulative: index i counts durations ≤ bounds[i] and
    /// > bounds[i-1]; index 15 the ones above the last bound.
    public var buckets = SIMD16<Int>()
    public var seconds = 0.0
    public var bytesIn = 0
    public var bytesOut = 0

    public init() {}

    public static func += (total: inout Tally, more: Tally) {
        total.count += more.count
        total.buckets &+= more.buckets
        total.seconds += more.seconds
        total.bytesIn += more.bytesIn
        total.bytesOut += more.bytesOut
    }

    mutating func observe(seconds value: Double, bytesIn: Int, bytesOut: Int) {
        count += 1
        var index = 0
        while index < Self.bounds.count && value > Self.bounds[index] { index += 1 }
        buckets[index] += 1
        seconds += value
        self.bytesIn += bytesIn
        self.bytesOut += bytesOut
    }
}

/// One loop's counts (a class, so a loop counts in place). Touched only on
/// its loop, or under the fallback's lock.
///
/// A loop counts under few keys, mostly the same ones request after
/// request: the last keys used are kept beside their slots and compared
/// first (names from the configuration share their storage, so comparing
/// them is a pointer check), and a new key is hashed only on a miss.
final class StatsTable: @unchecked Sendable {
    /// Each key's slot in `counts`; slots are never removed.
    private var slots: [StatsKey: Int] = [:]
    private var counts: [Tally] = []
    /// The last keys counted under, most recent first.
    private var recent: [(key: StatsKey, slot: Int)] = []
    private static let recentKeys = 4

    /// Every key's counts.
    var tallies: [StatsKey: Tally] {
        slots.mapValues { counts[$0] }
    }

    func add(_ record: RequestRecord, seconds: Double) {
        let key = StatsKey(direction: record.direction, cluster: record.cluster ?? "none",
                           statusClass: record.isSession || record.status <= 0 ? 0 : min(max(record.status / 100, 1), 5),
                           reason: record.reason, isSession: record.isSession)
        counts[slot(of: key)].observe(seconds: seconds, bytesIn: record.bytesIn, bytesOut: record.bytesOut)
    }

    private func slot(of key: StatsKey) -> Int {
        if let first = recent.first, first.key == key { return first.slot }
        let slot: Int
        if let index = recent.firstIndex(where: { $0.key == key }) {
            slot = recent.remove(at: index).slot
        } else if let known = slots[key] {
            slot = known
            if recent.count == Self.recentKeys { recent.removeLast() }
        } else {
            slot = counts.count
            counts.append(Tally())
            slots[key] = slot
            if recent.count == Self.recentKeys { recent.removeLast() }
        }
        recent.insert((key, slot), at: 0)
        return slot
    }
}
