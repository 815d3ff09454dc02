import CNghttp2

/// Facts about the libnghttp2 this binary is linked against.
public enum NGHTTP2Library {
    /// The runtime library's version string, e.g. `1.52.0`.
    public static var version: String {
        guard let info = nghttp2_version(0), let text = info.pointee.version_str else { return "unknown" }
        return String(cString: text)
    }
}
