import CNghttp2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Which backported nghttp2 protections this process's libnghttp2 exports.
///
/// Distributions backport security fixes without changing the version number
/// (Debian 12's 1.52.0-1+deb12u2 carries both below), so the symbols are
/// probed at run time with `dlsym`, never inferred from ``NGHTTP2Library/version``,
/// and called through function pointers: a library without them still links
/// and runs, just without that knob.
///
/// - `nghttp2_option_set_stream_reset_rate_limit`: token bucket on incoming
///   RST_STREAM (CVE-2023-44487, "rapid reset"; upstream 1.57.0).
/// - `nghttp2_option_set_max_continuations`: cap on CONTINUATION frames after
///   one HEADERS (CVE-2024-28182; upstream 1.61.0). Some backports enforce the
///   cap internally without exporting the option; that cannot be probed.
///
/// Always present in 1.52 and set unconditionally: `max_settings`,
/// `max_outbound_ack`, `max_send_header_block_length`, plus the header-list
/// cap ``HTTP2Session`` enforces itself.
public struct HTTP2Protections: Hashable, Sendable, CustomStringConvertible {
    /// Looks a C symbol up by name; `nil` when absent.
    public typealias SymbolLookup = (String) -> UnsafeMutableRawPointer?

    static let streamResetRateLimitSymbol = "nghttp2_option_set_stream_reset_rate_limit"
    static let maxContinuationsSymbol = "nghttp2_option_set_max_continuations"

    // Addresses as integers so the value stays Sendable and Hashable.
    private let streamResetRateLimitAddress: UInt?
    private let maxContinuationsAddress: UInt?

    /// `nghttp2_option_set_stream_reset_rate_limit` is available.
    public var hasStreamResetRateLimit: Bool { streamResetRateLimitAddress != nil }
    /// `nghttp2_option_set_max_continuations` is available.
    public var hasMaxContinuations: Bool { maxContinuationsAddress != nil }

    /// What this process's libnghttp2 offers, probed once. The node logs
    /// ``description`` at start.
    public static let detected = HTTP2Protections.probe(lookup: HTTP2Protections.dynamicLookup)

    /// Probes with a custom lookup (tests inject one that finds nothing).
    public static func probe(lookup: SymbolLookup) -> HTTP2Protections {
        HTTP2Protections(
            streamResetRateLimitAddress: lookup(streamResetRateLimitSymbol).map { UInt(bitPattern: $0) },
            maxContinuationsAddress: lookup(maxContinuationsSymbol).map { UInt(bitPattern: $0) })
    }

    /// `dlsym` over every loaded object (`RTLD_DEFAULT`).
    public static func dynamicLookup(_ name: String) -> UnsafeMutableRawPointer? {
        #if canImport(Darwin)
        let handle = UnsafeMutableRawPointer(bitPattern: -2)  // RTLD_DEFAULT
        #else
        let handle: UnsafeMutableRawPointer? = nil  // RTLD_DEFAULT
        #endif
        return dlsym(handle, name)
    }

    private init(streamResetRateLimitAddress: UInt?, maxContinuationsAddress: UInt?) {
        self.streamResetRateLimitAddress = streamResetRateLimitAddress
        self.maxContinuationsAddress = maxContinuationsAddress
    }

    public var description: String {
        let reset = hasStreamResetRateLimit ? "yes" : "no (symbol absent)"
        let continuations = hasMaxContinuations
            ? "yes" : "no option symbol (library may still cap internally)"
        return "libnghttp2 \(NGHTTP2Library.version): stream-reset rate limit: \(reset); "
            + "CONTINUATION cap: \(continuations); max SETTINGS entries, max outbound ACKs, "
            + "send header-block cap, received header-list cap: on"
    }

    private typealias SetRateLimit = @convention(c) (OpaquePointer?, UInt64, UInt64) -> Void
    private typealias SetSize = @convention(c) (OpaquePointer?, Int) -> Void

    /// Applies every protection `limits` asks for that this library offers to
    /// an `nghttp2_option`.
    func apply(to option: OpaquePointer, limits: HTTP2Limits) {
        nghttp2_option_set_max_settings(option, limits.maxSettingsEntries)
        nghttp2_option_set_max_outbound_ack(option, limits.maxOutboundAcks)
        nghttp2_option_set_max_send_header_block_length(option, limits.maxSendHeaderBlockLength)
        if let address = streamResetRateLimitAddress, let pointer = UnsafeRawPointer(bitPattern: address) {
            let set = unsafeBitCast(pointer, to: SetRateLimit.self)
            set(option, limits.streamResetBurst, limits.streamResetRatePerSecond)
        }
        if let address = maxContinuationsAddress, let pointer = UnsafeRawPointer(bitPattern: address) {
            let set = unsafeBitCast(pointer, to: SetSize.self)
            set(option, limits.maxContinuations)
        }
    }
}
