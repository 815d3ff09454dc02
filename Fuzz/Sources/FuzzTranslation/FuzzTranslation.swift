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
/// - 0: an app's HTTP/1 request bytes, read by weft's own parser
///   (`HTTP1RequestParser`) and ``HTTP1RequestRules``. Whatever they
///   accept, llhttp (NIO's decoder) reads the same way: methods, targets,
///   fields, bodies, ends. weft may refuse more, never read a request
///   otherwise. Every request it accepts upgrades to a header list a
///   receiving node accepts unchanged: weft never sends the mesh what a
///   peer must refuse.
/// - 1: a peer's request header list. Every list the receiving session
///   accepts downgrades to HTTP/1.1 bytes that parse back as exactly one
///   request with the same method, target and fields: nothing smuggled.
/// - 2: a local app's HTTP/1 response bytes, read by weft's own parser
///   (`HTTP1ResponseParser`). Whatever it accepts, llhttp (NIO's decoder)
///   reads the same way: statuses, fields, body, end. weft may refuse more,
///   never read a response otherwise. Every final head it accepts upgrades
///   to a header list the sending node's session accepts.
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
    // weft's reading: the parser, then the rules each head must meet (a
    // head that breaks one is answered and the connection closed).
    var parser = HTTP1RequestParser()
    var buffer = ByteBuffer(bytes: bytes)
    var weft: [String] = []
    var heads: [(HTTP1RequestHead, HTTP1HeadFacts)] = []
    var refused = false
    do {
        reading: while let event = try parser.next(&buffer) {
            if case .head(let head, let facts) = event {
                // What the parser gathered is what a walk finds, and the
                // rules judge the head the same from either.
                require(facts == HTTP1HeadFacts(of: head.fields), "\(facts) gathered from \(head)")
                require(facts.connection == ConnectionOptions(of: head.head.headers), "\(facts.connection) from \(head)")
                let violation = HTTP1RequestRules.violation(of: head, facts: facts)
                require(violation == HTTP1RequestRules.violation(of: head), "\(String(describing: violation)) for \(head)")
                if violation != nil {
                    refused = true
                    break reading
                }
                heads.append((head, facts))
            }
            weft.append(describe(event))
        }
        if !refused { try parser.inputEnded() }
    } catch {
        refused = true  // the app gets a 400, nothing after this is read
    }

    // llhttp's reading of the same bytes, the input then closed.
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
    var llhttp: [String] = []
    var llhttpRefused = (try? channel.writeInbound(ByteBuffer(bytes: bytes))) == nil
    func drain() {
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let head): llhttp.append(describe(head))
            case .body(let body): llhttp.append(describe(HTTP1RequestParser.Event.body(body)))
            case .end(let trailers): llhttp.append(describe(HTTP1RequestParser.Event.end(trailers)))
            }
        }
    }
    drain()
    if !llhttpRefused {
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        if (try? channel.throwIfErrorCaught()) == nil { llhttpRefused = true }
        drain()
    }
    _ = try? channel.finish(acceptAlreadyClosed: true)
    let ours = merged(weft), theirs = merged(llhttp)
    let wire = String(decoding: bytes, as: UTF8.self).debugDescription
    // Where both read, they read the same; weft reads no further than
    // llhttp unless llhttp stopped for a tunnel (weft decides those by its
    // own rule, the one its handler follows); weft stops short of llhttp
    // only by refusing or tunnelling.
    let common = min(ours.count, theirs.count)
    require(Array(ours.prefix(common)) == Array(theirs.prefix(common)), "weft read \(ours), llhttp \(theirs) from \(wire)")
    if ours.count > theirs.count {
        require(!llhttpRefused, "weft read \(ours), llhttp refused after \(theirs) from \(wire)")
    }
    if ours.count < theirs.count {
        require(refused || parser.isTunnelling, "weft read \(ours) and stopped, llhttp \(theirs) from \(wire)")
    }

    for (head, facts) in heads where !head.opensTunnel(connection: facts.connection) {
        // What the outbound handler translates: tunnels cross as bytes.
        guard let fields = try? MeshTranslation.upgradeRequest(method: head.method, uri: head.uri,
                                                              version: head.version, fields: head.fields,
                                                              destination: destination, connection: facts.connection)
        else { continue }
        // The fields that go on from the bytes are the ones the rules for
        // Strings keep (`forEachEndToEnd`, which plain endpoints' requests
        // follow), where the bytes are UTF-8.
        if isUTF8(head.fields) {
            var fromStrings: [String] = []
            MeshTranslation.forEachEndToEnd(head.head.headers, dropping: "host") { fromStrings.append("\($0): \($1)") }
            let fromBytes = fields.filter { name, _ in name.first != UInt8(ascii: ":") && !name.hasPrefix("weft-") }
                .map { "\($0.name): \($0.value)" }
            require(fromBytes == fromStrings, "upgraded \(head.head) from bytes to \(fromBytes), by Strings \(fromStrings)")
        }
        let received = HeaderRelay.request(fields)
        require(received == fields, "upgraded \(head) to \(fields); the peer got \(String(describing: received))")
    }
}

private func downgradeRequest(_ input: inout FuzzInput) {
    var fields: HTTP2Fields = []
    while !input.isAtEnd && fields.count < 64 {
        fields.append(HTTP2Header(input.string(), input.string()))
    }
    guard let accepted = HeaderRelay.request(fields),
          let downgraded = try? MeshTranslation.downgradeRequest(accepted) else { return }
    let head = downgraded.head
    // llhttp, the oracle below, knows a fixed list of methods; any other
    // token (nghttp2 checked it is one) is valid HTTP it cannot read back.
    if case .RAW = head.method { return }

    // Written as the receiving node writes it to the app.
    var writer = HTTP1RequestWriter()
    var bytes = ByteBuffer()
    writer.writeHead(head, into: &bytes)
    writer.writeEnd(nil, into: &bytes)

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
    // weft's reading, in one read, up to the first response's end.
    var parser = HTTP1ResponseParser()
    parser.expectResponse(toHEAD: false)
    var buffer = ByteBuffer(bytes: bytes)
    var weft: [String] = []
    var ended = false
    do {
        while !ended, let event = try parser.next(&buffer) {
            weft.append(describe(event))
            if case .end = event { ended = true }
        }
    } catch {
        return  // refused: the app gets a 502, nothing of this is read
    }
    if !ended {
        switch parser.inputEnded() {
        case .success(let event?):
            weft.append(describe(event))
            ended = true
        case .success(nil):
            break
        case .failure:
            return  // cut short: refused as above (a 502, or the app's connection closed mid-response)
        }
    }
    guard weft.contains(where: { $0.hasPrefix("head ") }) else { return }

    // llhttp's reading of the same bytes, the input then closed.
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(
        HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .forward)))
    // The decoder answers responses to requests it saw go out.
    _ = try? channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")))
    var llhttp: [String] = []
    let accepted = (try? channel.writeInbound(ByteBuffer(bytes: bytes))) != nil
    var llhttpEnded = false
    func drain() {
        while !llhttpEnded, let part = try? channel.readInbound(as: HTTPClientResponsePart.self) {
            switch part {
            case .head(let head): llhttp.append(describe(head))
            case .body(let body): llhttp.append(describe(HTTP1ResponseParser.Event.body(body)))
            case .end(let trailers):
                llhttp.append(describe(HTTP1ResponseParser.Event.end(trailers)))
                llhttpEnded = true
            }
        }
    }
    drain()
    if accepted && !llhttpEnded {
        _ = try? channel.close().wait()
        drain()
    }
    // Closed above or not, the channel is finished (else it leaks).
    _ = try? channel.finish(acceptAlreadyClosed: true)
    require(merged(weft) == merged(llhttp),
            "weft read \(weft), llhttp \(llhttp) from \(String(decoding: bytes, as: UTF8.self).debugDescription)")

    var parsed: HTTP1ResponseHead?
    var again = HTTP1ResponseParser()
    again.expectResponse(toHEAD: false)
    var copy = ByteBuffer(bytes: bytes)
    while parsed == nil, let event = try? again.next(&copy) {
        if case .head(let got) = event, got.status.code >= 200 {
            require(got.connection == ConnectionOptions(of: got.head.headers), "\(got.connection) gathered from \(got.head)")
            parsed = got
        }
    }
    guard let parsed else { return }
    let head = parsed.head
    let fields = MeshTranslation.upgradeResponse(status: parsed.status, fields: parsed.fields,
                                                 connection: parsed.connection)
    // The upgrade from the bytes is the one from Strings, where the bytes
    // are UTF-8 (elsewhere the Strings hold U+FFFD, and the bytes go on).
    if isUTF8(parsed.fields) {
        let fromStrings = MeshTranslation.upgradeResponse(head, connection: parsed.connection)
        require(fields == fromStrings, "upgraded \(head) from bytes to \(fields), from Strings to \(fromStrings)")
    }
    // What the receiving node sends on (it answers 502 for the rest).
    guard MeshTranslation.fitsPeerLimits(fields) else { return }
    let received = HeaderRelay.response(fields)
    require(received?.last == fields, "upgraded \(head) to \(fields); the peer got \(String(describing: received))")
}

/// Whether every name and value of `fields` is UTF-8.
private func isUTF8(_ fields: HTTP2Fields) -> Bool {
    var valid = true
    fields.forEach { name, value in
        if valid { valid = Array(String(decoding: value, as: UTF8.self).utf8).elementsEqual(value)
            && Array(String(decoding: name, as: UTF8.self).utf8).elementsEqual(name) }
    }
    return valid
}

/// Fields as text to compare: lower-case names, values without the
/// whitespace around them (which llhttp leaves at the end).
private func describe(_ headers: HTTPHeaders) -> String {
    headers.map { "\($0.name.lowercased()): \($0.value.trimmingSpaces)" }.joined(separator: "|")
}

/// An event as text to compare: statuses, fields, body bytes, the end and
/// its trailers.
private func describe(_ head: HTTPResponseHead) -> String {
    "head \(head.status.code) \(head.version) \(describe(head.headers))"
}

private func describe(_ event: HTTP1ResponseParser.Event) -> String {
    switch event {
    case .head(let head): return describe(head.head)
    case .body(let body): return "body " + String(decoding: body.readableBytesView, as: UTF8.self)
    case .end(let trailers): return "end " + (trailers.map(describe) ?? "")
    }
}

private func describe(_ head: HTTPRequestHead) -> String {
    // NIO spells llhttp's M-SEARCH `MSEARCH`; weft keeps the name.
    let method = head.method == .MSEARCH ? "M-SEARCH" : head.method.rawValue
    return "head \(method) \(head.uri) \(head.version) \(describe(head.headers))"
}

private func describe(_ event: HTTP1RequestParser.Event) -> String {
    switch event {
    case .head(let head, _): return describe(head.head)
    case .body(let body): return "body " + String(decoding: body.readableBytesView, as: UTF8.self)
    case .end(let trailers): return "end " + (trailers.map(describe) ?? "")
    }
}

/// Body parts joined, since the two readers split bodies differently.
private func merged(_ events: [String]) -> [String] {
    var out: [String] = []
    for event in events where event != "body " {
        if event.hasPrefix("body "), let last = out.last, last.hasPrefix("body ") {
            out[out.count - 1] = last + event.dropFirst(5)
        } else {
            out.append(event)
        }
    }
    return out
}
