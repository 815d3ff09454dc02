/// The peer's streams that a server session saw close lately, and how:
/// whether the peer had ended its side, or the stream was cut short.
///
/// HEADERS on a stream id that is no longer open mean one of three things,
/// and this record tells them apart:
/// - the peer had ended the stream: anything more from it breaks the
///   protocol (a connection error STREAM_CLOSED, RFC 9113 §5.1);
/// - the stream was cut short (reset by either side, or refused): the peer
///   may have had trailers in flight, which are ignored;
/// - an id not recorded (never opened, or closed long ago) is for the
///   session's own rules.
///
/// Each kind keeps its last `capacity` streams apart, so that a burst of
/// ordinary completions never pushes out a stream reset a moment ago.
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
        /// Reset or refused before the peer ended it.
        case cutShort
    }

    private var endedByPeer: RecentStreamIDs
    private var cutShort: RecentStreamIDs

    init(capacity: Int) {
        endedByPeer = RecentStreamIDs(capacity: capacity)
        cutShort = RecentStreamIDs(capacity: capacity)
    }

    mutating func record(_ streamID: Int32, _ closure: Closure) {
        switch closure {
        case .endedByPeer: endedByPeer.insert(streamID)
        case .cutShort: cutShort.insert(streamID)
        }
    }

    /// How `streamID` closed, if it is among the last of its kind.
    func closure(of streamID: Int32) -> Closure? {
        if endedByPeer.contains(streamID) { return .endedByPeer }
        if cutShort.contains(streamID) { return .cutShort }
        return nil
    }
}

/// The last `capacity` stream ids inserted: an array that grows to
/// `capacity`, then overwrites its oldest entry.
struct RecentStreamIDs {
    let capacity: Int
    private var ids: [Int32] = []
    /// Where the next id goes once the array is full (the oldest entry).
    private var next = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    mutating func insert(_ streamID: Int32) {
        if ids.count < capacity {
            ids.append(streamID)
        } else {
            ids[next] = streamID
            next = (next + 1) % capacity
        }
    }

    func contains(_ streamID: Int32) -> Bool {
        ids.contains(streamID)
    }
}
