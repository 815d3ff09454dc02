import COpenSSL

/// Something OpenSSL refused, with the text of its error queue.
public struct OpenSSLError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let detail: String

    public var description: String { detail.isEmpty ? operation : "\(operation): \(detail)" }

    /// Drains this thread's OpenSSL error queue into one error.
    static func drain(_ operation: String) -> OpenSSLError {
        OpenSSLError(operation: operation, detail: drainQueue())
    }

    /// The queued errors' reason strings, oldest first; empties the queue.
    static func drainQueue() -> String {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            guard code != 0 else { break }
            if let text = ERR_reason_error_string(code) {
                reasons.append(String(cString: text))
            } else {
                reasons.append("error \(code)")
            }
        }
        return reasons.joined(separator: "; ")
    }
}

/// Throws the error queue when `result` is not 1 (OpenSSL's success).
@discardableResult
func check(_ result: Int32, _ operation: @autoclosure () -> String) throws -> Int32 {
    guard result == 1 else { throw OpenSSLError.drain(operation()) }
    return result
}

/// Throws the error queue when `pointer` is nil.
func check<T>(_ pointer: T?, _ operation: @autoclosure () -> String) throws -> T {
    guard let pointer else { throw OpenSSLError.drain(operation()) }
    return pointer
}
