/// What `weft init` does with the rules.
public enum InitAction: Sendable {
    /// Install (or refresh) weft's rules.
    case install
    /// `--remove`: delete weft's jumps and chains.
    case remove
}
