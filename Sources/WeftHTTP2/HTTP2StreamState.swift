import NIOCore

/// The wrapper's own bookkeeping for one stream, next to nghttp2's: the
/// outbound body queue the data provider reads from, and the inbound header
/// block and flow-control debt. Plain Swift, no pointers.
///
/// A class, so that the session mutates a stream's queues in place: a
/// struct copied out of the streams dictionary and stored back would copy
/// its arrays on every header, DATA chunk and queued body buffer.
final class HTTP2StreamState {
    /// Our sending side.
    enum LocalSide {
        /// No HEADERS submitted yet (a server stream before its response).
        case idle
        /// HEADERS submitted without END_STREAM; a data provider reads `outbound`.
        case open
        /// HEADERS submitted with END_STREAM: no body may follow.
        case ended
    }

    var local: LocalSide = .idle

    // MARK: outbound body

    /// The oldest body buffer waiting for the data provider, held inline:
    /// most streams have one queued at a time, and a queue allocates. Nil
    /// when nothing is queued.
    private var outboundHead: ByteBuffer?
    /// The buffers queued behind `outboundHead`, oldest first; nil until a
    /// stream queues a second one.
    private var outbound: CircularBuffer<ByteBuffer>?
    var queuedBytes = 0
    /// The body ends after `outbound` drains (END_STREAM, or trailers).
    var endRequested = false
    /// Trailers to send once `outbound` drains.
    var trailers: HTTP2Fields?
    /// The data provider returned NGHTTP2_ERR_DEFERRED; new data must resume it.
    var deferred = false
    /// Below the high watermark (see `HTTP2Limits.streamSendHighWatermark`).
    var writable = true
    /// Reset the stream with NO_ERROR once our END_STREAM is sent.
    var resetAfterEnd = false

    // MARK: inbound

    /// Closed by nghttp2; the entry lives on only while `unconsumed > 0`.
    var closed = false
    /// Headers broke a limit; the stream is being reset, its input dropped.
    var rejected = false
    /// DATA chunks of the frame being received (delivered when it completes).
    var pendingData = PendingChunks()
    /// Bytes handed to the delegate and not yet given back with `consume`.
    var unconsumed = 0

    init(local: LocalSide) {
        self.local = local
    }

    /// Appends `buffer` to the outbound queue.
    func enqueue(_ buffer: ByteBuffer) {
        guard buffer.readableBytes > 0 else { return }
        queuedBytes += buffer.readableBytes
        // Nothing queued: nothing is behind the head either.
        guard outboundHead != nil else {
            outboundHead = buffer
            return
        }
        // Taken out and put back, so the queue is mutated in place.
        var queue = outbound.take() ?? CircularBuffer(initialCapacity: 4)
        queue.append(buffer)
        outbound = queue
    }

    /// The buffer queued behind the head, now the head; nil when none is.
    private func nextQueued() -> ByteBuffer? {
        guard var queue = outbound.take() else { return nil }
        defer { outbound = queue }  // kept, with its storage, for the next
        return queue.popFirst()
    }

    /// Moves the first `count` queued bytes to `output` as slices of the
    /// queued buffers (no byte is copied). Returns false when fewer than
    /// `count` bytes are queued.
    func dequeue(_ count: Int, into output: inout [ByteBuffer]) -> Bool {
        guard count <= queuedBytes else { return false }
        guard count > 0 else { return true }
        var remaining = count
        while remaining > 0, var head = outboundHead.take() {
            if head.readableBytes <= remaining {
                remaining -= head.readableBytes
                output.append(head)
                outboundHead = nextQueued()
            } else {
                // Split the head buffer: its front goes out, the rest stays queued.
                defer { outboundHead = head }
                guard let slice = head.readSlice(length: remaining) else { return false }
                output.append(slice)
                remaining = 0
            }
        }
        guard remaining == 0 else { return false }
        queuedBytes -= count
        return true
    }

    /// Moves the first `count` queued bytes to the end of `target` by
    /// copying them, for a payload small enough that a copy is cheaper than
    /// one more buffer to write. Returns false when fewer than `count` bytes
    /// are queued.
    func dequeue(_ count: Int, copyingInto target: inout ByteBuffer) -> Bool {
        guard count <= queuedBytes else { return false }
        var remaining = count
        while remaining > 0, var head = outboundHead.take() {
            let taken = Swift.min(remaining, head.readableBytes)
            head.withUnsafeReadableBytes { target.writeBytes(UnsafeRawBufferPointer(rebasing: $0.prefix(taken))) }
            head.moveReaderIndex(forwardBy: taken)
            remaining -= taken
            outboundHead = head.readableBytes > 0 ? head : nextQueued()
        }
        guard remaining == 0 else { return false }
        queuedBytes -= count
        return true
    }

    /// Drops everything queued to send (the stream is closed).
    func dropOutbound() {
        outboundHead = nil
        outbound = nil
        queuedBytes = 0
        trailers = nil
    }
}

/// The DATA chunks of one frame being received. A frame read in one piece
/// is one chunk, held inline; an array is made only for a frame that
/// arrives split across reads.
struct PendingChunks {
    private var first: ByteBuffer?
    private var rest: [ByteBuffer] = []

    var isEmpty: Bool { first == nil }

    /// Their bytes, together.
    var readableBytes: Int {
        rest.reduce(first?.readableBytes ?? 0) { $0 + $1.readableBytes }
    }

    mutating func append(_ chunk: ByteBuffer) {
        if first == nil { first = chunk } else { rest.append(chunk) }
    }

    /// Hands out the chunks in order, the last one flagged, and empties
    /// the list (the array keeps its storage for the stream's next frame).
    mutating func drain(_ body: (ByteBuffer, _ isLast: Bool) -> Void) {
        guard let head = first.take() else { return }
        body(head, rest.isEmpty)
        for (index, chunk) in rest.enumerated() { body(chunk, index == rest.count - 1) }
        rest.removeAll(keepingCapacity: true)
    }

    mutating func removeAll() {
        first = nil
        rest = []
    }
}
