import ArgumentParser

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "(being written)")
    func run() throws { throw ValidationError("not yet built") }
}
