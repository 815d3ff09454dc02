import Foundation

/// Whether this network namespace runs IPv6, for `--ipv6 auto`.
public enum IPv6Support {
    /// On when `/proc/net/if_inet6` lists an address, or when
    /// `net.ipv6.conf.all.disable_ipv6` is 0. `readFile` returns nil for a
    /// missing file (IPv6 compiled out or disabled at boot).
    public static func kernelEnabled(readFile: (String) -> String? = Self.readFile) -> Bool {
        if let addresses = readFile("/proc/net/if_inet6"),
           !addresses.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            return true
        }
        if let disabled = readFile("/proc/sys/net/ipv6/conf/all/disable_ipv6") {
            return disabled.trimmingCharacters(in: .whitespacesAndNewlines) == "0"
        }
        return false
    }

    /// The file's text, or nil when it cannot be read.
    public static func readFile(_ path: String) -> String? {
        try? String(contentsOfFile: path, encoding: .utf8)
    }
}
