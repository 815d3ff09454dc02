import NIOCore
import WeftHTTP2

/// Carries a header list over a real HTTP/2 connection (two ``HTTP2Session``s
/// wired back to back), so a harness sees what a receiving node would accept
/// after nghttp2's RFC 9113 §8 checks: `nil` when the stream was refused.
public enum HeaderRelay {
    /// A request from the client side, as the server session delivers it.
    public static func request(_ fields: HTTP2Fields) -> HTTP2Fields? {
        let clientSink = Sink(), serverSink = Sink()
        // Sessions do not keep their delegates.
        defer { withExtendedLifetime((clientSink, serverSink)) {} }
        guard let client = try? HTTP2Session(role: .client, recyclesLibraryMemory: false, delegate: clientSink),
              let server = try? HTTP2Session(role: .server, recyclesLibraryMemory: false, delegate: serverSink),
              let streamID = try? client.submitRequest(headers: fields, endStream: false) else { return nil }
        sendBody(declaredBy: fields, on: client, streamID: streamID)
        pump(client, server)
        return serverSink.headerBlocks.first
    }

    /// A response from the server side to a plain GET, as the client session
    /// delivers it (1xx blocks included, in order).
    public static func response(_ fields: HTTP2Fields) -> [HTTP2Fields]? {
        let clientSink = Sink(), serverSink = Sink()
        defer { withExtendedLifetime((clientSink, serverSink)) {} }
        guard let client = try? HTTP2Session(role: .client, recyclesLibraryMemory: false, delegate: clientSink),
              let server = try? HTTP2Session(role: .server, recyclesLibraryMemory: false, delegate: serverSink) else { return nil }
        let get: HTTP2Fields = [HTTP2Header(":method", "GET"), HTTP2Header(":scheme", "http"),
                   HTTP2Header(":authority", "app"), HTTP2Header(":path", "/")]
        guard let streamID = try? client.submitRequest(headers: get, endStream: true) else { return nil }
        pump(client, server)
        guard (try? server.submitResponse(streamID: streamID, headers: fields, endStream: false)) != nil else { return nil }
        sendBody(declaredBy: fields, on: server, streamID: streamID)
        pump(client, server)
        return clientSink.headerBlocks.isEmpty ? nil : clientSink.headerBlocks
    }

    /// The body a node would stream after these headers: as many bytes as
    /// `content-length` says (nghttp2 checks the two agree), else none.
    private static func sendBody(declaredBy fields: HTTP2Fields, on session: HTTP2Session, streamID: Int32) {
        let declared = fields.first { $0.name == "content-length" }.flatMap { Int($0.value) } ?? 0
        var body = ByteBuffer()
        body.writeRepeatingByte(0x62, count: min(max(declared, 0), 1 << 20))
        try? session.sendData(streamID: streamID, body, endStream: true)
    }

    private static func pump(_ client: HTTP2Session, _ server: HTTP2Session) {
        for _ in 0..<4 {
            for buffer in (try? client.produceOutput()) ?? [] { try? server.receive(buffer) }
            for buffer in (try? server.produceOutput()) ?? [] { try? client.receive(buffer) }
        }
    }

    private final class Sink: HTTP2SessionDelegate {
        var headerBlocks: [HTTP2Fields] = []

        func session(_ session: HTTP2Session, didReceiveHeaders headers: HTTP2Fields,
                     kind: HTTP2HeadersKind, streamID: Int32, endStream: Bool) {
            headerBlocks.append(headers)
        }
        func session(_ session: HTTP2Session, didReceiveData data: ByteBuffer, streamID: Int32, endStream: Bool) {
            try? session.consume(streamID: streamID, bytes: data.readableBytes)
        }
        func session(_ session: HTTP2Session, streamClosed streamID: Int32, errorCode: HTTP2ErrorCode) {}
        func session(_ session: HTTP2Session, didReceiveGoAway lastStreamID: Int32, errorCode: HTTP2ErrorCode,
                     debugData: String) {}
    }
}
