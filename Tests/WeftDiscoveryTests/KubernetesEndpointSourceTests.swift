import Dispatch
import NIOCore
import NIOPosix
import Synchronization
import WeftConfig
import XCTest

@testable import WeftDiscovery

/// The NIO adapter of `discovery: kubernetes` lets go of everything when
/// stopped: the source, its connection and the handler that points back at
/// it (a cycle while a request is open) are all released.
final class KubernetesEndpointSourceTests: XCTestCase {
    private let service = KubernetesServiceRef(service: "backend", namespace: "shop", port: "http")

    /// Waits (bounded) until `condition` holds.
    private func eventually(_ what: String, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(5)
        while !condition() && Date() < deadline { usleep(10_000) }
        XCTAssertTrue(condition(), what)
    }

    func testAStoppedSourceWithARequestInFlightIsReleased() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        // An API server that accepts and never answers: the list stays open.
        let accepted = Mutex(0)
        let server = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                accepted.withLock { $0 += 1 }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        let port = try XCTUnwrap(server.localAddress?.port)

        weak var released: KubernetesEndpointSource?
        do {
            let source = KubernetesEndpointSource(
                service: service, api: KubernetesAPISettings(server: KubernetesServerURL(tls: false, host: "127.0.0.1", port: UInt16(port))),
                eventLoop: group.next(), environment: [:], watchSeconds: 300)
            released = source
            source.start { _ in }
            eventually("the source connected") { accepted.withLock { $0 } == 1 }
            source.stop()
        }
        eventually("the stopped source, its connection and handler are released") { released == nil }
    }

    func testAStoppedSourceWaitingToRetryIsReleased() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        // Nothing listens there: the connect fails and a retry is scheduled.
        let problems = Mutex<[String]>([])
        weak var released: KubernetesEndpointSource?
        do {
            let source = KubernetesEndpointSource(
                service: service, api: KubernetesAPISettings(server: KubernetesServerURL(tls: false, host: "127.0.0.1", port: 1)),
                eventLoop: group.next(), environment: [:], watchSeconds: 300,
                onProblem: { problem in problems.withLock { $0.append(problem) } })
            released = source
            source.start { _ in }
            eventually("the failed connect was told") { !problems.withLock { $0 }.isEmpty }
            source.stop()
        }
        XCTAssertTrue(problems.withLock { $0 }.first?.contains("cannot connect to http://127.0.0.1:1") == true,
                      "\(problems.withLock { $0 })")
        eventually("the stopped source and its retry timer are released") { released == nil }
    }
}
