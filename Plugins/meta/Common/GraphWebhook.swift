import ChorusConnectorSDK
import ChorusJSON

/// The parts of a Graph connector's webhook (`/webhooks/<instance>`) that do not depend on the channel:
/// the routes, the signed body, and answering Meta once the events are durable.
public enum GraphWebhook {
    /// Registers the connector's routes: `GET /` (the subscription handshake, checked against
    /// `verifyToken()`), `POST /` (`deliveries`) and `GET /media/*` (`media`).
    public static func register(on host: ConnectorHost, verifyToken: @escaping () -> String,
                                deliveries: @escaping (IncomingRequest, Responder) -> Void,
                                media: @escaping (IncomingRequest, Responder) -> Void) throws {
        try host.route("GET", "/") { req, res in WebhookVerification.handle(req, verifyToken: verifyToken(), res) }
        try host.route("POST", "/", deliveries)
        try host.route("GET", "/media/*", media)
    }

    /// The JSON body of a delivery whose `X-Hub-Signature-256` matches `appSecret`; otherwise nil,
    /// with the request answered (401 for a bad signature, 400 for malformed JSON) and counted
    /// (`webhook_bad_signature`, `webhook_malformed`).
    public static func verifiedBody(_ req: IncomingRequest, appSecret: String, host: ConnectorHost, _ res: Responder) -> JSONValue? {
        if case .failure(let why) = GraphSignature.verify(req, secret: appSecret) {
            host.count("webhook_bad_signature")
            host.log(.warning, "webhook refused: \(why)", [("remote", req.remoteAddress)])
            res.respond(status: 401, json: ["error": .string(why.description)])
            return nil
        }
        do { return try JSONParser.parse(req.body) } catch {
            host.count("webhook_malformed")
            res.respond(status: 400, json: ["error": .string("malformed JSON: \(error)")])
            return nil
        }
    }

    /// Emits `events` (not empty) and answers the delivery once the host took all of them: 200 with the
    /// count when every one is committed (or a duplicate), then `committed` runs; 503 with `Retry-After: 5`
    /// when the store is unavailable (Meta redelivers); 500 when the host refused one as invalid.
    public static func commit(_ events: [JSONValue], host: ConnectorHost, _ res: Responder, committed: @escaping () -> Void) {
        var remaining = events.count
        var unavailable: String?
        var invalid: String?
        for ev in events {
            host.emit(ev) { result in
                switch result {
                case .committed, .duplicate: break
                case .unavailable(let why): unavailable = why
                case .invalid(let why):
                    invalid = why
                    host.log(.error, "event refused by the host (connector bug): \(why)")
                }
                remaining -= 1
                guard remaining == 0 else { return }
                if let unavailable {
                    res.respond(status: 503, headers: [("Retry-After", "5"), ("Content-Type", "application/json")],
                                body: JSONWriter.encode(["error": .string(unavailable)]))
                } else if let invalid {
                    res.respond(status: 500, json: ["error": .string(invalid)])
                } else {
                    res.respond(status: 200, json: ["accepted": .int(events.count)])
                    committed()
                }
            }
        }
    }
}

/// Settings every Graph connector reads the same way.
public enum GraphSettings {
    /// A required secret (given inline, or as `<key>_file` / `<key>_credential`, which the host resolves),
    /// with trailing line breaks and spaces removed (secret files usually end with a newline).
    public static func secret(_ s: ConnectorSettings, _ key: String) throws -> String {
        guard let v = s[key], !v.isEmpty else {
            throw ConnectorError("setting \"\(key)\" is required (give \(key)_file or \(key)_credential to keep it out of the config)")
        }
        var t = Substring(v)
        while let last = t.last, last == "\n" || last == "\r" || last == " " { t.removeLast() }
        return String(t)
    }

    /// `channel_ids.account` of events: the `account` setting, else the instance name (as the daemon assumes).
    public static func account(_ s: ConnectorSettings) -> String {
        s["account"].flatMap { $0.isEmpty ? nil : $0 } ?? s.instanceName
    }

    /// `api_base_url`: an http(s) URL, `GraphClient.defaultBaseURL` when not given.
    public static func apiBaseURL(_ s: ConnectorSettings) throws -> String {
        let url = s["api_base_url"] ?? GraphClient.defaultBaseURL
        guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
            throw ConnectorError("setting \"api_base_url\": expected an http(s) URL, found \"\(url)\"")
        }
        return url
    }

    /// `api_version`: a Graph API version like `v21.0`, `GraphClient.defaultVersion` when not given.
    public static func apiVersion(_ s: ConnectorSettings) throws -> String {
        let version = s["api_version"] ?? GraphClient.defaultVersion
        guard version.hasPrefix("v"), Double(version.dropFirst()) != nil else {
            throw ConnectorError("setting \"api_version\": expected a Graph API version like v21.0, found \"\(version)\"")
        }
        return version
    }
}
