import ArgumentParser

/// The `weft` executable: one binary, one subcommand per piece (SPEC §1).
@main
struct Weft: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weft",
        abstract: "A transparent service-mesh node.",
        subcommands: [InitCommand.self, ProxyCommand.self, CheckCommand.self, ExplainCommand.self, CertsCommand.self,
                      WaitCommand.self, InjectCommand.self, VersionCommand.self]
    )
}
