/// Frames a peer can send that make this side work without moving any
/// request forward (RFC 9113 §10.5). libnghttp2 bounds the replies they
/// queue (`max_outbound_ack`) and, where backported, the rate of RST_STREAM;
/// it does not bound the frames themselves. These are Envoy's rules and
/// defaults, kept per connection; breaking one ends the connection with
/// GOAWAY ENHANCE_YOUR_CALM.
public struct HTTP2FrameBudget: Sendable {
    /// What the peer overdid.
    public enum Flood: String, Sendable, Equatable {
        /// DATA, HEADERS or CONTINUATION frames in a row with no payload and
        /// no END_STREAM (CVE-2019-9518).
        case emptyFrames = "empty frames"
        /// PRIORITY frames beyond a fixed number per stream opened (CVE-2019-9513).
        case priorityFrames = "PRIORITY frames"
        /// WINDOW_UPDATE frames out of proportion to the DATA this side sent.
        case windowUpdates = "WINDOW_UPDATE frames"
        /// Most of the peer's streams reset by the peer before this side
        /// answered them (CVE-2023-44487, "rapid reset").
        case prematureResets = "streams reset before their response"
    }

    public struct Limits: Hashable, Sendable {
        public var maxConsecutiveEmptyFrames = 1
        public var maxPriorityFramesPerStream = 100
        public var maxWindowUpdatesPerDataFrameSent = 10
        /// Premature resets are judged once the peer has opened this many
        /// streams; from then on, more than half of them reset ends it.
        public var prematureResetMinimumStreams = 500

        public init() {}
    }

    public let limits: Limits
    private var consecutiveEmpty = 0
    private var priorityFrames = 0
    private var windowUpdates = 0
    private var dataFramesSent = 0
    private var streamsOpened = 0
    private var prematureResets = 0

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// A frame header arrived. Returns the flood it completes, if any.
    public mutating func received(type: UInt8, flags: UInt8, length: Int) -> Flood? {
        switch type {
        case FrameType.data, FrameType.headers, FrameType.continuation:
            if length == 0 && flags & Flag.endStream == 0 {
                consecutiveEmpty += 1
                if consecutiveEmpty > limits.maxConsecutiveEmptyFrames { return .emptyFrames }
            } else {
                consecutiveEmpty = 0
            }
        case FrameType.priority:
            priorityFrames += 1
            if priorityFrames > limits.maxPriorityFramesPerStream * (1 + streamsOpened) { return .priorityFrames }
        case FrameType.windowUpdate:
            windowUpdates += 1
            let allowed = 5 + 2 * (streamsOpened + limits.maxWindowUpdatesPerDataFrameSent * dataFramesSent)
            if windowUpdates > allowed { return .windowUpdates }
        default:
            break
        }
        return nil
    }

    /// A stream opened (by the peer, or by this side's request).
    public mutating func streamOpened() { streamsOpened += 1 }

    /// This side sent a DATA frame.
    public mutating func sentData() { dataFramesSent += 1 }

    /// The peer reset one of its streams before this side had answered it.
    public mutating func prematureReset() -> Flood? {
        prematureResets += 1
        guard streamsOpened >= limits.prematureResetMinimumStreams else { return nil }
        return prematureResets * 2 > streamsOpened ? .prematureResets : nil
    }

    private enum FrameType {
        static let data: UInt8 = 0x0, headers: UInt8 = 0x1, priority: UInt8 = 0x2
        static let windowUpdate: UInt8 = 0x8, continuation: UInt8 = 0x9
    }

    private enum Flag {
        static let endStream: UInt8 = 0x1
    }
}
