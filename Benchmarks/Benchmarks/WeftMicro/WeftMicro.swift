import Benchmark
import Foundation

/// weft's per-request code paths. One iteration is one request everywhere
/// (`scalingFactor` `.one`): every figure the plugin reports is per request.
///
/// Why not a larger scaling factor: the plugin reads its counters outside
/// the timed region, so a request per iteration costs no accuracy, and its
/// histograms keep three significant digits, which turns e.g. 34 000 mallocs
/// per 1 000 requests into 34.015 per request.
let benchmarks: @Sendable () -> Void = {
    Benchmark("translation",
              configuration: MicroConfiguration.make(maxIterations: 20_000, seconds: 3)) { benchmark in
        try TranslationBenchmark().run(benchmark)
    }

    let session = SessionBenchmark()
    Benchmark("nghttp2 session",
              configuration: MicroConfiguration.make(maxIterations: 20_000, seconds: 3)) { benchmark in
        session.run(benchmark)
    } setup: {
        try session.setUp()
    } teardown: {
        session.tearDown()
    }

    // The same client, through both nodes and straight to the app: the
    // difference is what weft adds.
    for (name, path) in [("proxied request (loopback)", LoopbackBenchmark.Path.proxied),
                         ("direct request (loopback)", .direct)] {
        let loopback = LoopbackBenchmark(path: path)
        Benchmark(name,
                  configuration: MicroConfiguration.make(maxIterations: 10_000, seconds: 4, warmup: 20)) { benchmark in
            loopback.run(benchmark)
        } setup: {
            try await loopback.setUp()
        } teardown: {
            try await loopback.tearDown()
        }
    }
}

enum MicroConfiguration {
    /// Allocations (count and bytes), wall clock and throughput; CPU
    /// instructions only where the kernel exposes a hardware PMU (VMs
    /// often do not, and then `perf` reports "not supported").
    static var metrics: [BenchmarkMetric] {
        var metrics: [BenchmarkMetric] = [.mallocCountTotal, .mallocBytesCount, .wallClock, .throughput]
        if hardwareCountersAvailable { metrics.append(.instructions) }
        return metrics
    }

    /// A `cpu` (or hybrid `cpu_core`) PMU under `/sys/bus/event_source/devices`.
    /// `WEFT_MICRO_INSTRUCTIONS=0` turns the metric off regardless.
    static var hardwareCountersAvailable: Bool {
        if ProcessInfo.processInfo.environment["WEFT_MICRO_INSTRUCTIONS"] == "0" { return false }
        let devices = "/sys/bus/event_source/devices"
        return ["cpu", "cpu_core"].contains { FileManager.default.fileExists(atPath: "\(devices)/\($0)") }
    }

    static func make(maxIterations: Int, seconds: Int64, warmup: Int = 10) -> Benchmark.Configuration {
        Benchmark.Configuration(metrics: metrics, warmupIterations: warmup, scalingFactor: .one,
                                maxDuration: .seconds(seconds), maxIterations: maxIterations)
    }
}
