extension Listeners {
    /// Each listener's name (its key under `listeners:`) and port, in SPEC order.
    public var namedPorts: [(name: String, port: UInt16)] {
        [("outbound", outbound.port), ("inbound", inbound.port), ("mesh", mesh.port),
         ("admin", admin.port), ("health", health.port)]
            + egress.enumerated().map { ("egress[\($0.offset)]", $0.element.port) }
            + (httpRouting.map { [("http_routing", $0.port)] } ?? [])
            + (dns.map { [("dns", $0.port)] } ?? [])
    }
}
