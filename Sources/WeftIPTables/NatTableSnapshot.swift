import Foundation

/// The nat table as `iptables-save -t nat` printed it: chain names and
/// rules, each rule with its original line so it can be deleted verbatim.
public struct NatTableSnapshot: Equatable, Sendable {
    /// One `-A` line.
    public struct SavedRule: Equatable, Sendable {
        public var chain: String
        /// Arguments after the chain name, unquoted.
        public var specification: [String]
        /// The line as saved, starting with `-A`.
        public var line: String

        /// The chain this rule jumps or goes to, if any.
        public var jumpTarget: String? {
            guard let index = specification.lastIndex(where: { $0 == "-j" || $0 == "-g" }),
                  index + 1 < specification.count else { return nil }
            return specification[index + 1]
        }

        /// The restore line deleting exactly this rule: the saved line with
        /// `-A` turned into `-D` (rebuilt from the arguments if it had counters).
        public var deletion: String {
            if line.hasPrefix("-A ") { return "-D" + line.dropFirst(2) }
            return (["-D", chain] + specification.map(Self.quoted)).joined(separator: " ")
        }

        /// Quotes an argument for iptables-restore when it needs it.
        static func quoted(_ token: String) -> String {
            guard token.isEmpty || token.contains(where: { $0.isWhitespace || $0 == "\"" || $0 == "\\" }) else {
                return token
            }
            let escaped = token.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"")
            return "\"\(escaped)\""
        }
    }

    /// Every chain, built-in and user-defined, in save order.
    public var chains: [String]
    public var rules: [SavedRule]

    public init(chains: [String] = [], rules: [SavedRule] = []) {
        self.chains = chains
        self.rules = rules
    }

    /// Reads the `*nat` section of `iptables-save` output; anything else
    /// (other tables, `#` comments, counters) is ignored.
    public init(parsing text: String) {
        self.init()
        var inNat = false
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.drop(while: { $0 == " " })
            if line.hasPrefix("*") {
                inNat = line == "*nat"
            } else if !inNat || line.hasPrefix("#") {
                continue
            } else if line == "COMMIT" {
                inNat = false
            } else if line.hasPrefix(":") {
                if let name = line.dropFirst().split(separator: " ").first { chains.append(String(name)) }
            } else {
                var tokens = RuleTokenizer.tokens(line)
                if tokens.first?.hasPrefix("[") == true { tokens.removeFirst() } // `-c` counters
                guard tokens.count >= 2, tokens[0] == "-A" else { continue }
                rules.append(SavedRule(chain: tokens[1], specification: Array(tokens.dropFirst(2)),
                                       line: String(line)))
            }
        }
    }

    /// The table as it reads after `rules` were installed over an empty one:
    /// what `--dry-run --remove` plans against.
    public init(installed rules: RuleSet) {
        self.init(
            chains: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"] + rules.chains.map(\.rawValue),
            rules: (rules.jumps + rules.rules).map {
                SavedRule(chain: $0.chain, specification: $0.specification, line: $0.rendered("-A"))
            }
        )
    }

    /// weft's chains present in the table, in save order.
    public var weftChains: [String] { chains.filter(WeftChain.isOurs) }

    /// Rules outside weft's chains that jump into them: weft's jumps.
    public var jumpsIntoWeft: [SavedRule] {
        rules.filter { !WeftChain.isOurs($0.chain) && $0.jumpTarget.map(WeftChain.isOurs) == true }
    }
}
