import Benchmark
import NIOCore
import WeftHTTP2
import WeftMesh
import WeftProxy

/// The nghttp2 wrapper alone: a client and a server `HTTP2Session` wired
/// together in memory, one request/response exchange per iteration.
///
/// Per iteration the client submits the request headers weft sends on the
/// mesh (with end stream), the bytes go to the server, the server answers
/// with the response headers and a 1 KiB DATA frame (end stream), the bytes
/// go back, and the client takes the body and consumes it (as the sending
/// node does once the app's socket took it). The harness reuses its buffers
/// and arrays, so what is counted is what the wrapper (and libnghttp2)
/// allocates.
final class SessionBenchmark {
    private var client: HTTP2Session?
    private var server: HTTP2Session?
    private let clientSide = ClientSide()
    private let serverSide = ServerSide()
    private var requestFields: HTTP2Fields = []
    /// Output of one `produceOutput`, reused.
    private var produced: [ByteBuffer] = []
    /// One direction's bytes coalesced, as one socket read would give them.
    private var wire = ByteBuffer()

    func setUp() throws {
        requestFields = try MeshTranslation.upgradeRequest(TypicalHeads.request, destination: TypicalHeads.vip)
        serverSide.responseFields = MeshTranslation.upgradeResponse(TypicalHeads.response)
        var body = ByteBufferAllocator().buffer(capacity: TypicalHeads.bodySize)
        body.writeRepeatingByte(UInt8(ascii: "x"), count: TypicalHeads.bodySize)
        serverSide.body = body
        produced.reserveCapacity(16)
        wire = ByteBufferAllocator().buffer(capacity: 64 * 1024)
        let client = try HTTP2Session(role: .client, delegate: clientSide)
        let server = try HTTP2Session(role: .server, delegate: serverSide)
        self.client = client
        self.server = server
        // Prefaces and SETTINGS both ways, then one exchange so both HPACK
        // tables hold what a long-lived mesh connection has in them.
        try settle(client, server)
        try exchange(client, server)
    }

    func tearDown() {
        client = nil
        server = nil
    }

    func run(_ benchmark: Benchmark) {
        guard let client, let server else {
            benchmark.error("sessions not set up")
            return
        }
        do {
            for _ in benchmark.scaledIterations {
                try exchange(client, server)
            }
        } catch {
            benchmark.error("exchange failed: \(error)")
        }
    }

    /// One request and its response; throws unless the body arrived whole.
    private func exchange(_ client: HTTP2Session, _ server: HTTP2Session) throws {
        let completed = clientSide.completed
        let received = clientSide.bodyBytes
        _ = try client.submitRequest(headers: requestFields, endStream: true)
        try settle(client, server)
        if let failure = serverSide.failure { throw failure }
        guard clientSide.completed == completed + 1,
              clientSide.bodyBytes - received == TypicalHeads.bodySize else {
            throw SessionBenchmarkError.incompleteExchange
        }
    }

    /// Moves bytes both ways until neither side has anything to send.
    private func settle(_ client: HTTP2Session, _ server: HTTP2Session) throws {
        for _ in 0..<32 {
            let sent = try transfer(from: client, to: server)
            let answered = try transfer(from: server, to: client)
            if !sent && !answered { return }
        }
        throw SessionBenchmarkError.didNotSettle
    }

    private func transfer(from source: HTTP2Session, to sink: HTTP2Session) throws -> Bool {
        produced.removeAll(keepingCapacity: true)
        try source.produceOutput(into: &produced)
        guard !produced.isEmpty else { return false }
        wire.clear()
        for index in produced.indices {
            wire.writeBuffer(&produced[index])
        }
        produced.removeAll(keepingCapacity: true)
        try sink.receive(wire)
        return true
    }
}

enum SessionBenchmarkError: Error {
    case didNotSettle
    case incompleteExchange
}

/// The sending node's side: counts responses and body bytes, consumes them.
private final class ClientSide: HTTP2SessionDelegate {
    var completed = 0
    var bodyBytes = 0

    func session(_ session: HTTP2Session, didReceiveHeaders headers: HTTP2Fields,
                 kind: HTTP2HeadersKind, streamID: Int32, endStream: Bool) {
        if endStream { completed += 1 }
    }

    func session(_ session: HTTP2Session, didReceiveData data: ByteBuffer, streamID: Int32, endStream: Bool) {
        bodyBytes += data.readableBytes
        // Consuming can only fail on a library error; the exchange check
        // above catches a session that stopped working.
        try? session.consume(streamID: streamID, bytes: data.readableBytes)
        if endStream { completed += 1 }
    }

    func session(_ session: HTTP2Session, streamClosed streamID: Int32, errorCode: HTTP2ErrorCode) {}

    func session(_ session: HTTP2Session, didReceiveGoAway lastStreamID: Int32, errorCode: HTTP2ErrorCode,
                 debugData: String) {}
}

/// The receiving node's side: answers every request with the response
/// headers and the 1 KiB body.
private final class ServerSide: HTTP2SessionDelegate {
    var responseFields: HTTP2Fields = []
    var body = ByteBuffer()
    var failure: Error?

    func session(_ session: HTTP2Session, didReceiveHeaders headers: HTTP2Fields,
                 kind: HTTP2HeadersKind, streamID: Int32, endStream: Bool) {
        guard kind == .request else { return }
        do {
            try session.submitResponse(streamID: streamID, headers: responseFields, endStream: false)
            try session.sendData(streamID: streamID, body, endStream: true)
        } catch {
            failure = error
        }
    }

    func session(_ session: HTTP2Session, didReceiveData data: ByteBuffer, streamID: Int32, endStream: Bool) {
        try? session.consume(streamID: streamID, bytes: data.readableBytes)
    }

    func session(_ session: HTTP2Session, streamClosed streamID: Int32, errorCode: HTTP2ErrorCode) {}

    func session(_ session: HTTP2Session, didReceiveGoAway lastStreamID: Int32, errorCode: HTTP2ErrorCode,
                 debugData: String) {}
}
