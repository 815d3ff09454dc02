import FuzzSupport
import NIOCore
import WeftProxy

/// Protocol detection (SPEC §4 step 3) on any first bytes: never crashes,
/// and is incremental: once a prefix is decided, every longer prefix decides
/// the same, so feeding a connection's bytes in pieces cannot change the
/// answer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProtocolDetection(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = FuzzInput(data, count).remaining
    var buffer = ByteBuffer(bytes: input)
    let whole = ProtocolDetector.detect(buffer)
    var decided: DetectedProtocol?
    for length in stride(from: 0, through: input.count, by: max(1, input.count / 64)) {
        buffer.moveWriterIndex(to: length)
        guard let answer = ProtocolDetector.detect(buffer) else {
            require(decided == nil, "undecided at \(length) bytes after deciding \(String(describing: decided))")
            continue
        }
        require(decided == nil || decided == answer, "\(length) bytes say \(answer), fewer said \(String(describing: decided))")
        decided = answer
    }
    if let decided { require(whole == decided, "the whole input says \(String(describing: whole)), a prefix \(decided)") }
    return 0
}
