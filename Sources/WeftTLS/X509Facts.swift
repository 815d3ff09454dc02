import COpenSSL
import WeftCore

/// What weft reads from an X.509 certificate: its URI SANs (where SPIFFE
/// IDs live) and its validity.
enum X509Facts {
    /// The URI subject alternative names of `certificate`, in order.
    static func uriNames(_ certificate: OpaquePointer) -> [String] {
        guard let raw = X509_get_ext_d2i(certificate, NID_subject_alt_name, nil, nil) else { return [] }
        let names = OpaquePointer(raw)
        defer { weft_general_names_free(names) }
        var uris: [String] = []
        for index in 0..<weft_general_names_count(names) {
            guard let name = weft_general_names_at(names, index), name.pointee.type == GEN_URI,
                  let ia5 = name.pointee.d.uniformResourceIdentifier,
                  let data = ASN1_STRING_get0_data(ia5) else { continue }
            let length = Int(ASN1_STRING_length(ia5))
            uris.append(String(decoding: UnsafeBufferPointer(start: data, count: length), as: UTF8.self))
        }
        return uris
    }

    /// The one SPIFFE ID of `certificate`: an X509-SVID has exactly one URI
    /// SAN, and it is a SPIFFE ID.
    static func spiffeID(_ certificate: OpaquePointer) throws -> SPIFFEID {
        let uris = uriNames(certificate)
        guard uris.count == 1, let uri = uris.first else {
            throw TLSIdentityError.uriNameCount(uris.count)
        }
        do {
            return try SPIFFEID(parsing: uri)
        } catch let error as SPIFFEID.ParseError {
            throw TLSIdentityError.malformed(uri, error)
        }
    }

    /// Seconds from now until `certificate` expires (negative once expired).
    static func secondsLeft(_ certificate: OpaquePointer) -> Int {
        guard let notAfter = X509_get0_notAfter(certificate) else { return 0 }
        var days: Int32 = 0
        var seconds: Int32 = 0
        guard ASN1_TIME_diff(&days, &seconds, nil, notAfter) == 1 else { return 0 }
        return Int(days) * 86_400 + Int(seconds)
    }
}

/// Why a certificate's identity was not accepted.
public enum TLSIdentityError: Error, Equatable, CustomStringConvertible {
    /// Not exactly one URI SAN.
    case uriNameCount(Int)
    case malformed(String, SPIFFEID.ParseError)
    /// A SPIFFE ID of another trust domain than the mesh's.
    case foreignTrustDomain(SPIFFEID, expected: String)

    public var description: String {
        switch self {
        case .uriNameCount(let n): "the certificate has \(n) URI SANs, not exactly one SPIFFE ID"
        case .malformed(let uri, let error): "its URI SAN \"\(uri)\" \(error)"
        case .foreignTrustDomain(let id, let expected): "\(id) is not of trust domain \(expected)"
        }
    }
}
