import CNghttp2
import NIOCore

/// One HTTP/2 connection's protocol state: an owning wrapper around one
/// `nghttp2_session`, client or server, with `ByteBuffer`s in and out.
///
/// This is a pure session object, no I/O: bytes read from the socket go to
/// ``receive(_:)``; what the session wants to write comes out of
/// ``produceOutput(into:maxBytes:)``; what the peer said arrives at the
/// ``HTTP2SessionDelegate``. The NIO handlers sit on top of it.
///
/// Invariants the caller keeps:
/// - **One thread.** Not thread-safe and not `Sendable`: use it from the event
///   loop that owns the connection, and nowhere else.
/// - **Flush after every call.** Any call can queue frames (a `receive` queues
///   SETTINGS/PING ACKs, WINDOW_UPDATEs, RST_STREAMs); call `produceOutput`
///   after each batch of calls and write what it returns, in order.
/// - **Consume what you were given.** Automatic WINDOW_UPDATE is off: a
///   stream's (and the connection's) receive window reopens only when
///   ``consume(streamID:bytes:)`` reports bytes written onward. Bytes never
///   consumed (a stream dropped on the floor) must be released with
///   ``discardUnconsumed(streamID:)`` or the connection window shrinks for good.
/// - **Close when both `wantsRead` and `wantsWrite` are false**, or when a
///   call throws an error whose ``HTTP2SessionError/isFatal`` is true (after
///   flushing output), or on the delegate's `connectionError`.
///
/// Body bytes go out without copying: ``sendData(streamID:_:endStream:)``
/// queues the caller's buffer, and the DATA frames `produceOutput` emits are a
/// 9-byte header buffer followed by slices of that buffer
/// (`NGHTTP2_DATA_FLAG_NO_COPY`).
///
/// All libnghttp2 pointer handling lives in this file: the C callbacks at the
/// bottom are file-private functions that recover the session from
/// `user_data` with `Unmanaged` and forward to a method.
public final class HTTP2Session {
    public enum Role: Hashable, Sendable {
        /// Sends the client preface and opens streams (``submitRequest(headers:endStream:)``).
        case client
        /// Expects the client preface and answers streams (``submitResponse(streamID:headers:endStream:)``).
        case server
    }

    /// RST_STREAM code used when received headers break ``HTTP2Limits``.
    public static let headerLimitResetCode = HTTP2ErrorCode.enhanceYourCalm

    public let role: Role
    public let settings: HTTP2Settings
    public let limits: HTTP2Limits
    public let protections: HTTP2Protections
    /// Not retained: the handler that owns the session is its delegate, and
    /// outlives it. Unowned rather than weak: a weak reference would give
    /// the delegate a side table, which every retain and release of it then
    /// goes through, and cost a `swift_weakLoadStrong` for every event. A
    /// delegate must outlive the session (or be set to nil first).
    public unowned(safe) var delegate: (any HTTP2SessionDelegate)?

    /// Streams opened and not yet closed (requests still queued in nghttp2
    /// waiting for a concurrency slot count too).
    public private(set) var openStreamCount = 0
    /// The fatal error that ended the session, if any.
    public private(set) var terminationError: HTTP2SessionError?
    /// The last diagnostic text nghttp2 gave (for logs).
    public private(set) var lastLibraryMessage: String?

    private let session: OpaquePointer
    /// Where nghttp2 allocates. A stored property, so it is released only
    /// after `deinit` has deleted the session.
    let memoryPool: HTTP2MemoryPool
    private var streams = StreamSlots<HTTP2StreamState>()
    /// The header block being read. Its fields arrive one callback each,
    /// and blocks one at a time (a HEADERS frame's CONTINUATIONs follow it
    /// with nothing between), so the session holds the one being read:
    /// its stream (0 for none, or for a block being dropped because its
    /// stream is unknown or rejected), its fields and their running size.
    private var blockStreamID: Int32 = 0
    private var block = HTTP2Fields()
    private var blockBytes = 0

    /// Stops reading the current header block; what follows of it is dropped.
    private func endBlock() {
        blockStreamID = 0
        block = HTTP2Fields()
    }

    // Events are collected while nghttp2 runs and delivered once it returns,
    // so the delegate never runs inside a libnghttp2 callback.
    private enum Event {
        case headers(Int32, HTTP2Fields, HTTP2HeadersKind, endStream: Bool)
        case data(Int32, ByteBuffer, endStream: Bool)
        case streamClosed(Int32, HTTP2ErrorCode)
        case goAway(Int32, HTTP2ErrorCode, String)
        case settings(HTTP2RemoteSettings)
        case pingAck(UInt64)
        case writability(Int32, Bool)
        case rejected(Int32, HTTP2StreamRejection)
        case connectionError(HTTP2SessionError)
    }
    private var events: [Event] = []
    private var delivering: [Event] = []
    private var dispatching = false
    /// Inside `nghttp2_session_mem_recv` or `nghttp2_session_send`.
    private var inLibrary = false

    // The input buffer of the running `receive`, so DATA can be sliced from it.
    private var input: ByteBuffer?
    private var inputBase: UnsafeRawPointer?
    private var inputCount = 0

    // Output of the running `produceOutput`.
    private let allocator = ByteBufferAllocator()
    private var output: [ByteBuffer] = []
    /// Frame bytes nghttp2 hands over, and small DATA payloads copied in,
    /// gathered until a larger payload (sent as a slice of the app's
    /// buffer) or the end of the output cuts them off as a slice. Kept
    /// between calls: once the slices sent earlier are gone, its storage is
    /// reused instead of allocating another.
    private var framing = ByteBuffer()
    /// The header blocks nghttp2 holds pointers into. Their fields go to it
    /// uncopied (`NGHTTP2_NV_FLAG_NO_COPY_VALUE`, and `_NAME` when the names
    /// are lower-case), so each is kept until its HEADERS frame is sent or
    /// dropped, and all of them once nothing is queued or half sent.
    private var lentBlocks: [FieldBytes] = []
    private var outputBytes = 0
    private var outputBudget = Int.max
    /// Streams whose data provider was deferred only because the output
    /// budget ran out; resumed by the next `produceOutput`.
    private var budgetDeferred: Set<Int32> = []

    /// GOAWAYs we submitted and nghttp2 has not sent yet; any other GOAWAY
    /// with an error code is nghttp2 tearing the connection down.
    private var localGoAwaysPending = 0
    private var nextPingPayload: UInt64 = 1
    private var shutdownPingPayload: UInt64?

    /// Creates the session and queues this side's SETTINGS (and, for a
    /// client, the connection preface) and the connection WINDOW_UPDATE.
    ///
    /// - Parameter protections: which optional libnghttp2 protections to use;
    ///   ``HTTP2Protections/detected`` unless a test injects another probe.
    /// - Parameter recyclesLibraryMemory: false gives every block nghttp2
    ///   frees back to the system at once (see `HTTP2MemoryPool`), so that
    ///   AddressSanitizer watches each; for the fuzz harnesses.
    public init(role: Role, settings: HTTP2Settings = .default, limits: HTTP2Limits = .default,
                protections: HTTP2Protections = .detected, recyclesLibraryMemory: Bool = true,
                delegate: HTTP2SessionDelegate?) throws {
        memoryPool = HTTP2MemoryPool(keepsBlocks: recyclesLibraryMemory)
        var callbacks: OpaquePointer?
        try Self.check(nghttp2_session_callbacks_new(&callbacks))
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_send_callback(callbacks, sendCallback)
        nghttp2_session_callbacks_set_send_data_callback(callbacks, sendDataCallback)
        nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, beginFrameCallback)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, beginHeadersCallback)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, headerCallback)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, frameRecvCallback)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, dataChunkRecvCallback)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, streamCloseCallback)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, frameSendCallback)
        nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, frameNotSendCallback)
        nghttp2_session_callbacks_set_error_callback2(callbacks, errorCallback)
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks, invalidFrameRecvCallback)

        var option: OpaquePointer?
        try Self.check(nghttp2_option_new(&option))
        defer { nghttp2_option_del(option) }
        // The window follows the consumer: nghttp2 sends WINDOW_UPDATE only
        // for bytes `consume` reports. HTTP messaging checks stay on (no
        // nghttp2_option_set_no_http_messaging): nghttp2 validates
        // pseudo-headers, content-length against DATA, and so on.
        nghttp2_option_set_no_auto_window_update(option, 1)
        // Closed streams are the session's own record (`closedStreams`).
        nghttp2_option_set_no_closed_streams(option, 1)
        protections.apply(to: option!, limits: limits)

        // nghttp2 copies the allocator; the pool it points to is this
        // session's and outlives `nghttp2_session_del` (see deinit).
        var mem = memoryPool.allocator
        var raw: OpaquePointer?
        let rv = role == .client
            ? nghttp2_session_client_new3(&raw, callbacks, nil, option, &mem)
            : nghttp2_session_server_new3(&raw, callbacks, nil, option, &mem)
        try Self.check(rv)
        self.session = raw!
        self.role = role
        self.settings = settings
        self.closedStreams = ClosedStreams(capacity: Int(min(settings.maxConcurrentStreams, Self.closedStreamsKept)))
        self.limits = limits
        self.frameBudget = HTTP2FrameBudget(limits: limits.frameBudget)
        self.protections = protections
        self.delegate = delegate
        // Only now is `self` whole; callbacks cannot run before this (nothing
        // has been fed or sent yet).
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())

        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                                   value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                                   value: settings.initialWindowSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue),
                                   value: settings.maxFrameSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_HEADER_TABLE_SIZE.rawValue),
                                   value: settings.headerTableSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue),
                                   value: settings.enablePush ? 1 : 0),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                                   value: UInt32(clamping: limits.maxHeaderListBytes)),
        ]
        if role == .server {
            // A server must not announce ENABLE_PUSH=1; 0 is allowed but pointless.
            entries.removeAll { $0.settings_id == Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue) }
        }
        try Self.check(nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                                               entries, entries.count))
        if settings.connectionWindowSize > 65535 {
            try Self.check(nghttp2_session_set_local_window_size(
                session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0,
                Int32(clamping: settings.connectionWindowSize)))
        }
    }

    deinit {
        nghttp2_session_del(session)
    }

    // MARK: - Input

    /// Feeds bytes read from the connection. Delegate calls for what they
    /// complete happen before this returns.
    ///
    /// - Throws: a fatal ``HTTP2SessionError`` (bad preface, flood, too many
    ///   CONTINUATIONs...): flush output, then close the connection. Protocol
    ///   errors nghttp2 answers with GOAWAY do not throw here; they surface as
    ///   the delegate's `connectionError` when `produceOutput` sends the GOAWAY.
    public func receive(_ buffer: ByteBuffer) throws {
        precondition(!inLibrary, "HTTP2Session.receive re-entered from a libnghttp2 callback")
        guard buffer.readableBytes > 0 else { return }
        if let terminationError { throw terminationError }
        let rv: Int = withExtendedLifetime(self) {
            buffer.withUnsafeReadableBytes { raw in
                input = buffer
                inputBase = raw.baseAddress
                inputCount = raw.count
                inLibrary = true
                defer {
                    inLibrary = false
                    input = nil
                    inputBase = nil
                    inputCount = 0
                }
                return nghttp2_session_mem_recv(
                    session, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), raw.count)
            }
        }
        if rv < 0 {
            // A flood stopped the input from a callback: name it, not the
            // callback failure nghttp2 reports.
            let error = terminationError ?? Self.error(Int32(clamping: rv))
            if error.isFatal { terminationError = error }
            deliverEvents()
            throw error
        }
        deliverEvents()
    }

    // MARK: - Output

    /// Moves everything nghttp2 wants to send into `buffers`, in wire order:
    /// control frames and DATA frame headers in small buffers, DATA payloads
    /// as slices of the buffers given to ``sendData(streamID:_:endStream:)``.
    ///
    /// - Parameter maxBytes: stop once about this many bytes were produced (a
    ///   frame is never split, so it can overshoot by one frame). Use it to
    ///   produce only what the socket will take; the rest stays queued.
    /// - Returns: the number of bytes appended.
    @discardableResult
    public func produceOutput(into buffers: inout [ByteBuffer], maxBytes: Int = .max) throws -> Int {
        precondition(!inLibrary, "HTTP2Session.produceOutput re-entered from a libnghttp2 callback")
        outputBytes = 0
        outputBudget = max(1, maxBytes)
        for streamID in budgetDeferred {
            try resumeIfDeferred(streamID)
        }
        budgetDeferred.removeAll()
        let rv = withExtendedLifetime(self) { () -> Int32 in
            inLibrary = true
            defer { inLibrary = false }
            return nghttp2_session_send(session)
        }
        // No frame points into a lent block any more when none is queued
        // and none is half sent. A send the budget cut short (`onSend`'s
        // WOULDBLOCK, only once the budget is used up) leaves its frame
        // active, which the queue's size does not count: its block stays
        // lent until the frame's own callback, or the callback would match
        // the address of a block made later in the same place. (A send that
        // failed may have stopped mid-frame too.)
        if !lentBlocks.isEmpty && rv == 0 && outputBytes < outputBudget
            && nghttp2_session_get_outbound_queue_size(session) == 0 {
            lentBlocks.removeAll(keepingCapacity: true)
        }
        flushFraming()
        buffers.append(contentsOf: output)
        output.removeAll(keepingCapacity: true)
        let produced = outputBytes
        if rv < 0 {
            let error = Self.error(rv)
            if error.isFatal { terminationError = error }
            deliverEvents()
            throw error
        }
        deliverEvents()
        return produced
    }

    /// ``produceOutput(into:maxBytes:)`` returning a fresh array.
    public func produceOutput(maxBytes: Int = .max) throws -> [ByteBuffer] {
        var buffers: [ByteBuffer] = []
        try produceOutput(into: &buffers, maxBytes: maxBytes)
        return buffers
    }

    // MARK: - Opening and answering streams

    /// Client: opens a stream with a request header block (pseudo-headers
    /// first, lowercase names). With `endStream` false the body follows with
    /// ``sendData(streamID:_:endStream:)`` / ``sendEnd(streamID:)`` /
    /// ``submitTrailers(streamID:headers:)``.
    ///
    /// nghttp2 holds the request back while the peer's MAX_CONCURRENT_STREAMS
    /// is reached; check ``openStreamCount`` against
    /// ``remoteMaxConcurrentStreams`` to spread load instead.
    ///
    /// - Returns: the new stream's id.
    /// - Throws: `.streamIDNotAvailable` when the ids are used up (open a new
    ///   connection), `.wrongRole` on a server.
    public func submitRequest(headers: HTTP2Fields, endStream: Bool) throws -> Int32 {
        guard role == .client else { throw HTTP2SessionError.wrongRole("submitRequest on a server session") }
        let id: Int32 = withNVArray(headers) { nva, count in
            if endStream {
                return nghttp2_submit_request(session, nil, nva, count, nil, nil)
            }
            var provider = Self.dataProvider
            return nghttp2_submit_request(session, nil, nva, count, &provider, nil)
        }
        try Self.check(id)
        streams[id] = HTTP2StreamState(local: endStream ? .ended : .open)
        openStreamCount += 1
        frameBudget.streamOpened()
        deliverEvents()
        return id
    }

    /// Server: the final response header block (`:status` first). Data queued
    /// before this call goes out after it.
    public func submitResponse(streamID: Int32, headers: HTTP2Fields, endStream: Bool) throws {
        guard role == .server else { throw HTTP2SessionError.wrongRole("submitResponse on a client session") }
        let state = try openStream(streamID)
        guard state.local == .idle else { throw HTTP2SessionError.streamEnded(streamID) }
        if endStream && (state.queuedBytes > 0 || state.trailers != nil) {
            throw HTTP2SessionError.invalidArgument("endStream response on stream \(streamID) with a queued body")
        }
        let rv: Int32 = withNVArray(headers) { nva, count in
            if endStream {
                return nghttp2_submit_response(session, streamID, nva, count, nil)
            }
            var provider = Self.dataProvider
            return nghttp2_submit_response(session, streamID, nva, count, &provider)
        }
        try Self.check(rv)
        streams[streamID]?.local = endStream ? .ended : .open
        streams[streamID]?.deferred = false
        deliverEvents()
    }

    /// Server: a 1xx informational header block (e.g. `:status 100` for
    /// `Expect: 100-continue`), before the final response.
    public func submitInformational(streamID: Int32, headers: HTTP2Fields) throws {
        guard role == .server else { throw HTTP2SessionError.wrongRole("submitInformational on a client session") }
        let state = try openStream(streamID)
        guard state.local == .idle else { throw HTTP2SessionError.streamEnded(streamID) }
        let rv: Int32 = withNVArray(headers) { nva, count in
            nghttp2_submit_headers(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, nil, nva, count, nil)
        }
        try Self.check(rv)
    }

    /// Ends the stream's body with a trailer block (after any queued data).
    /// The stream's HEADERS must have been submitted without `endStream`.
    public func submitTrailers(streamID: Int32, headers: HTTP2Fields) throws {
        let state = try openStream(streamID)
        guard state.local != .ended, !state.endRequested else { throw HTTP2SessionError.streamEnded(streamID) }
        guard state.local == .open else {
            throw HTTP2SessionError.invalidArgument("trailers before headers on stream \(streamID)")
        }
        state.trailers = headers
        state.endRequested = true
        try resumeIfDeferred(streamID)
    }

    // MARK: - Bodies

    /// Queues body bytes for the stream; they leave as DATA frames when flow
    /// control allows: as slices of `buffer`, or copied when a frame carries
    /// no more than ``copiedPayloadLimit`` bytes. `endStream` ends
    /// the body after them.
    ///
    /// The queue is unbounded here; backpressure is the caller's job:
    /// the delegate's `streamWritabilityChanged` (and ``isWritable(streamID:)``)
    /// turns false above ``HTTP2Limits/streamSendHighWatermark``, and the
    /// caller stops reading the source until it turns true again.
    public func sendData(streamID: Int32, _ buffer: ByteBuffer, endStream: Bool = false) throws {
        let state = try openStream(streamID)
        guard state.local != .ended, !state.endRequested else { throw HTTP2SessionError.streamEnded(streamID) }
        state.enqueue(buffer)
        if endStream { state.endRequested = true }
        if state.writable && state.queuedBytes > limits.streamSendHighWatermark {
            state.writable = false
            events.append(.writability(streamID, false))
        }
        try resumeIfDeferred(streamID)
        deliverEvents()
    }

    /// Ends the stream's body (END_STREAM after any queued data).
    public func sendEnd(streamID: Int32) throws {
        try sendData(streamID: streamID, ByteBuffer(), endStream: true)
    }

    /// Body bytes queued on the stream and not yet handed to nghttp2.
    public func queuedBytes(streamID: Int32) -> Int {
        streams[streamID]?.queuedBytes ?? 0
    }

    /// False while the stream's outbound queue is above its high watermark.
    public func isWritable(streamID: Int32) -> Bool {
        streams[streamID]?.writable ?? false
    }

    // MARK: - Flow control

    /// Reports `bytes` of the stream's received DATA as written onward, so
    /// nghttp2 may reopen the stream and connection windows (it sends
    /// WINDOW_UPDATE once half a window is consumed). Works after the stream
    /// closed (connection window only). Bytes beyond what was delivered are
    /// ignored.
    public func consume(streamID: Int32, bytes: Int) throws {
        guard bytes > 0, let state = streams[streamID], state.unconsumed > 0 else { return }
        let count = min(bytes, state.unconsumed)
        try Self.check(nghttp2_session_consume(session, streamID, count))
        state.unconsumed -= count
        if state.closed && state.unconsumed == 0 {
            streams[streamID] = nil
        }
    }

    /// Gives back every byte delivered on the stream and not yet consumed
    /// (the caller dropped them).
    public func discardUnconsumed(streamID: Int32) throws {
        try consume(streamID: streamID, bytes: Int.max)
    }

    /// Bytes delivered on the stream and not yet consumed.
    public func unconsumedBytes(streamID: Int32) -> Int {
        streams[streamID]?.unconsumed ?? 0
    }

    // MARK: - Resets, GOAWAY, PING

    /// Queues RST_STREAM. Unknown or closed streams are ignored.
    public func resetStream(streamID: Int32, errorCode: HTTP2ErrorCode = .cancel) throws {
        guard let state = streams[streamID], !state.closed else { return }
        try Self.check(nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                                                 streamID, errorCode.rawValue))
    }

    /// Resets the stream with NO_ERROR once the frame that ends our side of
    /// it has been sent: a server that answered before the request's body
    /// ended tells the client to stop sending, without cutting its own
    /// answer short (RFC 9113 §8.1). Resetting at once would drop the
    /// response still queued. Nothing happens if the peer's side ends first.
    public func resetAfterSendingEnd(streamID: Int32) {
        guard let state = streams[streamID], !state.closed else { return }
        state.resetAfterEnd = true
    }

    /// Queues GOAWAY. `lastStreamID` defaults to the last peer stream this
    /// side processed; streams the peer opened above it will be refused.
    public func goAway(errorCode: HTTP2ErrorCode = .noError, lastStreamID: Int32? = nil,
                       debugData: String = "") throws {
        let last = lastStreamID ?? nghttp2_session_get_last_proc_stream_id(session)
        var debug = Array(debugData.utf8)
        let rv = debug.withUnsafeMutableBufferPointer { bytes in
            nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, errorCode.rawValue,
                                  bytes.baseAddress, bytes.count)
        }
        try Self.check(rv)
        localGoAwaysPending += 1
    }

    /// Graceful shutdown. A server sends a shutdown notice (GOAWAY with the
    /// largest stream id) and a PING; when the PING is acknowledged, the real
    /// GOAWAY names the last stream it will serve. A client sends GOAWAY. In
    /// both cases open streams finish, then `wantsRead`/`wantsWrite` turn false.
    public func startGracefulShutdown() throws {
        switch role {
        case .server:
            try Self.check(nghttp2_submit_shutdown_notice(session))
            localGoAwaysPending += 1
            shutdownPingPayload = try ping()
        case .client:
            try goAway()
        }
    }

    /// Queues a PING; the delegate's `didReceivePingAck` reports the answer.
    /// - Returns: the payload sent.
    @discardableResult
    public func ping(payload: UInt64? = nil) throws -> UInt64 {
        let value = payload ?? nextPingPayload
        if payload == nil { nextPingPayload &+= 1 }
        var bytes = value.bigEndian
        let rv = withUnsafeBytes(of: &bytes) { raw in
            nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                                raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        try Self.check(rv)
        return value
    }

    // MARK: - State

    /// nghttp2 still expects input. False once a GOAWAY ended the session
    /// and its streams are done.
    public var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    /// There are frames to send (DATA waiting for a window or for body
    /// bytes does not count; DATA held back by `maxBytes` does).
    public var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 || !budgetDeferred.isEmpty }

    /// Client: new requests are still allowed (no GOAWAY, ids left).
    public var isRequestAllowed: Bool {
        role == .client && nghttp2_session_check_request_allowed(session) != 0
    }

    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS (100 until its SETTINGS arrive).
    public var remoteMaxConcurrentStreams: UInt32 {
        nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
    }

    /// The peer's settings as nghttp2 applies them now.
    public var remoteSettings: HTTP2RemoteSettings {
        func get(_ id: nghttp2_settings_id) -> UInt32 { nghttp2_session_get_remote_settings(session, id) }
        return HTTP2RemoteSettings(
            maxConcurrentStreams: get(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
            initialWindowSize: get(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE),
            maxFrameSize: get(NGHTTP2_SETTINGS_MAX_FRAME_SIZE),
            headerTableSize: get(NGHTTP2_SETTINGS_HEADER_TABLE_SIZE),
            maxHeaderListSize: get(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE),
            enablePush: get(NGHTTP2_SETTINGS_ENABLE_PUSH) != 0)
    }

    /// The highest peer-opened stream id this side processed (for GOAWAY).
    public var lastProcessedStreamID: Int32 { nghttp2_session_get_last_proc_stream_id(session) }

    /// Body bytes the peer may still send on the stream (and the connection)
    /// before this side consumes more.
    public func localWindow(streamID: Int32) -> Int {
        let stream = nghttp2_session_get_stream_local_window_size(session, streamID)
        let connection = nghttp2_session_get_local_window_size(session)
        return Int(max(0, min(stream, connection)))
    }

    /// How many body bytes this side may still send on the stream right now.
    public func remoteWindow(streamID: Int32) -> Int {
        let stream = nghttp2_session_get_stream_remote_window_size(session, streamID)
        let connection = nghttp2_session_get_remote_window_size(session)
        return Int(max(0, min(stream, connection)))
    }

    // MARK: - Internals

    private func openStream(_ streamID: Int32) throws -> HTTP2StreamState {
        guard let state = streams[streamID], !state.closed else { throw HTTP2SessionError.unknownStream(streamID) }
        return state
    }

    private func resumeIfDeferred(_ streamID: Int32) throws {
        guard let state = streams[streamID], state.deferred, state.local == .open, !state.closed else { return }
        streams[streamID]?.deferred = false
        try Self.check(nghttp2_session_resume_data(session, streamID))
    }

    private func deliverEvents() {
        guard !dispatching else { return }  // an outer delivery loop picks them up
        dispatching = true
        defer { dispatching = false }
        while !events.isEmpty {
            // Two arrays swapped, not copied: events raised while these are
            // delivered go to the other one, for the next turn.
            swap(&events, &delivering)
            defer { delivering.removeAll(keepingCapacity: true) }
            guard let delegate else { continue }
            for event in delivering {
                switch event {
                case .headers(let id, let headers, let kind, let endStream):
                    delegate.session(self, didReceiveHeaders: headers, kind: kind, streamID: id, endStream: endStream)
                case .data(let id, let data, let endStream):
                    delegate.session(self, didReceiveData: data, streamID: id, endStream: endStream)
                case .streamClosed(let id, let code):
                    delegate.session(self, streamClosed: id, errorCode: code)
                case .goAway(let last, let code, let debug):
                    delegate.session(self, didReceiveGoAway: last, errorCode: code, debugData: debug)
                case .settings(let settings):
                    delegate.session(self, didReceiveSettings: settings)
                case .pingAck(let payload):
                    delegate.session(self, didReceivePingAck: payload)
                case .writability(let id, let writable):
                    delegate.session(self, streamWritabilityChanged: id, isWritable: writable)
                case .rejected(let id, let reason):
                    delegate.session(self, didRejectStream: id, reason: reason)
                case .connectionError(let error):
                    delegate.session(self, connectionError: error)
                }
            }
        }
    }

    private func flushFraming() {
        if let slice = framing.readSlice(length: framing.readableBytes), slice.readableBytes > 0 {
            output.append(slice)
        }
    }

    private func writeFraming(_ bytes: UnsafeRawBufferPointer) {
        if framing.readableBytes == 0 {
            // Everything written was sliced off: start over at the front
            // (in the same storage when no slice of it is still alive).
            framing.clear(minimumCapacity: max(4096, bytes.count))
        }
        framing.writeBytes(bytes)
    }

    /// A DATA payload this size or smaller is copied into the framing
    /// buffer, behind its frame header, rather than handed on as a slice of
    /// the caller's buffer: a copy of a few KiB costs less than one more
    /// buffer for the channel to queue and `writev`, and a small response's
    /// HEADERS and DATA then leave as one buffer.
    static let copiedPayloadLimit = 4096

    private static var dataProvider: nghttp2_data_provider {
        nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: dataSourceReadCallback)
    }

    /// A temporary `nghttp2_nv` array pointing into `headers`' bytes, on
    /// the stack when it is small, as header blocks usually are. nghttp2
    /// copies the array but not the bytes, so `headers`' storage is lent to
    /// it (``lentBlocks``); names are copied (and lower-cased) only when the
    /// block cannot vouch for their case.
    private func withNVArray<R>(_ headers: HTTP2Fields, _ body: (UnsafePointer<nghttp2_nv>?, Int) -> R) -> R {
        guard let storage = headers.storage, headers.count > 0 else { return body(nil, 0) }
        lentBlocks.append(storage)
        let copy = headers.namesAreLowercase
            ? NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue
            : NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue
        return withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: headers.count) { nva in
            headers.withRecords { raw in
                guard let base = raw.baseAddress else { return body(nil, 0) }
                // nghttp2 takes mutable pointers but only reads through them.
                let bytes = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: UInt8.self))
                var offset = 0
                var index = 0
                // One entry per record: `count` of them (bounded too, so that
                // a miscount could never write past the array).
                while offset < raw.count && index < headers.count {
                    let (name, value) = HTTP2Fields.recordPlace(in: raw, at: offset)
                    let unique = Self.isUniquePerRequest(UnsafeRawBufferPointer(rebasing: raw[name]))
                    let indexing = unique ? NGHTTP2_NV_FLAG_NO_INDEX.rawValue : NGHTTP2_NV_FLAG_NONE.rawValue
                    nva.initializeElement(at: index, to: nghttp2_nv(
                        name: bytes + name.lowerBound, value: bytes + value.lowerBound,
                        namelen: name.count, valuelen: value.count, flags: UInt8(indexing | copy)))
                    index += 1
                    offset = value.upperBound
                }
                return body(UnsafePointer(nva.baseAddress), index)
            }
        }
    }

    /// How many header blocks nghttp2 holds pointers into (for tests).
    var lentBlockCount: Int { lentBlocks.count }

    /// Lets go of the block a HEADERS frame pointed into, once nghttp2 has
    /// sent or dropped the frame.
    private func releaseBlock(of frame: UnsafePointer<nghttp2_frame>) {
        let headers = frame.pointee.headers
        guard !lentBlocks.isEmpty, headers.nvlen > 0, let first = headers.nva?.pointee.value else { return }
        let address = UnsafeMutableRawPointer(first)
        guard let index = lentBlocks.firstIndex(where: { address >= $0.bytes && address <= $0.bytes + $0.header })
        else { return }
        lentBlocks.swapAt(index, lentBlocks.count - 1)
        lentBlocks.removeLast()
    }

    /// Fields whose value is new on every request (`x-request-id`,
    /// `traceparent`): sent as never-indexed literals, since an HPACK table
    /// entry for them would never be reused and would only cost both
    /// peers an insertion (and an eviction) per request.
    static func isUniquePerRequest(_ name: UnsafeRawBufferPointer) -> Bool {
        (name.count == 12 && name.equals("x-request-id")) || (name.count == 11 && name.equals("traceparent"))
    }

    private static func check(_ rv: Int32) throws {
        if rv < 0 { throw error(rv) }
    }

    static func error(_ code: Int32) -> HTTP2SessionError {
        switch code {
        case NGHTTP2_ERR_BAD_CLIENT_MAGIC.rawValue: return .badClientMagic
        case NGHTTP2_ERR_FLOODED.rawValue: return .flooded
        case -905: return .tooManyContinuations  // NGHTTP2_ERR_TOO_MANY_CONTINUATIONS, backport-only in 1.52
        case NGHTTP2_ERR_CALLBACK_FAILURE.rawValue: return .callbackFailure
        case NGHTTP2_ERR_NOMEM.rawValue: return .outOfMemory
        case NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE.rawValue: return .streamIDNotAvailable
        case NGHTTP2_ERR_START_STREAM_NOT_ALLOWED.rawValue: return .startStreamNotAllowed
        case NGHTTP2_ERR_SESSION_CLOSING.rawValue: return .sessionClosing
        case NGHTTP2_ERR_INVALID_ARGUMENT.rawValue: return .invalidArgument(String(cString: nghttp2_strerror(code)))
        default: return .library(code: code, message: String(cString: nghttp2_strerror(code)))
        }
    }

    // MARK: - Callback targets (called only from the C functions below)

    fileprivate func onSend(_ data: UnsafePointer<UInt8>, _ length: Int) -> Int {
        if outputBytes >= outputBudget { return Int(NGHTTP2_ERR_WOULDBLOCK.rawValue) }
        writeFraming(UnsafeRawBufferPointer(start: data, count: length))
        outputBytes += length
        return length
    }

    // Never returns NGHTTP2_ERR_WOULDBLOCK: a DATA frame nghttp2 holds across
    // calls could outlive its stream (a RST_STREAM read in between). The
    // output budget is applied earlier, in `onReadData`.
    fileprivate func onSendData(_ frame: UnsafePointer<nghttp2_frame>, _ header: UnsafePointer<UInt8>,
                                _ length: Int) -> Int32 {
        let streamID = frame.pointee.hd.stream_id
        let padding = frame.pointee.data.padlen  // includes the Pad Length byte
        guard let state = streams[streamID], !state.closed, state.queuedBytes >= length else {
            // Cannot happen (the provider only promises queued bytes, and the
            // frame goes out in the same call); reset the stream, not the connection.
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
        }
        writeFraming(UnsafeRawBufferPointer(start: header, count: 9))
        if padding > 0 {
            var padLength = UInt8(padding - 1)
            withUnsafeBytes(of: &padLength) { writeFraming($0) }
        }
        if length <= Self.copiedPayloadLimit {
            _ = state.dequeue(length, copyingInto: &framing)
        } else {
            flushFraming()
            _ = state.dequeue(length, into: &output)
        }
        if padding > 1 {
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: padding - 1) { zeros in
                zeros.initialize(repeating: 0)
                writeFraming(UnsafeRawBufferPointer(zeros))
            }
        }
        outputBytes += 9 + length + padding
        if !state.writable && state.queuedBytes <= limits.streamSendLowWatermark {
            state.writable = true
            events.append(.writability(streamID, true))
        }
        return 0
    }

    fileprivate func onReadData(_ streamID: Int32, _ maxLength: Int, _ flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let state = streams[streamID], !state.closed else {
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)  // resets the stream
        }
        if outputBytes >= outputBudget {
            // Out of budget for this `produceOutput`: park the stream, resume next time.
            state.deferred = true
            budgetDeferred.insert(streamID)
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        let count = min(maxLength, state.queuedBytes)
        if count > 0 {
            flags.pointee |= NGHTTP2_DATA_FLAG_NO_COPY.rawValue
        }
        if count == state.queuedBytes && state.endRequested {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            state.local = .ended
            if let trailers = state.trailers {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                state.trailers = nil
                let rv: Int32 = withNVArray(trailers) { nva, n in
                    nghttp2_submit_trailer(session, streamID, nva, n)
                }
                if rv < 0 { return Int(rv) }
            }
        } else if count == 0 {
            state.deferred = true
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        return count
    }

    /// The highest stream id the peer opened (server side).
    private var highestPeerStream: Int32 = 0
    /// The peer's streams that closed lately (server side): of each kind,
    /// the last SETTINGS_MAX_CONCURRENT_STREAMS, at most `closedStreamsKept`.
    private var closedStreams: ClosedStreams
    /// Bounds the record, and the scan of it for HEADERS on a stream id no
    /// longer open; libnghttp2 1.52 kept as many with the default settings.
    static let closedStreamsKept: UInt32 = 1024
    /// The lowest last-stream-id of a GOAWAY this side sent: the peer's
    /// streams above it are ignored, and so are their frames.
    private var goAwayLastStream = Int32.max

    /// A server's rules for HEADERS on a peer's stream id that is not open
    /// (RFC 9113 §5.1, §5.1.1), which libnghttp2 would drop:
    /// - the peer had ended the stream: a connection error STREAM_CLOSED;
    /// - the stream was reset lately: ignored (trailers in flight when it was);
    /// - an id neither open nor lately closed, at or below every id the peer
    ///   used: HEADERS that would open a stream with a used id, a connection
    ///   error PROTOCOL_ERROR (dropped, the request would hang);
    /// - above the last stream id of a GOAWAY this side sent: ignored, like
    ///   the stream.
    /// DATA on a stream nghttp2 no longer has is dropped by nghttp2 before
    /// any callback (RFC 9113 lets a closed stream's frames be ignored).
    fileprivate func onBeginFrame(_ header: UnsafePointer<nghttp2_frame_hd>) -> Int32 {
        if let flood = frameBudget.received(type: header.pointee.type, flags: header.pointee.flags,
                                            length: header.pointee.length) {
            return stop(for: flood)
        }
        guard role == .server, header.pointee.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
        let streamID = header.pointee.stream_id
        guard streamID & 1 == 1 else { return 0 }
        if streamID > highestPeerStream {
            highestPeerStream = streamID
            return 0
        }
        guard nghttp2_session_find_stream(session, streamID) == nil else { return 0 }
        switch closedStreams.closure(of: streamID) {
        case .endedByPeer?: return endForViolation(.streamClosed)
        case .cutShort?: return 0
        case nil: return streamID <= goAwayLastStream ? endForViolation(.protocolError) : 0
        }
    }

    /// Ends the connection for a violation the session caught itself.
    private func endForViolation(_ code: HTTP2ErrorCode) -> Int32 {
        protocolViolations += 1
        let rv = nghttp2_session_terminate_session2(session, highestPeerStream, code.rawValue)
        return rv < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE.rawValue : 0
    }

    /// What the peer may send that costs work and carries nothing.
    private var frameBudget: HTTP2FrameBudget

    /// Ends the session for a flood: GOAWAY ENHANCE_YOUR_CALM is queued (and
    /// sent by the next `produceOutput`), and `receive` stops at this frame
    /// and throws ``HTTP2SessionError/frameFlood(_:)``.
    private func stop(for flood: HTTP2FrameBudget.Flood) -> Int32 {
        terminationError = .frameFlood(flood)
        if nghttp2_session_terminate_session2(session, highestPeerStream,
                                              HTTP2ErrorCode.enhanceYourCalm.rawValue) == 0 {
            localGoAwaysPending += 1
        }
        return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
    }

    /// This side sent a GOAWAY with an error code: the connection ends
    /// because of the peer, which may still be sending.
    public private(set) var sentErrorGoAway = false

    /// Connections this session ended for a peer's protocol violation that
    /// the wrapper itself caught (HEADERS on a used stream id, or on a
    /// stream the peer had ended).
    public private(set) var protocolViolations = 0

    fileprivate func onBeginHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        guard frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
        let streamID = frame.pointee.hd.stream_id
        if frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST && streams[streamID] == nil {
            streams[streamID] = HTTP2StreamState(local: .idle)
            openStreamCount += 1
            frameBudget.streamOpened()
        }
        blockBytes = 0
        if let state = streams[streamID], !state.rejected {
            blockStreamID = streamID
            // Room for a typical block at once, instead of growing header by header.
            block = HTTP2Fields(capacity: 12, bytes: 400)
        } else {
            endBlock()
        }
        return 0
    }

    fileprivate func onHeader(_ frame: UnsafePointer<nghttp2_frame>, _ name: UnsafeRawBufferPointer,
                              _ value: UnsafeRawBufferPointer) -> Int32 {
        let streamID = frame.pointee.hd.stream_id
        guard streamID == blockStreamID else { return 0 }
        blockBytes += name.count + value.count + 32
        var rejection: HTTP2StreamRejection?
        if block.count + 1 > limits.maxHeaderCount {
            rejection = .tooManyHeaders(limit: limits.maxHeaderCount)
        } else if blockBytes > limits.maxHeaderListBytes {
            rejection = .headerListTooLarge(limit: limits.maxHeaderListBytes)
        }
        if let rejection {
            // Reset with our own code and ignore the rest of the block (nghttp2
            // still decodes it to keep HPACK in sync; nothing is stored).
            // Returning NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE would also reset,
            // but always with INTERNAL_ERROR.
            streams[streamID]?.rejected = true
            endBlock()
            events.append(.rejected(streamID, rejection))
            let rv = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID,
                                               Self.headerLimitResetCode.rawValue)
            return rv < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE.rawValue : 0
        }
        block.append(lowercaseName: name, value: value)
        return 0
    }

    fileprivate func onDataChunk(_ streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard let state = streams[streamID], !state.rejected, !state.closed else {
            // Nobody will consume these bytes: give the window back now.
            return nghttp2_session_consume(session, streamID, data.count) < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE.rawValue : 0
        }
        state.pendingData.append(slice(of: data))
        state.unconsumed += data.count
        return 0
    }

    /// A ByteBuffer for `data`: a slice of the input buffer when `data` lies
    /// inside it (unpadded DATA does), else a copy.
    private func slice(of data: UnsafeRawBufferPointer) -> ByteBuffer {
        if let input, let inputBase, let start = data.baseAddress, start >= inputBase,
           start + data.count <= inputBase + inputCount,
           let slice = input.getSlice(at: input.readerIndex + (start - inputBase), length: data.count) {
            return slice
        }
        var copy = allocator.buffer(capacity: data.count)
        copy.writeBytes(data)
        return copy
    }

    fileprivate func onFrameRecv(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let hd = frame.pointee.hd
        let streamID = hd.stream_id
        let endStream = hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch UInt32(hd.type) {
        case NGHTTP2_DATA.rawValue:
            guard let state = streams[streamID], !state.rejected else { return 0 }
            if state.pendingData.isEmpty {
                if endStream { events.append(.data(streamID, ByteBuffer(), endStream: true)) }
            } else {
                state.pendingData.drain { chunk, isLast in
                    events.append(.data(streamID, chunk, endStream: endStream && isLast))
                }
            }
        case NGHTTP2_HEADERS.rawValue:
            let read = streamID == blockStreamID
            let headers = block
            endBlock()
            guard read, let state = streams[streamID], !state.rejected else { return 0 }
            events.append(.headers(streamID, headers, kind(of: headers, category: frame.pointee.headers.cat),
                                   endStream: endStream))
        case NGHTTP2_SETTINGS.rawValue:
            if hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 {
                events.append(.settings(remoteSettings))
            }
        case NGHTTP2_PING.rawValue:
            if hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0 {
                let opaque = frame.pointee.ping.opaque_data
                let payload = withUnsafeBytes(of: opaque) { UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)) }
                if payload == shutdownPingPayload {
                    // One round trip after the shutdown notice: name the last stream served.
                    shutdownPingPayload = nil
                    let rv = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                                                   nghttp2_session_get_last_proc_stream_id(session),
                                                   HTTP2ErrorCode.noError.rawValue, nil, 0)
                    if rv == 0 { localGoAwaysPending += 1 }
                } else {
                    events.append(.pingAck(payload))
                }
            }
        case NGHTTP2_RST_STREAM.rawValue:
            // A stream the peer opened and dropped before any answer.
            if role == .server, let state = streams[streamID], state.local == .idle,
               let flood = frameBudget.prematureReset() {
                return stop(for: flood)
            }
        case NGHTTP2_GOAWAY.rawValue:
            let goaway = frame.pointee.goaway
            events.append(.goAway(goaway.last_stream_id, HTTP2ErrorCode(goaway.error_code),
                                  Self.text(goaway.opaque_data, goaway.opaque_data_len)))
        default:
            break
        }
        return 0
    }

    private func kind(of headers: HTTP2Fields, category: nghttp2_headers_category) -> HTTP2HeadersKind {
        let informational = headers.firstResult { name, value in
            name.equals(":status") ? value.count == 3 && value.first == UInt8(ascii: "1") : nil
        }
        if let informational { return informational ? .informational : .response }
        return category == NGHTTP2_HCAT_REQUEST ? .request : .trailers
    }

    fileprivate func onStreamClose(_ streamID: Int32, _ errorCode: UInt32) -> Int32 {
        if blockStreamID == streamID { endBlock() }
        if role == .server {
            // nghttp2 still has the stream while it tells of the close.
            let endedByPeer = nghttp2_session_get_stream_remote_close(session, streamID) == 1
            closedStreams.record(streamID, endedByPeer ? .endedByPeer : .cutShort)
        }
        guard let state = streams[streamID], !state.closed else { return 0 }
        state.closed = true
        state.dropOutbound()
        // Chunks of a DATA frame cut short by the close were never delivered.
        let undelivered = state.pendingData.readableBytes
        state.pendingData.removeAll()
        if undelivered > 0 {
            state.unconsumed -= undelivered
            if nghttp2_session_consume_connection(session, undelivered) < 0 {
                return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
            }
        }
        if state.unconsumed == 0 { streams[streamID] = nil }
        openStreamCount -= 1
        events.append(.streamClosed(streamID, HTTP2ErrorCode(errorCode)))
        return 0
    }

    fileprivate func onFrameSend(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let type = frame.pointee.hd.type
        if type == UInt8(NGHTTP2_HEADERS.rawValue) { releaseBlock(of: frame) }
        if type == UInt8(NGHTTP2_DATA.rawValue) { frameBudget.sentData() }
        if type == UInt8(NGHTTP2_RST_STREAM.rawValue), role == .server,
           nghttp2_session_find_stream(session, frame.pointee.hd.stream_id) == nil {
            // A stream nghttp2 refused at its HEADERS never had a stream
            // object, so no close is told of it: its body and trailers may
            // still be on their way.
            closedStreams.record(frame.pointee.hd.stream_id, .cutShort)
        }
        if type == UInt8(NGHTTP2_DATA.rawValue) || type == UInt8(NGHTTP2_HEADERS.rawValue),
           frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0,
           let state = streams[frame.pointee.hd.stream_id], state.resetAfterEnd, !state.closed,
           // The peer's side ended too: the stream is closing, nothing to stop.
           nghttp2_session_get_stream_remote_close(session, frame.pointee.hd.stream_id) == 0 {
            state.resetAfterEnd = false
            _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), frame.pointee.hd.stream_id,
                                          HTTP2ErrorCode.noError.rawValue)
        }
        guard type == UInt8(NGHTTP2_GOAWAY.rawValue) else { return 0 }
        goAwayLastStream = min(goAwayLastStream, frame.pointee.goaway.last_stream_id)
        if frame.pointee.goaway.error_code != HTTP2ErrorCode.noError.rawValue { sentErrorGoAway = true }
        if localGoAwaysPending > 0 {
            localGoAwaysPending -= 1
            return 0
        }
        let goaway = frame.pointee.goaway
        let code = HTTP2ErrorCode(goaway.error_code)
        if code != .noError {
            // nghttp2 is tearing the connection down because of the peer.
            let error = HTTP2SessionError.connectionTerminated(
                code, reason: Self.text(goaway.opaque_data, goaway.opaque_data_len))
            terminationError = error
            events.append(.connectionError(error))
        }
        return 0
    }

    fileprivate func onFrameNotSend(_ frame: UnsafePointer<nghttp2_frame>, _ libraryError: Int32) -> Int32 {
        if frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) { releaseBlock(of: frame) }
        if frame.pointee.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) && localGoAwaysPending > 0 {
            localGoAwaysPending -= 1
        }
        // A request HEADERS that could not go out closes its stream with
        // REFUSED_STREAM through onStreamClose; nothing else to do here.
        return 0
    }

    /// nghttp2 found a received frame invalid and is about to reset its
    /// stream or end the connection; only a stream over the concurrency
    /// limit is worth telling the delegate (the rest surface as closes).
    fileprivate func onInvalidFrameRecv(_ frame: UnsafePointer<nghttp2_frame>, _ libraryError: Int32) -> Int32 {
        let streamID = frame.pointee.hd.stream_id
        guard role == .server, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
              streamID % 2 == 1, streams[streamID] == nil else { return 0 }
        // REFUSED_STREAM is nghttp2's answer only to a stream over the limit
        // announced but not yet acknowledged; PROTOCOL_ERROR is its answer to
        // many things, the limit among them when every slot is taken.
        let overLimit = libraryError == NGHTTP2_ERR_REFUSED_STREAM.rawValue
            || (libraryError == NGHTTP2_ERR_PROTO.rawValue && openStreamCount >= Int(settings.maxConcurrentStreams))
        if overLimit {
            events.append(.rejected(streamID, .tooManyStreams(limit: settings.maxConcurrentStreams)))
        }
        return 0
    }

    fileprivate func onError(_ code: Int32, _ message: UnsafeRawBufferPointer) -> Int32 {
        lastLibraryMessage = String(decoding: message, as: UTF8.self)
        return 0
    }

    private static func text(_ bytes: UnsafeMutablePointer<UInt8>?, _ count: Int) -> String {
        guard let bytes, count > 0 else { return "" }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }
}

/// Confined to one event loop: see the type's documentation.
@available(*, unavailable)
extension HTTP2Session: Sendable {}

// MARK: - libnghttp2 callbacks

// Each recovers the session from `user_data` (set unretained in init: the
// session owns the nghttp2 object, so it outlives every callback) and forwards.

/// Calls `body` with the session, not retained for the call (it outlives
/// every callback, and callbacks run for every frame and every header:
/// a retain and a release each).
@inline(__always)
private func withOwner<Result>(_ userData: UnsafeMutableRawPointer?, _ body: (HTTP2Session) -> Result) -> Result {
    Unmanaged<HTTP2Session>.fromOpaque(userData!)._withUnsafeGuaranteedRef(body)
}

private func sendCallback(_ session: OpaquePointer?, _ data: UnsafePointer<UInt8>?, _ length: Int,
                          _ flags: Int32, _ userData: UnsafeMutableRawPointer?) -> Int {
    withOwner(userData) { $0.onSend(data!, length) }
}

private func sendDataCallback(_ session: OpaquePointer?, _ frame: UnsafeMutablePointer<nghttp2_frame>?,
                              _ frameHeader: UnsafePointer<UInt8>?, _ length: Int,
                              _ source: UnsafeMutablePointer<nghttp2_data_source>?,
                              _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withOwner(userData) { $0.onSendData(frame!, frameHeader!, length) }
}

private func dataSourceReadCallback(_ session: OpaquePointer?, _ streamID: Int32, _ buffer: UnsafeMutablePointer<UInt8>?,
                                    _ length: Int, _ flags: UnsafeMutablePointer<UInt32>?,
                                    _ source: UnsafeMutablePointer<nghttp2_data_source>?,
                                    _ userData: UnsafeMutableRawPointer?) -> Int {
    withOwner(userData) { $0.onReadData(streamID, length, flags!) }
}

private func beginFrameCallback(_ session: OpaquePointer?, _ header: UnsafePointer<nghttp2_frame_hd>?,
                                _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withOwner(userData) { $0.onBeginFrame(header!) }
}

private func beginHeadersCallback(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                                  _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withOwner(userData) { $0.onBeginHeaders(frame!) }
}

private func headerCallback(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                            _ name: UnsafePointer<UInt8>?, _ nameLength: Int,
                            _ value: UnsafePointer<UInt8>?, _ valueLength: Int,
                            _ flags: UInt8, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withOwner(userData) {
        $0.onHeader(frame!, UnsafeRawBufferPointer(start: name, count: nameLength),
                    UnsafeRawBufferPointer(start: value, count: valueLength))
    }
}

private func frameRecvCallback(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                               _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withOwner(userData) { $0.onFrameRecv(frame!) }
}

private func dataChunkRecvCallback(_ session: OpaquePointer?, _ flags: UInt8, _ streamID: Int32,
                                   _ data: UnsafePointer<UInt8>?, _ length: Int,
                                   _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withOwner(userData) { $0.onDataChunk(streamID, UnsafeRawBufferPointer(start: data, count: length)) }
}

private func streamCloseCallback(_ session: OpaquePointer?, _ streamID: Int32, _ errorCode: UInt32,
                                 _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withOwner(userData) { $0.onStreamClose(streamID, errorCode) }
}

private func frameSendCallback(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                               _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withOwner(userData) { $0.onFrameSend(frame!) }
}

private func frameNotSendCallback(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                                  _ libraryError: Int32, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withOwner(userData) { $0.onFrameNotSend(frame!, libraryError) }
}

private func invalidFrameRecvCallback(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                                      _ libraryError: Int32, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withOwner(userData) { $0.onInvalidFrameRecv(frame!, libraryError) }
}

private func errorCallback(_ session: OpaquePointer?, _ code: Int32, _ message: UnsafePointer<CChar>?,
                           _ length: Int, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withOwner(userData) { $0.onError(code, UnsafeRawBufferPointer(start: message, count: length)) }
}
