import COpenSSL

/// TLS settings for a client of a server outside the mesh (the Kubernetes
/// API server): TLS 1.2 or 1.3, the server's certificate verified against
/// the given CA(s) and checked against the name or address dialled, no
/// client certificate (such servers authenticate the client otherwise,
/// e.g. with a bearer token). Immutable and shared by every connection.
public final class TLSClientContext: @unchecked Sendable {
    let raw: OpaquePointer

    /// - Parameter trustAnchors: the CA certificate(s) (PEM) the server's
    ///   certificate must chain to.
    public init(trustAnchors: String) throws {
        let anchors = try PEM.certificates(trustAnchors, what: "the CA certificate")
        defer { anchors.forEach { X509_free($0) } }
        let context = try check(SSL_CTX_new(TLS_client_method()), "SSL_CTX_new")
        do {
            guard weft_ssl_ctx_set_min_proto(context, TLS1_2_VERSION) == 1 else {
                throw OpenSSLError.drain("limiting to TLS 1.2 and later")
            }
            let store = try check(SSL_CTX_get_cert_store(context), "SSL_CTX_get_cert_store")
            for anchor in anchors {
                try check(X509_STORE_add_cert(store, anchor), "trusting the CA certificate")
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        raw = context
    }

    deinit {
        SSL_CTX_free(raw)
    }
}
