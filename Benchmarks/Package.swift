// swift-tools-version:6.1
import PackageDescription

/// weft's micro-benchmarks (issue 4), a package of its own so the node's
/// build never pulls the benchmark tooling. Run them with
/// `python3 scripts/microbench.py` from the repository root, or
/// `swift package --package-path Benchmarks --allow-writing-to-package-directory benchmark`.
let package = Package(
    name: "weft-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "weft", path: ".."),
        // Only the MallocInterposer trait: the default RuntimeInterposer
        // needs swift-runtime-interposer, which is not available here.
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "WeftMicro",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "WeftProxy", package: "weft"),
                .product(name: "WeftMesh", package: "weft"),
                .product(name: "WeftHTTP2", package: "weft"),
                .product(name: "WeftConfig", package: "weft"),
                .product(name: "WeftCore", package: "weft"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/WeftMicro",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
