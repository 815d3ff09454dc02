import Benchmark
import NIOHTTP1
import WeftCore
import WeftHTTP2
import WeftMesh
import WeftProxy

/// Typical heads: what curl (and, minus two headers, wrk) sends, and what
/// nginx answers for a 1 KiB static file.
enum TypicalHeads {
    static let vip = IPEndpoint(address: .v4(0xc613_000a), port: 9090)  // 198.19.0.10:9090

    static let request = HTTPRequestHead(
        version: .http1_1, method: .GET, uri: "/index.html",
        headers: [
            "Host": "backend:9090",
            "User-Agent": "curl/8.5.0",
            "Accept": "*/*",
        ])

    static let bodySize = 1024

    static let response = HTTPResponseHead(
        version: .http1_1, status: .ok,
        headers: [
            "Server": "nginx/1.24.0",
            "Date": "Tue, 14 Jan 2025 10:00:00 GMT",
            "Content-Type": "text/html",
            "Content-Length": "\(bodySize)",
            "Last-Modified": "Mon, 13 Jan 2025 09:00:00 GMT",
            "Connection": "keep-alive",
            "ETag": "\"6784d5d0-400\"",
            "Accept-Ranges": "bytes",
        ])
}

/// One request's full round of `MeshTranslation`: the sending node's
/// upgrade, the receiving node's downgrade, the receiving node's response
/// upgrade and the sending node's response downgrade.
struct TranslationBenchmark {
    func run(_ benchmark: Benchmark) throws {
        let head = TypicalHeads.request
        let response = TypicalHeads.response
        let destination = TypicalHeads.vip
        for _ in benchmark.scaledIterations {
            let requestFields = try MeshTranslation.upgradeRequest(head, destination: destination)
            let downgraded = try MeshTranslation.downgradeRequest(requestFields)
            let responseFields = MeshTranslation.upgradeResponse(response)
            let appResponse = try MeshTranslation.downgradeResponse(responseFields, version: downgraded.head.version)
            blackHole(downgraded)
            blackHole(appResponse)
        }
    }
}
