import Foundation
import WeftCore

/// The configuration in force as JSON, every setting with its value,
/// defaults included: the admin API's `/config_dump` (SPEC §6). Keys are
/// the settings' names in snake_case (as in the YAML file, where the file
/// has the setting); durations read as in the file (`250ms`, `15s`).
public enum ConfigDump {
    public static func json(_ configuration: Configuration, version: Int) -> String {
        let object: [String: Any] = ["version": version, "config": value(of: configuration)]
        guard let data = try? JSONSerialization.data(withJSONObject: object,
                                                     options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]),
              let text = String(data: data, encoding: .utf8) else { return "{}\n" }
        return text + "\n"
    }

    /// A value JSONSerialization takes, made by reflection, so that a new
    /// setting shows up without a line here.
    static func value(of any: Any) -> Any {
        switch any {
        case let text as String: return text
        case let flag as Bool: return flag
        case let number as Int: return number
        case let number as UInt16: return Int(number)
        case let number as Double: return number
        case let duration as Duration: return format(duration)
        case is IPEndpoint, is IPAddress, is CIDR, is SPIFFEID, is KubernetesServerURL: return String(describing: any)
        case let raw as any RawRepresentable:
            if let text = raw.rawValue as? String { return text }
        default: break
        }
        let mirror = Mirror(reflecting: any)
        switch mirror.displayStyle {
        case .optional:
            return mirror.children.first.map { value(of: $0.value) } ?? NSNull()
        case .collection:
            return mirror.children.map { value(of: $0.value) }
        case .set:
            let items = mirror.children.map { value(of: $0.value) }
            let texts = items.compactMap { $0 as? String }
            return texts.count == items.count ? texts.sorted() : items
        case .dictionary:
            var object: [String: Any] = [:]
            for child in mirror.children {
                let pair = Mirror(reflecting: child.value).children.map(\.value)
                if pair.count == 2 { object[String(describing: pair[0])] = value(of: pair[1]) }
            }
            return object
        case .enum:
            guard let payload = mirror.children.first else { return String(describing: any) }
            return [snakeCase(payload.label ?? "value"): value(of: payload.value)]
        case .struct, .class:
            var object: [String: Any] = [:]
            for child in mirror.children {
                guard let label = child.label, !label.hasPrefix("_") else { continue }
                object[snakeCase(label)] = value(of: child.value)
            }
            return object
        default:
            return String(describing: any)
        }
    }

    /// `maxPending` → `max_pending`; a run of capitals is one word:
    /// `proxyUID` → `proxy_uid`, `kubernetesAPIServer` → `kubernetes_api_server`.
    static func snakeCase(_ name: String) -> String {
        let characters = Array(name)
        var out = ""
        for (index, character) in characters.enumerated() {
            if character.isUppercase, index > 0 {
                let previous = characters[index - 1]
                let next = index + 1 < characters.count ? characters[index + 1] : nil
                // A word starts after a lowercase letter or digit, or at the
                // last capital of a run that a lowercase letter follows.
                if !previous.isUppercase || next?.isLowercase == true { out.append("_") }
            }
            out.append(contentsOf: character.lowercased())
        }
        return out
    }

    /// As the file writes durations: `250ms`, `15s`, `5m`, `1h`.
    public static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        guard milliseconds % 1000 == 0, seconds > 0 else { return "\(milliseconds)ms" }
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }
}
