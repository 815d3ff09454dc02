import Foundation
import WeftCore

/// The real ``IPTablesExecutor``: runs `iptables-<backend>-save` and
/// `iptables-<backend>-restore --noflush` (or the ip6tables ones).
public struct ProcessExecutor: IPTablesExecutor {
    public let backend: Backend
    private let searchPath: [String]
    private let environment: [String: String]

    /// Tools are looked up in `PATH`, then in the sbin directories that a
    /// minimal init-container PATH may lack.
    public init(backend: Backend, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.backend = backend
        self.environment = environment
        let path = (environment["PATH"] ?? "").split(separator: ":").map(String.init)
        var seen = Set<String>()
        self.searchPath = (path + ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
            .filter { !$0.isEmpty && seen.insert($0).inserted }
    }

    public func isAvailable(_ family: IPAddress.Family) -> Bool {
        locate(backend.saveCommand(family)) != nil && locate(backend.restoreCommand(family)) != nil
    }

    public func save(_ family: IPAddress.Family, table: String?) throws -> String {
        let tool = backend.saveCommand(family)
        let arguments = table.map { ["-t", $0] } ?? []
        let result = try run(tool, arguments, input: nil)
        return result.stdout
    }

    public func restore(_ family: IPAddress.Family, _ text: String) throws {
        // --wait: queue behind another writer (kube-proxy, docker) holding the xtables lock.
        _ = try run(backend.restoreCommand(family), ["--noflush", "--wait=10"], input: text)
    }

    private func run(_ tool: String, _ arguments: [String], input: String?) throws -> CommandRunner.Result {
        guard let path = locate(tool) else { throw InitError.toolMissing(tool) }
        let result = try CommandRunner.run(path, arguments, input: input, environment: environment)
        guard result.status == 0 else {
            let command = ([tool] + arguments).joined(separator: " ")
            throw InitError.commandFailed(command: command, status: result.status, output: result.stderr)
        }
        return result
    }

    private func locate(_ tool: String) -> String? {
        searchPath.lazy.map { "\($0)/\(tool)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}
