/// Splits an `iptables-save` line into arguments the way iptables-restore
/// does: on spaces, with double quotes grouping and `\"` escaping a quote.
enum RuleTokenizer {
    static func tokens(_ line: some StringProtocol) -> [String] {
        var tokens: [String] = []
        var current = ""
        var inToken = false
        var quoted = false
        var escaped = false
        for character in line {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
                inToken = true
            } else if character == "\"" {
                quoted.toggle()
                inToken = true
            } else if character.isWhitespace && !quoted {
                if inToken { tokens.append(current) }
                current = ""
                inToken = false
            } else {
                current.append(character)
                inToken = true
            }
        }
        if inToken { tokens.append(current) }
        return tokens
    }
}
