import WeftConfig
import WeftCore

/// What the node knows about itself: its addresses and its listener ports,
/// used to refuse connections that would loop back into weft.
public struct NodeIdentity: Sendable {
    public let id: String
    public let addresses: Set<IPAddress>
    public let listenerPorts: Set<UInt16>

    public init(id: String, addresses: some Sequence<IPAddress>, listenerPorts: Set<UInt16>) {
        self.id = id
        self.addresses = Set(addresses)
        self.listenerPorts = listenerPorts
    }

    /// The destination is one of weft's own listeners, on this node.
    func isOwnListener(_ destination: IPEndpoint) -> Bool {
        listenerPorts.contains(destination.port)
            && (destination.address.isLoopback || addresses.contains(destination.address))
    }
}
