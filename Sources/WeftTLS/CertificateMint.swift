import COpenSSL
import WeftCore

/// A certificate and its private key, as PEM text.
public struct PEMCredentials: Sendable, Equatable {
    public var certificate: String
    public var privateKey: String

    public init(certificate: String, privateKey: String) {
        self.certificate = certificate
        self.privateKey = privateKey
    }
}

/// Mints the mesh CA and node certificates (`weft certs`): EC P-256 keys,
/// ECDSA with SHA-256, X.509 v3 with the node's SPIFFE ID as its one URI
/// SAN. OpenSSL's libcrypto does it, as it is linked for TLS already.
public enum CertificateMint {
    /// Certificates start 5 minutes in the past, for clocks a little behind.
    static let backdate = 300

    /// A self-signed CA for `trustDomain`, with `spiffe://<trustDomain>` as
    /// its URI SAN, valid for `seconds` from now.
    public static func certificateAuthority(trustDomain: String, validFor seconds: Int) throws -> PEMCredentials {
        let domain = try SPIFFEID(trustDomain: trustDomain, path: "")
        let key = try generateKey()
        defer { EVP_PKEY_free(key) }
        let certificate = try build(subjectKey: key, commonName: "weft mesh CA \(trustDomain)", issuer: nil,
                                    signingKey: key, validFor: seconds, extensions: [
                                        (NID_basic_constraints, "critical,CA:TRUE"),
                                        (NID_key_usage, "critical,keyCertSign,cRLSign"),
                                        (NID_subject_key_identifier, "hash"),
                                        (NID_subject_alt_name, "URI:\(domain)"),
                                    ])
        defer { X509_free(certificate) }
        return PEMCredentials(certificate: try PEM.text(of: certificate), privateKey: try PEM.text(ofPrivateKey: key))
    }

    /// A node certificate for `identity` (a path such as
    /// `ns/default/sa/frontend`) in the CA's trust domain, signed by `ca`.
    public static func nodeCertificate(identity path: String, ca: PEMCredentials,
                                       validFor seconds: Int) throws -> (PEMCredentials, SPIFFEID) {
        let domain = try trustDomain(of: ca)
        let identity = try SPIFFEID(trustDomain: domain, path: path)
        guard identity.workload != nil else {
            throw OpenSSLError(operation: "minting a node certificate",
                               detail: "identity \"\(path)\" is not of the form ns/<namespace>/sa/<account>")
        }
        let pem = try signedCertificate(uriNames: ["\(identity)"], commonName: String(path.prefix(64)), ca: ca,
                                        validFor: seconds)
        return (pem, identity)
    }

    /// The trust domain named by a CA certificate's SPIFFE ID.
    public static func trustDomain(of ca: PEMCredentials) throws -> String {
        let certificates = try PEM.certificates(ca.certificate, what: "the CA certificate")
        defer { certificates.forEach { X509_free($0) } }
        return try X509Facts.spiffeID(certificates[0]).trustDomain
    }

    /// A leaf certificate with exactly `uriNames` as its URI SANs, signed by
    /// `ca` (tests use it for certificates a node must refuse), plus
    /// `otherNames` in OpenSSL's spelling (`DNS:api.local`, `IP:10.0.0.1`).
    static func signedCertificate(uriNames: [String], otherNames: [String] = [], commonName: String,
                                  ca: PEMCredentials, validFor seconds: Int) throws -> PEMCredentials {
        let caCertificates = try PEM.certificates(ca.certificate, what: "the CA certificate")
        defer { caCertificates.forEach { X509_free($0) } }
        let caCertificate = caCertificates[0]
        let caKey = try PEM.privateKey(ca.privateKey, what: "the CA key")
        defer { EVP_PKEY_free(caKey) }
        guard X509_check_private_key(caCertificate, caKey) == 1 else {
            throw OpenSSLError(operation: "minting a node certificate", detail: "the CA key does not match the CA certificate")
        }
        let key = try generateKey()
        defer { EVP_PKEY_free(key) }
        var extensions: [(Int32, String)] = [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_key_usage, "critical,digitalSignature"),
            (NID_ext_key_usage, "serverAuth,clientAuth"),
            (NID_subject_key_identifier, "hash"),
            (NID_authority_key_identifier, "keyid:always"),
        ]
        let names = uriNames.map { "URI:\($0)" } + otherNames
        if !names.isEmpty {
            extensions.append((NID_subject_alt_name, names.joined(separator: ",")))
        }
        let certificate = try build(subjectKey: key, commonName: commonName, issuer: caCertificate,
                                    signingKey: caKey, validFor: seconds, extensions: extensions)
        defer { X509_free(certificate) }
        return PEMCredentials(certificate: try PEM.text(of: certificate), privateKey: try PEM.text(ofPrivateKey: key))
    }

    static func generateKey() throws -> OpaquePointer {
        let context = try check(EVP_PKEY_CTX_new_from_name(nil, "EC", nil), "EVP_PKEY_CTX_new_from_name")
        defer { EVP_PKEY_CTX_free(context) }
        try check(EVP_PKEY_keygen_init(context), "EVP_PKEY_keygen_init")
        try check(EVP_PKEY_CTX_set_group_name(context, "P-256"), "EVP_PKEY_CTX_set_group_name")
        var key: OpaquePointer?
        try check(EVP_PKEY_keygen(context, &key), "EVP_PKEY_keygen")
        return try check(key, "EVP_PKEY_keygen")
    }

    /// A signed certificate; self-signed when `issuer` is nil.
    private static func build(subjectKey: OpaquePointer, commonName: String, issuer: OpaquePointer?,
                              signingKey: OpaquePointer, validFor seconds: Int,
                              extensions: [(Int32, String)]) throws -> OpaquePointer {
        let certificate = try check(X509_new(), "X509_new")
        do {
            try check(weft_x509_set_version3(certificate), "X509_set_version")
            try setRandomSerial(certificate)
            guard X509_gmtime_adj(X509_getm_notBefore(certificate), -backdate) != nil,
                  X509_gmtime_adj(X509_getm_notAfter(certificate), seconds) != nil else {
                throw OpenSSLError.drain("setting the validity")
            }
            let name = try check(X509_NAME_new(), "X509_NAME_new")
            defer { X509_NAME_free(name) }
            try check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, "weft", -1, -1, 0), "subject O")
            try check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, commonName, -1, -1, 0), "subject CN")
            try check(X509_set_subject_name(certificate, name), "X509_set_subject_name")
            try check(X509_set_issuer_name(certificate, issuer.map { X509_get_subject_name($0) } ?? name),
                      "X509_set_issuer_name")
            try check(X509_set_pubkey(certificate, subjectKey), "X509_set_pubkey")
            var context = X509V3_CTX()
            X509V3_set_ctx(&context, issuer ?? certificate, certificate, nil, nil, 0)
            for (nid, value) in extensions {
                let ext = try check(X509V3_EXT_conf_nid(nil, &context, nid, value), "extension \(value)")
                defer { X509_EXTENSION_free(ext) }
                try check(X509_add_ext(certificate, ext, -1), "X509_add_ext")
            }
            guard X509_sign(certificate, signingKey, EVP_sha256()) > 0 else { throw OpenSSLError.drain("X509_sign") }
            return certificate
        } catch {
            X509_free(certificate)
            throw error
        }
    }

    private static func setRandomSerial(_ certificate: OpaquePointer) throws {
        let number = try check(BN_new(), "BN_new")
        defer { BN_free(number) }
        // 127 bits, positive: RFC 5280 allows up to 20 octets.
        try check(BN_rand(number, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY), "BN_rand")
        guard BN_to_ASN1_INTEGER(number, X509_get_serialNumber(certificate)) != nil else {
            throw OpenSSLError.drain("BN_to_ASN1_INTEGER")
        }
    }
}
