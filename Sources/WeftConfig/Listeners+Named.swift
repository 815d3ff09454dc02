extension Listeners {
    /// Each listener's name (its key under `listeners:`) and port, in SPEC order.
    var namedPorts: [(name: String, port: UInt16)] {
        [("outbound", outbound.port), ("inbound", inbound.port), ("mesh", mesh.port),
         ("admin", admin.port), ("health", health.port)]
    }
}
