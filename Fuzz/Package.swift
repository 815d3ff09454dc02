// swift-tools-version:6.1
import PackageDescription

/// weft's libFuzzer harnesses (issue 14), a package of their own so the
/// node's build never needs the sanitizers. Each target defines only
/// `LLVMFuzzerTestOneInput`; libFuzzer supplies `main`, so they link only
/// when built with `-sanitize=fuzzer`. Build and run them with `scripts/fuzz`.
let harness: [Target.Dependency] = [
    "FuzzSupport",
    .product(name: "WeftProxy", package: "weft"),
    .product(name: "WeftMesh", package: "weft"),
    .product(name: "WeftHTTP2", package: "weft"),
    .product(name: "WeftConfig", package: "weft"),
    .product(name: "WeftCore", package: "weft"),
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOEmbedded", package: "swift-nio"),
    .product(name: "NIOHTTP1", package: "swift-nio"),
]

let package = Package(
    name: "weft-fuzz",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "weft", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .target(name: "FuzzSupport", dependencies: [
            .product(name: "WeftHTTP2", package: "weft"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .executableTarget(name: "FuzzProtocolDetection", dependencies: harness),
        .executableTarget(name: "FuzzTranslation", dependencies: harness),
        .executableTarget(name: "FuzzConfig", dependencies: harness),
        .executableTarget(name: "FuzzHTTP2Frames", dependencies: harness),
        .executableTarget(name: "FuzzDNS", dependencies: [
            "FuzzSupport", .product(name: "WeftDNS", package: "weft"),
        ]),
    ]
)
