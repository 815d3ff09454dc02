import COpenSSL

/// Facts about the OpenSSL this binary is linked against.
public enum OpenSSLLibrary {
    /// The runtime library's version string, e.g. `OpenSSL 3.0.19 27 Jan 2026`.
    public static var version: String {
        guard let text = OpenSSL_version(OPENSSL_VERSION) else { return "unknown" }
        return String(cString: text)
    }
}
