import NIOHTTP1
import WeftHTTP2
import WeftMesh
import WeftObservability
import WeftUpstream

/// The request as the access log tells it (method, authority, path,
/// `x-request-id`, `traceparent`), from either protocol's head. Only the
/// access log reads these: with none (`metrics` has no `access_log`, the
/// default), the head is not read for them.
extension RequestRecord {
    mutating func describe(_ head: HTTP1RequestHead, for metrics: ProxyMetrics) {
        guard metrics.accessLog != nil else { return }
        // One pass over the fields, the length first: most are none of these.
        var host: String?, requestID: String?, traceparent: String?
        head.fields.forEach { name, value in
            switch name.count {
            case 12 where requestID == nil && name.equals("x-request-id"):
                requestID = String(decoding: value, as: UTF8.self)
            case 11 where traceparent == nil && name.equals("traceparent"):
                traceparent = String(decoding: value, as: UTF8.self)
            case 4 where host == nil && name.equals("host"):
                host = String(decoding: value, as: UTF8.self)
            default: break
            }
        }
        var authority = host, path = head.uri
        if !head.uri.hasPrefix("/"), let (uriAuthority, uriPath) = MeshTranslation.splitAbsoluteURI(head.uri) {
            (authority, path) = (uriAuthority, uriPath)
        }
        describe(method: head.method.rawValue, authority: authority, path: path, field: { name in
            name == "x-request-id" ? requestID : name == "traceparent" ? traceparent : nil
        })
    }

    mutating func describe(_ headers: HTTP2Fields, for metrics: ProxyMetrics) {
        guard metrics.accessLog != nil else { return }
        var method = "", authority: String?, path = "", requestID: String?, traceparent: String?
        for header in headers {
            let name = header.name
            if name.utf8.first == UInt8(ascii: ":") {
                switch name {
                case ":method": method = header.value
                case ":authority": authority = header.value
                case ":path": path = header.value
                default: break
                }
                continue
            }
            // The length first: most fields are none of these.
            switch name.utf8.count {
            case 12 where name == "x-request-id": requestID = requestID ?? header.value
            case 11 where name == "traceparent": traceparent = traceparent ?? header.value
            case 4 where name == "host": authority = authority ?? header.value
            default: break
            }
        }
        describe(method: method, authority: authority, path: path, field: { name in
            name == "x-request-id" ? requestID : name == "traceparent" ? traceparent : nil
        })
    }
}

extension LoopServices {
    /// A new `x-request-id`: 15 characters of [0-9A-Za-z] (89 random bits)
    /// from this loop's generator. Fifteen UTF-8 bytes is the most a Swift
    /// string holds inline, so the id costs no heap allocation where it is
    /// made, nor where a peer node reads it back; a UUID (36 characters)
    /// cost several per request.
    ///
    /// Each draw of 64 random bits gives eight characters: the bits read as
    /// a fraction, multiplied by 62, give a character in the high word and
    /// leave the fraction's rest in the low word (its base-62 digits).
    func makeRequestID() -> String {
        Self.requestID(using: &random)
    }

    /// The same as bytes, in a buffer that lives for `body`: no String made.
    func withRequestID<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.requestIDLength) { out in
            Self.writeRequestID(into: out, using: &random)
            return body(UnsafeRawBufferPointer(out))
        }
    }

    static func requestID(using random: inout SplitMix64) -> String {
        String(unsafeUninitializedCapacity: requestIDLength) { out in
            writeRequestID(into: out, using: &random)
            return requestIDLength
        }
    }

    /// Fills `out` (`requestIDLength` bytes) with a new id.
    private static func writeRequestID(into out: UnsafeMutableBufferPointer<UInt8>, using random: inout SplitMix64) {
        var index = 0
        while index < requestIDLength {
            var fraction = random.next()
            for _ in 0..<Swift.min(8, requestIDLength - index) {
                let product = fraction.multipliedFullWidth(by: 62)
                // `high` < 62: the fraction is below 1.
                out[index] = requestIDAlphabet.utf8Start[Int(product.high)]
                fraction = product.low
                index += 1
            }
        }
    }

    static let requestIDLength = 15
    private static let requestIDAlphabet: StaticString = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
}
