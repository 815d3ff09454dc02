import Yams

/// `weft inject` (SPEC §7): adds weft to workload manifests. Pure: YAML text
/// in, YAML text out, with what it did to each document.
///
/// For each Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and
/// CronJob, the pod template gets
/// - the `weft-init` init container (NET_ADMIN, NET_RAW), first;
/// - the `weft-proxy` sidecar: a native sidecar by default (an init
///   container with `restartPolicy: Always` and a startup probe on
///   `/ready`, right after `weft-init`), or with `classic`, the first
///   container, held ready by a `postStart` `weft wait`;
/// - the `weft-config` volume (the node config's ConfigMap) at /etc/weft.
///
/// Annotations on the pod template (or the workload):
/// `weft.io/inject: "false"` leaves it alone;
/// `weft.io/exclude-inbound-ports`, `weft.io/exclude-outbound-ports` and
/// `weft.io/exclude-outbound-cidrs` (comma lists) go to `weft init`.
/// The ports of the app containers' HTTP, TCP and gRPC probes are kept out
/// of the inbound redirect (the kubelet reaches the app directly, also
/// under `inbound.plaintext: deny`) unless
/// `weft.io/exclude-probe-ports: "false"`.
///
/// A template that already has `weft-init` or `weft-proxy` is left as it
/// is, so injecting twice changes nothing. Other documents pass through.
public enum Injector {
    public struct Options: Sendable {
        public var image = "weft:0.1.0"
        public var configMap = "weft"
        /// The classic two-container form (clusters before Kubernetes 1.29).
        public var classic = false
        public init() {}
    }

    /// What happened to one document.
    public struct Outcome: Equatable, Sendable, CustomStringConvertible {
        public enum Action: String, Sendable { case injected, alreadyInjected = "already injected", optedOut = "weft.io/inject: false", notAWorkload = "not a workload" }
        public let kind: String
        public let name: String
        public let action: Action
        public var description: String { "\(kind)/\(name): \(action.rawValue)" }
    }

    public enum InjectError: Error, CustomStringConvertible {
        case yaml(String)
        case malformed(String)
        public var description: String {
            switch self {
            case .yaml(let text): "not YAML: \(text)"
            case .malformed(let text): text
            }
        }
    }

    /// Injects every document of `yaml`.
    public static func inject(_ yaml: String, options: Options = Options()) throws -> (yaml: String, outcomes: [Outcome]) {
        // The parser itself, not compose_all: its sequence ends quietly at
        // a syntax error, which would drop the rest of the input.
        var documents: [Node] = []
        do {
            let parser = try Parser(yaml: yaml)
            while let document = try parser.nextRoot() { documents.append(document) }
        } catch {
            throw InjectError.yaml("\(error)")
        }
        var out: [Node] = []
        var outcomes: [Outcome] = []
        for var document in documents {
            let outcome = try inject(&document, options: options)
            outcomes.append(outcome)
            out.append(document)
        }
        let text: String
        do {
            text = try Yams.serialize(nodes: out, explicitStart: documents.count > 1)
        } catch {
            throw InjectError.yaml("\(error)")
        }
        return (text, outcomes)
    }

    /// The keys from a workload to its pod template (the mapping that holds
    /// the pod's `metadata` and `spec`).
    static func templatePath(of kind: String) -> [String]? {
        switch kind {
        case "Pod": []
        case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job": ["spec", "template"]
        case "CronJob": ["spec", "jobTemplate", "spec", "template"]
        default: nil
        }
    }

    private static func inject(_ document: inout Node, options: Options) throws -> Outcome {
        let kind = document["kind"]?.string ?? "?"
        let name = document["metadata"]?["name"]?.string ?? "?"
        guard let path = templatePath(of: kind), document["apiVersion"] != nil else {
            return Outcome(kind: kind, name: name, action: .notAWorkload)
        }
        guard var template = node(document, at: path), template.mapping != nil,
              var spec = template["spec"], spec.mapping != nil else {
            throw InjectError.malformed("\(kind)/\(name): no pod template at \(path.joined(separator: "."))")
        }
        let annotations = Annotations(template: template, workload: document)
        if annotations["weft.io/inject"]?.lowercased() == "false" {
            return Outcome(kind: kind, name: name, action: .optedOut)
        }
        let initContainers = spec["initContainers"]?.sequence.map(Array.init) ?? []
        let containers = spec["containers"]?.sequence.map(Array.init) ?? []
        let ours: Set<String> = ["weft-init", "weft-proxy"]
        if (initContainers + containers).contains(where: { ours.contains($0["name"]?.string ?? "") }) {
            return Outcome(kind: kind, name: name, action: .alreadyInjected)
        }

        var inbound = annotations.list("weft.io/exclude-inbound-ports")
        if annotations["weft.io/exclude-probe-ports"]?.lowercased() != "false" {
            for port in probePorts(containers) where !inbound.contains(port) { inbound.append(port) }
        }
        var args = ["init"]
        if !inbound.isEmpty { args += ["--exclude-inbound-ports", inbound.joined(separator: ",")] }
        let outboundPorts = annotations.list("weft.io/exclude-outbound-ports")
        if !outboundPorts.isEmpty { args += ["--exclude-outbound-ports", outboundPorts.joined(separator: ",")] }
        let cidrs = annotations.list("weft.io/exclude-outbound-cidrs")
        if !cidrs.isEmpty { args += ["--exclude-outbound-cidrs", cidrs.joined(separator: ",")] }

        let initNode = try Templates.initContainer(args: args, image: options.image)
        let proxyNode = try Templates.proxy(image: options.image, native: !options.classic)
        if options.classic {
            spec["initContainers"] = Node.sequence(Node.Sequence([initNode] + initContainers))
            spec["containers"] = Node.sequence(Node.Sequence([proxyNode] + containers))
        } else {
            spec["initContainers"] = Node.sequence(Node.Sequence([initNode, proxyNode] + initContainers))
        }
        var volumes = spec["volumes"]?.sequence.map(Array.init) ?? []
        volumes.append(try Templates.volume(configMap: options.configMap))
        spec["volumes"] = Node.sequence(Node.Sequence(volumes))
        template["spec"] = spec

        var metadata = template["metadata"] ?? Node.mapping([:])
        var templateAnnotations = metadata["annotations"] ?? Node.mapping([:])
        templateAnnotations["weft.io/status"] = Node(options.classic ? "injected-classic" : "injected")
        metadata["annotations"] = templateAnnotations
        template["metadata"] = metadata
        set(&document, at: path, to: template)
        return Outcome(kind: kind, name: name, action: .injected)
    }

    /// Ports (as text) of the HTTP, TCP and gRPC probes of `containers`,
    /// named ports resolved through each container's `ports`.
    static func probePorts(_ containers: [Node]) -> [String] {
        var found: [String] = []
        for container in containers {
            var named: [String: String] = [:]
            for port in container["ports"]?.sequence.map(Array.init) ?? [] {
                if let name = port["name"]?.string, let number = port["containerPort"]?.string { named[name] = number }
            }
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                guard let handler = container[probe] else { continue }
                for action in ["httpGet", "tcpSocket", "grpc"] {
                    guard let port = handler[action]?["port"]?.string else { continue }
                    let number = Int(port) != nil ? port : named[port]
                    if let number, !found.contains(number) { found.append(number) }
                }
            }
        }
        return found
    }

    private static func node(_ root: Node, at path: [String]) -> Node? {
        var current: Node? = root
        for key in path { current = current?[key] }
        return current
    }

    private static func set(_ root: inout Node, at path: [String], to value: Node) {
        guard let key = path.first else {
            root = value
            return
        }
        var child = root[key] ?? Node.mapping([:])
        set(&child, at: Array(path.dropFirst()), to: value)
        root[key] = child
    }

    /// The pod template's annotations, else the workload's.
    struct Annotations {
        let template: Node?
        let workload: Node?
        init(template: Node, workload: Node) {
            self.template = template["metadata"]?["annotations"]
            self.workload = workload["metadata"]?["annotations"]
        }
        subscript(key: String) -> String? { template?[key]?.string ?? workload?[key]?.string }
        func list(_ key: String) -> [String] {
            (self[key] ?? "").split(separator: ",").map { $0.trimmingCharacters() }.filter { !$0.isEmpty }
        }
    }
}

extension Substring {
    fileprivate func trimmingCharacters() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
