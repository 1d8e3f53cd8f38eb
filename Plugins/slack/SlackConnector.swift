import CChorusPlugin
import ChorusConnectorSDK
import ChorusJSON

/// The Slack connector: Events API and interactivity in (signed webhooks), Web API out.
///
/// Routes (mounted at `/webhooks/<instance>`):
/// - `POST /events` — the Events API Request URL: `url_verification` is answered with its challenge,
///   `event_callback` becomes one normalized event (deduplicated on `event_id`, so Slack's retries are
///   stored once) and is answered 200 once committed.
/// - `POST /interactivity` — the Interactivity Request URL: `block_actions` (button clicks, menu choices)
///   become messages with `interactive_reply` parts.
///
/// Every request must carry a valid `X-Slack-Signature` (v0, HMAC-SHA256 with the signing secret) and an
/// `X-Slack-Request-Timestamp` within five minutes of now; otherwise it is answered 401 and nothing is stored.
///
/// Outbound: `message` → chat.postMessage (text as mrkdwn, Block Kit for buttons, menus, payment links and
/// media URLs) and the files v2 upload flow for media given by an http(s) `ref`; `edit` → chat.update;
/// `delete` → chat.delete; `reaction` → reactions.add / reactions.remove. A channel message id is
/// `"<channel>:<ts>"`. See docs/connectors/slack.md.
public final class SlackConnector: Connector {
    public static let descriptor = ConnectorDescriptor(
        name: "slack", version: "1.0.0", channel: "slack",
        summary: "Slack (Events API and interactivity in, Web API out)",
        capabilities: .init(
            flags: UInt64(CHORUS_CAP_EDIT | CHORUS_CAP_DELETE | CHORUS_CAP_REACTIONS | CHORUS_CAP_THREADS | CHORUS_CAP_PAYMENTS
                | CHORUS_CAP_MEDIA_UPLOAD),
            receiveParts: ["text", "media", "interactive_reply", "unsupported"],
            sendParts: ["text", "media", "interactive", "payment_request"],
            maxTextLength: UInt32(SlackOutbound.maxTextLength), ratePerSecond: 0, ratePerChatPerMinute: 60,
            maxMediaBytes: SlackConnector.maxUploadBytes))

    /// The largest file fetched for an upload.
    public static let maxUploadBytes: UInt64 = 50 << 20
    /// The wait used when Slack rate-limits without a Retry-After.
    static let defaultRetryAfterMs: UInt32 = 1000

    public let host: ConnectorHost
    private var config: SlackConfig
    private var verifier: SlackSignatureVerifier
    /// Sends handed to us and not yet reported.
    private var pending: Set<SendID> = []
    /// Steps already done for a message (by Chorus message id), so a retried send resumes instead of posting twice.
    private var progress: [String: Progress] = [:]
    /// Web API methods on hold after a 429 until this monotonic time (ms).
    private var holds: [String: UInt64] = [:]
    private var stopping = false

    struct Progress {
        var done: Int = 0
        var firstMessageId: String?
    }

    public init(host: ConnectorHost, settings: ConnectorSettings) throws {
        self.host = host
        let config = try SlackConfig(settings)
        self.config = config
        self.verifier = SlackSignatureVerifier(signingSecret: config.signingSecret)
    }

    public func start() throws {
        try host.route("POST", "/events") { [unowned self] req, res in self.events(req, res) }
        try host.route("POST", "/interactivity") { [unowned self] req, res in self.interactivity(req, res) }
        host.log(.info, "slack connector ready", [("api_base_url", config.apiBaseURL)])
    }

    public func reload(settings: ConnectorSettings) throws {
        let next = try SlackConfig(settings)
        config = next
        verifier = SlackSignatureVerifier(signingSecret: next.signingSecret)
    }

    public func stop() {
        stopping = true
        if pending.isEmpty { host.stopped() }
        // Otherwise the last in-flight call reports its send and then calls host.stopped().
    }

    // MARK: Inbound

    /// Checks the signature; answers 401 and returns false when it does not hold.
    private func verified(_ req: IncomingRequest, _ res: Responder) -> Bool {
        do {
            try verifier.verify(timestamp: req.header("x-slack-request-timestamp"), signature: req.header("x-slack-signature"), body: req.body)
            return true
        } catch {
            host.count("signature_refused")
            host.log(.warning, "refused an unsigned or stale request", [("path", req.path), ("reason", error.description), ("remote", req.remoteAddress)])
            res.respond(status: 401, json: ["error": .string(error.description)])
            return false
        }
    }

    private func events(_ req: IncomingRequest, _ res: Responder) {
        guard verified(req, res) else { return }
        let envelope: SlackEnvelope
        do { envelope = try SlackInbound.envelope(req.body, account: config.account) } catch {
            host.count("malformed")
            host.log(.warning, "refused a malformed Events API request", [("reason", error.description)])
            res.respond(status: 400, json: ["error": .string(error.description)])
            return
        }
        switch envelope {
        case .urlVerification(let challenge):
            host.log(.info, "answered Slack's url_verification")
            res.respond(status: 200, headers: [("Content-Type", "text/plain")], body: Array(challenge.utf8))
        case .ignored(let type):
            host.count("ignored")
            host.log(.notice, "acknowledged an Events API request Chorus does not store", [("type", type)])
            res.respond(status: 200)
        case .event(let event, let eventId, let kind):
            if let n = req.header("x-slack-retry-num") {
                host.count("redeliveries")
                host.log(.debug, "Slack redelivery", [("event_id", eventId), ("retry_num", n), ("reason", req.header("x-slack-retry-reason") ?? "")])
            }
            emitAndAnswer(event, dedupKey: SlackInbound.dedupKey(for: event, eventId: eventId), kind: kind, res)
        }
    }

    private func interactivity(_ req: IncomingRequest, _ res: Responder) {
        guard verified(req, res) else { return }
        let mapped: (JSONValue, dedupKey: String?, kind: String)
        do { mapped = try SlackInbound.interaction(req.body, account: config.account) } catch {
            host.count("malformed")
            host.log(.warning, "refused a malformed interactivity request", [("reason", error.description)])
            res.respond(status: 400, json: ["error": .string(error.description)])
            return
        }
        emitAndAnswer(mapped.0, dedupKey: mapped.dedupKey, kind: mapped.kind, res)
    }

    /// Emits and answers Slack only once the event is durable (200), or asks for a retry (503). An event the
    /// daemon refuses is stored as an `unsupported` message instead, so nothing Slack sent is lost.
    private func emitAndAnswer(_ event: JSONValue, dedupKey: String?, kind: String, _ res: Responder) {
        let ev = withDedupKey(event, dedupKey)
        host.emit(ev) { [weak self] result in
            guard let self else { return res.respond(status: 503) }
            switch result {
            case .committed, .duplicate:
                self.host.count(result == .duplicate ? "duplicates" : "received")
                res.respond(status: 200)
            case .unavailable(let why):
                self.host.log(.warning, "event not stored, Slack will retry", [("reason", why)])
                res.respond(status: 503, headers: [("Retry-After", "5")])
            case .invalid(let why):
                self.host.log(.error, "event refused by the daemon; storing it as unsupported", [("kind", kind), ("reason", why)])
                let fallback = self.withDedupKey(SlackInbound.fallback(for: ev, kind: kind, reason: why, account: self.config.account), dedupKey)
                self.host.emit(fallback) { [weak self] second in
                    switch second {
                    case .committed, .duplicate: res.respond(status: 200)
                    case .unavailable: res.respond(status: 503, headers: [("Retry-After", "5")])
                    case .invalid(let again):
                        self?.host.log(.error, "fallback event refused too", [("reason", again)])
                        res.respond(status: 500)
                    }
                }
            }
        }
    }

    private func withDedupKey(_ event: JSONValue, _ key: String?) -> JSONValue {
        guard let key, case .object(var o) = event else { return event }
        o["dedup_key"] = .string(String(key.prefix(512)))
        return .object(o)
    }

    // MARK: Outbound

    public func send(_ message: OutboundMessage) throws {
        if stopping {
            host.sendResult(message.id, .retryable(code: "stopping", message: "instance is stopping"))
            return
        }
        let plan: SlackPlan
        do { plan = try SlackOutbound.plan(message.json) } catch {
            host.sendResult(message.id, .permanent(code: error.code, message: error.message))
            return
        }
        pending.insert(message.id)
        run(message.id, key: message.messageId.isEmpty ? "send-\(message.id)" : message.messageId, plan)
    }

    /// Runs the next step of a plan, or reports the send when all are done.
    private func run(_ id: SendID, key: String, _ plan: SlackPlan) {
        var state = progress[key] ?? Progress()
        if state.done >= plan.steps.count {
            progress[key] = nil
            let cmid = plan.targetMessageId ?? state.firstMessageId
            finish(id, .sent(channelMessageId: cmid))
            return
        }
        if stopping {
            finish(id, .retryable(code: "stopping", message: "instance is stopping"))
            return
        }
        let step = plan.steps[state.done]
        if let until = holds[step.firstMethod] {
            let now = SlackClock.monotonicMs()
            if until > now {
                finish(id, .retryable(code: "ratelimited", message: "\(step.firstMethod) is rate-limited by Slack", retryAfterMs: UInt32(min(until - now, 3_600_000))))
                return
            }
            holds[step.firstMethod] = nil
        }
        let advance: (String?) -> Void = { [weak self] channelMessageId in
            guard let self else { return }
            state.done += 1
            if state.firstMessageId == nil { state.firstMessageId = channelMessageId }
            self.progress[key] = state
            self.run(id, key: key, plan)
        }
        let fail: (SendOutcome) -> Void = { [weak self] outcome in
            guard let self else { return }
            if case .permanent = outcome { self.progress[key] = nil }
            self.finish(id, outcome)
        }
        switch step {
        case .call(let method, let body):
            call(method, json: body) { result in
                switch result {
                case .ok(let response):
                    let channel = response["channel"]?.stringValue ?? plan.channel
                    advance(response["ts"]?.stringValue.map { "\(channel):\($0)" })
                case .failed(let outcome):
                    fail(outcome)
                }
            }
        case .upload(let source, let fileName, let title, let comment, let channel, let thread):
            upload(source: source, fileName: fileName, title: title, comment: comment, channel: channel, thread: thread) { result in
                switch result {
                case .ok(let id): advance(id.stringValue)
                case .failed(let outcome): fail(outcome)
                }
            }
        }
    }

    private func finish(_ id: SendID, _ outcome: SendOutcome) {
        guard pending.remove(id) != nil else { return }
        switch outcome {
        case .sent: host.count("sent")
        case .retryable: host.count("send_retryable")
        case .permanent: host.count("send_failed")
        }
        host.sendResult(id, outcome)
        if progress.count > 10_000 { progress.removeAll() }
        if stopping && pending.isEmpty { host.stopped() }
    }

    enum CallResult {
        case ok(JSONValue)
        case failed(SendOutcome)
    }

    /// Slack errors worth retrying (the others are the caller's mistake and final).
    static let transientErrors: Set<String> = ["ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"]

    private func call(_ method: String, json: JSONValue, _ done: @escaping (CallResult) -> Void) {
        call(method, body: JSONWriter.encode(json), contentType: "application/json; charset=utf-8", done)
    }

    /// One Web API call, classified: `ok:true` → `.ok`; 429 → retryable with Retry-After (and the method is
    /// held that long); `ok:false` → permanent with Slack's error code, or retryable for transient ones.
    private func call(_ method: String, body: [UInt8], contentType: String, _ done: @escaping (CallResult) -> Void) {
        let headers = [("Authorization", "Bearer \(config.botToken)"), ("Content-Type", contentType)]
        host.request(method: "POST", url: "\(config.apiBaseURL)/\(method)", headers: headers, body: body,
                     timeoutMs: config.requestTimeoutMs) { [weak self] r in
            guard let self else { return }
            done(self.classify(method, r))
        }
    }

    private func retryAfterMs(_ r: HTTPResult) -> UInt32? {
        guard let v = r.header("retry-after"), let secs = UInt32(v.trimmingSpacesSlack()) else { return nil }
        return min(secs, 3600) * 1000
    }

    private func classify(_ method: String, _ r: HTTPResult) -> CallResult {
        switch r.status {
        case 0:
            return .failed(.retryable(code: "transport", message: "\(method): \(r.error ?? "no response")"))
        case 429:
            let after = retryAfterMs(r) ?? SlackConnector.defaultRetryAfterMs
            holds[method] = SlackClock.monotonicMs() + UInt64(after)
            host.count("rate_limited")
            host.log(.notice, "Slack rate limit", [("method", method), ("retry_after_ms", String(after))])
            return .failed(.retryable(code: "ratelimited", message: "\(method) rate-limited", retryAfterMs: after))
        case 500...599:
            return .failed(.retryable(code: "http_\(r.status)", message: "\(method): HTTP \(r.status)", retryAfterMs: retryAfterMs(r) ?? 0))
        case 200...299:
            guard let json = try? JSONParser.parse(r.body), case .object = json, let ok = json["ok"]?.boolValue else {
                return .failed(.retryable(code: "bad_response", message: "\(method): the answer is not a Slack API response"))
            }
            if ok { return .ok(json) }
            let error = json["error"]?.stringValue ?? "unknown_error"
            if (method == "reactions.add" && error == "already_reacted") || (method == "reactions.remove" && error == "no_reaction") {
                return .ok(json)  // the state asked for already holds (a retried send)
            }
            if SlackConnector.transientErrors.contains(error) {
                let after = retryAfterMs(r) ?? (error == "ratelimited" ? SlackConnector.defaultRetryAfterMs : 0)
                return .failed(.retryable(code: error, message: "\(method): \(error)", retryAfterMs: after))
            }
            var message = "\(method): \(error)"
            if let needed = json["needed"]?.stringValue { message += " (needs scope \(needed))" }
            if let details = json["response_metadata"]?["messages"]?.arrayValue?.compactMap({ $0.stringValue }), !details.isEmpty {
                message += ": " + details.joined(separator: "; ")
            }
            return .failed(.permanent(code: error, message: message))
        default:
            return .failed(.permanent(code: "http_\(r.status)", message: "\(method): HTTP \(r.status)"))
        }
    }

    /// The files v2 flow: fetch the file, files.getUploadURLExternal, POST the bytes to the upload URL,
    /// files.completeUploadExternal sharing it into the channel. Yields the channel message id
    /// (`"<channel>:<ts>"` of the share when Slack reports it, else `"<channel>:<file id>"`).
    private func upload(source: String, fileName: String, title: String?, comment: String?, channel: String, thread: String?,
                        _ done: @escaping (CallResult) -> Void)
    {
        host.request(method: "GET", url: source, timeoutMs: 60_000) { [weak self] fetched in
            guard let self else { return }
            guard (200...299).contains(fetched.status) else {
                let retry = fetched.status == 0 || fetched.status == 429 || fetched.status >= 500
                let message = "fetching the file to upload: \(fetched.status == 0 ? fetched.error ?? "no response" : "HTTP \(fetched.status)")"
                return done(.failed(retry ? .retryable(code: "media_fetch_failed", message: message) : .permanent(code: "media_fetch_failed", message: message)))
            }
            guard !fetched.body.isEmpty, UInt64(fetched.body.count) <= SlackConnector.maxUploadBytes else {
                return done(.failed(.permanent(code: "invalid_file", message: "the file is empty or larger than \(SlackConnector.maxUploadBytes) bytes")))
            }
            let bytes = fetched.body
            let ask = SlackText.formEncode([("filename", fileName), ("length", String(bytes.count))])
            self.call("files.getUploadURLExternal", body: ask, contentType: "application/x-www-form-urlencoded") { [weak self] r in
                guard let self else { return }
                guard case .ok(let grant) = r else { return done(r) }
                guard let url = grant["upload_url"]?.stringValue, let fileId = grant["file_id"]?.stringValue else {
                    return done(.failed(.retryable(code: "bad_response", message: "files.getUploadURLExternal: no upload_url or file_id")))
                }
                self.host.request(method: "POST", url: url, headers: [("Content-Type", "application/octet-stream")], body: bytes,
                                  timeoutMs: 120_000) { [weak self] put in
                    guard let self else { return }
                    guard (200...299).contains(put.status) else {
                        let retry = put.status == 0 || put.status == 429 || put.status >= 500
                        let message = "uploading to Slack: \(put.status == 0 ? put.error ?? "no response" : "HTTP \(put.status)")"
                        return done(.failed(retry ? .retryable(code: "upload_failed", message: message) : .permanent(code: "upload_failed", message: message)))
                    }
                    var file: JSONObject = ["id": .string(fileId)]
                    if let title { file["title"] = .string(title) }
                    var fields = [("files", JSONWriter.encodeString(.array([.object(file)]))), ("channel_id", channel)]
                    if let comment { fields.append(("initial_comment", comment)) }
                    if let thread { fields.append(("thread_ts", thread)) }
                    self.call("files.completeUploadExternal", body: SlackText.formEncode(fields),
                              contentType: "application/x-www-form-urlencoded") { r in
                        guard case .ok(let completed) = r else { return done(r) }
                        let f = completed["files"]?.arrayValue?.first
                        var ts: String?
                        for scope in ["public", "private"] {
                            if let t = f?["shares"]?[scope]?[channel]?.arrayValue?.first?["ts"]?.stringValue { ts = t; break }
                        }
                        done(.ok(.string("\(channel):\(ts ?? fileId)")))
                    }
                }
            }
        }
    }
}

extension String {
    func trimmingSpacesSlack() -> String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

/// The plugin's one exported symbol.
@_cdecl("chorus_plugin_entry")
public func chorus_plugin_entry(_ offer: UnsafePointer<chorus_host_offer>?,
                                _ out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?) -> chorus_status
{
    ConnectorExport.entry(offer: offer, out: out, descriptor: SlackConnector.descriptor) { host, settings in
        try SlackConnector(host: host, settings: settings)
    }
}
