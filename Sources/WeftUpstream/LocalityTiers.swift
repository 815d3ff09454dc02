import WeftConfig

/// Locality-aware balancing (SPEC §5, Locality), Envoy's priority levels
/// with its overprovisioning factor: with `node.locality` set, endpoints
/// fall in tiers by how near they are (the node's zone, then its region,
/// then anywhere). A tier takes traffic in proportion to its healthy share
/// × 1.4, up to all of it; what it cannot take spills to the next tier.
/// When even all tiers together fall short, their shares are scaled up to
/// the whole.
public enum LocalityTiers {
    /// The overprovisioning factor: a tier with 5 of 7 endpoints usable
    /// still takes all of its traffic.
    public static let overprovisioning = 1.4

    /// Endpoint indices by tier, nearest first, empty tiers left out; nil
    /// when locality does not apply (the node has none, or no endpoint
    /// says where it is).
    public static func tiers(of endpoints: [Endpoint], node: Locality) -> [[Int]]? {
        guard node.region != nil || node.zone != nil, endpoints.contains(where: { $0.locality != nil }) else {
            return nil
        }
        var tiers: [[Int]] = [[], [], []]
        for (index, endpoint) in endpoints.enumerated() {
            tiers[rank(endpoint.locality, node: node)].append(index)
        }
        let present = tiers.filter { !$0.isEmpty }
        return present.count > 1 ? present : nil
    }

    /// 0: the node's zone (and region, when both say one: an endpoint that
    /// names only its zone, as a Kubernetes EndpointSlice does, is placed
    /// by the zone); 1: its region; 2: anywhere else, or unknown.
    static func rank(_ locality: Locality?, node: Locality) -> Int {
        guard let locality else { return 2 }
        let sameRegion = node.region == nil || locality.region == nil || locality.region == node.region
        if sameRegion, let zone = node.zone, locality.zone == zone { return 0 }
        if let region = node.region, locality.region == region { return 1 }
        return 2
    }

    /// A tier's health: its usable share × 1.4, at most 1.
    public static func health(usable: Int, total: Int) -> Double {
        min(1, Double(usable) / Double(max(total, 1)) * overprovisioning)
    }

    /// Each tier's share of the traffic (summing to 1) from the tiers'
    /// healths, nearest first (up to three); nil when no tier is healthy
    /// at all (panic). No allocation: it runs on every pick.
    public static func shares(_ health: SIMD3<Double>) -> SIMD3<Double>? {
        let first = min(1, health.x)
        let second = min(1 - first, health.y)
        let third = min(1 - first - second, health.z)
        let taken = first + second + third
        guard taken > 0 else { return nil }
        return SIMD3(first, second, third) / taken
    }
}
