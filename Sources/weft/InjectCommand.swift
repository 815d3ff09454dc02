import ArgumentParser
import Foundation
import WeftInject

/// `weft inject` (SPEC §7): workload manifests in, the same with weft added out.
struct InjectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inject",
        abstract: "Add weft to Kubernetes workload manifests (file or stdin) and print them.",
        discussion: """
            Reads one or more YAML documents and writes them to stdout with, in each \
            Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob pod \
            template: the weft-init init container, the weft-proxy sidecar (a native \
            sidecar, or with --classic a container held ready by `weft wait`), and the \
            node config's ConfigMap mounted at /etc/weft. Other documents pass through.

            Annotations: weft.io/inject: "false" skips a workload; \
            weft.io/exclude-inbound-ports, weft.io/exclude-outbound-ports and \
            weft.io/exclude-outbound-cidrs (comma lists) go to weft init. The app \
            containers' HTTP, TCP and gRPC probe ports are kept out of the inbound \
            redirect unless weft.io/exclude-probe-ports: "false". Injecting twice changes \
            nothing. What was done to each document goes to stderr.

            Example: weft inject -f app.yaml | kubectl apply -f -
            """
    )

    @Option(name: [.short, .long], help: ArgumentHelp("The manifests; - for stdin.", valueName: "file"))
    var file = "-"

    @Option(name: .long, help: "The weft image.")
    var image = "weft:0.1.0"

    @Option(name: .long, help: "The ConfigMap holding the node's weft.yaml.")
    var configMap = "weft"

    @Flag(name: .long, help: "The classic two-container sidecar, for clusters before Kubernetes 1.29.")
    var classic = false

    func run() throws {
        let text: String
        do {
            if file == "-" {
                text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            } else {
                text = try String(contentsOfFile: file, encoding: .utf8)
            }
        } catch {
            throw ValidationError("cannot read \(file): \((error as NSError).localizedDescription)")
        }
        var options = Injector.Options()
        options.image = image
        options.configMap = configMap
        options.classic = classic
        let result: (yaml: String, outcomes: [Injector.Outcome])
        do {
            result = try Injector.inject(text, options: options)
        } catch {
            FileHandle.standardError.write(Data("weft inject: \(file): \(error)\n".utf8))
            throw ExitCode(1)
        }
        FileHandle.standardOutput.write(Data(result.yaml.utf8))
        for outcome in result.outcomes {
            FileHandle.standardError.write(Data("weft inject: \(outcome)\n".utf8))
        }
    }
}
