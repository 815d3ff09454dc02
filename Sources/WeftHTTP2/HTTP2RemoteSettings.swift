/// The settings the peer announced, read when its SETTINGS frame arrives.
public struct HTTP2RemoteSettings: Hashable, Sendable {
    public var maxConcurrentStreams: UInt32
    public var initialWindowSize: UInt32
    public var maxFrameSize: UInt32
    public var headerTableSize: UInt32
    public var maxHeaderListSize: UInt32
    public var enablePush: Bool

    public init(maxConcurrentStreams: UInt32, initialWindowSize: UInt32, maxFrameSize: UInt32,
                headerTableSize: UInt32, maxHeaderListSize: UInt32, enablePush: Bool) {
        self.maxConcurrentStreams = maxConcurrentStreams
        self.initialWindowSize = initialWindowSize
        self.maxFrameSize = maxFrameSize
        self.headerTableSize = headerTableSize
        self.maxHeaderListSize = maxHeaderListSize
        self.enablePush = enablePush
    }
}
