import NIOCore
import XCTest

@testable import WeftHTTP2

/// Records everything a session tells its delegate.
final class Recorder: HTTP2SessionDelegate {
    enum Event: Equatable {
        case headers(Int32, HTTP2Fields, HTTP2HeadersKind, endStream: Bool)
        case data(Int32, String, endStream: Bool)
        case closed(Int32, HTTP2ErrorCode)
        case goAway(Int32, HTTP2ErrorCode)
        case settings(HTTP2RemoteSettings)
        case pingAck(UInt64)
        case writable(Int32, Bool)
        case rejected(Int32, HTTP2StreamRejection)
        case connectionError(HTTP2SessionError)
    }

    var events: [Event] = []
    /// Received DATA buffers as delivered (for storage checks).
    var dataBuffers: [(Int32, ByteBuffer)] = []
    /// Give received bytes back to flow control at once.
    var autoConsume = true
    /// Called for each received header block (to answer from the delegate).
    var onHeaders: ((HTTP2Session, Int32, HTTP2Fields, HTTP2HeadersKind, Bool) throws -> Void)?
    var onData: ((HTTP2Session, Int32, ByteBuffer, Bool) throws -> Void)?

    func session(_ session: HTTP2Session, didReceiveHeaders headers: HTTP2Fields,
                 kind: HTTP2HeadersKind, streamID: Int32, endStream: Bool) {
        events.append(.headers(streamID, headers, kind, endStream: endStream))
        XCTAssertNoThrow(try onHeaders?(session, streamID, headers, kind, endStream))
    }

    func session(_ session: HTTP2Session, didReceiveData data: ByteBuffer, streamID: Int32, endStream: Bool) {
        events.append(.data(streamID, String(buffer: data), endStream: endStream))
        dataBuffers.append((streamID, data))
        if autoConsume {
            XCTAssertNoThrow(try session.consume(streamID: streamID, bytes: data.readableBytes))
        }
        XCTAssertNoThrow(try onData?(session, streamID, data, endStream))
    }

    func session(_ session: HTTP2Session, streamClosed streamID: Int32, errorCode: HTTP2ErrorCode) {
        events.append(.closed(streamID, errorCode))
    }

    func session(_ session: HTTP2Session, didReceiveGoAway lastStreamID: Int32, errorCode: HTTP2ErrorCode,
                 debugData: String) {
        events.append(.goAway(lastStreamID, errorCode))
    }

    func session(_ session: HTTP2Session, didReceiveSettings settings: HTTP2RemoteSettings) {
        events.append(.settings(settings))
    }

    func session(_ session: HTTP2Session, didReceivePingAck payload: UInt64) {
        events.append(.pingAck(payload))
    }

    func session(_ session: HTTP2Session, streamWritabilityChanged streamID: Int32, isWritable: Bool) {
        events.append(.writable(streamID, isWritable))
    }

    func session(_ session: HTTP2Session, didRejectStream streamID: Int32, reason: HTTP2StreamRejection) {
        events.append(.rejected(streamID, reason))
    }

    func session(_ session: HTTP2Session, connectionError error: HTTP2SessionError) {
        events.append(.connectionError(error))
    }

    // Queries.

    func body(_ streamID: Int32) -> String {
        events.reduce(into: "") {
            if case .data(streamID, let text, _) = $1 { $0 += text }
        }
    }

    func bodyBytes(_ streamID: Int32) -> Int {
        dataBuffers.reduce(0) { $0 + ($1.0 == streamID ? $1.1.readableBytes : 0) }
    }

    func headerBlocks(_ streamID: Int32) -> [(headers: HTTP2Fields, kind: HTTP2HeadersKind, endStream: Bool)] {
        events.compactMap {
            if case .headers(streamID, let headers, let kind, let end) = $0 { return (headers, kind, end) }
            return nil
        }
    }

    func closeCode(_ streamID: Int32) -> HTTP2ErrorCode? {
        for case .closed(streamID, let code) in events { return code }
        return nil
    }

    var endedStreams: Set<Int32> {
        Set(events.compactMap {
            switch $0 {
            case .data(let id, _, true), .headers(let id, _, _, true): id
            default: nil
            }
        })
    }
}

/// A client and a server session wired to each other in memory.
final class Pair {
    let clientRecorder = Recorder()
    let serverRecorder = Recorder()
    let client: HTTP2Session
    let server: HTTP2Session
    /// Concatenate each side's output into one buffer before feeding it
    /// (otherwise every produced buffer is fed on its own).
    var coalesce = false
    /// Every buffer the client produced, in order.
    var clientWire: [ByteBuffer] = []

    init(clientSettings: HTTP2Settings = .default, serverSettings: HTTP2Settings = .default,
         clientLimits: HTTP2Limits = .default, serverLimits: HTTP2Limits = .default,
         protections: HTTP2Protections = .detected) throws {
        client = try HTTP2Session(role: .client, settings: clientSettings, limits: clientLimits,
                                  protections: protections, delegate: clientRecorder)
        server = try HTTP2Session(role: .server, settings: serverSettings, limits: serverLimits,
                                  protections: protections, delegate: serverRecorder)
    }

    /// Moves bytes both ways until neither side has anything to send.
    func pump(file: StaticString = #filePath, line: UInt = #line) throws {
        for _ in 0..<10_000 {
            let fromClient = try client.produceOutput()
            clientWire += fromClient
            let fromServer = try server.produceOutput()
            if fromClient.isEmpty && fromServer.isEmpty { return }
            try feed(fromClient, to: server)
            try feed(fromServer, to: client)
        }
        XCTFail("pump did not settle", file: file, line: line)
    }

    private func feed(_ buffers: [ByteBuffer], to session: HTTP2Session) throws {
        if coalesce {
            guard !buffers.isEmpty else { return }
            var all = ByteBuffer()
            for var buffer in buffers { all.writeBuffer(&buffer) }
            try session.receive(all)
        } else {
            for buffer in buffers { try session.receive(buffer) }
        }
    }
}

func h(_ name: String, _ value: String) -> HTTP2Header { HTTP2Header(name, value) }

func request(_ method: String = "GET", path: String = "/", extra: HTTP2Fields = []) -> HTTP2Fields {
    [h(":method", method), h(":scheme", "http"), h(":authority", "app.local:8080"), h(":path", path)] + extra
}

func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

func buffer(repeating byte: UInt8, count: Int) -> ByteBuffer {
    var buffer = ByteBufferAllocator().buffer(capacity: count)
    buffer.writeRepeatingByte(byte, count: count)
    return buffer
}

/// Raw HTTP/2 framing for tests that must send what a well-behaved session won't.
enum RawFrame {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func frame(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8] = []) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags,
                UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff),
                UInt8(stream & 0xff)] + payload
    }

    static let emptySettings = frame(type: 4, flags: 0, stream: 0)

    /// HPACK for `:method GET, :scheme http, :path /, :authority a.b` as four pieces.
    static let requestBlockPieces: [[UInt8]] = [[0x82], [0x86], [0x84], [0x41, 0x03] + Array("a.b".utf8)]
    /// The same block whole.
    static let requestBlock = requestBlockPieces.flatMap { $0 }
    /// HPACK for the trailer `x-t: 1` (a literal, not indexed).
    static let trailerBlock: [UInt8] = [0x00, 0x03] + Array("x-t".utf8) + [0x01] + Array("1".utf8)

    /// Parses frames out of concatenated output.
    static func parse(_ buffers: [ByteBuffer]) -> [(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8])] {
        var all: [UInt8] = []
        for buffer in buffers { all += buffer.readableBytesView }
        if all.starts(with: preface) { all.removeFirst(preface.count) }
        var frames: [(UInt8, UInt8, UInt32, [UInt8])] = []
        var index = 0
        while index + 9 <= all.count {
            let length = Int(all[index]) << 16 | Int(all[index + 1]) << 8 | Int(all[index + 2])
            let stream = UInt32(all[index + 5] & 0x7f) << 24 | UInt32(all[index + 6]) << 16
                | UInt32(all[index + 7]) << 8 | UInt32(all[index + 8])
            frames.append((all[index + 3], all[index + 4], stream, Array(all[index + 9..<index + 9 + length])))
            index += 9 + length
        }
        return frames
    }

    static func errorCode(_ payload: [UInt8], at offset: Int = 0) -> UInt32 {
        UInt32(payload[offset]) << 24 | UInt32(payload[offset + 1]) << 16
            | UInt32(payload[offset + 2]) << 8 | UInt32(payload[offset + 3])
    }
}
