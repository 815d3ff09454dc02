import NIOCore
import WeftCore
import XCTest

@testable import WeftTLS

/// Two TLSConnections wired back to back, no channel: the handshake, the
/// identities each side reads, data both ways, resumption, and every way a
/// peer is refused.
final class TLSConnectionTests: XCTestCase {
    static let day = 86_400
    // Two CAs of the same trust domain for the whole class.
    static let cas = Result {
        (try CertificateMint.certificateAuthority(trustDomain: "mesh.local", validFor: 30 * day),
         try CertificateMint.certificateAuthority(trustDomain: "mesh.local", validFor: 30 * day))
    }
    static var ca: PEMCredentials { get throws { try cas.get().0 } }
    static var otherCA: PEMCredentials { get throws { try cas.get().1 } }

    static func node(_ path: String, ca: PEMCredentials? = nil, validFor: Int = day) throws -> TLSContext {
        let ca = try ca ?? Self.ca
        let (pem, _) = try CertificateMint.nodeCertificate(identity: path, ca: ca, validFor: validFor)
        return try TLSContext(credentials: pem, trustAnchors: ca.certificate)
    }

    /// Moves bytes between the two until neither has anything to send;
    /// returns each side's handshake outcome.
    @discardableResult
    static func pump(_ client: TLSConnection, _ server: TLSConnection) -> (client: Result<Bool, Error>, server: Result<Bool, Error>) {
        var clientResult: Result<Bool, Error> = .success(false)
        var serverResult: Result<Bool, Error> = .success(false)
        clientResult = Result { try client.handshake() }
        for _ in 0..<10 {
            var moved = false
            if let bytes = client.takeOutput() {
                server.receive(bytes)
                moved = true
            }
            if case .success(false) = serverResult { serverResult = Result { try server.handshake() } }
            if let bytes = server.takeOutput() {
                client.receive(bytes)
                moved = true
            }
            if case .success(false) = clientResult { clientResult = Result { try client.handshake() } }
            if !moved { break }
        }
        return (clientResult, serverResult)
    }

    func testBothSidesVerifyEachOtherAndReadThePeersIdentity() throws {
        let frontend = try Self.node("ns/default/sa/frontend")
        let backend = try Self.node("ns/shop/sa/backend")
        let client = try TLSConnection(context: frontend, role: .client, peerKey: "198.18.0.2:15008")
        let server = try TLSConnection(context: backend, role: .server)
        let (c, s) = Self.pump(client, server)
        XCTAssertEqual(try c.get(), true)
        XCTAssertEqual(try s.get(), true)
        XCTAssertEqual(client.peer?.identity?.description, "spiffe://mesh.local/ns/shop/sa/backend")
        XCTAssertEqual(server.peer?.identity?.description, "spiffe://mesh.local/ns/default/sa/frontend")
        XCTAssertEqual(client.peer?.resumed, false)

        // Data both ways, larger than one record.
        let big = String(repeating: "x", count: 70_000)
        try client.write(ByteBuffer(string: big))
        server.receive(try XCTUnwrap(client.takeOutput()))
        var received = ""
        while case .data(let data?) = try server.readPlaintext(allocator: ByteBufferAllocator()) {
            received += String(buffer: data)
        }
        XCTAssertEqual(received, big)
        try server.write(ByteBuffer(string: "pong"))
        client.receive(try XCTUnwrap(server.takeOutput()))
        guard case .data(let pong?) = try client.readPlaintext(allocator: ByteBufferAllocator()) else {
            return XCTFail("no reply")
        }
        XCTAssertEqual(String(buffer: pong), "pong")

        // close_notify reaches the other side as `closed`.
        client.shutdown()
        server.receive(try XCTUnwrap(client.takeOutput()))
        guard case .closed = try server.readPlaintext(allocator: ByteBufferAllocator()) else {
            return XCTFail("close_notify not seen")
        }
    }

    func testRecordsSplitAcrossReadsAreAllDeliveredWithoutAnotherRead() throws {
        // TCP cuts records anywhere: a record that began in one read and
        // ends in the next can decrypt to more than the bytes of the last
        // read. All of it must come out then, or it waits for a read that
        // may never come.
        let client = try TLSConnection(context: try Self.node("ns/default/sa/frontend"), role: .client)
        let server = try TLSConnection(context: try Self.node("ns/shop/sa/backend"), role: .server)
        Self.pump(client, server)
        let message = String(repeating: "0123456789abcdef", count: 2000)  // 32000 bytes, two records
        try server.write(ByteBuffer(string: message))
        var wire = try XCTUnwrap(server.takeOutput())
        var received = ""
        for size in [1, 5, 1400, 9000, 100, 3, 1448] + Array(repeating: 1448, count: 20) {
            guard let piece = wire.readSlice(length: min(size, wire.readableBytes)), piece.readableBytes > 0 else { break }
            client.receive(piece)
            if case .data(let data?) = try client.readPlaintext(allocator: ByteBufferAllocator()) {
                received += String(buffer: data)
            }
        }
        XCTAssertEqual(wire.readableBytes, 0)
        XCTAssertEqual(received.count, message.count)
        XCTAssertTrue(received == message, "the bytes differ")
    }

    func testASecondConnectionToTheSamePeerResumesTheSession() throws {
        let frontend = try Self.node("ns/default/sa/frontend")
        let backend = try Self.node("ns/shop/sa/backend")
        for expectResumed in [false, true] {
            let client = try TLSConnection(context: frontend, role: .client, peerKey: "198.18.0.2:15008")
            let server = try TLSConnection(context: backend, role: .server)
            Self.pump(client, server)
            // The tickets come after the handshake, with the first records.
            try server.write(ByteBuffer(string: "hello"))
            client.receive(try XCTUnwrap(server.takeOutput()))
            _ = try client.readPlaintext(allocator: ByteBufferAllocator())
            XCTAssertEqual(client.peer?.resumed, expectResumed)
            XCTAssertEqual(server.peer?.resumed, expectResumed)
            // The identity is known on a resumed session too.
            XCTAssertEqual(server.peer?.identity?.description, "spiffe://mesh.local/ns/default/sa/frontend")
        }
        // Another peer address does not resume.
        let client = try TLSConnection(context: frontend, role: .client, peerKey: "198.18.0.3:15008")
        let server = try TLSConnection(context: backend, role: .server)
        Self.pump(client, server)
        XCTAssertEqual(server.peer?.resumed, false)
    }

    private func refusal(client clientContext: TLSContext, server serverContext: TLSContext) throws -> TLSFailure? {
        let client = try TLSConnection(context: clientContext, role: .client)
        let server = try TLSConnection(context: serverContext, role: .server)
        let (_, s) = Self.pump(client, server)
        if case .failure(let error) = s { return error as? TLSFailure }
        // TLS 1.3: a client finishes before the server judged it; the
        // server's alert reaches it with its next read.
        return nil
    }

    func testACertificateFromAnotherCAIsRefusedAsUntrusted() throws {
        let stranger = try Self.node("ns/default/sa/frontend", ca: try Self.otherCA)
        let server = try Self.node("ns/shop/sa/backend")
        // The stranger trusts only its own CA, so it refuses the server too;
        // make it trust ours to see the server's own judgement.
        let (pem, _) = try CertificateMint.nodeCertificate(identity: "ns/default/sa/frontend", ca: try Self.otherCA, validFor: Self.day)
        let trustsUs = try TLSContext(credentials: pem, trustAnchors: try Self.otherCA.certificate + Self.ca.certificate)
        XCTAssertEqual(try refusal(client: trustsUs, server: server)?.reason, .untrusted)
        // And a client that trusts only its own CA refuses our server.
        let client = try TLSConnection(context: stranger, role: .client)
        let serverConnection = try TLSConnection(context: server, role: .server)
        let (c, _) = Self.pump(client, serverConnection)
        XCTAssertThrowsError(try c.get()) { XCTAssertEqual(($0 as? TLSFailure)?.reason, .untrusted) }
    }

    func testAnExpiredCertificateIsRefusedAsExpired() throws {
        let expired = try Self.node("ns/default/sa/frontend", validFor: -60)
        let server = try Self.node("ns/shop/sa/backend")
        XCTAssertEqual(try refusal(client: expired, server: server)?.reason, .expired)
    }

    func testCertificatesWithoutExactlyOneSPIFFEIDOfTheMeshAreRefused() throws {
        let server = try Self.node("ns/shop/sa/backend")
        let cases: [([String], String)] = [
            ([], "0 URI SANs"),
            (["spiffe://mesh.local/ns/a/sa/b", "spiffe://mesh.local/ns/c/sa/d"], "2 URI SANs"),
            (["https://mesh.local/ns/a/sa/b"], "does not start with spiffe://"),
            (["spiffe://mesh.local/ns/../sa/b"], "invalid path segment"),
            (["spiffe://other.local/ns/a/sa/b"], "is not of trust domain mesh.local"),
        ]
        for (uris, expected) in cases {
            let pem = try CertificateMint.signedCertificate(uriNames: uris, commonName: "odd", ca: try Self.ca, validFor: Self.day)
            // TLSContext refuses to load such a certificate for itself, so
            // present it through a context that loads a good one, then swap.
            let failure = try refusalPresenting(pem, to: server)
            XCTAssertEqual(failure?.reason, .badIdentity, "\(uris)")
            XCTAssertTrue(failure?.detail.contains(expected) ?? false, "\(uris): \(String(describing: failure))")
        }
    }

    /// The server's verdict on a client presenting `pem`.
    private func refusalPresenting(_ pem: PEMCredentials, to server: TLSContext) throws -> TLSFailure? {
        let client = try TLSContext(unverifiedCredentials: pem, trustAnchors: try Self.ca.certificate)
        return try refusal(client: client, server: server)
    }

    func testLoadingRefusesAKeyThatDoesNotMatchAndAForeignTrustDomain() throws {
        let (a, _) = try CertificateMint.nodeCertificate(identity: "ns/a/sa/a", ca: try Self.ca, validFor: Self.day)
        let (b, _) = try CertificateMint.nodeCertificate(identity: "ns/b/sa/b", ca: try Self.ca, validFor: Self.day)
        XCTAssertThrowsError(try TLSContext(credentials: PEMCredentials(certificate: a.certificate, privateKey: b.privateKey),
                                            trustAnchors: try Self.ca.certificate)) {
            XCTAssertTrue("\($0)".contains("does not match"), "\($0)")
        }
        let elsewhere = try CertificateMint.certificateAuthority(trustDomain: "other.local", validFor: Self.day)
        XCTAssertThrowsError(try TLSContext(credentials: a, trustAnchors: elsewhere.certificate)) {
            XCTAssertTrue("\($0)".contains("not of trust domain other.local"), "\($0)")
        }
        XCTAssertThrowsError(try TLSContext(credentials: PEMCredentials(certificate: "garbage", privateKey: a.privateKey),
                                            trustAnchors: try Self.ca.certificate)) {
            XCTAssertTrue("\($0)".contains("no PEM certificate"), "\($0)")
        }
    }

    func testMintedCertificatesCarryTheIdentityAndLifetime() throws {
        XCTAssertEqual(try CertificateMint.trustDomain(of: try Self.ca), "mesh.local")
        let (pem, id) = try CertificateMint.nodeCertificate(identity: "ns/default/sa/frontend", ca: try Self.ca, validFor: 3600)
        XCTAssertEqual(id.description, "spiffe://mesh.local/ns/default/sa/frontend")
        let context = try TLSContext(credentials: pem, trustAnchors: try Self.ca.certificate)
        XCTAssertEqual(context.identity, id)
        XCTAssertTrue((3500...3600).contains(context.secondsLeftAtLoad), "\(context.secondsLeftAtLoad)")
        XCTAssertTrue(pem.privateKey.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        XCTAssertThrowsError(try CertificateMint.nodeCertificate(identity: "frontend", ca: try Self.ca, validFor: 3600))
        XCTAssertThrowsError(try CertificateMint.nodeCertificate(identity: "ns/a/sa/../b", ca: try Self.ca, validFor: 3600))
    }
}
