import WeftCore

extension RuleSet {
    /// The rules `options` call for in one family (SPEC §3).
    ///
    /// Only TCP is intercepted: PREROUTING and OUTPUT jump in for `-p tcp`.
    /// With DNS capture (IPv4 only: the DNS listener is on 127.0.0.1), UDP
    /// port 53 also enters WEFT_OUTPUT; after the owner RETURNs every such
    /// packet is sent to WEFT_DNS, so UDP never reaches a TCP redirect.
    public init(options: InterceptionOptions, family: IPAddress.Family) {
        let dns = options.captureDNS && family == .ipv4
        var chains: [WeftChain] = [.inbound, .inboundRedirect, .output, .redirect]
        if dns { chains.append(.dns) }
        self.init(
            family: family,
            chains: chains,
            rules: Self.inboundRules(options)
                + Self.outboundRules(options, family: family, dns: dns)
                + Self.redirectRules(options, dns: dns),
            jumps: Self.jumps(dns: dns)
        )
    }

    /// WEFT_INBOUND: proxy ports and excluded ports return, the rest (or
    /// only the included ports) go to WEFT_IN_REDIRECT.
    static func inboundRules(_ options: InterceptionOptions) -> [Rule] {
        let chain = WeftChain.inbound.rawValue
        let toRedirect = jump(.inboundRedirect)
        var seen = Set<UInt16>()
        var rules: [Rule] = []
        for (port, comment) in [(options.meshPort, "weft/mesh-port"), (options.adminPort, "weft/admin-port"),
                                (options.healthPort, "weft/health-port")]
            + options.excludeInboundPorts.map({ ($0, "weft/exclude-inbound-port") })
        where seen.insert(port).inserted {
            rules.append(Rule(chain: chain, matches: tcpPort(port), comment: comment, target: returning))
        }
        if let included = options.includeInboundPorts {
            for port in included where !seen.contains(port) {
                rules.append(Rule(chain: chain, matches: tcpPort(port), comment: "weft/include-inbound-port",
                                  target: toRedirect))
            }
        } else {
            rules.append(Rule(chain: chain, matches: ["-p", "tcp"], comment: "weft/inbound-all", target: toRedirect))
        }
        return rules
    }

    /// WEFT_OUTPUT, in SPEC order: proxy and excluded users, DNS, the app
    /// calling its own address over lo (to the inbound redirect, via
    /// WEFT_INBOUND), other lo and loopback traffic, excluded ports and
    /// blocks, then the included blocks (default all).
    static func outboundRules(_ options: InterceptionOptions, family: IPAddress.Family, dns: Bool) -> [Rule] {
        let chain = WeftChain.output.rawValue
        let loopback = family == .ipv4 ? "127.0.0.0/8" : "::1/128"
        var rules = [
            Rule(chain: chain, matches: ["-m", "owner", "--uid-owner", "\(options.proxyUID)"],
                 comment: "weft/proxy-uid", target: returning),
            Rule(chain: chain, matches: ["-m", "owner", "--gid-owner", "\(options.proxyGID)"],
                 comment: "weft/proxy-gid", target: returning),
        ]
        rules += options.excludeUIDs.map {
            Rule(chain: chain, matches: ["-m", "owner", "--uid-owner", "\($0)"], comment: "weft/exclude-uid",
                 target: returning)
        }
        if dns {
            rules += ["udp", "tcp"].map {
                Rule(chain: chain, matches: ["-p", $0, "-m", $0, "--dport", "53"], comment: "weft/dns-\($0)",
                     target: jump(.dns))
            }
        }
        rules += [
            // The app calling its own (non-loopback) address leaves through
            // lo: it is inbound traffic for this node, so it takes the
            // inbound path (WEFT_INBOUND), where excluded ports still return.
            Rule(chain: chain, matches: ["!", "-d", loopback, "-o", "lo"], comment: "weft/app-to-own-address",
                 target: jump(.inbound)),
            Rule(chain: chain, matches: ["-o", "lo"], comment: "weft/loopback-interface", target: returning),
            Rule(chain: chain, matches: ["-d", loopback], comment: "weft/loopback-destination", target: returning),
        ]
        rules += options.excludeOutboundPorts.map {
            Rule(chain: chain, matches: tcpPort($0), comment: "weft/exclude-outbound-port", target: returning)
        }
        rules += options.excludeOutboundCIDRs.filter { $0.family == family }.map {
            Rule(chain: chain, matches: ["-d", "\($0)"], comment: "weft/exclude-outbound-cidr", target: returning)
        }
        if let included = options.includeOutboundCIDRs {
            rules += included.filter { $0.family == family }.map {
                Rule(chain: chain, matches: ["-d", "\($0)"], comment: "weft/include-outbound-cidr",
                     target: jump(.redirect))
            }
        } else {
            rules.append(Rule(chain: chain, comment: "weft/outbound-all", target: jump(.redirect)))
        }
        return rules
    }

    /// The REDIRECT chains: WEFT_IN_REDIRECT, WEFT_REDIRECT and WEFT_DNS.
    static func redirectRules(_ options: InterceptionOptions, dns: Bool) -> [Rule] {
        var rules = [
            Rule(chain: WeftChain.inboundRedirect.rawValue, matches: ["-p", "tcp"], comment: "weft/to-inbound",
                 target: ["-j", "REDIRECT", "--to-ports", "\(options.inboundPort)"]),
            Rule(chain: WeftChain.redirect.rawValue, matches: ["-p", "tcp"], comment: "weft/to-outbound",
                 target: ["-j", "REDIRECT", "--to-ports", "\(options.outboundPort)"]),
        ]
        if dns {
            rules += ["udp", "tcp"].map {
                Rule(chain: WeftChain.dns.rawValue, matches: ["-p", $0], comment: "weft/to-dns-\($0)",
                     target: ["-j", "REDIRECT", "--to-ports", "\(options.dnsPort)"])
            }
        }
        return rules
    }

    /// The jumps from the built-in chains.
    static func jumps(dns: Bool) -> [Rule] {
        var jumps = [
            Rule(chain: "PREROUTING", matches: ["-p", "tcp"], comment: "weft/inbound", target: jump(.inbound)),
            Rule(chain: "OUTPUT", matches: ["-p", "tcp"], comment: "weft/outbound", target: jump(.output)),
        ]
        if dns {
            jumps.append(Rule(chain: "OUTPUT", matches: ["-p", "udp", "-m", "udp", "--dport", "53"],
                              comment: "weft/outbound-dns", target: jump(.output)))
        }
        return jumps
    }

    private static let returning = ["-j", "RETURN"]

    private static func jump(_ chain: WeftChain) -> [String] { ["-j", chain.rawValue] }

    private static func tcpPort(_ port: UInt16) -> [String] { ["-p", "tcp", "-m", "tcp", "--dport", "\(port)"] }
}
