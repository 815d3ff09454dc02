import NIOHTTP1
import WeftCore

/// What a message's `Connection` fields say (RFC 9110 §7.6.1): whether its
/// connection persists, and which other fields are hop-by-hop for this
/// message alone.
///
/// weft's HTTP/1 parsers gather it while they read the fields, and hand it
/// on with the head, so that persistence and the translation's end-to-end
/// filter need not walk the fields again; `init(of:)` walks them for heads
/// from anywhere else.
public struct ConnectionOptions: Equatable, Sendable {
    /// How many `close` and `keep-alive` options there were.
    private var persistenceOptions = 0
    private var keepAlive = false
    /// The other options, lower-cased: the fields they name are stripped
    /// (`upgrade` among them, for an Upgrade request).
    public private(set) var names: [String] = []

    /// No `Connection` field.
    public init() {}

    /// The options of every `Connection` field of `headers`.
    public init(of headers: HTTPHeaders) {
        // NIO's own scan reads the names in place; walking the fields here
        // copies each one out. Most heads weft makes have no Connection.
        guard headers.contains(name: "connection") else { return }
        for (name, value) in headers where name.utf8.count == 10 && name.equalsASCIICaseInsensitive("connection") {
            add(value)
        }
    }

    /// Adds the options of one `Connection` field's value.
    public mutating func add(_ value: String) {
        var value = value
        value.withUTF8 { add($0) }
    }

    /// Adds the options of one `Connection` field's value, as bytes.
    public mutating func add(_ value: UnsafeBufferPointer<UInt8>) {
        HTTPFieldSyntax.forEachListMember(of: value) { option in
            if option.count == 5 && option.equalsASCIICaseInsensitive("close") {
                persistenceOptions += 1
            } else if option.count == 10 && option.equalsASCIICaseInsensitive("keep-alive") {
                persistenceOptions += 1
                keepAlive = true
            } else {
                names.append(String(decoding: option, as: UTF8.self).lowercased())
            }
        }
    }

    /// Whether the message leaves its connection open (RFC 9112 §9.3): not
    /// when `Connection` says `close`; else always in HTTP/1.1, and in
    /// HTTP/1.0 only when it says `keep-alive`. More than one `close` or
    /// `keep-alive` means close, as NIO's `isKeepAlive` has it.
    public func isPersistent(version: HTTPVersion) -> Bool {
        switch persistenceOptions {
        case 0: return version.major == 1 && version.minor >= 1
        case 1: return keepAlive
        default: return false
        }
    }

    /// Whether `name` (lower-case) is one of the fields the options name.
    public func names(_ name: String) -> Bool {
        guard !names.isEmpty else { return false }
        var name = name
        return name.withUTF8 { names($0) }
    }

    /// The same for a name as bytes. Compared byte for byte, as the name
    /// goes on (not as Unicode text, in which distinct bytes can be equal).
    public func names(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        !names.isEmpty && names.contains { $0.utf8.elementsEqual(name) }
    }
}
