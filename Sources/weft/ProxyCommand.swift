import ArgumentParser

struct ProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "proxy", abstract: "(being written)")
    func run() throws { throw ValidationError("not yet built") }
}
