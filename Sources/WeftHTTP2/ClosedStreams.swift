/// The peer's streams that a server session saw close lately (the last
/// `capacity` of them), and whether the peer had ended its side first.
///
/// HEADERS on a stream id that is no longer open mean one of three things,
/// and this record tells them apart:
/// - the peer had ended the stream: anything more from it breaks the
///   protocol (a connection error STREAM_CLOSED, RFC 9113 §5.1);
/// - the stream was cut short (reset by either side): the peer may have had
///   trailers in flight, which are ignored;
/// - an id not recorded (never opened, or closed long ago) is for the
///   session's own rules.
///
/// libnghttp2 keeps closed streams only for its RFC 7540 priority tree, and
/// only in some versions (1.52 keeps up to SETTINGS_MAX_CONCURRENT_STREAMS
/// of them on a server, 224 bytes each; 1.65 and later none). The session
/// asks it to keep none and keeps this instead, four bytes a stream, so the
/// answer no longer depends on the library's version.
struct ClosedStreams {
    enum Closure: Equatable {
        /// The peer's END_STREAM had arrived.
        case endedByPeer
        /// Reset before the peer ended it.
        case cutShort
    }

    let capacity: Int
    /// Stream ids, oldest first until the ring is full; negated for a
    /// stream the peer had ended. Grows to `capacity`, then wraps.
    private var ids: [Int32] = []
    /// Where the next id goes once the ring is full (the oldest entry).
    private var next = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    mutating func record(_ streamID: Int32, endedByPeer: Bool) {
        guard streamID > 0 else { return }
        let entry = endedByPeer ? -streamID : streamID
        if ids.count < capacity {
            ids.append(entry)
        } else {
            ids[next] = entry
            next = (next + 1) % capacity
        }
    }

    /// How `streamID` closed, if it is among the last `capacity` closed.
    /// A stream closes once, so an id appears at most once.
    func closure(of streamID: Int32) -> Closure? {
        guard streamID > 0 else { return nil }
        for entry in ids where entry == streamID || entry == -streamID {
            return entry < 0 ? .endedByPeer : .cutShort
        }
        return nil
    }
}
