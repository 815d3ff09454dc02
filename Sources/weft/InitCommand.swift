import ArgumentParser
import Foundation
import WeftIPTables

/// `weft init`: installs, removes or prints the iptables rules that send this
/// network namespace's TCP traffic through weft (SPEC §3). A thin adapter:
/// parsing, validation and planning live in WeftIPTables.
struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Install, remove or print the iptables rules that redirect this network namespace's traffic to weft.",
        discussion: """
            Works in the nat table on weft's own chains (WEFT_INBOUND, WEFT_IN_REDIRECT, \
            WEFT_OUTPUT, WEFT_REDIRECT, WEFT_DNS) and the jumps into them from PREROUTING \
            and OUTPUT; nothing else is touched. Each family is one atomic \
            iptables-restore --noflush transaction. Re-running is idempotent; --remove \
            deletes exactly weft's jumps and chains. Needs root (NET_ADMIN, NET_RAW), \
            except with --dry-run. List flags take comma-separated values and may be repeated.
            """
    )

    @Option(name: .customLong("proxy-uid"), help: "Uid of the proxy; its traffic is never redirected.")
    var proxyUID = "1337"

    @Option(name: .customLong("proxy-gid"), help: "Gid of the proxy; its traffic is never redirected.")
    var proxyGID = "1337"

    @Option(name: .customLong("outbound-port"), help: "Port of the outbound listener (the redirect target for app egress).")
    var outboundPort = "15001"

    @Option(name: .customLong("inbound-port"), help: "Port of the inbound listener (the redirect target for ingress).")
    var inboundPort = "15006"

    @Option(name: .customLong("mesh-port"), help: "Port of the mesh listener; never redirected.")
    var meshPort = "15008"

    @Option(name: .customLong("admin-port"), help: "Port of the admin listener; never redirected.")
    var adminPort = "15000"

    @Option(name: .customLong("health-port"), help: "Port of the health/metrics listener; never redirected.")
    var healthPort = "15020"

    @Option(name: .customLong("exclude-inbound-ports"), parsing: .singleValue,
            help: ArgumentHelp("Inbound ports never redirected, e.g. 22 for ssh.", valueName: "ports"))
    var excludeInboundPorts: [String] = []

    @Option(name: .customLong("include-inbound-ports"), parsing: .singleValue,
            help: ArgumentHelp("Redirect only these inbound ports (default: all; \"\" for none). Not with --exclude-inbound-ports.",
                               valueName: "ports"))
    var includeInboundPorts: [String] = []

    @Option(name: .customLong("exclude-outbound-ports"), parsing: .singleValue,
            help: ArgumentHelp("Outbound destination ports never redirected.", valueName: "ports"))
    var excludeOutboundPorts: [String] = []

    @Option(name: .customLong("exclude-outbound-cidrs"), parsing: .singleValue,
            help: ArgumentHelp("Outbound destinations (IPv4/IPv6 CIDRs) never redirected.", valueName: "cidrs"))
    var excludeOutboundCIDRs: [String] = []

    @Option(name: .customLong("include-outbound-cidrs"), parsing: .singleValue,
            help: ArgumentHelp("Redirect only these outbound destinations (default: all; \"\" for none). A family with no block listed gets no outbound redirect.",
                               valueName: "cidrs"))
    var includeOutboundCIDRs: [String] = []

    @Option(name: .customLong("exclude-uids"), parsing: .singleValue,
            help: ArgumentHelp("Uids whose outbound traffic is never redirected.", valueName: "uids"))
    var excludeUIDs: [String] = []

    @Flag(name: .customLong("capture-dns"), help: "Redirect the app's DNS (udp and tcp port 53, IPv4) to --dns-port on 127.0.0.1.")
    var captureDNS = false

    @Option(name: .customLong("dns-port"), help: "Port of the DNS listener, with --capture-dns.")
    var dnsPort = "15053"

    @Flag(name: .customLong("dry-run"), help: "Print the iptables-restore input per family and change nothing (needs neither root nor iptables).")
    var dryRun = false

    @Flag(name: .customLong("remove"), help: "Delete weft's jumps and chains instead of installing them.")
    var remove = false

    @Option(name: .customLong("backend"), help: "auto, legacy or nft. auto uses the one that already holds rules here.")
    var backend = "auto"

    @Option(name: .customLong("ipv6"), help: "auto, on or off. auto: on when the kernel runs IPv6 and ip6tables is installed.")
    var ipv6 = "auto"

    func run() throws {
        let options: InterceptionOptions
        do {
            options = try InterceptionOptions(flags: flags)
        } catch {
            fail(error, exitCode: .validationFailure)
        }
        let runner = InitRunner(options: options, action: remove ? .remove : .install)
        do {
            if dryRun {
                print(try runner.dryRun(), terminator: "")
            } else {
                try runner.run { print("weft init: \($0)") }
            }
        } catch {
            fail(error, exitCode: .failure)
        }
    }

    /// The flags as typed, for WeftIPTables to validate.
    private var flags: InterceptionFlags {
        var flags = InterceptionFlags()
        flags.proxyUID = proxyUID
        flags.proxyGID = proxyGID
        flags.outboundPort = outboundPort
        flags.inboundPort = inboundPort
        flags.meshPort = meshPort
        flags.adminPort = adminPort
        flags.healthPort = healthPort
        flags.excludeInboundPorts = excludeInboundPorts
        flags.includeInboundPorts = includeInboundPorts
        flags.excludeOutboundPorts = excludeOutboundPorts
        flags.excludeOutboundCIDRs = excludeOutboundCIDRs
        flags.includeOutboundCIDRs = includeOutboundCIDRs
        flags.excludeUIDs = excludeUIDs
        flags.captureDNS = captureDNS
        flags.dnsPort = dnsPort
        flags.backend = backend
        flags.ipv6 = ipv6
        return flags
    }

    /// One line on stderr, then exit.
    private func fail(_ error: any Error, exitCode: ExitCode) -> Never {
        FileHandle.standardError.write(Data("weft init: \(error)\n".utf8))
        Self.exit(withError: exitCode)
    }
}
