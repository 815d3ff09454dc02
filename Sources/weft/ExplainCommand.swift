import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import WeftCore
import WeftObservability

/// `weft explain`: asks the running node's admin API how it would handle a
/// connection to a destination (and a request on it) now, and prints the
/// answer for a person (SPEC §6).
struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Ask the running node how it would handle a connection (and request) to IP:PORT now.",
        discussion: """
            Reads GET /explain on the node's admin API (127.0.0.1:15000 by default): \
            the listener, the cluster and why it matched, the route rule (and the rules \
            that did not match), each endpoint and why it gets no traffic if it does not \
            (failing health check, ejected, locality), and the policies that apply. \
            Run it where the node runs (the pod or host): the admin API is loopback only.
            """
    )

    @Argument(help: ArgumentHelp("Where the app connects.", valueName: "ip:port"))
    var destination: String

    @Option(name: .long, help: "The request's Host (an HTTP request).")
    var host: String?

    @Option(name: .long, help: "The request's path (an HTTP request).")
    var path: String?

    @Option(name: .long, help: ArgumentHelp("The node's admin API.", valueName: "ip:port"))
    var admin = "127.0.0.1:15000"

    @Flag(name: .long, help: "Print the node's JSON as it is.")
    var json = false

    func validate() throws {
        guard IPEndpoint(destination) != nil else {
            throw ValidationError("\(destination) is not IP:PORT (for example 198.19.0.1:80 or [2001:2::1]:80)")
        }
        guard IPEndpoint(admin) != nil else { throw ValidationError("--admin \(admin) is not IP:PORT") }
    }

    func run() throws {
        var query = "dst=\(Self.escape(destination))"
        if let host { query += "&host=\(Self.escape(host))" }
        if let path { query += "&path=\(Self.escape(path))" }
        let (status, body): (Int, String)
        do {
            (status, body) = try AdminClient.get("/explain?\(query)", from: admin)
        } catch {
            printError("weft explain: cannot reach the admin API at \(admin): \(error)")
            throw ExitCode(1)
        }
        guard status == 200 else {
            printError("weft explain: the admin API answered \(status): \(body)")
            throw ExitCode(1)
        }
        if json {
            print(body, terminator: body.hasSuffix("\n") ? "" : "\n")
            return
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        guard let explanation = try? decoder.decode(Explanation.self, from: Data(body.utf8)) else {
            printError("weft explain: the admin API's answer is not an explanation: \(body.prefix(200))")
            throw ExitCode(1)
        }
        print(Self.render(explanation), terminator: "")
    }

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+")))
            ?? text
    }

    /// The answer for a person: aligned sections, the summary first.
    static func render(_ answer: Explanation) -> String {
        var out = ""
        func line(_ label: String, _ text: String) {
            out += label.padding(toLength: 14, withPad: " ", startingAt: 0) + text + "\n"
        }
        var asked = answer.destination
        if let host = answer.host { asked += "  host \(host)" }
        if let path = answer.path { asked += "  path \(path)" }
        line("destination", asked)
        line("config", "version \(answer.configVersion)")
        line("listener", answer.listener)
        switch answer.verdict {
        case "refused": line("verdict", "refused (\(answer.refusal ?? "no_route"))")
        case "passthrough": line("verdict", "passthrough: no cluster")
        default:
            if let cluster = answer.cluster {
                line("verdict", "cluster \(cluster.name), matched by \(cluster.matchedBy)")
            }
        }
        if let rule = answer.rule {
            let split = answer.routeClusters.map { "\($0.name) (weight \($0.weight))" }.joined(separator: ", ")
            line("route", "rule \(rule): \(split)" + (answer.routeTimeout.map { ", timeout \($0)" } ?? ""))
        }
        for miss in answer.rulesNotMatched { line("not matched", "rule \(miss.rule): \(miss.why)") }
        if !answer.endpoints.isEmpty {
            out += "endpoints\n"
            let width = answer.endpoints.map(\.address.count).max() ?? 0
            for endpoint in answer.endpoints {
                var text = "  " + (endpoint.getsTraffic ? "serving  " : "no       ")
                text += endpoint.address.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                if let locality = endpoint.locality { text += locality + "  " }
                if let share = endpoint.tierShare { text += "tier share \(Int((share * 100).rounded()))%  " }
                if let why = endpoint.why { text += why }
                while text.hasSuffix(" ") { text.removeLast() }
                out += text + "\n"
            }
        }
        if !answer.policies.isEmpty {
            out += "policies\n"
            for policy in answer.policies {
                out += "  " + policy.name.padding(toLength: 18, withPad: " ", startingAt: 0) + policy.value + "\n"
            }
        }
        out += "summary\n"
        for sentence in answer.summary { out += "  \(sentence)\n" }
        return out
    }
}

/// One GET to the admin API over HTTP/1.1, for the CLI.
enum AdminClient {
    static func get(_ target: String, from address: String, timeout: TimeAmount = .seconds(10)) throws -> (Int, String) {
        guard let endpoint = IPEndpoint(address) else { throw ValidationError("\(address) is not IP:PORT") }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let promise = group.next().makePromise(of: (Int, String).self)
        let channel: Channel
        do {
            channel = try ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                    }
                }
                .connect(host: "\(endpoint.address)", port: Int(endpoint.port)).wait()
        } catch {
            promise.fail(error)  // nobody will: an uncompleted promise is a crash
            throw error
        }
        var headers = HTTPHeaders()
        headers.add(name: "host", value: address)
        headers.add(name: "connection", value: "close")
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: target,
                                                                 headers: headers)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timer = channel.eventLoop.scheduleTask(in: timeout) { promise.fail(ChannelError.connectTimeout(timeout)) }
        defer { timer.cancel() }
        let answer = try promise.futureResult.wait()
        channel.close(promise: nil)
        return answer
    }

    private final class ResponseCollector: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        private let promise: EventLoopPromise<(Int, String)>
        private var status = 0
        private var body = ""

        init(promise: EventLoopPromise<(Int, String)>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): status = Int(head.status.code)
            case .body(let buffer): body += String(buffer: buffer)
            case .end: promise.succeed((status, body))
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.inputClosed)
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
    }
}
