import ChorusConnectorSDK
import ChorusJSON

/// The Graph API error object: `{"error": {"message", "type", "code", "error_subcode", "error_data", "fbtrace_id"}}`.
public struct GraphError: Sendable, Equatable, CustomStringConvertible {
    /// The error code (`130429`, `131047`, `100`, …).
    public var code: Int
    /// `error_subcode`, when given.
    public var subcode: Int?
    /// `type` (`OAuthException`, …).
    public var type: String?
    /// `message`.
    public var message: String
    /// `error_user_title`, or WhatsApp's `title` when present.
    public var title: String?
    /// `error_data` (WhatsApp puts `details` there), as given.
    public var data: JSONValue?
    /// `fbtrace_id`, for Meta support.
    public var traceId: String?

    public init(code: Int, subcode: Int? = nil, type: String? = nil, message: String, title: String? = nil,
                data: JSONValue? = nil, traceId: String? = nil) {
        self.code = code; self.subcode = subcode; self.type = type; self.message = message
        self.title = title; self.data = data; self.traceId = traceId
    }

    /// `error_data.details`, when present.
    public var details: String? { data?["details"]?.stringValue }

    /// Parses a response body holding a Graph error object; nil when it has none.
    public static func parse(_ body: [UInt8]) -> GraphError? {
        guard let doc = try? JSONParser.parse(body), let e = doc["error"], case .object = e else { return nil }
        return GraphError(
            code: Int(e["code"]?.intValue ?? 0),
            subcode: e["error_subcode"]?.intValue.map(Int.init),
            type: e["type"]?.stringValue,
            message: e["message"]?.stringValue ?? "",
            title: e["error_user_title"]?.stringValue ?? e["title"]?.stringValue,
            data: e["error_data"],
            traceId: e["fbtrace_id"]?.stringValue)
    }

    public var description: String {
        var s = "Graph error \(code)"
        if let subcode { s += "/\(subcode)" }
        if !message.isEmpty { s += ": \(message)" }
        if let details, !details.isEmpty { s += " (\(details))" }
        return s
    }
}

/// What to do about a failed Graph call.
public struct GraphFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Retry later (throttling, 5xx, transport errors) or give up.
    public enum Disposition: Sendable, Equatable {
        /// Retry after this delay (0: the caller's own backoff).
        case retryable(afterMs: UInt32)
        /// Sending again will not help.
        case permanent
    }

    public var disposition: Disposition
    /// The code to report: the Graph error code as a string, `http_<status>`, or `transport`.
    public var code: String
    /// A human-readable reason (never contains the access token).
    public var message: String
    /// The HTTP status (0 for a transport error).
    public var httpStatus: Int
    /// The parsed Graph error, when the body had one.
    public var graphError: GraphError?
    /// Whether this failure was throttling (rate limits) rather than an outage.
    public var isThrottling: Bool

    public init(disposition: Disposition, code: String, message: String, httpStatus: Int, graphError: GraphError? = nil, isThrottling: Bool = false) {
        self.disposition = disposition; self.code = code; self.message = message
        self.httpStatus = httpStatus; self.graphError = graphError; self.isThrottling = isThrottling
    }

    public var isRetryable: Bool { if case .retryable = disposition { return true }; return false }

    /// The send outcome that reports this failure to the host.
    public var sendOutcome: SendOutcome {
        switch disposition {
        case .retryable(let after): return .retryable(code: code, message: message, retryAfterMs: after)
        case .permanent: return .permanent(code: code, message: message)
        }
    }

    public var description: String { "\(code): \(message)" }
}

/// Retry classification of Graph API responses, shared by the Meta connectors.
///
/// Retryable: HTTP 429 and 5xx, transport errors (status 0), and the throttling
/// codes — WhatsApp 130429 (throughput), 131056 (pair rate), 131048 (spam rate
/// limit), 80007 (WABA rate limit), 133016 (registration rate) and the
/// application/user/page-level limits 4, 17, 32 and 613 — plus the transient
/// server codes 1, 2, 131000, 131016 and 133004. Everything else is permanent
/// and reported with the Graph error code.
public enum GraphRetryPolicy {
    /// Throttling codes and the delay to wait when the response does not say (milliseconds).
    public static let throttlingCodes: [Int: UInt32] = [
        130429: 1_000,   // Cloud API throughput reached
        131056: 6_000,   // pair rate limit: too many messages to one user
        131048: 60_000,  // spam rate limit
        80007: 60_000,   // WhatsApp Business Account rate limit
        133016: 60_000,  // account register/deregister rate limit
        4: 60_000,       // application request limit
        17: 60_000,      // user request limit
        32: 60_000,      // page request limit
        613: 60_000,     // calls within a custom rate limit
    ]
    /// Transient server-side codes.
    public static let transientCodes: Set<Int> = [1, 2, 131000, 131016, 133004]

    /// Classifies a non-2xx (or transport-failed) response.
    public static func classify(status: Int, transportError: String?, headers: [(name: String, value: String)], body: [UInt8]) -> GraphFailure {
        if status == 0 {
            return GraphFailure(disposition: .retryable(afterMs: 0), code: "transport",
                                message: transportError ?? "transport error", httpStatus: 0)
        }
        let retryAfter = retryAfterMs(headers)
        let ge = GraphError.parse(body)
        if let ge {
            let code = String(ge.code)
            var text = ge.title.map { $0 + ": " + ge.message } ?? ge.message
            if let d = ge.details, !d.isEmpty, !text.contains(d) { text += " (\(d))" }
            if text.isEmpty { text = "HTTP \(status)" }
            if let fallback = throttlingCodes[ge.code] {
                return GraphFailure(disposition: .retryable(afterMs: retryAfter ?? fallback), code: code, message: text,
                                    httpStatus: status, graphError: ge, isThrottling: true)
            }
            if transientCodes.contains(ge.code) || status >= 500 {
                return GraphFailure(disposition: .retryable(afterMs: retryAfter ?? 0), code: code, message: text, httpStatus: status, graphError: ge)
            }
            if status == 429 {
                return GraphFailure(disposition: .retryable(afterMs: retryAfter ?? 1_000), code: code, message: text,
                                    httpStatus: status, graphError: ge, isThrottling: true)
            }
            return GraphFailure(disposition: .permanent, code: code, message: text, httpStatus: status, graphError: ge)
        }
        let snippet = String(decoding: body.prefix(200), as: UTF8.self)
        let text = "HTTP \(status)" + (snippet.isEmpty ? "" : ": " + snippet)
        if status == 429 {
            return GraphFailure(disposition: .retryable(afterMs: retryAfter ?? 1_000), code: "http_429", message: text,
                                httpStatus: status, isThrottling: true)
        }
        if status >= 500 || status == 408 {
            return GraphFailure(disposition: .retryable(afterMs: retryAfter ?? 0), code: "http_\(status)", message: text, httpStatus: status)
        }
        return GraphFailure(disposition: .permanent, code: "http_\(status)", message: text, httpStatus: status)
    }

    /// `Retry-After` in milliseconds (seconds form only; HTTP dates are ignored).
    public static func retryAfterMs(_ headers: [(name: String, value: String)]) -> UInt32? {
        guard let v = headers.first(where: { $0.name.lowercased() == "retry-after" })?.value,
              let secs = Double(v.trimmingCharacters(" ")), secs >= 0 else { return nil }
        return UInt32(min(secs * 1000, 3_600_000))
    }
}

extension String {
    func trimmingCharacters(_ c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s.removeFirst() }
        while s.last == c { s.removeLast() }
        return String(s)
    }
}
