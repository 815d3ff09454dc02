import NIOCore

/// Receives what an ``HTTP2Session`` reads from the peer.
///
/// Calls arrive synchronously from ``HTTP2Session/receive(_:)``,
/// ``HTTP2Session/produceOutput(into:maxBytes:)`` and the submit calls, on the
/// thread that called them, after nghttp2 has returned (never from inside a
/// libnghttp2 callback), in the order the events happened. The delegate may
/// call back into the session (submit, send data, consume, reset, even
/// `produceOutput`).
///
/// Every method but the first four has an empty default.
public protocol HTTP2SessionDelegate: AnyObject {
    /// A complete header block: a request (server), a response or a 1xx
    /// informational response (client), or trailers. Pseudo-headers come first
    /// as name/value pairs in wire order. `endStream` means the peer has
    /// finished sending on this stream.
    func session(_ session: HTTP2Session, didReceiveHeaders headers: HTTP2Fields,
                 kind: HTTP2HeadersKind, streamID: Int32, endStream: Bool)

    /// Body bytes, as slices of the buffer given to `receive` when possible.
    /// The stream's window reopens only when the receiver calls
    /// ``HTTP2Session/consume(streamID:bytes:)`` for these bytes, which it must
    /// do (or ``HTTP2Session/discardUnconsumed(streamID:)``) even after the
    /// stream has closed, or the connection window leaks. An empty buffer with
    /// `endStream` true closes the body.
    func session(_ session: HTTP2Session, didReceiveData data: ByteBuffer,
                 streamID: Int32, endStream: Bool)

    /// The stream is closed (both sides done, or a RST_STREAM either way).
    /// `errorCode` is `.noError` for a normal end, else the RST_STREAM code;
    /// `.refusedStream` means the peer never processed it (safe to retry).
    func session(_ session: HTTP2Session, streamClosed streamID: Int32, errorCode: HTTP2ErrorCode)

    /// The peer sent GOAWAY: streams above `lastStreamID` were not processed
    /// (they are closed with `.refusedStream`), no new streams may be opened.
    func session(_ session: HTTP2Session, didReceiveGoAway lastStreamID: Int32,
                 errorCode: HTTP2ErrorCode, debugData: String)

    /// The peer's SETTINGS (not the ACK of ours) arrived and took effect.
    func session(_ session: HTTP2Session, didReceiveSettings settings: HTTP2RemoteSettings)

    /// The peer acknowledged a PING sent with ``HTTP2Session/ping(payload:)``.
    func session(_ session: HTTP2Session, didReceivePingAck payload: UInt64)

    /// A stream's outbound queue crossed a watermark: `false` when it grew past
    /// ``HTTP2Limits/streamSendHighWatermark`` (stop reading the source),
    /// `true` when it drained to ``HTTP2Limits/streamSendLowWatermark``.
    func session(_ session: HTTP2Session, streamWritabilityChanged streamID: Int32, isWritable: Bool)

    /// This side reset a stream because its headers broke a limit; a
    /// `streamClosed` follows.
    func session(_ session: HTTP2Session, didRejectStream streamID: Int32, reason: HTTP2StreamRejection)

    /// The connection is finished: nghttp2 queued a GOAWAY with an error
    /// because the peer broke the protocol. Flush the output, then close.
    func session(_ session: HTTP2Session, connectionError error: HTTP2SessionError)
}

extension HTTP2SessionDelegate {
    public func session(_ session: HTTP2Session, didReceiveSettings settings: HTTP2RemoteSettings) {}
    public func session(_ session: HTTP2Session, didReceivePingAck payload: UInt64) {}
    public func session(_ session: HTTP2Session, streamWritabilityChanged streamID: Int32, isWritable: Bool) {}
    public func session(_ session: HTTP2Session, didRejectStream streamID: Int32, reason: HTTP2StreamRejection) {}
    public func session(_ session: HTTP2Session, connectionError error: HTTP2SessionError) {}
}
