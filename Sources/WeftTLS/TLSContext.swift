import COpenSSL
import NIOConcurrencyHelpers
import WeftCore

/// One set of mesh credentials made ready for connections: an OpenSSL
/// `SSL_CTX` that speaks TLS 1.3 only, offers and requires ALPN `h2`,
/// presents the node certificate and demands one from the peer, verified
/// against the CA. Immutable once made and shared by every loop (OpenSSL
/// allows `SSL_new` from many threads); rotation makes a new one.
public final class TLSContext: @unchecked Sendable {
    let raw: OpaquePointer
    /// This node's SPIFFE ID, from its certificate.
    public let identity: SPIFFEID
    /// Seconds the node certificate had left when loaded.
    public let secondsLeftAtLoad: Int
    /// Resumable sessions from earlier connections, by peer.
    let sessions = ClientSessionCache()

    /// - Parameters:
    ///   - credentials: the node certificate (PEM; more certificates after
    ///     the first are sent as its chain) and its private key.
    ///   - trustAnchors: the CA certificate(s) peers' certificates must chain to.
    public convenience init(credentials: PEMCredentials, trustAnchors: String) throws {
        try self.init(credentials: credentials, trustAnchors: trustAnchors, checkingOwnIdentity: true)
    }

    /// Presents `credentials` whatever identity they carry: for tests of
    /// how the far side judges certificates a node would never load.
    convenience init(unverifiedCredentials credentials: PEMCredentials, trustAnchors: String) throws {
        try self.init(credentials: credentials, trustAnchors: trustAnchors, checkingOwnIdentity: false)
    }

    private init(credentials: PEMCredentials, trustAnchors: String, checkingOwnIdentity: Bool) throws {
        let certificates = try PEM.certificates(credentials.certificate, what: "the node certificate")
        defer { certificates.forEach { X509_free($0) } }
        let key = try PEM.privateKey(credentials.privateKey, what: "the node key")
        defer { EVP_PKEY_free(key) }
        let anchors = try PEM.certificates(trustAnchors, what: "the CA certificate")
        defer { anchors.forEach { X509_free($0) } }

        guard X509_check_private_key(certificates[0], key) == 1 else {
            ERR_clear_error()
            throw OpenSSLError(operation: "loading the node key", detail: "the key does not match the node certificate")
        }
        let domains = try anchors.map { try X509Facts.spiffeID($0).trustDomain }
        let identity: SPIFFEID
        if checkingOwnIdentity {
            identity = try X509Facts.spiffeID(certificates[0])
            guard domains.contains(identity.trustDomain) else {
                throw TLSIdentityError.foreignTrustDomain(identity, expected: domains.joined(separator: ","))
            }
        } else {
            identity = try SPIFFEID(trustDomain: domains[0], path: "")
        }

        let context = try check(SSL_CTX_new(TLS_method()), "SSL_CTX_new")
        do {
            guard weft_ssl_ctx_set_min_proto(context, TLS1_3_VERSION) == 1,
                  weft_ssl_ctx_set_max_proto(context, TLS1_3_VERSION) == 1 else {
                throw OpenSSLError.drain("limiting to TLS 1.3")
            }
            try check(SSL_CTX_use_certificate(context, certificates[0]), "using the node certificate")
            for intermediate in certificates.dropFirst() {
                // add1: the context takes its own reference.
                guard SSL_CTX_ctrl(context, SSL_CTRL_CHAIN_CERT, 1, UnsafeMutableRawPointer(intermediate)) == 1 else {
                    throw OpenSSLError.drain("adding the certificate chain")
                }
            }
            try check(SSL_CTX_use_PrivateKey(context, key), "using the node key")
            let store = try check(SSL_CTX_get_cert_store(context), "SSL_CTX_get_cert_store")
            for anchor in anchors {
                try check(X509_STORE_add_cert(store, anchor), "trusting the CA certificate")
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
            // Session resumption: stateless tickets from the server; the
            // session id context is required once clients are verified.
            let sessionContext = Array("weft-mesh".utf8)
            try check(SSL_CTX_set_session_id_context(context, sessionContext, UInt32(sessionContext.count)),
                      "SSL_CTX_set_session_id_context")
            // Clients keep tickets themselves (by peer); servers need no cache
            // for stateless TLS 1.3 tickets.
            _ = weft_ssl_ctx_set_session_cache_mode(context, Int(SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL))
            SSL_CTX_sess_set_new_cb(context, newSessionCallback)
            // ALPN: the client offers h2 only; the server accepts h2 only.
            let protocols: [UInt8] = [2] + Array("h2".utf8)
            guard SSL_CTX_set_alpn_protos(context, protocols, UInt32(protocols.count)) == 0 else {
                throw OpenSSLError.drain("SSL_CTX_set_alpn_protos")
            }
            SSL_CTX_set_alpn_select_cb(context, selectALPN, nil)
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        self.raw = context
        self.identity = identity
        self.secondsLeftAtLoad = X509Facts.secondsLeft(certificates[0])
    }

    deinit {
        SSL_CTX_free(raw)
    }
}

/// Resumable TLS sessions by peer, kept from the tickets servers send.
final class ClientSessionCache: Sendable {
    /// One SSL_SESSION reference, freed with the box.
    final class Session: @unchecked Sendable {
        let raw: OpaquePointer
        init(taking raw: OpaquePointer) { self.raw = raw }
        deinit { SSL_SESSION_free(raw) }
    }

    private let sessions = NIOLockedValueBox<[String: Session]>([:])
    /// Bounds the cache: a node talks to a bounded set of peers, but
    /// addresses come and go.
    static let capacity = 4096

    func session(for peer: String) -> Session? {
        sessions.withLockedValue { $0[peer] }
    }

    func store(_ session: Session, for peer: String) {
        sessions.withLockedValue {
            if $0.count >= Self.capacity, $0[peer] == nil { $0.removeAll(keepingCapacity: true) }
            $0[peer] = session
        }
    }

    func forget(_ peer: String) {
        sessions.withLockedValue { _ = $0.removeValue(forKey: peer) }
    }
}

/// A server picks `h2` or refuses the handshake (no_application_protocol).
private func selectALPN(_ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
                        _ outLength: UnsafeMutablePointer<UInt8>?, _ offered: UnsafePointer<UInt8>?,
                        _ offeredLength: UInt32, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    guard let offered, let out, let outLength else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    var index = 0
    let count = Int(offeredLength)
    while index < count {
        let length = Int(offered[index])
        let start = index + 1
        guard start + length <= count else { break }
        if length == 2, offered[start] == UInt8(ascii: "h"), offered[start + 1] == UInt8(ascii: "2") {
            out.pointee = offered + start
            outLength.pointee = 2
            return SSL_TLSEXT_ERR_OK
        }
        index = start + length
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL
}

/// A client got a session ticket: its connection keeps it for the peer.
private func newSessionCallback(_ ssl: OpaquePointer?, _ session: OpaquePointer?) -> Int32 {
    guard let ssl, let session, let owner = SSL_get_ex_data(ssl, 0) else { return 0 }
    let connection = Unmanaged<TLSConnection>.fromOpaque(owner).takeUnretainedValue()
    return connection.keep(session) ? 1 : 0
}
