import Logging
import NIOCore
import WeftMesh
import WeftMeshTesting
import XCTest
import WeftHTTP2
@testable import WeftProxy

/// HTTP/2 app streams spliced to mesh streams: the pair of halves must be
/// freed once the exchange is over, or every gRPC call leaks both.
final class SplicedStreamTests: XCTestCase {
    typealias Pair = MeshPair

    /// Remembers every half made, weakly.
    final class Halves {
        var made: [Weak] = []
        struct Weak { weak var half: SplicedStream? }
        var alive: Int { made.filter { $0.half != nil }.count }
    }

    /// An app pair (an h2c client talking to weft's app-facing server
    /// connection, which splices each stream) and an upstream pair (weft's
    /// client connection to a server that answers).
    private func splice(_ halves: Halves) throws -> (app: Pair, upstream: Pair) {
        var logger = Logger(label: "test.splice")
        logger.logLevel = .critical
        let upstream = try Pair()
        upstream.accepted.answer = MeshExchange.answerWithBodyAndTrailers
        let app = try Pair(accept: { connection, streamID, _ in
            let half = SplicedStream(connection: connection, streamID: streamID, opener: { request, endStream, _, done in
                let other = SplicedStream(connection: upstream.client, streamID: nil, opener: nil,
                                          rewriteResponse: { $0 }, logger: logger)
                halves.made.append(.init(half: other))
                do {
                    other.opened(streamID: try upstream.client.openStream(headers: request, endStream: endStream,
                                                                          handler: other))
                    done(other, nil)
                } catch {
                    done(nil, .meshOverloaded)
                }
            }, rewriteResponse: { $0 }, logger: logger)
            halves.made.append(.init(half: half))
            return half
        })
        return (app, upstream)
    }

    private func pumpBoth(_ app: Pair, _ upstream: Pair) throws {
        for _ in 0..<20 {
            try app.pump()
            try upstream.pump()
        }
    }

    func testFinishedExchangesFreeBothHalves() throws {
        let halves = Halves()
        let (app, upstream) = try splice(halves)
        try pumpBoth(app, upstream)
        var streams: [RecordingStream] = []
        for index in 0..<5 {
            let stream = try app.open(MeshExchange.request("/\(index)"), endStream: false)
            try app.client.sendData(streamID: XCTUnwrap(stream.streamID), ByteBuffer(string: "body \(index)"))
            try app.client.sendEnd(streamID: XCTUnwrap(stream.streamID))
            streams.append(stream)
        }
        try pumpBoth(app, upstream)
        for (index, stream) in streams.enumerated() {
            XCTAssertEqual(stream.bodyString, "answer to /\(index)")
            XCTAssertEqual(stream.closedWith, [.noError])
            XCTAssertEqual(stream.headers.last?.fields.first?.value, "0", "trailers crossed the splice")
        }
        XCTAssertEqual(upstream.accepted.streams.map(\.bodyString), (0..<5).map { "body \($0)" })
        XCTAssertEqual(halves.made.count, 10)
        XCTAssertEqual(halves.alive, 0, "spliced halves outlived their exchange (a retain cycle)")
        app.finish()
        upstream.finish()
    }

    func testResetExchangesFreeBothHalves() throws {
        let halves = Halves()
        let (app, upstream) = try splice(halves)
        try pumpBoth(app, upstream)
        // The upstream never answers; the app gives up on each stream.
        upstream.accepted.answer = nil
        for index in 0..<3 {
            let stream = try app.open(MeshExchange.request("/\(index)"), endStream: true)
            try pumpBoth(app, upstream)
            app.client.reset(streamID: try XCTUnwrap(stream.streamID), errorCode: .cancel)
        }
        try pumpBoth(app, upstream)
        XCTAssertEqual(upstream.accepted.streams.map(\.closedWith), [[.cancel], [.cancel], [.cancel]],
                       "the app's reset crossed to the upstream stream")
        XCTAssertEqual(halves.made.count, 6)
        XCTAssertEqual(halves.alive, 0, "reset halves outlived their exchange")
        app.finish()
        upstream.finish()
    }
}
