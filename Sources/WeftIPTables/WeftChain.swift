/// The nat-table chains weft owns. Nothing else in the table is ever
/// touched, except the jumps into these chains from PREROUTING and OUTPUT.
public enum WeftChain: String, CaseIterable, Sendable {
    /// Entry for inbound TCP (jumped to from PREROUTING).
    case inbound = "WEFT_INBOUND"
    /// REDIRECT to the inbound listener (15006).
    case inboundRedirect = "WEFT_IN_REDIRECT"
    /// Entry for locally generated traffic (jumped to from OUTPUT).
    case output = "WEFT_OUTPUT"
    /// REDIRECT to the outbound listener (15001).
    case redirect = "WEFT_REDIRECT"
    /// REDIRECT of DNS (udp and tcp 53) to the DNS listener (15053).
    case dns = "WEFT_DNS"

    /// Whether `name` is one of weft's chains.
    public static func isOurs(_ name: String) -> Bool {
        WeftChain(rawValue: name) != nil
    }
}
