import NIOCore

/// What an outbound connection speaks, judged from its first bytes
/// (SPEC §4, step 3).
public enum DetectedProtocol: String, Sendable, Equatable {
    case http1
    /// HTTP/2 with prior knowledge (the client preface).
    case http2
    /// A TLS ClientHello: carried as opaque TCP (the app does its own TLS).
    case tls
    /// Anything else.
    case tcp
}

/// Classifies the first bytes a client sends. Pure and incremental: call
/// `detect` with everything received so far; `nil` means "need more bytes".
///
/// Decides as early as the bytes allow: a byte that cannot start or
/// continue any known protocol settles on TCP at once, so opaque clients
/// wait no longer than they must.
public enum ProtocolDetector {
    static let http2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    /// The longest request line prefix we wait for before calling it TCP:
    /// well past the 8 KiB URI limit (`HTTP1RequestRules`), so a request
    /// with a long target still reads as HTTP and is answered 414, not
    /// relayed as opaque bytes.
    static let maximumRequestLineProbe = 64 * 1024
    /// The longest method taken for HTTP (the registered ones are far shorter).
    static let maximumMethodLength = 20

    public static func detect(_ buffer: ByteBuffer) -> DetectedProtocol? {
        buffer.withUnsafeReadableBytes { detect(bytes: $0) }
    }

    static func detect(bytes: UnsafeRawBufferPointer) -> DetectedProtocol? {
        guard let first = bytes.first else { return nil }
        if first == 0x16 { return tlsRecord(bytes) }
        if let preface = prefix(bytes, matches: http2Preface) {
            if preface { return .http2 }
        } else if bytes.count < http2Preface.count, matchesSoFar(bytes, http2Preface) {
            return nil
        }
        return requestLine(bytes)
    }

    /// TLS: handshake record (0x16), version 3.x, then a ClientHello (1).
    private static func tlsRecord(_ bytes: UnsafeRawBufferPointer) -> DetectedProtocol? {
        if bytes.count >= 2, bytes[1] != 0x03 { return .tcp }
        if bytes.count >= 3, bytes[2] > 0x04 { return .tcp }
        guard bytes.count >= 6 else { return nil }
        return bytes[5] == 0x01 ? .tls : .tcp
    }

    /// `true`/`false` once enough bytes are there to compare the whole
    /// pattern, else nil.
    private static func prefix(_ bytes: UnsafeRawBufferPointer, matches pattern: [UInt8]) -> Bool? {
        guard bytes.count >= pattern.count else { return nil }
        return matchesSoFar(bytes, pattern)
    }

    private static func matchesSoFar(_ bytes: UnsafeRawBufferPointer, _ pattern: [UInt8]) -> Bool {
        zip(bytes, pattern).allSatisfy { $0 == $1 }
    }

    /// `METHOD SP request-target SP HTTP/1.x CRLF`, checked as it arrives.
    private static func requestLine(_ bytes: UnsafeRawBufferPointer) -> DetectedProtocol? {
        var index = 0
        // Method: a token of upper-case letters (RFC 9110 methods in use are).
        // Each limit is checked before "need more bytes", so the answer does
        // not depend on how the bytes were cut into reads.
        while index < bytes.count, isMethodCharacter(bytes[index]) { index += 1 }
        if index > maximumMethodLength { return .tcp }
        if index == bytes.count { return nil }
        guard index > 0, bytes[index] == UInt8(ascii: " ") else { return .tcp }
        index += 1
        // Target: visible ASCII up to the next space.
        let targetStart = index
        while index < bytes.count, bytes[index] > 0x20, bytes[index] < 0x7f { index += 1 }
        if index >= maximumRequestLineProbe { return .tcp }
        if index == bytes.count { return nil }
        guard index > targetStart, bytes[index] == UInt8(ascii: " ") else { return .tcp }
        index += 1
        let version = Array("HTTP/1.".utf8)
        for expected in version {
            guard index < bytes.count else { return nil }
            guard bytes[index] == expected else { return .tcp }
            index += 1
        }
        guard index < bytes.count else { return nil }
        return bytes[index] == UInt8(ascii: "0") || bytes[index] == UInt8(ascii: "1") ? .http1 : .tcp
    }

    private static func isMethodCharacter(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }
}
