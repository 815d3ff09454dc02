import COpenSSL
import NIOCore
import WeftCore

/// Why a TLS connection was refused or broke; `reason` is the metric label.
public struct TLSFailure: Error, Equatable, CustomStringConvertible {
    public enum Reason: String, Sendable, CaseIterable {
        /// The peer presented no certificate.
        case noCertificate = "no_certificate"
        /// Its certificate does not chain to the mesh CA (another CA,
        /// self-signed, a bad signature).
        case untrusted
        case expired
        case notYetValid = "not_yet_valid"
        /// Not exactly one URI SAN, not a SPIFFE ID, or another trust domain;
        /// for a server verified by name, a certificate for another name.
        case badIdentity = "bad_identity"
        /// The peer did not agree on ALPN `h2`.
        case noALPN = "no_alpn"
        /// Anything else the handshake or a record broke on (versions,
        /// ciphers, alerts from the peer, garbage).
        case handshake
    }

    public let reason: Reason
    public let detail: String

    public init(_ reason: Reason, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }

    public var description: String { "\(reason.rawValue): \(detail)" }
}

/// The verified far end of an established connection.
public struct TLSPeer: Sendable, Equatable {
    /// The mesh peer's SPIFFE ID; nil for a server verified by its name
    /// (a ``TLSClientContext`` connection).
    public let identity: SPIFFEID?
    /// The handshake resumed an earlier session (no certificates exchanged).
    public let resumed: Bool
}

/// One TLS connection as a state machine over bytes, with no channel:
/// ciphertext goes in with ``receive(_:)``, plaintext comes out of
/// ``readPlaintext(allocator:)``, plaintext goes in with ``write(_:)`` and
/// ciphertext comes out of ``takeOutput()``. OpenSSL reads straight from
/// the received `ByteBuffer` and writes straight into the outgoing one
/// (a BIO of weft's own), so records are copied only by the cipher.
public final class TLSConnection {
    public enum Role: Sendable { case client, server }

    public let role: Role
    /// What the far end must prove once the chain is verified.
    private enum PeerCheck {
        /// ALPN h2 and one SPIFFE ID of this trust domain (the mesh).
        case meshIdentity(trustDomain: String)
        /// Nothing more: OpenSSL checked the name during the handshake.
        case serverName
    }

    private let check: PeerCheck
    /// Resumable sessions by peer (mesh clients).
    private let sessions: ClientSessionCache?
    private let ssl: OpaquePointer
    /// The peer's address for session resumption (clients).
    private let peerKey: String?
    private let allocator: ByteBufferAllocator
    /// Ciphertext received and not yet read by OpenSSL.
    private var inbound = ByteBuffer()
    /// Ciphertext OpenSSL produced, not yet taken.
    private var outbound: ByteBuffer?
    /// Set once the handshake completed and the peer was verified.
    public private(set) var peer: TLSPeer?
    private var shutDown = false
    /// A handshake or record failed: the session must not be resumed.
    private var failed = false

    /// A mesh connection (either side).
    public convenience init(context: TLSContext, role: Role, peerKey: String? = nil,
                            allocator: ByteBufferAllocator = ByteBufferAllocator()) throws {
        try self.init(raw: context.raw, role: role, check: .meshIdentity(trustDomain: context.identity.trustDomain),
                      sessions: context.sessions, peerKey: peerKey, allocator: allocator)
    }

    /// A client connection to a server outside the mesh, which must
    /// present a certificate for `serverName` (a DNS name, sent as SNI,
    /// or an IP address).
    public convenience init(client context: TLSClientContext, serverName: String,
                            allocator: ByteBufferAllocator = ByteBufferAllocator()) throws {
        try self.init(raw: context.raw, role: .client, check: .serverName, sessions: nil, peerKey: nil,
                      allocator: allocator)
        if IPAddress(serverName) != nil {
            try WeftTLS.check(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName), "checking for \(serverName)")
        } else {
            try WeftTLS.check(SSL_set1_host(ssl, serverName), "checking for \(serverName)")
            // The name must be a DNS SAN; a subject CN never stands in for one.
            SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NEVER_CHECK_SUBJECT))
            try WeftTLS.check(weft_ssl_set_sni(ssl, serverName), "sending the server name \(serverName)")
        }
    }

    private init(raw: OpaquePointer, role: Role, check: PeerCheck, sessions: ClientSessionCache?, peerKey: String?,
                 allocator: ByteBufferAllocator) throws {
        guard let method = bioMethod else { throw OpenSSLError(operation: "BIO_meth_new", detail: "no BIO method") }
        let ssl = try WeftTLS.check(SSL_new(raw), "SSL_new")
        guard let bio = BIO_new(method) else {
            SSL_free(ssl)
            throw OpenSSLError.drain("BIO_new")
        }
        SSL_set_bio(ssl, bio, bio)  // one reference, owned by ssl from now
        self.ssl = ssl
        self.role = role
        self.check = check
        self.sessions = sessions
        self.peerKey = peerKey
        self.allocator = allocator
        let me = Unmanaged.passUnretained(self).toOpaque()
        BIO_set_data(bio, me)
        SSL_set_ex_data(ssl, 0, me)
        switch role {
        case .client:
            SSL_set_connect_state(ssl)
            if let peerKey, let session = sessions?.session(for: peerKey) {
                SSL_set_session(ssl, session.raw)
            }
        case .server:
            SSL_set_accept_state(ssl)
        }
    }

    deinit {
        // OpenSSL marks the session of a connection freed without a
        // close_notify unresumable; a verified connection that ends (idle,
        // GOAWAY, the peer's FIN) leaves a good session behind. Failures
        // drop theirs in `forgetSession`.
        if peer != nil && !failed { SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN) }
        SSL_free(ssl)
    }

    /// Hands over ciphertext read from the connection.
    public func receive(_ bytes: ByteBuffer) {
        if inbound.readableBytes == 0 {
            inbound = bytes
        } else {
            inbound.writeImmutableBuffer(bytes)
        }
    }

    /// Advances the handshake with what was received; true once it is
    /// done and the peer verified (``peer`` set). Throws a ``TLSFailure``
    /// when the handshake fails or the peer is not acceptable.
    public func handshake() throws -> Bool {
        if peer != nil { return true }
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            do {
                peer = try verifiedPeer()
            } catch {
                forgetSession()
                throw error
            }
            return true
        }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return false
        default:
            forgetSession()
            throw failure()
        }
    }

    /// What ``readPlaintext(allocator:)`` found.
    public enum ReadResult {
        /// Decrypted bytes (possibly none); more may follow.
        case data(ByteBuffer?)
        /// The peer sent close_notify; `last` is what came before it.
        case closed(last: ByteBuffer?)
    }

    /// Decrypts every complete record received so far into one buffer.
    /// Sized for the ciphertext at hand, it grows when a record that began
    /// in an earlier read completes now (its plaintext can be longer than
    /// the bytes that just came): everything OpenSSL can give is taken, as
    /// no further read may come to ask again.
    public func readPlaintext(allocator: ByteBufferAllocator) throws -> ReadResult {
        let estimate = inbound.readableBytes + Int(SSL_pending(ssl))
        guard estimate > 0 else { return .data(nil) }
        var buffer = allocator.buffer(capacity: estimate)
        var code: Int32 = SSL_ERROR_NONE
        ERR_clear_error()
        while code == SSL_ERROR_NONE {
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 1) { raw in
                let read = SSL_read(ssl, raw.baseAddress, Int32(clamping: raw.count))
                if read > 0 { return Int(read) }
                code = SSL_get_error(ssl, read)
                return 0
            }
        }
        let data = buffer.readableBytes > 0 ? buffer : nil
        switch code {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .data(data)
        case SSL_ERROR_ZERO_RETURN:
            return .closed(last: data)
        default:
            forgetSession()
            throw failure()
        }
    }

    /// Encrypts `plaintext` (after the handshake).
    public func write(_ plaintext: ByteBuffer) throws {
        var rest = plaintext
        ERR_clear_error()
        while rest.readableBytes > 0 {
            let written = rest.withUnsafeReadableBytes {
                SSL_write(ssl, $0.baseAddress, Int32(clamping: $0.count))
            }
            guard written > 0 else {
                forgetSession()
                throw failure()
            }
            rest.moveReaderIndex(forwardBy: Int(written))
        }
    }

    /// Queues close_notify (once).
    public func shutdown() {
        guard !shutDown else { return }
        shutDown = true
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// The ciphertext to send now, if any.
    public func takeOutput() -> ByteBuffer? {
        defer { outbound = nil }
        return outbound
    }

    // MARK: - Verification

    private func verifiedPeer() throws -> TLSPeer {
        guard case .meshIdentity(let trustDomain) = check else {
            // The chain and the name were checked by the handshake.
            let verified = SSL_get_verify_result(ssl)
            guard verified == X509_V_OK else { throw Self.verifyFailure(Int32(verified)) }
            return TLSPeer(identity: nil, resumed: SSL_session_reused(ssl) == 1)
        }
        var protocolName: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &protocolName, &length)
        guard length == 2, let protocolName, protocolName[0] == UInt8(ascii: "h"), protocolName[1] == UInt8(ascii: "2") else {
            throw TLSFailure(.noALPN, "the peer did not agree on ALPN h2")
        }
        guard let certificate = SSL_get1_peer_certificate(ssl) else {
            throw TLSFailure(.noCertificate, "the peer presented no certificate")
        }
        defer { X509_free(certificate) }
        let verified = SSL_get_verify_result(ssl)
        guard verified == X509_V_OK else { throw Self.verifyFailure(Int32(verified)) }
        let identity: SPIFFEID
        do {
            identity = try X509Facts.spiffeID(certificate)
        } catch {
            throw TLSFailure(.badIdentity, "\(error)")
        }
        guard identity.trustDomain == trustDomain else {
            throw TLSFailure(.badIdentity, "\(TLSIdentityError.foreignTrustDomain(identity, expected: trustDomain))")
        }
        return TLSPeer(identity: identity, resumed: SSL_session_reused(ssl) == 1)
    }

    private static func verifyFailure(_ code: Int32) -> TLSFailure {
        let text = X509_verify_cert_error_string(Int(code)).map { String(cString: $0) } ?? "verify error \(code)"
        switch code {
        case X509_V_ERR_CERT_HAS_EXPIRED: return TLSFailure(.expired, text)
        case X509_V_ERR_CERT_NOT_YET_VALID: return TLSFailure(.notYetValid, text)
        case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH: return TLSFailure(.badIdentity, text)
        default: return TLSFailure(.untrusted, text)
        }
    }

    /// The failure OpenSSL just reported, classified.
    private func failure() -> TLSFailure {
        let verified = Int32(SSL_get_verify_result(ssl))
        let first = ERR_peek_error()
        let text = OpenSSLError.drainQueue()
        if verified != X509_V_OK { return Self.verifyFailure(verified) }
        if ERR_GET_REASON(first) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE {
            return TLSFailure(.noCertificate, text)
        }
        if ERR_GET_REASON(first) == SSL_R_NO_APPLICATION_PROTOCOL {
            return TLSFailure(.noALPN, text)
        }
        return TLSFailure(.handshake, text.isEmpty ? "connection broke (\(String(cString: SSL_state_string_long(ssl))))" : text)
    }

    private func forgetSession() {
        failed = true
        if role == .client, let peerKey { sessions?.forget(peerKey) }
    }

    // MARK: - BIO and callbacks

    /// A session ticket arrived (clients): kept for the next connection to
    /// this peer. True when the reference was taken.
    func keep(_ session: OpaquePointer) -> Bool {
        guard role == .client, let peerKey, let sessions else { return false }
        sessions.store(ClientSessionCache.Session(taking: session), for: peerKey)
        return true
    }

    fileprivate func appendOutput(_ bytes: UnsafeRawBufferPointer) {
        if outbound == nil { outbound = allocator.buffer(capacity: max(bytes.count, 1024)) }
        outbound!.writeBytes(bytes)
    }

    fileprivate func takeInput(into raw: UnsafeMutableRawBufferPointer) -> Int {
        inbound.readWithUnsafeReadableBytes { available in
            let count = min(available.count, raw.count)
            if count > 0, let source = available.baseAddress, let target = raw.baseAddress {
                target.copyMemory(from: source, byteCount: count)
            }
            return count
        }
    }
}

// MARK: - The BIO between OpenSSL and the ByteBuffers

/// Made once; OpenSSL only reads a BIO_METHOD after it is set up.
nonisolated(unsafe) private let bioMethod: OpaquePointer? = {
    guard let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weft") else { return nil }
    BIO_meth_set_write(method, bioWrite)
    BIO_meth_set_read(method, bioRead)
    BIO_meth_set_ctrl(method, bioControl)
    BIO_meth_set_create(method, bioCreate)
    BIO_meth_set_destroy(method, bioDestroy)
    return method
}()

private func owner(_ bio: OpaquePointer?) -> TLSConnection? {
    guard let bio, let data = BIO_get_data(bio) else { return nil }
    return Unmanaged<TLSConnection>.fromOpaque(data).takeUnretainedValue()
}

private func bioWrite(_ bio: OpaquePointer?, _ data: UnsafePointer<CChar>?, _ length: Int32) -> Int32 {
    guard let bio, let connection = owner(bio), let data, length >= 0 else { return -1 }
    weft_bio_clear_retry(bio)
    connection.appendOutput(UnsafeRawBufferPointer(start: data, count: Int(length)))
    return length
}

private func bioRead(_ bio: OpaquePointer?, _ buffer: UnsafeMutablePointer<CChar>?, _ length: Int32) -> Int32 {
    guard let bio, let connection = owner(bio), let buffer, length >= 0 else { return -1 }
    weft_bio_clear_retry(bio)
    let count = connection.takeInput(into: UnsafeMutableRawBufferPointer(start: buffer, count: Int(length)))
    if count == 0 {
        _ = weft_bio_should_retry_read(bio)
        return -1
    }
    return Int32(count)
}

private func bioControl(_ bio: OpaquePointer?, _ command: Int32, _ argument: Int, _ pointer: UnsafeMutableRawPointer?) -> Int {
    command == BIO_CTRL_FLUSH ? 1 : 0
}

private func bioCreate(_ bio: OpaquePointer?) -> Int32 {
    BIO_set_init(bio, 1)
    return 1
}

private func bioDestroy(_ bio: OpaquePointer?) -> Int32 {
    BIO_set_data(bio, nil)
    return 1
}
