import ArgumentParser
import Foundation
import WeftConfig
import WeftTLS

/// `weft certs ca|node` (SPEC §8): the mesh CA and node certificates.
struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Mint the mesh CA and node certificates for mTLS between nodes (EC P-256, SHA-256).",
        subcommands: [CA.self, Node.self]
    )

    struct CA: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ca",
            abstract: "Mint a mesh CA: DIR/ca.crt (its URI SAN is spiffe://<trust-domain>) and DIR/ca.key (mode 0600)."
        )

        @Option(help: "The mesh's trust domain: lowercase letters, digits, '.', '-' and '_'.")
        var trustDomain: String

        @Option(help: "The directory to write ca.crt and ca.key into (created if missing).")
        var out: String

        @Option(help: "How long the CA is valid, such as 8760h.")
        var validFor = "8760h"

        @Flag(help: "Replace a CA already in DIR (every node certificate it signed stops being trusted).")
        var force = false

        func run() throws {
            let seconds = try CertsCommand.seconds(validFor)
            let ca = try CertsCommand.explained("cannot mint the CA") {
                try CertificateMint.certificateAuthority(trustDomain: trustDomain, validFor: seconds)
            }
            let directory = URL(fileURLWithPath: out)
            let key = directory.appendingPathComponent("ca.key")
            if !force, FileManager.default.fileExists(atPath: key.path) {
                throw CertsFailure("\(key.path) exists: pass --force to replace the mesh CA")
            }
            try CertsCommand.write(ca, certificate: directory.appendingPathComponent("ca.crt"), key: key)
            print("mesh CA for spiffe://\(trustDomain) written to \(directory.path)/ca.crt and ca.key")
        }
    }

    struct Node: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "node",
            abstract: "Mint a node certificate signed by the mesh CA: DIR/node.crt, DIR/node.key (0600) and a copy of ca.crt.",
            discussion: """
                The certificate's one URI SAN is spiffe://<trust-domain>/ns/<ns>/sa/<account>, the trust domain \
                being the CA's. Point listeners.mesh.tls at the three files; writing new ones over them later \
                rotates the certificate without a restart.
                """
        )

        @Option(help: "The directory holding ca.crt and ca.key.")
        var ca: String

        @Option(help: "The node's identity, ns/<namespace>/sa/<service-account>.")
        var identity: String

        @Option(help: "The directory to write node.crt, node.key and ca.crt into (created if missing).")
        var out: String

        @Option(help: "How long the certificate is valid, such as 24h.")
        var validFor = "24h"

        func run() throws {
            let seconds = try CertsCommand.seconds(validFor)
            let caDirectory = URL(fileURLWithPath: ca)
            let caCertificate = try CertsCommand.read(caDirectory.appendingPathComponent("ca.crt"))
            let caKey = try CertsCommand.read(caDirectory.appendingPathComponent("ca.key"))
            let (node, id) = try CertsCommand.explained("cannot mint the node certificate") {
                try CertificateMint.nodeCertificate(identity: identity,
                                                    ca: PEMCredentials(certificate: caCertificate, privateKey: caKey),
                                                    validFor: seconds)
            }
            let directory = URL(fileURLWithPath: out)
            // The key first, then the certificate: a node watching the
            // files reloads once both are new (a mismatch is retried).
            try CertsCommand.write(node, certificate: directory.appendingPathComponent("node.crt"),
                                   key: directory.appendingPathComponent("node.key"))
            if directory.standardizedFileURL != caDirectory.standardizedFileURL {
                try CertsCommand.writeAtomically(caCertificate, to: directory.appendingPathComponent("ca.crt"), mode: 0o644)
            }
            print("node certificate for \(id), valid for \(validFor), written to \(directory.path)/node.crt and node.key")
        }
    }

    // MARK: - Helpers

    static func seconds(_ text: String) throws -> Int {
        let duration: Duration
        do {
            duration = try DurationParser.parse(text)
        } catch {
            throw ValidationError("--valid-for \(text): \(error)")
        }
        let seconds = Int(duration.components.seconds)
        guard seconds >= 60 else { throw ValidationError("--valid-for \(text): at least 1 minute") }
        return seconds
    }

    /// Runs `body`, turning a library error into one line for the user.
    static func explained<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw CertsFailure("\(what): \(error)")
        }
    }

    static func read(_ url: URL) throws -> String {
        do {
            return try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw CertsFailure("cannot read \(url.path): \((error as NSError).localizedDescription)")
        }
    }

    static func write(_ credentials: PEMCredentials, certificate: URL, key: URL) throws {
        do {
            try FileManager.default.createDirectory(at: certificate.deletingLastPathComponent(),
                                                    withIntermediateDirectories: true)
        } catch {
            throw CertsFailure("cannot create \(certificate.deletingLastPathComponent().path): \(error.localizedDescription)")
        }
        try writeAtomically(credentials.privateKey, to: key, mode: 0o600)
        try writeAtomically(credentials.certificate, to: certificate, mode: 0o644)
    }

    /// Writes a temporary file with `mode` and renames it over `url`, so a
    /// reader sees the old file or the new one, never half of one, and a
    /// key is never readable by others, not even for a moment.
    static func writeAtomically(_ text: String, to url: URL, mode: mode_t) throws {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
        let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard descriptor >= 0 else {
            throw CertsFailure("cannot write \(temporary.path): \(String(cString: strerror(errno)))")
        }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        fchmod(descriptor, mode)
        close(descriptor)
        guard written == bytes.count, rename(temporary.path, url.path) == 0 else {
            unlink(temporary.path)
            throw CertsFailure("cannot write \(url.path): \(String(cString: strerror(errno)))")
        }
    }
}

/// A failure of `weft certs` that is not a usage mistake: printed as one
/// line, exit status 1.
struct CertsFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
