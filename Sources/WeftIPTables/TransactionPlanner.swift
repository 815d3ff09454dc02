import WeftCore

/// Turns desired rules and the current nat table into the one transaction
/// that installs or removes weft, touching nothing else.
public enum TransactionPlanner {
    /// Installs `rules` over `current`, idempotently.
    ///
    /// Declaring a chain (`:WEFT_X - [0:0]`) creates it, or with `--noflush`
    /// flushes it, so weft's chains are rewritten in full. Jumps into them
    /// are reconciled instead: one already present (same arguments) is kept
    /// in place, a duplicate or outdated one is deleted, a missing one is
    /// appended. weft chains no longer wanted (WEFT_DNS after DNS capture is
    /// turned off) are flushed and deleted.
    public static func install(_ rules: RuleSet, over current: NatTableSnapshot) -> RestoreTransaction {
        let wanted = Set(rules.chains.map(\.rawValue))
        let stale = current.weftChains.filter { !wanted.contains($0) }

        var missingJumps = rules.jumps
        var deletions: [String] = []
        for saved in current.jumpsIntoWeft {
            if let index = missingJumps.firstIndex(where: {
                $0.chain == saved.chain && $0.specification == saved.specification
            }) {
                missingJumps.remove(at: index)
            } else {
                deletions.append(saved.deletion)
            }
        }

        var lines = rules.chains.map { ":\($0.rawValue) - [0:0]" }
        lines += deletions
        lines += stale.map { "-F \($0)" }
        lines += stale.map { "-X \($0)" }
        lines += rules.rules.map { $0.rendered("-A") }
        lines += missingJumps.map { $0.rendered("-A") }
        return RestoreTransaction(family: rules.family, lines: lines)
    }

    /// Removes every weft jump and chain found in `current`; empty when
    /// nothing of weft's is installed.
    public static func remove(from current: NatTableSnapshot, family: IPAddress.Family) -> RestoreTransaction {
        let chains = current.weftChains
        var lines = current.jumpsIntoWeft.map(\.deletion)
        lines += chains.map { "-F \($0)" }
        lines += chains.map { "-X \($0)" }
        return RestoreTransaction(family: family, lines: lines)
    }
}
