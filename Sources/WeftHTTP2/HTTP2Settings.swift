/// The SETTINGS this side announces, and its connection-level receive window.
///
/// Defaults suit a mesh hop: many concurrent streams, a 1 MiB window per
/// stream and 16 MiB for the connection, so one slow stream cannot stall the
/// others but no stream can make the peer buffer without bound.
public struct HTTP2Settings: Hashable, Sendable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams the peer may open towards us.
    public var maxConcurrentStreams: UInt32 = 1024
    /// SETTINGS_INITIAL_WINDOW_SIZE: receive window per stream.
    public var initialWindowSize: UInt32 = 1 << 20
    /// Receive window of the whole connection (sent as a WINDOW_UPDATE on
    /// stream 0; HTTP/2 has no setting for it). At least 65535.
    public var connectionWindowSize: UInt32 = 16 << 20
    /// SETTINGS_MAX_FRAME_SIZE (16384 ... 16777215).
    public var maxFrameSize: UInt32 = 16384
    /// SETTINGS_HEADER_TABLE_SIZE: HPACK dynamic table for decoding.
    public var headerTableSize: UInt32 = 4096
    /// SETTINGS_ENABLE_PUSH. The mesh never pushes; keep it off.
    public var enablePush: Bool = false

    public init() {}

    public static let `default` = HTTP2Settings()
}
