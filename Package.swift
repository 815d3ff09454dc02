// swift-tools-version:6.1
import PackageDescription

/// weft: a transparent service-mesh node.
///
/// Layout (arrows point down, nothing below imports anything above):
/// `weft` -> WeftAdmin (through a NodeView protocol), WeftProxy (the request
/// pipeline) -> WeftMesh (the mesh protocol), WeftUpstream, WeftDiscovery,
/// WeftRouting -> WeftTransport, WeftObservability, WeftConfig -> WeftCore;
/// WeftIPTables -> WeftCore; C only behind WeftHTTP2, WeftTLS and WeftNetfilter.
/// The modules on the per-request path skip the runtime's exclusivity
/// checks in release builds: under callgrind, `swift_beginAccess`, its
/// thread-local access set and `swift_endAccess` were about 16% of the
/// instructions of each node per proxied request (docs/benchmarks/history.md).
/// Debug builds keep the checks, and every unit and end-to-end test runs a
/// debug build, so an overlapping access is still caught there.
/// `scripts/build-release` turns them off in the dependencies too.
let requestPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "weft",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "weft", targets: ["weft"]),
        // Libraries for the micro-benchmarks in Benchmarks/ (a package of
        // its own, so the node's build never pulls the benchmark tooling).
        .library(name: "WeftProxy", targets: ["WeftProxy"]),
        .library(name: "WeftMesh", targets: ["WeftMesh"]),
        .library(name: "WeftHTTP2", targets: ["WeftHTTP2"]),
        .library(name: "WeftConfig", targets: ["WeftConfig"]),
        .library(name: "WeftCore", targets: ["WeftCore"]),
        .library(name: "WeftDNS", targets: ["WeftDNS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        // C libraries, each behind exactly one Swift module.
        .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2",
                       providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CNetfilter", pkgConfig: "libnetfilter_conntrack",
                       providers: [.apt(["libnetfilter-conntrack-dev", "libmnl-dev"])]),

        // Value types every layer shares: IP addresses, socket endpoints, CIDRs.
        .target(name: "WeftCore", swiftSettings: requestPath),

        .target(name: "WeftNetfilter", dependencies: [
            "CNetfilter", "WeftCore",
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .target(name: "WeftHTTP2", dependencies: [
            "CNghttp2",
            .product(name: "NIOCore", package: "swift-nio"),
        ], swiftSettings: requestPath),
        // TLS 1.3 on OpenSSL for the mesh hop, SPIFFE identities, `weft certs`.
        .target(name: "WeftTLS", dependencies: [
            "COpenSSL", "WeftCore",
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
        ], swiftSettings: requestPath),
        .target(name: "WeftIPTables", dependencies: ["WeftCore"]),
        // DNS capture: the little of the wire format weft answers with.
        .target(name: "WeftDNS"),
        // `weft inject`: manifests in, manifests with weft out.
        .target(name: "WeftInject", dependencies: [.product(name: "Yams", package: "Yams")]),
        .target(name: "WeftConfig", dependencies: [
            "WeftCore",
            .product(name: "Yams", package: "Yams"),
        ]),
        .target(name: "WeftRouting", dependencies: ["WeftConfig", "WeftCore"], swiftSettings: requestPath),
        // Per-cluster upstream state: balancing plans, per-loop balancers, leases.
        .target(name: "WeftUpstream", dependencies: [
            "WeftConfig", "WeftCore",
            .product(name: "Atomics", package: "swift-atomics"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: requestPath),
        // The one door for upstream connections (plain TCP now; TLS later).
        .target(name: "WeftTransport", dependencies: [
            "WeftCore", "WeftNetfilter", "WeftTLS",
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ], swiftSettings: requestPath),
        // Counters and the "request finished" record every request ends in.
        .target(name: "WeftObservability", dependencies: [
            "WeftCore", "WeftTLS",
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Atomics", package: "swift-atomics"),
        ], swiftSettings: requestPath),
        // The mesh protocol: HTTP/1.1 <-> HTTP/2 translation, the HTTP/2
        // connection between nodes with its upkeep, per-loop connection pools.
        .target(name: "WeftMesh", dependencies: [
            "WeftCore", "WeftHTTP2", "WeftObservability", "WeftTransport", "WeftTLS",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: requestPath),
        // Endpoint sources that change while the node runs: file, dns,
        // kubernetes (EndpointSlices over the API server).
        .target(name: "WeftDiscovery", dependencies: [
            "WeftConfig", "WeftCore", "WeftTLS",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .target(name: "WeftAdmin", dependencies: [
            "WeftObservability", "WeftTransport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "WeftProxy", dependencies: [
            "WeftConfig", "WeftCore", "WeftHTTP2", "WeftNetfilter", "WeftRouting",
            "WeftUpstream", "WeftDiscovery", "WeftTransport", "WeftObservability", "WeftMesh", "WeftDNS",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Atomics", package: "swift-atomics"),
        ], swiftSettings: requestPath),
        .executableTarget(name: "weft", dependencies: [
            "WeftAdmin", "WeftConfig", "WeftCore", "WeftDiscovery", "WeftHTTP2", "WeftIPTables", "WeftInject", "WeftNetfilter",
            "WeftObservability", "WeftProxy", "WeftTLS",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),

        .testTarget(name: "WeftCoreTests", dependencies: ["WeftCore"]),
        .testTarget(name: "WeftObservabilityTests", dependencies: [
            "WeftObservability", "WeftCore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "WeftHTTP2Tests", dependencies: [
            "WeftHTTP2",
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "WeftDNSTests", dependencies: ["WeftDNS"]),
        .testTarget(name: "WeftInjectTests", dependencies: ["WeftInject"], resources: [.copy("Golden")]),
        .testTarget(name: "WeftTLSTests", dependencies: [
            "WeftTLS",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        .testTarget(name: "WeftNetfilterTests", dependencies: [
            "WeftNetfilter", "WeftHTTP2", "WeftTLS",
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "WeftIPTablesTests", dependencies: ["WeftIPTables"],
                    resources: [.copy("Golden")]),
        .testTarget(name: "WeftConfigTests", dependencies: ["WeftConfig"]),
        .testTarget(name: "WeftRoutingTests", dependencies: ["WeftRouting", "WeftConfig"]),
        .testTarget(name: "WeftUpstreamTests", dependencies: ["WeftUpstream", "WeftConfig", "WeftCore"]),
        .testTarget(name: "WeftAdminTests", dependencies: [
            "WeftAdmin", "WeftObservability",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // Test support: an in-memory pair of mesh connections.
        .target(name: "WeftMeshTesting", dependencies: [
            "WeftMesh", "WeftObservability", "WeftHTTP2",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/WeftMeshTesting"),
        .testTarget(name: "WeftMeshTests", dependencies: [
            "WeftMesh", "WeftMeshTesting", "WeftObservability", "WeftHTTP2", "WeftCore", "WeftTransport",
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "WeftDiscoveryTests", dependencies: [
            "WeftDiscovery", "WeftConfig", "WeftCore", .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "WeftProxyTests", dependencies: [
            "WeftProxy", "WeftObservability", "WeftMesh", "WeftMeshTesting", "WeftConfig", "WeftRouting", "WeftUpstream", "WeftDiscovery", "WeftTransport", "WeftNetfilter", "WeftHTTP2",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
    ]
)
