import CChorusPlugin
import COpenSSL
import ChorusConnectorSDK
import ChorusJSON

/// The Telegram connector: a bot on the Telegram Bot API (<https://core.telegram.org/bots/api>).
///
/// Inbound updates arrive by webhook (`POST /webhooks/<instance>/update`, checked against the
/// `X-Telegram-Bot-Api-Secret-Token` header in constant time) or by long polling (`getUpdates`,
/// with the next offset kept in the instance's durable state and advanced only after every
/// update of a batch is committed). Outbound messages become Bot API calls, paced per chat
/// (1/s, 20/min in groups) and per bot (30/s). See `docs/connectors/telegram.md`.
public final class TelegramConnector: Connector {
    /// What the connector declares: its parts, the edit/delete/reaction/thread/typing/payment
    /// capabilities, Telegram's 4096-character text limit and its rate limits.
    public static let descriptor = ConnectorDescriptor(
        name: "telegram", version: "1.0.0", channel: "telegram",
        summary: "Telegram Bot API (webhook or long polling)",
        capabilities: .init(
            flags: UInt64(CHORUS_CAP_EDIT | CHORUS_CAP_DELETE | CHORUS_CAP_REACTIONS | CHORUS_CAP_THREADS | CHORUS_CAP_TYPING
                | CHORUS_CAP_PAYMENTS),
            receiveParts: ["text", "media", "location", "contact", "interactive_reply", "unsupported"],
            sendParts: ["text", "media", "location", "contact", "interactive", "payment_request"],
            maxTextLength: 4096, ratePerSecond: 30, ratePerChatPerMinute: 20, maxMediaBytes: 20 << 20))

    /// The durable-state key of the long-polling offset.
    static let offsetKey = "telegram.offset"

    /// The host this instance was created with.
    public let host: ConnectorHost
    private var config: TelegramConfig
    private lazy var pacer = Pacer(
        limits: config.limits,
        schedule: { [unowned self] after, fire in self.host.timer(afterMs: after, fire) },
        cancelTimer: { [unowned self] id in self.host.cancelTimer(id) })

    // Sends
    private struct SendState {
        let message: OutboundMessage
        let calls: [APICall]
        var index: Int
        var channelMessageId: String?
    }
    private var pending: [SendID: SendState] = [:]
    /// Calls already done for a Chorus message whose send failed retryably part-way, so a retry
    /// continues after them instead of repeating them.
    private var progress: [String: (index: Int, channelMessageId: String?)] = [:]
    private var progressOrder: [String] = []

    // Long polling
    private var offset: Int64 = 0
    private var pollInFlight = false
    private var batchInFlight = false
    private var pollTimer: UInt64 = 0
    private var pollFailures = 0

    private var stopping = false
    private var stoppedReported = false

    /// Validates the settings (see `TelegramConfig`); no I/O until `start`.
    public init(host: ConnectorHost, settings: ConnectorSettings) throws {
        self.host = host
        self.config = try TelegramConfig(settings)
    }

    private var mapper: UpdateMapper { UpdateMapper(account: config.account) }
    private var planner: OutboundPlanner { OutboundPlanner(paymentProviderToken: config.paymentProviderToken) }

    /// Registers the webhook route (webhook mode) or starts long polling from the stored offset.
    public func start() throws {
        if config.mediaToken != nil {
            try host.route("GET", "/file/*") { [unowned self] req, res in self.fetchFile(req, res) }
        }
        switch config.mode {
        case .webhook:
            try host.route("POST", "/update") { [unowned self] req, res in self.webhook(req, res) }
            if let url = config.webhookURL { registerWebhook(url) }
            host.log(.info, "telegram bot ready", [("mode", "webhook"), ("bot_id", config.botId)])
        case .polling:
            if let stored = host.kvGetString(Self.offsetKey), let o = Int64(stored) { offset = o }
            host.log(.info, "telegram bot ready", [("mode", "polling"), ("bot_id", config.botId), ("offset", String(offset))])
            poll()
        }
    }

    /// Applies new settings atomically; `mode` and the presence of `media_token` need a restart.
    public func reload(settings: ConnectorSettings) throws {
        let next = try TelegramConfig(settings)
        guard next.mode == config.mode else {
            throw ConnectorError("setting \"mode\" cannot change on reload (\(config.mode.rawValue) → \(next.mode.rawValue)); restart the instance")
        }
        guard (next.mediaToken == nil) == (config.mediaToken == nil) else {
            throw ConnectorError("setting \"media_token\" cannot be added or removed on reload; restart the instance")
        }
        let reregister = config.mode == .webhook && next.webhookURL != nil
            && (next.webhookURL != config.webhookURL || next.webhookSecret != config.webhookSecret)
        config = next
        pacer.limits = next.limits
        if reregister, let url = next.webhookURL { registerWebhook(url) }
    }

    /// Stops polling, fails queued sends retryably, and reports `stopped` once in-flight sends and the
    /// batch being stored (if any) are done.
    public func stop() {
        stopping = true
        if pollTimer != 0 { host.cancelTimer(pollTimer); pollTimer = 0 }
        pacer.cancelAll()
        finishStopIfIdle()
    }

    private func finishStopIfIdle() {
        guard stopping, !stoppedReported, pending.isEmpty, !batchInFlight else { return }
        stoppedReported = true
        host.stopped()
    }

    // MARK: Bot API calls

    /// A failed Bot API call.
    struct APIFailure {
        /// HTTP status, 0 for a transport error.
        let status: Int
        let errorCode: Int?
        let description: String
        let retryAfterSeconds: Int?
        var retryable: Bool { status == 0 || status == 429 || status >= 500 || errorCode == 429 }
        var code: String { status == 0 ? "transport" : String(errorCode ?? status) }
    }

    /// Calls a Bot API method with a JSON body; `completion` gets `result` or the failure.
    func callAPI(_ method: String, _ params: JSONObject, timeoutMs: UInt32? = nil,
                 completion: @escaping (Result<JSONValue, APIFailureBox>) -> Void)
    {
        let url = "\(config.apiBase)/bot\(config.token)/\(method)"
        let token = config.token
        host.request(method: "POST", url: url, headers: [("Content-Type", "application/json")], body: JSONWriter.encode(.object(params)),
                     timeoutMs: timeoutMs ?? config.requestTimeoutMs) { r in
            let redact = { (s: String) -> String in token.isEmpty ? s : s.replacingAll(token, with: "<token>") }
            if r.status == 0 {
                completion(.failure(APIFailureBox(APIFailure(status: 0, errorCode: nil, description: redact(r.error ?? "transport error"), retryAfterSeconds: nil))))
                return
            }
            let body = try? JSONParser.parse(r.body)
            if r.status / 100 == 2, body?["ok"]?.boolValue == true, let result = body?["result"] {
                completion(.success(result))
                return
            }
            var description = body?["description"]?.stringValue ?? "HTTP \(r.status)"
            if let migrate = body?["parameters"]?["migrate_to_chat_id"]?.intValue { description += " (migrated to chat \(migrate))" }
            let retryAfter = body?["parameters"]?["retry_after"]?.intValue.map { Int($0) }
                ?? r.header("retry-after").flatMap { Int($0) }
            completion(.failure(APIFailureBox(APIFailure(status: r.status, errorCode: body?["error_code"]?.intValue.map { Int($0) },
                                                         description: redact(description), retryAfterSeconds: retryAfter))))
        }
    }

    // MARK: Webhook

    private func webhook(_ req: IncomingRequest, _ res: Responder) {
        guard config.mode == .webhook, let secret = config.webhookSecret else {
            res.respond(status: 404, json: ["error": "this instance receives updates by long polling"])
            return
        }
        guard let given = req.header("x-telegram-bot-api-secret-token") else {
            host.count("webhook_unauthorized")
            res.respond(status: 401, json: ["error": "missing X-Telegram-Bot-Api-Secret-Token"])
            return
        }
        guard constantTimeEqual(given, secret) else {
            host.count("webhook_unauthorized")
            host.log(.warning, "webhook request with a wrong secret token refused", [("remote", req.remoteAddress)])
            res.respond(status: 403, json: ["error": "wrong X-Telegram-Bot-Api-Secret-Token"])
            return
        }
        if stopping {
            res.respond(status: 503, headers: [("Retry-After", "5")])
            return
        }
        let update: JSONValue
        do { update = try JSONParser.parse(req.body) } catch {
            res.respond(status: 400, json: ["error": .string("malformed JSON: \(error)")])
            return
        }
        let mapped: UpdateMapper.Mapped
        do { mapped = try mapper.map(update) } catch {
            host.count("updates_malformed")
            res.respond(status: 400, json: ["error": .string(error.description)])
            return
        }
        emitAll(mapped) { outcome in
            switch outcome {
            case .stored: res.respond(status: 200, json: ["ok": true])
            case .unavailable(let why): res.respond(status: 503, headers: [("Retry-After", "5"), ("Content-Type", "application/json")],
                                                    body: JSONWriter.encode(["error": .string(why)]))
            case .invalid(let why): res.respond(status: 500, json: ["error": .string(why)])
            }
        }
    }

    /// Registers the webhook with Telegram (setting `webhook_url`), with the secret token and update kinds.
    private func registerWebhook(_ url: String) {
        var params: JSONObject = ["url": .string(url), "allowed_updates": .array(UpdateMapper.allowedUpdates.map { .string($0) })]
        if let s = config.webhookSecret { params["secret_token"] = .string(s) }
        callAPI("setWebhook", params) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success: self.host.log(.info, "webhook registered with Telegram")
            case .failure(let f): self.host.log(.error, "setWebhook failed: \(f.value.description)", [("code", f.value.code)])
            }
        }
    }

    enum BatchOutcome {
        case stored
        case unavailable(String)
        case invalid(String)
    }

    /// Emits the events of one update and reports once all completed; answers a callback query
    /// (so the user's spinner stops) and approves a pre-checkout query once stored.
    private func emitAll(_ mapped: UpdateMapper.Mapped, _ done: @escaping (BatchOutcome) -> Void) {
        var remaining = mapped.events.count
        var unavailable: String?
        var invalid: String?
        if remaining == 0 { done(.stored); return }
        for ev in mapped.events {
            host.emit(ev) { [weak self] result in
                switch result {
                case .committed, .duplicate: break
                case .unavailable(let why): unavailable = why
                case .invalid(let why):
                    invalid = why
                    self?.host.log(.error, "event refused by the host (connector bug)", [("update_id", String(mapped.updateId)), ("reason", why)])
                }
                remaining -= 1
                guard remaining == 0 else { return }
                if let u = unavailable { done(.unavailable(u)); return }
                if let i = invalid { done(.invalid(i)); return }
                self?.host.count("updates")
                if let q = mapped.callbackQueryId { self?.answerCallback(q) }
                if let q = mapped.preCheckoutQueryId { self?.answerPreCheckout(q) }
                done(.stored)
            }
        }
    }

    private func answerCallback(_ id: String) {
        callAPI("answerCallbackQuery", ["callback_query_id": .string(id)]) { [weak self] result in
            if case .failure(let f) = result {
                self?.host.log(.warning, "answerCallbackQuery failed: \(f.value.description)", [("code", f.value.code)])
            }
        }
    }

    private func answerPreCheckout(_ id: String) {
        guard config.approveCheckout else { return }
        callAPI("answerPreCheckoutQuery", ["pre_checkout_query_id": .string(id), "ok": true]) { [weak self] result in
            if case .failure(let f) = result {
                self?.host.log(.warning, "answerPreCheckoutQuery failed: \(f.value.description)", [("code", f.value.code)])
            }
        }
    }

    // MARK: Media download

    /// `GET /webhooks/<instance>/file/<file_id>` with `Authorization: Bearer <media_token>`: the file
    /// behind an inbound media part's `channel_media_id`, fetched with getFile and the Bot API's file
    /// download URL (which contains the bot token, so consumers never see that URL).
    private func fetchFile(_ req: IncomingRequest, _ res: Responder) {
        guard let token = config.mediaToken else { res.respond(status: 404); return }
        guard let auth = req.header("authorization"), auth.hasPrefix("Bearer "), constantTimeEqual(String(auth.dropFirst(7)), token) else {
            host.count("file_unauthorized")
            res.respond(status: 401, headers: [("WWW-Authenticate", "Bearer")])
            return
        }
        guard let slash = req.path.lastIndex(of: "/") else { res.respond(status: 404); return }
        let fileId = String(req.path[req.path.index(after: slash)...])
        guard !fileId.isEmpty, fileId.utf8.count <= 256,
              fileId.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
        else {
            res.respond(status: 400, json: ["error": "expected /file/<Telegram file_id>"])
            return
        }
        callAPI("getFile", ["file_id": .string(fileId)]) { [weak self] result in
            guard let self else { res.respond(status: 503); return }
            switch result {
            case .failure(let f):
                let status = f.value.status == 0 || f.value.retryable ? 502 : 404
                res.respond(status: status, json: ["error": .string(f.value.description)])
            case .success(let file):
                guard let path = file["file_path"]?.stringValue else {
                    res.respond(status: 404, json: ["error": "Telegram gave no file_path (the file may be larger than 20 MB)"])
                    return
                }
                let token = self.config.token
                self.host.request(method: "GET", url: "\(self.config.apiBase)/file/bot\(token)/\(path)",
                                  timeoutMs: max(self.config.requestTimeoutMs, 60_000)) { r in
                    guard r.status == 200 else {
                        let why = (r.error ?? "HTTP \(r.status)").replacingAll(token, with: "<token>")
                        res.respond(status: 502, json: ["error": .string("download failed: \(why)")])
                        return
                    }
                    var headers = [("Content-Type", r.header("content-type") ?? "application/octet-stream")]
                    if let name = path.split(separator: "/").last { headers.append(("Content-Disposition", "attachment; filename=\"\(name)\"")) }
                    res.respond(status: 200, headers: headers, body: r.body)
                }
            }
        }
    }

    // MARK: Long polling

    private func schedulePoll(afterMs: UInt64) {
        guard !stopping else { return }
        if pollTimer != 0 { host.cancelTimer(pollTimer) }
        pollTimer = host.timer(afterMs: afterMs) { [weak self] in
            guard let self else { return }
            self.pollTimer = 0
            self.poll()
        }
    }

    /// Backoff after failures: 1 s, 2 s, 4 s … 30 s, or what Telegram asked for.
    private func retryDelayMs(_ failure: APIFailure?) -> UInt64 {
        if let s = failure?.retryAfterSeconds, s > 0 { return UInt64(s) * 1000 }
        pollFailures += 1
        return min(30_000, 500 << UInt64(min(pollFailures, 6)))
    }

    private func poll() {
        guard !stopping, !pollInFlight, !batchInFlight, config.mode == .polling else { return }
        pollInFlight = true
        let params: JSONObject = [
            "offset": .int(offset), "timeout": .int(config.pollTimeoutS), "limit": 100,
            "allowed_updates": .array(UpdateMapper.allowedUpdates.map { .string($0) }),
        ]
        callAPI("getUpdates", params, timeoutMs: UInt32(config.pollTimeoutS + 15) * 1000) { [weak self] result in
            guard let self else { return }
            self.pollInFlight = false
            guard !self.stopping else { return }
            switch result {
            case .success(let value):
                guard let updates = value.arrayValue else {
                    self.host.log(.error, "getUpdates returned \(value.typeName), expected an array")
                    self.schedulePoll(afterMs: self.retryDelayMs(nil))
                    return
                }
                self.pollFailures = 0
                self.handleBatch(updates)
            case .failure(let box):
                let f = box.value
                var hint = ""
                if f.errorCode == 409 || f.status == 409 { hint = " (a webhook is set for this bot: delete it, or use mode = \"webhook\")" }
                if f.errorCode == 401 || f.status == 401 { hint = " (check bot_token)" }
                self.host.log(f.retryable ? .warning : .error, "getUpdates failed: \(f.description)\(hint)", [("code", f.code)])
                self.host.count("poll_errors")
                self.schedulePoll(afterMs: self.retryDelayMs(f))
            }
        }
    }

    /// Emits every update of a batch; once all are stored, saves offset = last update_id + 1
    /// durably, then polls again. A batch not fully stored is fetched again (the dedup keys drop
    /// what was already stored).
    private func handleBatch(_ updates: [JSONValue]) {
        guard !updates.isEmpty else {
            // Short polling (timeout 0) would spin: wait a second between empty answers.
            if config.pollTimeoutS == 0 { schedulePoll(afterMs: 1000) } else { poll() }
            return
        }
        batchInFlight = true
        var next = offset
        var remaining = updates.count
        var unavailable: String?
        let finishOne = { [weak self] in
            remaining -= 1
            guard remaining == 0, let self else { return }
            self.batchInFlight = false
            if let why = unavailable {
                self.host.log(.warning, "updates not stored, fetching them again", [("reason", why)])
                if self.stopping { self.finishStopIfIdle() } else { self.schedulePoll(afterMs: self.retryDelayMs(nil)) }
                return
            }
            if self.host.kvPut(Self.offsetKey, Array(String(next).utf8)) {
                self.offset = next
            } else {
                self.host.log(.error, "cannot store the polling offset; fetching the batch again")
                if !self.stopping { self.schedulePoll(afterMs: self.retryDelayMs(nil)); return }
            }
            if self.stopping { self.finishStopIfIdle() } else { self.poll() }
        }
        for u in updates {
            if let id = u["update_id"]?.intValue { next = max(next, id + 1) }
            let mapped: UpdateMapper.Mapped
            do { mapped = try mapper.map(u) } catch {
                // Not an update we can read at all: log it and move past it rather than block the bot.
                host.count("updates_malformed")
                host.log(.error, "skipping an unreadable update: \(error.description)")
                finishOne()
                continue
            }
            emitAll(mapped) { outcome in
                switch outcome {
                case .stored, .invalid: break  // invalid: logged in emitAll; retrying cannot fix it.
                case .unavailable(let why): unavailable = why
                }
                finishOne()
            }
        }
    }

    // MARK: Sends

    /// Plans the Bot API calls for a message and runs them in order through the pacer; reports exactly
    /// one outcome.
    public func send(_ message: OutboundMessage) throws {
        if stopping {
            host.sendResult(message.id, .retryable(code: "stopping", message: "instance is stopping"))
            return
        }
        let calls: [APICall]
        do { calls = try planner.plan(message.json) } catch {
            host.count("send_refused")
            host.sendResult(message.id, .permanent(code: error.code, message: error.message))
            return
        }
        let done = progress[message.messageId]
        var state = SendState(message: message, calls: calls, index: done?.index ?? 0, channelMessageId: done?.channelMessageId)
        if message.type == "edit" || message.type == "delete" || message.type == "reaction" {
            state.channelMessageId = message.json["target"]?["channel_message_id"]?.stringValue
        }
        pending[message.id] = state
        step(message.id)
    }

    private func step(_ id: SendID) {
        guard let state = pending[id] else { return }
        guard state.index < state.calls.count else {
            finish(id, .sent(channelMessageId: state.channelMessageId))
            return
        }
        if stopping {
            // Stopping part-way through a send: the retry after the restart continues from here.
            if state.index > 0 { remember(state) }
            finish(id, .retryable(code: "stopping", message: "instance is stopping"))
            return
        }
        let call = state.calls[state.index]
        let run: (@escaping () -> Void) -> Void = { [weak self] done in
            guard let self else { done(); return }
            self.callAPI(call.method, call.params) { [weak self] result in
                done()
                self?.completed(id, call, result)
            }
        }
        if call.paced {
            pacer.enqueue(chat: call.chat, front: state.index > 0, Pacer.Job(run: run, cancel: { [weak self] in
                self?.finish(id, .retryable(code: "stopping", message: "instance is stopping"))
            }))
        } else {
            run {}
        }
    }

    private func completed(_ id: SendID, _ call: APICall, _ result: Result<JSONValue, APIFailureBox>) {
        guard var state = pending[id] else { return }
        switch result {
        case .success(let value):
            if call.returnsMessage, let mid = value["message_id"]?.intValue, state.channelMessageId == nil {
                state.channelMessageId = "\(call.chat):\(mid)"
            }
            state.index += 1
            pending[id] = state
            host.count("api_calls")
            step(id)
        case .failure(let box):
            let f = box.value
            if f.errorCode == 429 || f.status == 429 {
                let ms = UInt64(max(1, f.retryAfterSeconds ?? 1)) * 1000
                pacer.hold(chat: call.chat, ms: ms, global: false)
                host.count("rate_limited")
            }
            if f.retryable {
                // Keep what was sent so the retry continues after it.
                if state.index > 0 { remember(state) }
                let after = UInt32(clamping: (f.retryAfterSeconds ?? 0) * 1000)
                finish(id, .retryable(code: f.code, message: "\(call.method): \(f.description)", retryAfterMs: after))
            } else {
                finish(id, .permanent(code: f.code, message: "\(call.method): \(f.description)"))
            }
        }
    }

    /// Keeps how far a send got, for its retry (bounded: the oldest entries go first).
    private func remember(_ state: SendState) {
        if progress[state.message.messageId] == nil {
            progressOrder.append(state.message.messageId)
            if progressOrder.count > 10_000 { progress[progressOrder.removeFirst()] = nil }
        }
        progress[state.message.messageId] = (state.index, state.channelMessageId)
    }

    private func finish(_ id: SendID, _ outcome: SendOutcome) {
        guard let state = pending.removeValue(forKey: id) else { return }
        switch outcome {
        case .sent, .permanent: progress[state.message.messageId] = nil
        case .retryable: break
        }
        if case .sent = outcome { host.count("sent") }
        host.sendResult(id, outcome)
        finishStopIfIdle()
    }
}

/// Boxes an `APIFailure` as an `Error` for `Result`.
struct APIFailureBox: Error {
    let value: TelegramConnector.APIFailure
    init(_ value: TelegramConnector.APIFailure) { self.value = value }
}

/// Compares two secrets in time independent of where they differ (and of their lengths): both
/// are hashed with SHA-256 and the digests compared with `CRYPTO_memcmp`.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    var da = [UInt8](repeating: 0, count: 32), db = [UInt8](repeating: 0, count: 32)
    let ab = Array(a.utf8), bb = Array(b.utf8)
    ab.withUnsafeBytes { p in cossl_sha256(p.baseAddress, p.count, &da) }
    bb.withUnsafeBytes { p in cossl_sha256(p.baseAddress, p.count, &db) }
    return cossl_memcmp(da, db, 32) == 0
}

extension String {
    func replacingAll(_ needle: String, with replacement: String) -> String {
        guard !needle.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let r = rest.range(of: needle) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    /// The first range of `needle` (no Foundation).
    func range(of needle: String) -> Range<Index>? {
        let n = Array(needle.utf8)
        guard !n.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].utf8.starts(with: n) {
                return i..<self.utf8.index(i, offsetBy: n.count)
            }
            i = index(after: i)
        }
        return nil
    }
}

/// The plugin's one exported symbol.
@_cdecl("chorus_plugin_entry")
public func chorus_plugin_entry(_ offer: UnsafePointer<chorus_host_offer>?,
                                _ out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?) -> chorus_status
{
    ConnectorExport.entry(offer: offer, out: out, descriptor: TelegramConnector.descriptor) { host, settings in
        try TelegramConnector(host: host, settings: settings)
    }
}
