import ArgumentParser
import WeftHTTP2
import WeftTLS

/// `weft version`: this build and the C libraries it runs on.
struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Print weft's version and the versions of the libraries it is linked against."
    )

    static let weftVersion = "0.1.0"

    func run() {
        print("weft \(Self.weftVersion)")
        print("nghttp2 \(NGHTTP2Library.version)")
        print("openssl \(OpenSSLLibrary.version)")
    }
}
