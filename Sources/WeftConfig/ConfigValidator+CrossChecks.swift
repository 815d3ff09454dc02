import WeftCore

/// Checks that span clusters: names, VIPs and hostnames must be unique, and
/// nothing may point back at weft's own listeners.
extension ConfigValidator {
    mutating func crossCheck(_ clusters: [ClusterSource], listeners: Listeners) {
        var names: [String: ConfigPath] = [:]
        var vips: [IPEndpoint: ConfigPath] = [:]
        var hostnames: [String: ConfigPath] = [:]

        for source in clusters {
            if let value = source.nameValue {
                unique(source.cluster.name, at: value, among: &names)
            }
            for (vip, value) in source.addresses {
                unique(vip.description, key: vip, at: value, among: &vips)
                checkNotOwnListener(vip, at: value, listeners: listeners)
            }
            for (hostname, value) in source.hostnames {
                unique(hostname, at: value, among: &hostnames)
            }
            var endpoints: [IPEndpoint: ConfigPath] = [:]
            for (endpoint, value) in source.endpoints {
                unique(endpoint.description, key: endpoint, at: value, among: &endpoints)
                checkNotOwnListener(endpoint, at: value, listeners: listeners)
            }
        }
    }

    /// Records where `key` was first seen; a second sighting is a problem.
    private mutating func unique<Key: Hashable>(
        _ text: String, key: Key, at value: ConfigValue, among seen: inout [Key: ConfigPath]
    ) {
        if let first = seen[key] {
            report(value, "\(quoted(text)) is already used by \(first)")
        } else {
            seen[key] = value.path
        }
    }

    private mutating func unique(_ text: String, at value: ConfigValue, among seen: inout [String: ConfigPath]) {
        unique(text, key: text, at: value, among: &seen)
    }

    /// A loopback address on one of weft's listener ports would send traffic
    /// back into weft itself.
    private mutating func checkNotOwnListener(_ target: IPEndpoint, at value: ConfigValue, listeners: Listeners) {
        guard target.address.unmappingIPv4.isLoopback,
              let listener = listeners.namedPorts.first(where: { $0.port == target.port }) else { return }
        report(value, "\(quoted(target.description)) is weft's own \(listener.name) listener (traffic would loop)")
    }
}
