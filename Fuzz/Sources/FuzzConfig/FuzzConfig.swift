import FuzzSupport
import WeftConfig

/// The config loader and validator on any text (`weft check`, a reload, a
/// `discovery: file` list): each input is either a configuration or a list
/// of problems, never a crash or a hang.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = FuzzInput(data, count).remaining
    let text = String(decoding: input, as: UTF8.self)
    do {
        _ = try ConfigLoader.load(yaml: text)
    } catch {
        require(!error.problems.isEmpty, "a refused config names no problem")
    }
    do {
        _ = try ConfigLoader.loadEndpoints(yaml: text)
    } catch {
        require(!error.problems.isEmpty, "a refused endpoint list names no problem")
    }
    return 0
}
