import NIOHTTP1

extension HTTPMethod {
    // By case: NIO's `==` on methods compares their `rawValue`s, making a
    // String of each side, and these are asked of every request.

    /// The method is HEAD.
    @inlinable public var isHEAD: Bool {
        if case .HEAD = self { return true }
        return false
    }

    /// The method is CONNECT.
    @inlinable public var isCONNECT: Bool {
        if case .CONNECT = self { return true }
        return false
    }
}
