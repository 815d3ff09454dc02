import NIOHTTP1
import WeftCore
import WeftHTTP2
import WeftObservability

/// The protocol the app spoke, carried in `weft-orig-proto` (SPEC §4).
///
/// The value is the version, optionally followed by `;`-separated flags
/// that keep the downgrade faithful: `absolute-form` (the request line
/// carried a full URI), `no-host` (an HTTP/1.0 request without Host;
/// HTTP/2 needs an authority, so the destination stands in for it) and
/// `empty-host` (a `Host` with an empty value, which RFC 9112 §3.2 allows
/// for a target without an authority; the destination stands in too).
public struct OrigProto: Equatable, Sendable {
    public enum Version: String, Sendable { case http10 = "HTTP/1.0", http11 = "HTTP/1.1", http2 = "HTTP/2" }
    public var version: Version
    public var absoluteForm = false
    public var noHost = false
    public var emptyHost = false

    public init(version: Version, absoluteForm: Bool = false, noHost: Bool = false, emptyHost: Bool = false) {
        self.version = version
        self.absoluteForm = absoluteForm
        self.noHost = noHost
        self.emptyHost = emptyHost
    }

    /// The same from the field's bytes: the values every node sends for
    /// plain requests are read without a String.
    init?(headerBytes bytes: UnsafeRawBufferPointer) {
        if bytes.equals("HTTP/1.1") {
            self = OrigProto(version: .http11)
        } else if bytes.equals("HTTP/1.0") {
            self = OrigProto(version: .http10)
        } else {
            self.init(headerValue: String(decoding: bytes, as: UTF8.self))
        }
    }

    init?(headerValue: String) {
        // The values every node sends for plain requests, without a split.
        switch headerValue {
        case "HTTP/1.1": self = OrigProto(version: .http11); return
        case "HTTP/1.0": self = OrigProto(version: .http10); return
        default: break
        }
        let parts = headerValue.split(separator: ";").map { $0.trimmingSpaces }
        guard let first = parts.first, let version = Version(rawValue: String(first)) else { return nil }
        self.version = version
        for flag in parts.dropFirst() {
            switch flag {
            case "absolute-form": absoluteForm = true
            case "no-host": noHost = true
            case "empty-host": emptyHost = true
            default: continue  // unknown flags from newer nodes are ignored
            }
        }
    }

    public var headerValue: String {
        guard absoluteForm || noHost || emptyHost else { return version.rawValue }
        var value = version.rawValue
        if absoluteForm { value += "; absolute-form" }
        if noHost { value += "; no-host" }
        if emptyHost { value += "; empty-host" }
        return value
    }
}

/// A mesh request's block as the receiving node writes it to the app: its
/// fields as the bytes that came, the Host weft writes, and the request
/// target, read from the block's `:path` and `:authority` as they are
/// written (`forEachTargetPart`, `withHost`): no String is made of them.
public struct PeerRequestBlock: Equatable {
    /// The Host weft writes, in place of any `host` the block has.
    public enum Host: Equatable, Sendable {
        /// None: the app sent none (`no-host`; or the block has no
        /// `:authority`), and a `host` in the block goes on.
        case none
        /// An empty one (`empty-host`).
        case empty
        /// The `:authority`.
        case authority
    }

    public let fields: HTTP2Fields
    public let host: Host
    /// The target is in absolute form (`absolute-form`): `http://`, the
    /// `:authority`, then the `:path`.
    public let absoluteForm: Bool

    public init(fields: HTTP2Fields, host: Host, absoluteForm: Bool) {
        self.fields = fields
        self.host = host
        self.absoluteForm = absoluteForm
    }

    /// Weft writes a Host, in place of any the block has.
    public var setsHost: Bool { host != .none }

    /// Calls `body` with the request target's parts in order: `:path`, or,
    /// in absolute form, `http://`, the `:authority` and `:path`.
    @inlinable
    public func forEachTargetPart(_ body: (UnsafeRawBufferPointer) -> Void) {
        if absoluteForm {
            _ = fields.withPseudoField(":authority") { (authority: UnsafeRawBufferPointer) -> Void in
                body(.init("http://"))
                body(authority)
            }
        }
        _ = fields.withPseudoField(":path", body)
    }

    /// Calls `body` with the Host's value, when weft writes one.
    @inlinable
    public func withHost(_ body: (UnsafeRawBufferPointer) -> Void) {
        switch host {
        case .none: return
        case .empty: body(UnsafeRawBufferPointer(start: nil, count: 0))
        case .authority: _ = fields.withPseudoField(":authority", body)
        }
    }

    /// The fields that go on to the app (`isForApp(requestField:hostSet:)`).
    @inlinable
    public func forEachFieldForApp(_ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Void) {
        let setsHost = setsHost
        fields.forEach { name, value in
            if MeshTranslation.isForApp(requestField: name, hostSet: setsHost) { body(name, value) }
        }
    }
}

/// A mesh request after the receiving node has taken it apart: its method
/// and version, the block as it goes to the app (`block`), and what the
/// sending node said of it (`destination`, `origProto`).
public struct DowngradedRequest: Equatable {
    public var method: HTTPMethod
    public var version: HTTPVersion
    public let block: PeerRequestBlock
    /// The endpoint the sending node chose (`weft-dst`).
    public var destination: IPEndpoint
    public var origProto: OrigProto

    public var peerFields: HTTP2Fields { block.fields }
    public var host: PeerRequestBlock.Host { block.host }
    public var setsHost: Bool { block.setsHost }

    /// The request target as text.
    public var uri: String {
        var uri = ""
        block.forEachTargetPart { uri += String(decoding: $0, as: UTF8.self) }
        return uri
    }

    /// The request line, and the Host weft sets, as a head of Strings.
    public var line: HTTPRequestHead {
        var headers = HTTPHeaders()
        block.withHost { headers.add(name: "host", value: String(decoding: $0, as: UTF8.self)) }
        return HTTPRequestHead(version: version, method: method, uri: uri, headers: headers)
    }

    /// The whole head, the peer's fields made Strings (for the stages that
    /// read every field: ext_authz).
    public var head: HTTPRequestHead {
        var head = line
        var pairs = peerFields.pairs { MeshTranslation.isForApp(requestField: $0, hostSet: setsHost) }
        for (name, value) in head.headers { pairs.append((name, value)) }
        head.headers = HTTPHeaders(pairs)
        return head
    }
}

extension HTTP2Fields {
    /// Calls `body` with the value of the first field named `name` (a
    /// pseudo field's: they come first, so the walk is short); nil when
    /// there is none.
    @inlinable
    public func withPseudoField<R>(_ name: StaticString, _ body: (UnsafeRawBufferPointer) -> R) -> R? {
        firstResult { fieldName, value in fieldName.equals(name) ? body(value) : nil }
    }
}

public enum TranslationError: Error, Equatable, CustomStringConvertible {
    case missingPseudoHeader(String)
    case badDestination(String?)
    case badOrigProto(String?)
    case badStatus(String?)
    case badRequestTarget(String)
    /// A pseudo-header given twice (nghttp2 refuses it first; the block is
    /// written from the first, so it is checked here too).
    case repeatedPseudoHeader(String)

    public var description: String {
        switch self {
        case .missingPseudoHeader(let name): return "missing \(name)"
        case .badDestination(let value): return "bad weft-dst \(value.map { "\"\($0)\"" } ?? "(absent)")"
        case .badOrigProto(let value): return "bad weft-orig-proto \(value.map { "\"\($0)\"" } ?? "(absent)")"
        case .badStatus(let value): return "bad :status \(value.map { "\"\($0)\"" } ?? "(absent)")"
        case .badRequestTarget(let value): return "bad request target \"\(value)\""
        case .repeatedPseudoHeader(let name): return "more than one \(name)"
        }
    }
}

/// The upgrade (app HTTP/1.x → mesh HTTP/2, on the sending node) and the
/// downgrade (mesh HTTP/2 → HTTP/1.x, on the receiving node), as a
/// matching pair. Hop-by-hop headers never cross; `weft-*` headers exist
/// only on the mesh hop (an app cannot forge them, the app never sees them).
public enum MeshTranslation {
    public static let origProtoHeader = "weft-orig-proto"
    public static let destinationHeader = "weft-dst"
    public static let reasonHeader = "weft-reason"

    /// A 502 or 503 that the peer node made because its local app could
    /// not be reached or reset (SPEC §5): the endpoint failed, not the peer.
    public static func isPeerReportedFailure(_ response: HTTP2Fields) -> Bool {
        guard let first = response.indices.first, response.withField(at: first, { name, value in
            name.equals(":status") && (value.equals("502") || value.equals("503"))
        }) else { return false }
        var reported = false
        response.forEach { name, value in
            if !reported, name.equals("weft-reason") {
                reported = value.elementsEqual(ErrorReason.connectFailure.rawValue.utf8)
                    || value.elementsEqual(ErrorReason.upstreamReset.rawValue.utf8)
            }
        }
        return reported
    }

    // MARK: requests

    /// Whether the request turns the connection into a tunnel once answered,
    /// so it is carried as bytes on a CONNECT stream, never translated: a
    /// CONNECT (RFC 9110 §9.3.6), or an Upgrade that names `upgrade` in
    /// `Connection` and says what to upgrade to (RFC 9110 §7.8; a lone
    /// `Upgrade` header is just a hop-by-hop header to strip).
    ///
    /// An Upgrade whose request has a body is declined: the request is
    /// served as an ordinary one, its Upgrade dropped as hop-by-hop, as a
    /// server may do (RFC 9110 §7.8). Its body then streams like any other,
    /// and nothing sent after it is mistaken for the new protocol. WebSocket
    /// handshakes have no body (RFC 6455 §4.1); curl's `--http2` POST over
    /// plain HTTP, an `h2c` upgrade with a body, is answered in HTTP/1.1.
    /// `connection`: the head's `Connection` options, when its parser read
    /// them already (most heads have none, which settles it at once).
    public static func opensTunnel(_ head: HTTPRequestHead, connection: ConnectionOptions? = nil) -> Bool {
        opensTunnel(method: head.method, fields: HTTP2Fields(lowercasing: head.headers),
                    connection: connection ?? ConnectionOptions(of: head.headers))
    }

    /// The same from a head's fields as weft's parser leaves them (names
    /// lower-case).
    public static func opensTunnel(method: HTTPMethod, fields: HTTP2Fields, connection: ConnectionOptions) -> Bool {
        if method.isCONNECT { return true }
        return connection.names("upgrade") && fields.contains(name: "upgrade") && !declaresBody(fields)
    }

    /// A request head that announces a body: any Transfer-Encoding, or a
    /// Content-Length other than 0.
    public static func declaresBody(_ headers: HTTPHeaders) -> Bool {
        declaresBody(HTTP2Fields(lowercasing: headers))
    }

    /// The same from fields as weft's parser leaves them (names lower-case,
    /// values without the whitespace around them).
    public static func declaresBody(_ fields: HTTP2Fields) -> Bool {
        var declares = false, length = false
        fields.forEach { name, value in
            guard !declares else { return }
            if name.equals("transfer-encoding") {
                declares = true
            } else if !length, name.equals("content-length") {
                // The first Content-Length decides, as `Int(_:)` reads it.
                length = true
                declares = !(value.count == 1 && value[0] == UInt8(ascii: "0"))
                    && Int(String(decoding: value, as: UTF8.self)) != 0
            }
        }
        return declares
    }

    /// The sending node's half: request head → HTTP/2 header list.
    /// `connection`: the head's `Connection` options, when the parser read
    /// them already (else they are read here).
    public static func upgradeRequest(_ head: HTTPRequestHead, destination: IPEndpoint,
                                      connection: ConnectionOptions? = nil) throws(TranslationError) -> HTTP2Fields {
        try upgradeRequest(method: head.method, uri: head.uri, version: head.version,
                           fields: HTTP2Fields(lowercasing: head.headers), destination: destination,
                           connection: connection ?? ConnectionOptions(of: head.headers))
    }

    /// The same from a head's fields as weft's parser leaves them (names
    /// lower-case, values without the whitespace around them): they go on
    /// as the bytes that came, and no String is made of them.
    public static func upgradeRequest(method: HTTPMethod, uri: String, version: HTTPVersion, fields: HTTP2Fields,
                                      destination: IPEndpoint,
                                      connection: ConnectionOptions) throws(TranslationError) -> HTTP2Fields {
        var origProto = OrigProto(version: version.minor == 0 ? .http10 : .http11)
        var absolute: (authority: String, path: String)?
        if uri.utf8.first != UInt8(ascii: "/") && uri != "*" && !method.isCONNECT {
            // Absolute form: `GET http://backend:9090/a HTTP/1.1`.
            guard let split = splitAbsoluteURI(uri) else { throw .badRequestTarget(uri) }
            origProto.absoluteForm = true
            absolute = split
        }
        var upgraded = HTTP2Fields(capacity: fields.count + 6, bytes: fields.listSize + uri.utf8.count + 96)
        upgraded.append(lowercaseName: .init(":method"), method: method)
        upgraded.append(lowercaseName: .init(":scheme"), value: .init("http"))
        // The authority: the absolute form's, else the Host's; none (or an
        // empty one) is the destination's, and the flags say so.
        var hasHost = false
        if let absolute {
            upgraded.append(name: ":authority", value: absolute.authority)
        } else {
            fields.forEach { name, value in
                guard !hasHost, name.equals("host") else { return }
                hasHost = true
                if value.isEmpty {
                    origProto.emptyHost = true
                } else {
                    upgraded.append(lowercaseName: .init(":authority"), value: value)
                }
            }
            if !hasHost { origProto.noHost = true }
            if !hasHost || origProto.emptyHost {
                destination.withText { upgraded.append(lowercaseName: .init(":authority"), value: $0) }
            }
        }
        var path = absolute?.path ?? uri
        path.withUTF8 { upgraded.append(lowercaseName: .init(":path"), value: UnsafeRawBufferPointer($0)) }
        appendEndToEnd(fields, connection: connection, to: &upgraded, dropping: "host")
        if origProto == OrigProto(version: origProto.version) {
            let value: StaticString = origProto.version == .http10 ? "HTTP/1.0" : "HTTP/1.1"
            upgraded.append(lowercaseName: .init("weft-orig-proto"), value: .init(value))
        } else {
            upgraded.append(name: origProtoHeader, value: origProto.headerValue)
        }
        destination.withText { upgraded.append(lowercaseName: .init("weft-dst"), value: $0) }
        return upgraded
    }

    /// The receiving node's half: HTTP/2 header list → request head for the app.
    public static func downgradeRequest(_ fields: HTTP2Fields) throws(TranslationError) -> DowngradedRequest {
        var method: HTTPMethod?, hasAuthority = false, hasPath = false
        // Read from the bytes; a value's text is made only for an error.
        var path: Result<Void, TranslationError> = .failure(.missingPseudoHeader(":path"))
        // The writer takes the first `:path` and `:authority`: the one
        // checked must be the one written, so a second is refused.
        var repeated: TranslationError?
        var destination: Result<IPEndpoint, TranslationError> = .failure(.badDestination(nil))
        var origProtoRead: Result<OrigProto, TranslationError> = .success(OrigProto(version: .http11))
        fields.forEach { name, value in
            // Most fields are neither pseudo nor weft's: one byte tells.
            if name.first == UInt8(ascii: ":") {
                if name.equals(":method") {
                    method = Self.method(value)
                } else if name.equals(":authority") {
                    if hasAuthority { repeated = .repeatedPseudoHeader(":authority") }
                    hasAuthority = true
                } else if name.equals(":path") {
                    if hasPath { repeated = .repeatedPseudoHeader(":path") }
                    hasPath = true
                    // HTTP/2 lets more bytes into :path than an HTTP/1.1
                    // request line holds (RFC 9112 §3.2: visible ASCII); an
                    // app would refuse or misread the rest.
                    path = value.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) ? .success(())
                        : .failure(.badRequestTarget(String(decoding: value, as: UTF8.self)))
                }
            } else if name.first == UInt8(ascii: "w") {
                if name.equals("weft-orig-proto") {
                    origProtoRead = OrigProto(headerBytes: value).map { .success($0) }
                        ?? .failure(.badOrigProto(String(decoding: value, as: UTF8.self)))
                } else if name.equals("weft-dst") {
                    destination = IPEndpoint(utf8: value).map { .success($0) }
                        ?? .failure(.badDestination(String(decoding: value, as: UTF8.self)))
                }
            }
        }
        guard let method else { throw .missingPseudoHeader(":method") }
        if let repeated { throw repeated }
        try path.get()
        let destinationEndpoint = try destination.get()
        let origProto = try origProtoRead.get()
        // Host, last, in place of any the list had (HTTP/2 names are lower
        // case).
        let host: PeerRequestBlock.Host = origProto.emptyHost ? .empty
            : origProto.noHost || !hasAuthority ? .none : .authority
        return DowngradedRequest(method: method, version: origProto.version == .http10 ? .http1_0 : .http1_1,
                                 block: PeerRequestBlock(fields: fields, host: host,
                                                         absoluteForm: origProto.absoluteForm && hasAuthority),
                                 destination: destinationEndpoint, origProto: origProto)
    }

    /// A request method from its bytes: the common ones without a String.
    static func method(_ bytes: UnsafeRawBufferPointer) -> HTTPMethod {
        switch bytes.count {
        case 3 where bytes.equals("GET"): return .GET
        case 3 where bytes.equals("PUT"): return .PUT
        case 4 where bytes.equals("POST"): return .POST
        case 4 where bytes.equals("HEAD"): return .HEAD
        case 5 where bytes.equals("PATCH"): return .PATCH
        case 6 where bytes.equals("DELETE"): return .DELETE
        case 7 where bytes.equals("OPTIONS"): return .OPTIONS
        default: return HTTPMethod(rawValue: String(decoding: bytes, as: UTF8.self))
        }
    }

    /// Whether a peer's request field goes on to the app: not a pseudo
    /// field (those make the request line), not a mesh field, and not a
    /// `host` when the request line's authority sets the Host instead.
    @inlinable
    public static func isForApp(requestField name: UnsafeRawBufferPointer, hostSet: Bool) -> Bool {
        name.first != UInt8(ascii: ":") && !name.hasPrefix("weft-") && !(hostSet && name.equals("host"))
    }

    /// Whether a Content-Length value fits the 63 bits HTTP/2 peers read it
    /// into. HTTP/1 parsers take up to 2^64 − 1 (RFC 9110 §8.6 warns of the
    /// overflow); a larger length would make the peer refuse the message.
    /// Read as `Int64(_:)` reads text: a sign, then digits; spaces and
    /// tabs around them are no part of the value.
    public static func isCarriableLength(_ value: UnsafeRawBufferPointer) -> Bool {
        var start = 0, end = value.count
        while start < end, HTTPFieldSyntax.isSpaceOrTab(value[start]) { start += 1 }
        while end > start, HTTPFieldSyntax.isSpaceOrTab(value[end - 1]) { end -= 1 }
        guard start < end else { return false }
        var limit = UInt64(Int64.max)
        if value[start] == UInt8(ascii: "+") || value[start] == UInt8(ascii: "-") {
            if value[start] == UInt8(ascii: "-") { limit += 1 }
            start += 1
            guard start < end else { return false }
        }
        var magnitude: UInt64 = 0
        for index in start..<end {
            let digit = value[index] &- UInt8(ascii: "0")
            let (tens, overflowed) = magnitude.multipliedReportingOverflow(by: 10)
            guard digit < 10, !overflowed, tens <= limit - UInt64(digit) else { return false }
            magnitude = tens + UInt64(digit)
        }
        return true
    }

    /// Whether a peer node takes `fields` as one header block: within the
    /// field count and HPACK size (name + value + 32 each) every node
    /// announces (`HTTP2Limits`), with a carriable `content-length`. A
    /// block that is not is reset by the peer.
    public static func fitsPeerLimits(_ fields: HTTP2Fields, limits: HTTP2Limits = .default) -> Bool {
        guard fields.count <= limits.maxHeaderCount, fields.listSize <= limits.maxHeaderListBytes else { return false }
        var carriable = true
        fields.forEach { name, value in
            // Names are lower-case already (the translation made them so).
            if carriable, name.equals("content-length") {
                carriable = isCarriableLength(value)
            }
        }
        return carriable
    }

    // MARK: responses

    /// The receiving node's half: the app's response head → HTTP/2 headers.
    /// `connection` as for `upgradeRequest`.
    public static func upgradeResponse(_ head: HTTPResponseHead, connection: ConnectionOptions? = nil) -> HTTP2Fields {
        var fields = HTTP2Fields(capacity: head.headers.count + 1, bytes: (head.headers.count + 1) * 40)
        fields.append(name: ":status", value: String(head.status.code))
        // A 1xx or 204 has no body whatever it says, and must not say
        // Content-Length (RFC 9110 §8.6); HTTP/2 refuses one that does.
        let bodyless = head.status.code < 200 || head.status.code == 204
        appendEndToEnd(head.headers, connection: connection, to: &fields, dropping: bodyless ? "content-length" : nil)
        return fields
    }

    /// The same from a response head's fields as bytes, as weft's HTTP/1
    /// parser leaves them: names lower-case, values without the
    /// whitespace around them. No String is made.
    public static func upgradeResponse(status: HTTPResponseStatus, fields: HTTP2Fields,
                                       connection: ConnectionOptions) -> HTTP2Fields {
        var upgraded = HTTP2Fields(capacity: fields.count + 1, bytes: fields.listSize)
        let code = Int(status.code)
        if (100...999).contains(code) {
            let digits = (UInt8(ascii: "0") + UInt8(code / 100), UInt8(ascii: "0") + UInt8(code / 10 % 10),
                          UInt8(ascii: "0") + UInt8(code % 10))
            withUnsafeBytes(of: digits) { upgraded.append(lowercaseName: .init(":status"), value: $0) }
        } else {
            upgraded.append(name: ":status", value: String(code))
        }
        let bodyless = status.code < 200 || status.code == 204
        appendEndToEnd(fields, connection: connection, to: &upgraded, dropping: bodyless ? "content-length" : nil)
        return upgraded
    }

    /// The sending node's half: HTTP/2 response headers → head for the app,
    /// in the HTTP version the app spoke. (The app connection writes a
    /// peer's fields as bytes instead, with `responseStatus(of:)` and
    /// `isForApp(responseField:)`; this makes them Strings.)
    public static func downgradeResponse(_ fields: HTTP2Fields, version: HTTPVersion) throws(TranslationError) -> HTTPResponseHead {
        let status = try responseStatus(of: fields)
        return HTTPResponseHead(version: version, status: status, headers: HTTPHeaders(fields.pairs(keeping: isForApp)))
    }

    /// A response's `:status`: three digits, 100 to 999.
    public static func responseStatus(of fields: HTTP2Fields) throws(TranslationError) -> HTTPResponseStatus {
        // The code; or, when it is no status, the text (for the error).
        let status: Result<Int, TranslationError>? = fields.firstResult { name, value in
            guard name.equals(":status") else { return nil }
            if value.count == 3, value.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
                let code = value.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
                if code >= 100 { return .success(code) }
            }
            return .failure(.badStatus(String(decoding: value, as: UTF8.self)))
        }
        switch status {
        case .success(let code)?: return HTTPResponseStatus(statusCode: code)
        case .failure(let error)?: throw error
        case nil: throw .badStatus(nil)
        }
    }

    /// Whether a peer's response field goes on to the app: not a pseudo
    /// field, not a mesh field but `weft-reason`, the one meant for the
    /// app: it says why a node answered with an error (SPEC §4).
    @inlinable
    public static func isForApp(responseField name: UnsafeRawBufferPointer) -> Bool {
        name.first != UInt8(ascii: ":") && (!name.hasPrefix("weft-") || name.equals("weft-reason"))
    }

    /// Trailers cross as-is, minus anything hop-by-hop or pseudo.
    public static func trailerFields(_ headers: HTTPHeaders) -> HTTP2Fields {
        var fields: HTTP2Fields = []
        appendEndToEnd(headers, to: &fields, dropping: nil)
        return fields
    }

    // MARK: hop-by-hop

    /// What an inbound mesh stream carries, read from its request fields in
    /// one pass: a CONNECT tunnel, an HTTP/2 app's stream (`weft-orig-proto:
    /// HTTP/2`), or an HTTP/1.x app's request.
    public enum StreamKind: Equatable, Sendable { case tunnel, http2App, http1App }

    public static func streamKind(of fields: HTTP2Fields) -> StreamKind {
        var kind = StreamKind.http1App
        fields.forEach { name, value in
            guard kind != .tunnel else { return }
            if name.first == UInt8(ascii: ":") {
                if name.equals(":method") && value.equals("CONNECT") { kind = .tunnel }
            } else if name.equals("weft-orig-proto"), value.hasPrefix("HTTP/2") {
                kind = .http2App
            }
        }
        return kind
    }

    /// Appends every end-to-end field of `fields` (names lower-case, as
    /// weft's parsers and HTTP/2 give them), as the bytes that came: the
    /// rules of `forEachEndToEnd`, read from bytes, and no String made.
    public static func appendEndToEnd(_ fields: HTTP2Fields, connection: ConnectionOptions,
                                      to upgraded: inout HTTP2Fields, dropping extra: StaticString?) {
        let extra = extra.map { UnsafeRawBufferPointer($0) }
        upgraded.append(from: fields) { name, value in
            let bytes = name.assumingMemoryBound(to: UInt8.self)
            switch role(of: bytes) {
            case .meshOnly, .hopByHop:
                return .drop
            case .te:
                var trailers = false
                HTTPFieldSyntax.forEachListMember(of: value.assumingMemoryBound(to: UInt8.self)) { member in
                    if member.count == 8 && member.equalsASCIICaseInsensitive("trailers") { trailers = true }
                }
                return trailers ? .replaceValue("trailers") : .drop
            case .endToEnd:
                if let extra, name.equals(extra) { return .drop }
                return connection.names(bytes) ? .drop : .keep
            }
        }
    }

    /// Appends every end-to-end header, names lower-cased. `TE: trailers`
    /// is the one TE value HTTP/2 allows, and gRPC needs it.
    public static func appendEndToEnd(_ headers: HTTPHeaders, connection: ConnectionOptions? = nil,
                                      to fields: inout HTTP2Fields, dropping extra: String?) {
        forEachEndToEnd(headers, connection: connection, dropping: extra) { fields.append(name: $0, value: $1) }
    }

    /// Calls `body` with every end-to-end header (lower-cased name, value
    /// without the whitespace around it): not hop-by-hop, not named by
    /// `Connection` (`connection`, the options of `headers`, when the
    /// parser read them already), not `weft-*` or `proxy-*`, not `extra`;
    /// `TE` only as `trailers`. One pass, names read as bytes: this runs
    /// for every message that crosses.
    public static func forEachEndToEnd(_ headers: HTTPHeaders, connection: ConnectionOptions? = nil,
                                       dropping extra: String?, _ body: (String, String) -> Void) {
        let connection = connection ?? ConnectionOptions(of: headers)
        for (name, value) in headers {
            var (role, lowercase) = classify(name)
            let lower = lowercase ? name : name.lowercased()
            // A name beyond ASCII may lower-case into one (the Kelvin sign
            // K into `k`): its role is its lower-case form's.
            if !lowercase && !name.utf8.allSatisfy({ $0 < 0x80 }) { role = classify(lower).role }
            switch role {
            case .meshOnly, .hopByHop:
                continue
            case .te:
                var trailers = false
                HTTPFieldSyntax.forEachListMember(of: value) { member in
                    if member.count == 8 && member.equalsASCIICaseInsensitive("trailers") { trailers = true }
                }
                if trailers { body("te", "trailers") }
            case .endToEnd:
                if (extra != nil && lower == extra) || connection.names(lower) { continue }
                body(lower, withoutOuterWhitespace(value))
            }
        }
    }

    /// What the translation does with a field, told by its name.
    enum FieldRole: Equatable { case endToEnd, hopByHop, te, meshOnly }

    /// The role of a field, from its name in any case, and whether the
    /// name is lower-case already (as weft's parsers and HTTP/2 give it):
    /// one look at its bytes. `weft-*` and `proxy-*` exist only on the
    /// mesh hop (an app cannot forge them); the hop-by-hop fields (RFC
    /// 9110 §7.6.1, and HTTP/2's refusals in RFC 9113 §8.2.2) are
    /// `connection`, `keep-alive`, `transfer-encoding`, `te`, `upgrade` and
    /// `http2-settings`; `te` keeps its `trailers`.
    static func classify(_ name: String) -> (role: FieldRole, lowercase: Bool) {
        var name = name
        return name.withUTF8 { classify($0) }
    }

    static func classify(_ bytes: UnsafeBufferPointer<UInt8>) -> (role: FieldRole, lowercase: Bool) {
        var lowercase = true
        for byte in bytes where (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) || byte >= 0x80 {
            lowercase = false
            break
        }
        return (role(of: bytes), lowercase)
    }

    /// The role of a field, from its name in any case.
    static func role(of bytes: UnsafeBufferPointer<UInt8>) -> FieldRole {
        guard let first = bytes.first else { return .endToEnd }
        let role: FieldRole
        switch first | 0x20 {
        case UInt8(ascii: "w"): role = bytes.hasASCIIPrefixCaseInsensitive("weft-") ? .meshOnly : .endToEnd
        case UInt8(ascii: "p"): role = bytes.hasASCIIPrefixCaseInsensitive("proxy-") ? .meshOnly : .endToEnd
        case UInt8(ascii: "t"):
            if bytes.count == 2 {
                role = bytes[1] | 0x20 == UInt8(ascii: "e") ? .te : .endToEnd
            } else {
                role = bytes.count == 17 && bytes.equalsASCIICaseInsensitive("transfer-encoding") ? .hopByHop : .endToEnd
            }
        case UInt8(ascii: "c"): role = bytes.count == 10 && bytes.equalsASCIICaseInsensitive("connection") ? .hopByHop : .endToEnd
        case UInt8(ascii: "k"): role = bytes.count == 10 && bytes.equalsASCIICaseInsensitive("keep-alive") ? .hopByHop : .endToEnd
        case UInt8(ascii: "u"): role = bytes.count == 7 && bytes.equalsASCIICaseInsensitive("upgrade") ? .hopByHop : .endToEnd
        case UInt8(ascii: "h"):
            role = bytes.count == 14 && bytes.equalsASCIICaseInsensitive("http2-settings") ? .hopByHop : .endToEnd
        default: role = .endToEnd
        }
        return role
    }

    /// A field value without the whitespace around it, which is not part of
    /// the value (RFC 9110 §5.5) and which HTTP/2 refuses in one (RFC 9113
    /// §8.2.1). weft's parsers leave none; other sources might. Copies only
    /// when there is some.
    static func withoutOuterWhitespace(_ value: String) -> String {
        let utf8 = value.utf8
        guard let first = utf8.first, let last = utf8.last,
              HTTPFieldSyntax.isSpaceOrTab(first) || HTTPFieldSyntax.isSpaceOrTab(last) else { return value }
        return String(value.trimmingSpaces)
    }

    // MARK: plain HTTP/1.1 endpoints (no weft there)

    /// An app's request as it goes to a plain endpoint over a keep-alive
    /// HTTP/1.1 connection of weft's: end-to-end headers only, the body's
    /// framing kept (a length, or chunked), and a `Host` for HTTP/1.0
    /// requests that had none.
    public static func relayRequest(_ head: HTTPRequestHead, endpoint: IPEndpoint,
                                    connection: ConnectionOptions? = nil) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        headers.reserveCapacity(head.headers.count + 1)
        forEachEndToEnd(head.headers, connection: connection, dropping: nil) { headers.add(name: $0, value: $1) }
        if !headers.contains(name: "content-length"),
           head.headers[canonicalForm: "transfer-encoding"].contains(where: { $0.lowercased() == "chunked" }) {
            headers.add(name: "transfer-encoding", value: "chunked")
        }
        if !headers.contains(name: "host") { headers.add(name: "host", value: endpoint.description) }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: headers)
    }

    /// A plain endpoint's response head for the app, in the app's version;
    /// its framing is the app connection's encoder's to choose again.
    public static func relayResponse(_ head: HTTPResponseHead, version: HTTPVersion,
                                     connection: ConnectionOptions? = nil) -> HTTPResponseHead {
        var headers = HTTPHeaders()
        headers.reserveCapacity(head.headers.count)
        forEachEndToEnd(head.headers, connection: connection, dropping: nil) { headers.add(name: $0, value: $1) }
        return HTTPResponseHead(version: version, status: head.status, headers: headers)
    }

    /// `http://authority/path?q` → (`authority`, `/path?q`). Only `http`
    /// (the mesh carries plaintext HTTP; TLS from apps is opaque TCP).
    public static func splitAbsoluteURI(_ uri: String) -> (authority: String, path: String)? {
        let lower = uri.lowercased()
        guard lower.hasPrefix("http://") else { return nil }
        let rest = uri.dropFirst("http://".count)
        let end = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = String(rest[..<end])
        guard !authority.isEmpty else { return nil }
        var path = String(rest[end...])
        if path.isEmpty { path = "/" } else if path.hasPrefix("?") { path = "/" + path }
        return (authority, path)
    }
}

extension HTTP2Fields {
    /// The fields whose names `isIncluded` keeps, as name and value
    /// Strings, for the stages that read every field as text. Made into
    /// `HTTPHeaders` at once (`HTTPHeaders(_:)`), they are not scanned
    /// again as `add` would.
    public func pairs(keeping isIncluded: (_ name: UnsafeRawBufferPointer) -> Bool = { _ in true })
        -> [(String, String)] {
        var pairs: [(String, String)] = []
        pairs.reserveCapacity(count)
        forEach { name, value in
            if isIncluded(name) { pairs.append((HTTP2Header.name(from: name), String(decoding: value, as: UTF8.self))) }
        }
        return pairs
    }
}

extension HTTP2Fields {
    /// `headers` as weft's parsers leave a head's fields: names lower-cased
    /// (as `String.lowercased()` does, so a name beyond ASCII takes the
    /// role of what it lower-cases to), values without the whitespace
    /// around them.
    public init(lowercasing headers: HTTPHeaders) {
        self.init(capacity: headers.count, bytes: headers.count * 40)
        for (name, value) in headers {
            append(name: name.utf8.allSatisfy { $0 < 0x80 && !($0 >= 0x41 && $0 <= 0x5A) } ? name : name.lowercased(),
                   value: MeshTranslation.withoutOuterWhitespace(value))
        }
    }

    /// Appends a request method as the field `name`: the common ones from
    /// static text.
    mutating func append(lowercaseName name: UnsafeRawBufferPointer, method: HTTPMethod) {
        if let text = method.staticName {
            append(lowercaseName: name, value: UnsafeRawBufferPointer(text))
        } else {
            var text = method.rawValue
            text.withUTF8 { append(lowercaseName: name, value: UnsafeRawBufferPointer($0)) }
        }
    }
}

extension HTTPMethod {
    /// The common methods' names as static text, which is copied without
    /// making a String (`rawValue` makes one).
    public var staticName: StaticString? {
        switch self {
        case .GET: "GET"
        case .POST: "POST"
        case .PUT: "PUT"
        case .HEAD: "HEAD"
        case .DELETE: "DELETE"
        case .PATCH: "PATCH"
        case .OPTIONS: "OPTIONS"
        default: nil
        }
    }
}

extension HTTPHeaders {
    /// Whether a message with these fields leaves its connection open
    /// (RFC 9112 §9.3): not when `Connection` says `close`; else always
    /// in HTTP/1.1, and in HTTP/1.0 only when it says `keep-alive`. More
    /// than one `close` or `keep-alive` among the options means close, as
    /// NIO's `isKeepAlive` has it (`ConnectionOptions`).
    public func isPersistent(version: HTTPVersion) -> Bool {
        ConnectionOptions(of: self).isPersistent(version: version)
    }
}

extension HTTPRequestHead {
    /// `HTTPHeaders.isPersistent` of this request.
    public var isPersistent: Bool { headers.isPersistent(version: version) }
}

extension HTTPResponseHead {
    /// `HTTPHeaders.isPersistent` of this response.
    public var isPersistent: Bool { headers.isPersistent(version: version) }
}
