import FuzzSupport
import NIOCore
import WeftHTTP2

/// ``HTTP2Session`` fed a peer's frames. The first byte picks the role
/// (even: a server, as at the mesh listener, with the client preface put in
/// front; odd: a client, as towards an HTTP/2 app) and how the input is cut
/// into reads. The delegate acts like a node: it answers requests, consumes
/// what it reads and resets some streams. Any input must end in a clean
/// session or a connection error, never a crash, a trap or a leak
/// (AddressSanitizer).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP2Frames(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let control = input.byte()
    let role: HTTP2Session.Role = control & 1 == 0 ? .server : .client
    let readSize = 1 + Int(control >> 1) * 8
    let node = Node()
    defer { withExtendedLifetime(node) {} }  // the session does not keep its delegate
    guard let session = try? HTTP2Session(role: role, recyclesLibraryMemory: false, delegate: node) else { return 0 }
    if role == .client {
        _ = try? session.submitRequest(headers: [HTTP2Header(":method", "POST"), HTTP2Header(":scheme", "http"),
                                                 HTTP2Header(":authority", "app"), HTTP2Header(":path", "/")],
                                       endStream: false)
    }
    var wire = ByteBuffer()
    if role == .server { wire.writeString("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") }
    wire.writeBytes(input.remaining)
    while let piece = wire.readSlice(length: min(readSize, wire.readableBytes)), piece.readableBytes > 0 {
        do {
            try session.receive(piece)
        } catch let error as HTTP2SessionError where error.isFatal {
            break
        } catch {}
        _ = try? session.produceOutput(maxBytes: 16 * 1024)
    }
    _ = try? session.produceOutput()
    return 0
}

private final class Node: HTTP2SessionDelegate {
    private var answered = 0

    func session(_ session: HTTP2Session, didReceiveHeaders headers: HTTP2Fields,
                 kind: HTTP2HeadersKind, streamID: Int32, endStream: Bool) {
        answered += 1
        if answered % 5 == 0 {
            try? session.resetStream(streamID: streamID)
        } else if session.role == .server {
            _ = try? session.submitResponse(streamID: streamID, headers: [HTTP2Header(":status", "200")], endStream: false)
            var body = ByteBuffer()
            body.writeRepeatingByte(0x61, count: 100)
            try? session.sendData(streamID: streamID, body, endStream: endStream)
        }
    }

    func session(_ session: HTTP2Session, didReceiveData data: ByteBuffer, streamID: Int32, endStream: Bool) {
        try? session.consume(streamID: streamID, bytes: data.readableBytes)
    }

    func session(_ session: HTTP2Session, streamClosed streamID: Int32, errorCode: HTTP2ErrorCode) {
        try? session.discardUnconsumed(streamID: streamID)
    }

    func session(_ session: HTTP2Session, didReceiveGoAway lastStreamID: Int32, errorCode: HTTP2ErrorCode,
                 debugData: String) {}
}
