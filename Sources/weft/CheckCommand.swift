import ArgumentParser
import Foundation
import WeftConfig
import WeftTLS

/// `weft check`: validates a config file and prints every problem with its path.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a weft config file and print every problem with its path.",
        discussion: """
            Reads the YAML config that `weft proxy --config` would use and checks \
            everything weft checks at startup: types, ranges, unknown keys, \
            durations, duplicate cluster names, VIPs and hostnames, listener ports, \
            and that the mesh TLS files (if set) load and name a SPIFFE identity.

            On success prints one line to stdout, such as \
            `weft.yaml: ok (2 clusters, 3 endpoints)`, and exits 0.

            On any problem prints every problem to stderr, one per line, as \
            `<path>: <message>` (for example \
            `clusters[0].endpoints[0].address: "198.18.0.2:99999" is not a valid IP:port`), \
            then a summary line, and exits 1.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The YAML config file to check.", valueName: "file"))
    var config: String

    func run() throws {
        let loaded: Configuration
        do {
            loaded = try ConfigLoader.load(path: config)
        } catch {
            var lines = error.problems.map(\.description)
            let count = error.problems.count
            lines.append("\(config): \(count) problem\(count == 1 ? "" : "s")")
            FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
            throw ExitCode(1)
        }
        var mTLS = ""
        if let tls = loaded.listeners.mesh.tls {
            // The files are loaded as the node would at startup.
            do {
                let files = try TLSCredentialFiles(certificate: tls.cert, key: tls.key, ca: tls.ca)
                mTLS = ", mesh mTLS as \(files.context.identity)"
            } catch {
                FileHandle.standardError.write(Data("listeners.mesh.tls: \(error)\n\(config): 1 problem\n".utf8))
                throw ExitCode(1)
            }
        }
        print("\(config): ok (\(Self.summary(of: loaded))\(mTLS))")
    }

    /// `2 clusters, 3 endpoints`.
    static func summary(of configuration: Configuration) -> String {
        let clusters = configuration.clusters.count
        let endpoints = configuration.clusters.reduce(0) { $0 + $1.endpoints.count }
        return "\(clusters) cluster\(clusters == 1 ? "" : "s"), \(endpoints) endpoint\(endpoints == 1 ? "" : "s")"
    }
}
