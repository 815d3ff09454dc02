/// `clusters[].health_check` and `clusters[].outlier_detection` (SPEC §5).
extension ConfigValidator {
    mutating func healthCheck(_ value: ConfigValue?) -> HealthCheck? {
        guard let fields = mapping(value, keys: ["protocol", "path", "interval", "timeout", "healthy", "unhealthy"])
        else { return nil }
        guard let kindValue = required(fields, "protocol"), let kind = choice(kindValue, as: HealthCheck.Kind.self)
        else { return nil }
        var check = HealthCheck(kind: kind)
        if let pathValue = fields["path"], let path = string(pathValue) {
            if kind != .http {
                report(pathValue, "path applies only to protocol: http")
            } else if !path.hasPrefix("/") || path.contains(where: { $0 == " " || $0.isNewline }) {
                report(pathValue, "\(quoted(path)) is not a valid request path (it starts with \"/\", without spaces)")
            } else {
                check.path = path
            }
        }
        check.interval = duration(fields["interval"]) ?? check.interval
        check.timeout = duration(fields["timeout"]) ?? check.timeout
        if check.timeout > check.interval, let given = fields["timeout"] ?? fields["interval"] {
            report(given, "timeout (\(check.timeout)) must not be longer than interval (\(check.interval))")
        }
        check.healthy = integer(fields["healthy"], in: 1...100) ?? check.healthy
        check.unhealthy = integer(fields["unhealthy"], in: 1...100) ?? check.unhealthy
        return check
    }

    mutating func outlierDetection(_ value: ConfigValue?) -> OutlierDetection? {
        guard let fields = mapping(value, keys: ["consecutive_5xx", "consecutive_gateway_errors", "interval",
                                                 "base_ejection", "max_ejection", "max_ejection_percent"])
        else { return nil }
        var detection = OutlierDetection()
        detection.consecutive5xx = integer(fields["consecutive_5xx"], in: 0...10_000) ?? detection.consecutive5xx
        detection.consecutiveGatewayErrors = integer(fields["consecutive_gateway_errors"], in: 0...10_000)
            ?? detection.consecutiveGatewayErrors
        detection.interval = duration(fields["interval"]) ?? detection.interval
        detection.baseEjection = duration(fields["base_ejection"]) ?? detection.baseEjection
        detection.maxEjection = duration(fields["max_ejection"]) ?? detection.maxEjection
        if detection.maxEjection < detection.baseEjection, let given = fields["max_ejection"] ?? fields["base_ejection"] {
            report(given, "max_ejection (\(detection.maxEjection)) must not be shorter than base_ejection (\(detection.baseEjection))")
        }
        detection.maxEjectionPercent = integer(fields["max_ejection_percent"], in: 0...100) ?? detection.maxEjectionPercent
        if detection.consecutive5xx == 0, detection.consecutiveGatewayErrors == 0, let value {
            report(value, "consecutive_5xx and consecutive_gateway_errors are both 0: nothing would ever be ejected")
        }
        return detection
    }

    mutating func retryPolicy(_ value: ConfigValue?) -> RetryPolicy? {
        guard let fields = mapping(value, keys: ["attempts", "on", "per_try_timeout", "budget_percent"]) else { return nil }
        var policy = RetryPolicy()
        policy.attempts = integer(fields["attempts"], in: 0...10) ?? policy.attempts
        if let on = fields["on"], let items = list(on) {
            var conditions: Set<RetryPolicy.Condition> = []
            for item in items {
                guard let text = item.node.scalarText, !item.node.isNull else {
                    report(item, "expected a retry condition, got \(item.node.shown)")
                    continue
                }
                switch text {
                case "connect-failure": conditions.insert(.connectFailure)
                case "reset": conditions.insert(.reset)
                case "refused-stream": conditions.insert(.refusedStream)
                case "5xx": conditions.insert(.serverError)
                case "gateway-error": conditions.insert(.gatewayError)
                default:
                    if let code = Int(text), (400...599).contains(code) {
                        conditions.insert(.status(code))
                    } else {
                        report(item, "\(quoted(text)) is not a retry condition (connect-failure, reset, refused-stream, "
                            + "5xx, gateway-error, or a status 400-599 such as \"503\")")
                    }
                }
            }
            if conditions.isEmpty, items.isEmpty { report(on, "on needs at least one condition") }
            policy.conditions = conditions
        }
        policy.perTryTimeout = duration(fields["per_try_timeout"])
        policy.budgetPercent = integer(fields["budget_percent"], in: 0...100) ?? policy.budgetPercent
        return policy
    }

    mutating func circuitBreakers(_ value: ConfigValue?) -> CircuitBreakers? {
        guard let fields = mapping(value, keys: ["max_connections", "max_pending", "max_requests", "max_retries"])
        else { return nil }
        var breakers = CircuitBreakers()
        breakers.maxConnections = integer(fields["max_connections"], in: 1...1_000_000) ?? breakers.maxConnections
        breakers.maxPending = integer(fields["max_pending"], in: 0...1_000_000) ?? breakers.maxPending
        breakers.maxRequests = integer(fields["max_requests"], in: 1...1_000_000) ?? breakers.maxRequests
        breakers.maxRetries = integer(fields["max_retries"], in: 0...1_000_000) ?? breakers.maxRetries
        return breakers
    }

    mutating func rateLimit(_ value: ConfigValue?) -> RateLimit? {
        guard let fields = mapping(value, keys: ["per_second", "burst"]) else { return nil }
        guard let rateValue = required(fields, "per_second"), let perSecond = integer(rateValue, in: 1...10_000_000)
        else { return nil }
        // Envoy's and most buckets' default: a second's worth.
        let burst = integer(fields["burst"], in: 1...10_000_000) ?? perSecond
        return RateLimit(perSecond: perSecond, burst: burst)
    }
}
