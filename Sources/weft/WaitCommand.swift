import ArgumentParser
import Foundation
import NIOCore
import WeftConfig

/// `weft wait`: blocks until the local node answers `/ready` with 200, for
/// classic (non-native) sidecars: as the sidecar's `postStart` hook it
/// holds the app's container back until the node carries traffic.
struct WaitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Wait until the local weft node is ready (GET /ready answers 200).",
        discussion: """
            Asks GET /ready on the node's health port every --interval until it \
            answers 200 (exit 0) or --timeout passes (exit 1, saying what it last saw). \
            In a classic two-container pod, put it in the weft-proxy container's \
            lifecycle.postStart hook, with weft-proxy listed before the app: the kubelet \
            starts the next container only once the hook returns.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The node's health listener.", valueName: "ip:port"))
    var health = "127.0.0.1:15020"

    @Option(name: .long, help: "How long to wait at most, such as 60s.")
    var timeout = "60s"

    @Option(name: .long, help: "How long between two tries, such as 200ms.")
    var interval = "200ms"

    func run() throws {
        let limit: Duration
        let pause: Duration
        do {
            limit = try DurationParser.parse(timeout)
            pause = try DurationParser.parse(interval)
        } catch {
            throw ValidationError("\(error)")
        }
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        var last = "no answer yet"
        while true {
            do {
                let (status, _) = try AdminClient.get("/ready", from: health, timeout: .seconds(1))
                if status == 200 { return }
                last = "/ready answered \(status)"
            } catch let error as ValidationError {
                throw error
            } catch {
                last = "\(error)"
            }
            guard clock.now + pause < deadline else {
                FileHandle.standardError.write(Data("weft wait: not ready after \(timeout) (\(last))\n".utf8))
                throw ExitCode(1)
            }
            Thread.sleep(forTimeInterval: Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18)
        }
    }
}
