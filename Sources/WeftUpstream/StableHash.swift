/// A 64-bit hash that is the same in every process and on every node, so a
/// key lands on the same endpoint everywhere (Swift's `Hasher` is seeded
/// per process). FNV-1a over the bytes, then MurmurHash3's finaliser to
/// spread FNV's weak low bits.
public enum StableHash {
    public static func hash(_ bytes: some Sequence<UInt8>, seed: UInt64 = 0) -> UInt64 {
        var state: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for byte in bytes {
            state ^= UInt64(byte)
            state &*= 0x0000_0100_0000_01b3
        }
        return mix(state)
    }

    public static func hash(_ text: String, seed: UInt64 = 0) -> UInt64 {
        hash(text.utf8, seed: seed)
    }

    /// MurmurHash3's 64-bit finaliser.
    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var x = value
        x ^= x >> 33
        x &*= 0xff51_afd7_ed55_8ccd
        x ^= x >> 33
        x &*= 0xc4ce_b9fe_1a85_ec53
        x ^= x >> 33
        return x
    }
}

/// SplitMix64: a small, fast generator for balancing decisions (one per
/// event loop). `SystemRandomNumberGenerator` would cost a system call per
/// draw; balancing needs spread, not secrecy.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// Seeded from the system generator, once.
    public init() {
        var system = SystemRandomNumberGenerator()
        state = system.next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        return StableHash.mix(state)
    }

    /// A value in `0..<bound` (bound > 0), by multiply-shift: no division.
    @inline(__always)
    public mutating func below(_ bound: Int) -> Int {
        Int(truncatingIfNeeded: next().multipliedFullWidth(by: UInt64(bound)).high)
    }
}
