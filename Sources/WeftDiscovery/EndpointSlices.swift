import Foundation
import WeftConfig
import WeftCore

/// The EndpointSlices of one Service as `discovery: kubernetes` sees them
/// (discovery.k8s.io/v1), turned into the cluster's endpoints: what a list
/// answer and each watch event change. Pure; the list/watch client feeds it.
///
/// Endpoints: each address of each slice with the port named (or numbered)
/// by the cluster's `kubernetes.port`. Ready ones are used; when none is
/// ready, serving ones that are terminating are (so a rollout's last pods
/// still take traffic, as kube-proxy does). The zone becomes the endpoint's
/// locality, or, when the EndpointSlice controller gave the endpoint a
/// topology hint, the zone it is meant to serve (its own if the hint names
/// it among others, else the first hinted).
public struct EndpointSlices: Sendable {
    /// The port to use: a name of the slices' `ports`, or a number.
    public let port: String
    /// Slices by name.
    private(set) var slices: [String: Slice] = [:]
    /// The collection's resourceVersion (list) or the last event's.
    public private(set) var resourceVersion: String?

    public init(port: String) {
        self.port = port
    }

    public struct Slice: Sendable, Equatable, Decodable {
        public struct Metadata: Sendable, Equatable, Decodable {
            public var name: String
            public var resourceVersion: String?
        }
        public struct Port: Sendable, Equatable, Decodable {
            public var name: String?
            public var port: Int?
        }
        public struct Conditions: Sendable, Equatable, Decodable {
            public var ready: Bool?
            public var serving: Bool?
            public var terminating: Bool?
        }
        public struct Hints: Sendable, Equatable, Decodable {
            public struct Zone: Sendable, Equatable, Decodable { public var name: String }
            public var forZones: [Zone]?
        }
        public struct SliceEndpoint: Sendable, Equatable, Decodable {
            public var addresses: [String]
            public var conditions: Conditions?
            public var zone: String?
            public var hints: Hints?

            /// The zone the endpoint serves: its hint's, else its own.
            var servedZone: String? {
                let hinted = (hints?.forZones ?? []).map(\.name)
                guard let first = hinted.first else { return zone }
                return zone.map { hinted.contains($0) } == true ? zone : first
            }
        }
        public var metadata: Metadata
        public var addressType: String?
        public var endpoints: [SliceEndpoint]?
        public var ports: [Port]?
    }

    /// A list answer (`EndpointSliceList`), or one page of it.
    struct List: Decodable {
        struct Metadata: Decodable {
            var resourceVersion: String?
            /// Set when more pages follow: ask again with it.
            var `continue`: String?
        }
        var metadata: Metadata
        var items: [Slice]
    }

    /// One line of a watch stream.
    public struct Event: Decodable {
        public enum Kind: String, Decodable { case added = "ADDED", modified = "MODIFIED", deleted = "DELETED",
                                              bookmark = "BOOKMARK", error = "ERROR" }
        public var type: Kind
        public var object: Slice?
        /// For ERROR: the Status's code (410: the resourceVersion is gone, list again).
        public var code: Int?

        enum CodingKeys: String, CodingKey { case type, object }
        struct Status: Decodable { var code: Int? }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            type = try container.decode(Kind.self, forKey: .type)
            if type == .error {
                code = try container.decodeIfPresent(Status.self, forKey: .object)?.code
            } else if type == .bookmark {
                // A bookmark carries only metadata.resourceVersion (no name).
                struct Bookmark: Decodable {
                    struct Metadata: Decodable { var resourceVersion: String? }
                    var metadata: Metadata?
                }
                let bookmark = try container.decodeIfPresent(Bookmark.self, forKey: .object)
                object = bookmark?.metadata.map {
                    Slice(metadata: Slice.Metadata(name: "", resourceVersion: $0.resourceVersion), endpoints: nil, ports: nil)
                }
            } else {
                object = try container.decode(Slice.self, forKey: .object)
            }
        }
    }

    public enum Outcome: Equatable, Sendable {
        /// The endpoints may have changed (tell the cluster).
        case changed
        /// Nothing to tell (a bookmark).
        case unchanged
        /// The watch is too old: list again from scratch.
        case gone
        /// The server said something else went wrong.
        case failed(Int?)
    }

    /// Replaces everything with a list answer's slices.
    public mutating func apply(list data: Data) throws {
        let list = try JSONDecoder().decode(List.self, from: data)
        replace(with: list.items, resourceVersion: list.metadata.resourceVersion)
    }

    /// Replaces everything with the slices of a (possibly paged) list.
    mutating func replace(with items: [Slice], resourceVersion: String?) {
        slices = Dictionary(items.map { ($0.metadata.name, $0) }, uniquingKeysWith: { $1 })
        self.resourceVersion = resourceVersion
    }

    /// Applies one watch event (a line of the stream).
    public mutating func apply(event data: Data) throws -> Outcome {
        let event = try JSONDecoder().decode(Event.self, from: data)
        if let version = event.object?.metadata.resourceVersion { resourceVersion = version }
        switch event.type {
        case .added, .modified:
            guard let slice = event.object else { return .unchanged }
            slices[slice.metadata.name] = slice
            return .changed
        case .deleted:
            guard let slice = event.object else { return .unchanged }
            slices[slice.metadata.name] = nil
            return .changed
        case .bookmark:
            return .unchanged
        case .error:
            return event.code == 410 ? .gone : .failed(event.code)
        }
    }

    /// The cluster's endpoints now, sorted, without duplicates.
    public var endpoints: [Endpoint] {
        var ready: [Endpoint] = []
        var serving: [Endpoint] = []
        for slice in slices.values {
            guard let number = portNumber(in: slice) else { continue }
            for endpoint in slice.endpoints ?? [] {
                let conditions = endpoint.conditions
                // An unset `ready` means ready (the API's rule).
                let isReady = conditions?.ready ?? true
                let isServing = conditions?.serving ?? isReady
                let locality = endpoint.servedZone.map { Locality(zone: $0) }
                for text in endpoint.addresses {
                    guard let address = IPAddress(text) else { continue }
                    let made = Endpoint(address: IPEndpoint(address: address, port: number), locality: locality)
                    if isReady {
                        ready.append(made)
                    } else if isServing, conditions?.terminating == true {
                        serving.append(made)
                    }
                }
            }
        }
        let chosen = ready.isEmpty ? serving : ready
        var seen = Set<IPEndpoint>()
        return chosen.filter { seen.insert($0.address).inserted }
            .sorted { "\($0.address)" < "\($1.address)" }
    }

    private func portNumber(in slice: Slice) -> UInt16? {
        let ports = slice.ports ?? []
        if let number = UInt16(port) {
            // A number: the slice must expose it (or say nothing of ports).
            return ports.isEmpty || ports.contains { $0.port == Int(number) } ? number : nil
        }
        guard let match = ports.first(where: { $0.name == port }), let value = match.port,
              let number = UInt16(exactly: value) else { return nil }
        return number
    }
}
