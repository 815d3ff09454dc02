import Yams

/// The containers and volume `weft inject` adds, written as the manifests
/// in k8s/ write them.
enum Templates {
    static func initContainer(args: [String], image: String) throws -> Node {
        try node("""
            name: weft-init
            image: \(quoted(image))
            imagePullPolicy: IfNotPresent
            args: [\(args.map(quoted).joined(separator: ", "))]
            securityContext:
              runAsUser: 0
              runAsNonRoot: false
              allowPrivilegeEscalation: false
              readOnlyRootFilesystem: true
              capabilities:
                add: [NET_ADMIN, NET_RAW]
                drop: [ALL]
            resources:
              requests: {cpu: 10m, memory: 16Mi}
              limits: {cpu: 100m, memory: 64Mi}
            """)
    }

    /// The sidecar: native (an init container that keeps running, started
    /// once ready) or classic (a container whose postStart waits for ready).
    static func proxy(image: String, native: Bool) throws -> Node {
        let startup = native
            ? """
            restartPolicy: Always
            startupProbe:
              httpGet: {path: /ready, port: 15020}
              periodSeconds: 1
              failureThreshold: 60
            """
            : """
            lifecycle:
              postStart:
                exec:
                  command: [weft, wait, --timeout, 60s]
            """
        return try node("""
            name: weft-proxy
            image: \(quoted(image))
            imagePullPolicy: IfNotPresent
            \(startup.split(separator: "\n").joined(separator: "\n"))
            args: [proxy, --config, /etc/weft/weft.yaml]
            ports:
            - {name: weft-health, containerPort: 15020, protocol: TCP}
            securityContext:
              runAsUser: 1337
              runAsGroup: 1337
              runAsNonRoot: true
              allowPrivilegeEscalation: false
              readOnlyRootFilesystem: true
              capabilities:
                drop: [ALL]
            readinessProbe:
              httpGet: {path: /ready, port: 15020}
              periodSeconds: 2
            livenessProbe:
              httpGet: {path: /healthz, port: 15020}
              periodSeconds: 10
            resources:
              requests: {cpu: 50m, memory: 32Mi}
              limits: {cpu: "1", memory: 256Mi}
            volumeMounts:
            - {name: weft-config, mountPath: /etc/weft, readOnly: true}
            """)
    }

    static func volume(configMap: String) throws -> Node {
        try node("""
            name: weft-config
            configMap:
              name: \(quoted(configMap))
            """)
    }

    /// A YAML double-quoted scalar (JSON's escaping is valid YAML).
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if scalar.value < 0x20 { out += "\\u" + String(scalar.value, radix: 16).leftPadded(4) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }

    private static func node(_ yaml: String) throws -> Node {
        guard let node = try Yams.compose(yaml: yaml) else { throw Injector.InjectError.malformed("empty template") }
        return node
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
