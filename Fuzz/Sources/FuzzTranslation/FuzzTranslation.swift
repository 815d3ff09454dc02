import FuzzSupport
import NIOCore
import NIOEmbedded
import NIOHTTP1
import WeftCore
import WeftHTTP2
import WeftMesh
import WeftProxy

/// The HTTP/1.1 ↔ HTTP/2 translation at both nodes. The first byte picks
/// the direction; the rest is the message:
/// - 0: an app's HTTP/1 request bytes. Every request weft accepts (the
///   parser and ``HTTP1RequestRules`` pass it) upgrades to a header list a
///   receiving node accepts unchanged: weft never sends the mesh what a peer
///   must refuse.
/// - 1: a peer's request header list. Every list the receiving session
///   accepts downgrades to HTTP/1.1 bytes that parse back as exactly one
///   request with the same method, target and fields: nothing smuggled.
/// - 2: a local app's HTTP/1 response bytes. Every response head the parser
///   accepts upgrades to a header list the sending node's session accepts.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTranslation(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    switch input.byte() % 3 {
    case 0: upgradeRequests(input.remaining)
    case 1: downgradeRequest(&input)
    default: upgradeResponses(input.remaining)
    }
    return 0
}

private let destination = IPEndpoint("198.18.0.2:8080")!

private func upgradeRequests(_ bytes: UnsafeRawBufferPointer) {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
    defer { _ = try? channel.finish() }
    _ = try? channel.writeInbound(ByteBuffer(bytes: bytes))
    while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
        // What the outbound handler translates: a valid request that does
        // not open a tunnel (those cross as bytes).
        guard case .head(let head) = part, HTTP1RequestRules.violation(of: head) == nil,
              !MeshTranslation.opensTunnel(head),
              let fields = try? MeshTranslation.upgradeRequest(head, destination: destination) else { continue }
        let received = HeaderRelay.request(fields)
        require(received == fields, "upgraded \(head) to \(fields); the peer got \(String(describing: received))")
    }
}

private func downgradeRequest(_ input: inout FuzzInput) {
    var fields: [HTTP2Header] = []
    while !input.isAtEnd && fields.count < 64 {
        fields.append(HTTP2Header(input.string(), input.string()))
    }
    guard let accepted = HeaderRelay.request(fields),
          let downgraded = try? MeshTranslation.downgradeRequest(accepted) else { return }
    let head = downgraded.head
    // llhttp, the oracle below, knows a fixed list of methods; any other
    // token (nghttp2 checked it is one) is valid HTTP it cannot read back.
    if case .RAW = head.method { return }

    let encoder = EmbeddedChannel(handler: HTTPRequestEncoder())
    defer { _ = try? encoder.finish() }
    var bytes = ByteBuffer()
    guard (try? encoder.writeOutbound(HTTPClientRequestPart.head(head))) != nil,
          (try? encoder.writeOutbound(HTTPClientRequestPart.end(nil))) != nil else { return }
    while let chunk = try? encoder.readOutbound(as: ByteBuffer.self) { bytes.writeImmutableBuffer(chunk) }

    let decoder = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
    defer { _ = try? decoder.finish() }
    let wire = String(buffer: bytes)
    do {
        try decoder.writeInbound(bytes)
    } catch {
        require(false, "the app cannot parse what weft sent (\(error)): \(wire.debugDescription)")
    }
    var parts: [HTTPServerRequestPart] = []
    while let part = try? decoder.readInbound(as: HTTPServerRequestPart.self) { parts.append(part) }
    guard case .head(let parsed)? = parts.first else {
        require(false, "no request parsed from \(wire.debugDescription)")
        return
    }
    let heads = parts.filter { if case .head = $0 { true } else { false } }
    require(heads.count == 1, "\(heads.count) requests hide in \(wire.debugDescription)")
    require(parsed.method == head.method && parsed.uri == head.uri,
            "sent \(head.method) \(head.uri), the app read \(parsed.method) \(parsed.uri)")
    let sent = head.headers.map { "\($0.name.lowercased()): \($0.value)" }
    let read = parsed.headers.map { "\($0.name.lowercased()): \($0.value)" }.filter { $0 != "transfer-encoding: chunked" }
    require(sent == read, "sent fields \(sent), the app read \(read)")
}

private func upgradeResponses(_ bytes: UnsafeRawBufferPointer) {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(
        HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .forward)))
    defer { _ = try? channel.finish() }
    // The decoder answers responses to requests it saw go out.
    _ = try? channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")))
    _ = try? channel.writeInbound(ByteBuffer(bytes: bytes))
    while let part = try? channel.readInbound(as: HTTPClientResponsePart.self) {
        guard case .head(let head) = part, head.status.code >= 200 else { continue }
        let fields = MeshTranslation.upgradeResponse(head)
        // What the receiving node sends on (it answers 502 for the rest).
        guard MeshTranslation.fitsPeerLimits(fields) else { continue }
        let received = HeaderRelay.response(fields)
        require(received?.last == fields, "upgraded \(head) to \(fields); the peer got \(String(describing: received))")
    }
}
