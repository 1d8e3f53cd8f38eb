import CChorusPlugin
import ChorusConnectorSDK
import ChorusJSON

/// The sandbox connector: a simulated customer channel, so Chorus works with no
/// external service. Customers "write" by POSTing to its webhook; what Chorus
/// sends is recorded in an outbox you can read back, and answered with
/// delivery statuses like a real channel would.
///
/// Routes (mounted at `/webhooks/<instance>`):
/// - `POST /messages` — one customer message, or an array of them:
///   `{"from":"cust-1","name":"Alice","text":"Hi","id":"m-1"}` (`id` makes
///   retries idempotent; `chat` defaults to `from`; `parts` may replace `text`).
///   Answers 200 with the Chorus ids once every event is committed.
/// - `POST /events` — a raw event in the normalized schema (any type), for
///   simulating reactions, edits, typing, statuses…
/// - `POST /status` — `{"channel_message_id":"sbx-…","state":"read"}`: a
///   status callback for something Chorus sent.
/// - `GET /outbox?after=N` — what Chorus sent, oldest first.
///
/// Settings: `deliver_after_ms` (default 20; 0 = no automatic "delivered"),
/// `read_after_ms` (default 0 = off), `max_text_length` (default 4096),
/// `retry_failures` (default 2: sends to a recipient starting with
/// "fail-retry" fail retryably that many times per message), and recipients
/// starting with "fail-permanent" are refused permanently.
public final class SandboxConnector: Connector {
    public static let descriptor = ConnectorDescriptor(
        name: "sandbox", version: "1.0.0", channel: "sandbox",
        summary: "Simulated customer channel for trying Chorus with no external service",
        capabilities: .init(
            flags: UInt64(CHORUS_CAP_EDIT | CHORUS_CAP_DELETE | CHORUS_CAP_REACTIONS | CHORUS_CAP_THREADS | CHORUS_CAP_TYPING
                | CHORUS_CAP_READ_RECEIPTS | CHORUS_CAP_TEMPLATES | CHORUS_CAP_PAYMENTS | CHORUS_CAP_DELIVERY_STATUS),
            receiveParts: ["text", "media", "location", "contact", "interactive_reply", "order", "unsupported"],
            sendParts: ["text", "media", "location", "contact", "interactive", "template", "product", "order", "payment_request"],
            maxTextLength: 4096, ratePerSecond: 0, ratePerChatPerMinute: 0, maxMediaBytes: 16 << 20))

    public let host: ConnectorHost
    /// The instance name: the default channel account of a sandbox.
    let settingsInstance: String
    private var config: Config
    private var outbox: [JSONValue] = []
    private var outboxSeq: Int64 = 0
    private var retryCounts: [String: Int] = [:]
    private var pendingTimers: Set<UInt64> = []
    private var stopping = false

    struct Config {
        var deliverAfterMs: Int
        var readAfterMs: Int
        var maxTextLength: Int
        var retryFailures: Int
        init(_ s: ConnectorSettings) throws {
            deliverAfterMs = try s.int("deliver_after_ms", default: 20)
            readAfterMs = try s.int("read_after_ms", default: 0)
            maxTextLength = try s.int("max_text_length", default: 4096)
            retryFailures = try s.int("retry_failures", default: 2)
            let known: Set<String> = ["deliver_after_ms", "read_after_ms", "max_text_length", "retry_failures", "account"]
            for (k, _) in s.values where !known.contains(k) {
                throw ConnectorError("unknown setting \"\(k)\" (known: \(known.sorted().joined(separator: ", ")))")
            }
            guard deliverAfterMs >= 0, readAfterMs >= 0, maxTextLength > 0, retryFailures >= 0 else {
                throw ConnectorError("settings must not be negative")
            }
        }
    }

    public init(host: ConnectorHost, settings: ConnectorSettings) throws {
        self.host = host
        self.settingsInstance = settings.instanceName
        self.config = try Config(settings)
    }

    public func start() throws {
        try host.route("POST", "/messages") { [unowned self] req, res in self.inboundMessages(req, res) }
        try host.route("POST", "/events") { [unowned self] req, res in self.inboundEvents(req, res) }
        try host.route("POST", "/status") { [unowned self] req, res in self.inboundStatus(req, res) }
        try host.route("GET", "/outbox") { [unowned self] req, res in self.readOutbox(req, res) }
        host.log(.info, "sandbox channel ready", [("deliver_after_ms", String(config.deliverAfterMs))])
    }

    public func reload(settings: ConnectorSettings) throws {
        config = try Config(settings)
    }

    public func stop() {
        stopping = true
        for t in pendingTimers { host.cancelTimer(t) }
        pendingTimers.removeAll()
        host.stopped()
    }

    // MARK: Inbound

    private func parseBody(_ req: IncomingRequest, _ res: Responder) -> JSONValue? {
        do {
            return try JSONParser.parse(req.body)
        } catch {
            res.respond(status: 400, json: ["error": .string("malformed JSON: \(error)")])
            return nil
        }
    }

    /// Turns the simple sandbox message format into a normalized event.
    func event(fromMessage m: JSONValue) throws -> JSONValue {
        guard case .object(let o) = m else { throw ConnectorError("each message must be a JSON object") }
        let allowed: Set<String> = ["from", "name", "phone", "email", "text", "parts", "chat", "id", "reply_to", "timestamp"]
        for k in o.keys where !allowed.contains(k) {
            throw ConnectorError("unknown field \"\(k)\" (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
        guard let from = o["from"]?.stringValue, !from.isEmpty else { throw ConnectorError("\"from\" (the customer's id) is required") }
        var parts: JSONValue
        if let p = o["parts"] {
            parts = p
        } else if let text = o["text"]?.stringValue {
            parts = [["type": "text", "text": .string(text)]]
        } else {
            throw ConnectorError("give \"text\" or \"parts\"")
        }
        if o["parts"] != nil && o["text"] != nil { throw ConnectorError("give \"text\" or \"parts\", not both") }
        var sender: JSONObject = ["id": .string(from), "role": "customer"]
        if let n = o["name"]?.stringValue { sender["name"] = .string(n) }
        if let p = o["phone"]?.stringValue { sender["phone"] = .string(p) }
        if let e = o["email"]?.stringValue { sender["email"] = .string(e) }
        var ids: JSONObject = ["chat": .string(o["chat"]?.stringValue ?? from), "account": .string(host.setting("account") ?? settingsInstance)]
        if let id = o["id"]?.stringValue { ids["message"] = .string(id) }
        var ev: JSONObject = ["type": "message", "direction": "inbound", "channel_ids": .object(ids), "sender": .object(sender), "parts": parts]
        if let r = o["reply_to"]?.stringValue { ev["reply_to"] = ["channel_message_id": .string(r)] }
        if let t = o["timestamp"] { ev["timestamp"] = t }
        return .object(ev)
    }

    private func inboundMessages(_ req: IncomingRequest, _ res: Responder) {
        guard let body = parseBody(req, res) else { return }
        let items = body.arrayValue ?? [body]
        if items.isEmpty { res.respond(status: 400, json: ["error": "empty batch"]); return }
        var events: [JSONValue] = []
        for (i, item) in items.enumerated() {
            do { events.append(try event(fromMessage: item)) } catch {
                res.respond(status: 400, json: ["error": .string(items.count > 1 ? "message \(i): \(error)" : "\(error)")])
                return
            }
        }
        emitAll(events, res)
    }

    private func inboundEvents(_ req: IncomingRequest, _ res: Responder) {
        guard let body = parseBody(req, res) else { return }
        let items = body.arrayValue ?? [body]
        if items.isEmpty { res.respond(status: 400, json: ["error": "empty batch"]); return }
        emitAll(items, res)
    }

    private func inboundStatus(_ req: IncomingRequest, _ res: Responder) {
        guard let body = parseBody(req, res) else { return }
        guard let cmid = body["channel_message_id"]?.stringValue, let state = body["state"]?.stringValue else {
            res.respond(status: 400, json: ["error": "channel_message_id and state are required"])
            return
        }
        var status: JSONObject = ["state": .string(state), "channel_message_id": .string(cmid)]
        if let code = body["error_code"]?.stringValue { status["error"] = ["code": .string(code)] }
        emitAll([["type": "status", "direction": "outbound", "status": .object(status)]], res)
    }

    /// Emits every event and answers once all are committed (or the first refusal).
    private func emitAll(_ events: [JSONValue], _ res: Responder) {
        var results = [JSONValue](repeating: .null, count: events.count)
        var remaining = events.count
        var failure: (Int, JSONValue)?
        for (i, ev) in events.enumerated() {
            host.emit(ev) { result in
                switch result {
                case .committed(let id): results[i] = ["id": .string(id), "duplicate": false]
                case .duplicate: results[i] = ["duplicate": true]
                case .invalid(let why): if failure == nil || failure!.0 != 503 { failure = (400, .string(events.count > 1 ? "event \(i): \(why)" : why)) }
                case .unavailable(let why): failure = (503, .string(why))
                }
                remaining -= 1
                guard remaining == 0 else { return }
                if let (status, why) = failure {
                    res.respond(status: status, headers: status == 503 ? [("Retry-After", "5"), ("Content-Type", "application/json")] : [("Content-Type", "application/json")],
                                body: JSONWriter.encode(["error": why]))
                } else {
                    res.respond(status: 200, json: ["accepted": .array(results)])
                }
            }
        }
    }

    private func readOutbox(_ req: IncomingRequest, _ res: Responder) {
        let after = req.queryItems.first { $0.0 == "after" }.flatMap { Int64($0.1) } ?? 0
        let items = outbox.filter { ($0["seq"]?.intValue ?? 0) > after }
        res.respond(status: 200, json: ["messages": .array(items)])
    }

    // MARK: Outbound

    public func send(_ message: OutboundMessage) throws {
        if stopping { host.sendResult(message.id, .retryable(code: "stopping", message: "instance is stopping")); return }
        let to = message.to
        for p in message.parts where p["type"]?.stringValue == "text" {
            if let t = p["text"]?.stringValue, t.count > config.maxTextLength {
                host.sendResult(message.id, .permanent(code: "text_too_long", message: "text longer than \(config.maxTextLength) characters"))
                return
            }
        }
        if to.hasPrefix("fail-permanent") {
            host.sendResult(message.id, .permanent(code: "sandbox_rejected", message: "recipient \(to) refuses messages"))
            return
        }
        if to.hasPrefix("fail-retry") {
            let n = retryCounts[message.messageId, default: 0]
            if n < config.retryFailures {
                retryCounts[message.messageId] = n + 1
                host.sendResult(message.id, .retryable(code: "sandbox_busy", message: "simulated throttling", retryAfterMs: 10))
                return
            }
            retryCounts[message.messageId] = nil
        }
        let channelId = "sbx-" + message.messageId
        outboxSeq += 1
        var record = JSONObject()
        record["seq"] = .int(outboxSeq)
        record["channel_message_id"] = .string(channelId)
        if case .object(let o) = message.json { for (k, v) in o { record[k] = v } }
        outbox.append(.object(record))
        if outbox.count > 1000 { outbox.removeFirst(outbox.count - 1000) }
        host.count("sent")
        host.sendResult(message.id, .sent(channelMessageId: channelId))
        if message.type == "message" {
            scheduleStatus(channelId, chat: to, state: "delivered", afterMs: config.deliverAfterMs)
            scheduleStatus(channelId, chat: to, state: "read", afterMs: config.readAfterMs)
        }
    }

    private func scheduleStatus(_ cmid: String, chat: String, state: String, afterMs: Int) {
        guard afterMs > 0 else { return }
        var id: UInt64 = 0
        id = host.timer(afterMs: UInt64(afterMs)) { [weak self] in
            guard let self else { return }
            self.pendingTimers.remove(id)
            let ev: JSONValue = [
                "type": "status", "direction": "outbound",
                "channel_ids": ["chat": .string(chat), "account": .string(self.host.setting("account") ?? self.settingsInstance)],
                "status": ["state": .string(state), "channel_message_id": .string(cmid)],
            ]
            self.host.emit(ev) { result in
                if case .invalid(let why) = result { self.host.log(.error, "status event refused: \(why)") }
            }
        }
        if id != 0 { pendingTimers.insert(id) }
    }
}

/// The plugin's one exported symbol.
@_cdecl("chorus_plugin_entry")
public func chorus_plugin_entry(_ offer: UnsafePointer<chorus_host_offer>?,
                                _ out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?) -> chorus_status
{
    ConnectorExport.entry(offer: offer, out: out, descriptor: SandboxConnector.descriptor) { host, settings in
        try SandboxConnector(host: host, settings: settings)
    }
}
