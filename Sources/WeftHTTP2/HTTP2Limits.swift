/// Protection limits of one session, on top of nghttp2's own checks.
public struct HTTP2Limits: Hashable, Sendable {
    /// Largest received header list (each field counts name + value + 32, as
    /// RFC 7541 §4.1 sizes it). Also announced as SETTINGS_MAX_HEADER_LIST_SIZE.
    /// A stream over the limit is reset; the session goes on.
    public var maxHeaderListBytes: Int = 64 * 1024
    /// Most header fields (pseudo-headers included) in one received block.
    public var maxHeaderCount: Int = 100
    /// nghttp2_option_set_max_settings: entries per received SETTINGS frame.
    public var maxSettingsEntries: Int = 32
    /// nghttp2_option_set_max_outbound_ack: queued SETTINGS/PING ACKs before
    /// the peer counts as flooding.
    public var maxOutboundAcks: Int = 1000
    /// nghttp2_option_set_max_send_header_block_length: largest header block
    /// this side will encode and send.
    public var maxSendHeaderBlockLength: Int = 64 * 1024
    /// Stream-reset rate limit (CVE-2023-44487 "rapid reset" backport): a
    /// token bucket of `streamResetBurst` tokens refilled at
    /// `streamResetRatePerSecond`. Applied only when the library has it.
    public var streamResetBurst: UInt64 = 1000
    public var streamResetRatePerSecond: UInt64 = 33
    /// CONTINUATION frames allowed after one HEADERS (CVE-2024-28182
    /// backport). Applied only when the library exports the option.
    public var maxContinuations: Int = 8
    /// Outbound body bytes queued on one stream above which the stream
    /// reports itself not writable ...
    public var streamSendHighWatermark: Int = 256 * 1024
    /// ... and at or below which it reports itself writable again.
    public var streamSendLowWatermark: Int = 64 * 1024
    /// Frames that cost work and carry nothing (``HTTP2FrameBudget``).
    public var frameBudget = HTTP2FrameBudget.Limits()

    public init() {}

    public static let `default` = HTTP2Limits()
}
