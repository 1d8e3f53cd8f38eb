import CChorusPlugin
import ChorusConnectorSDK
import ChorusJSON
import Dispatch
import MetaGraph
#if canImport(Glibc)
import Glibc
#endif

/// The Messenger and Instagram connector: one class, parameterized by channel,
/// because both speak the Messenger Platform's messaging shape.
///
/// Inbound: Meta's webhook at `/webhooks/<instance>` — `GET` answers the
/// subscription handshake, `POST` is verified (`X-Hub-Signature-256`) over
/// the raw body, then every `messaging[]` item of every entry is emitted; the
/// answer is 200 once all are durable. Attachments are fetched after the
/// commit and served at `/webhooks/<instance>/media/<key>`.
///
/// Outbound: `POST {api_base_url}/{api_version}/{page-or-account-id}/messages`
/// (the Send API), paced, with the 24-hour window enforced before any call.
/// See docs/connectors/messenger.md and docs/connectors/instagram.md.
public final class MessagingConnector: Connector {
    /// The plugin descriptor for `channel`.
    public static func descriptor(for channel: MessagingChannel) -> ConnectorDescriptor {
        ConnectorDescriptor(
            name: channel.rawValue, version: "1.0.0", channel: channel.rawValue,
            summary: channel == .messenger ? "Facebook Messenger (Messenger Platform webhooks in, Send API out)"
                                           : "Instagram Messaging (Meta webhooks in, Send API out)",
            capabilities: .init(
                flags: UInt64(CHORUS_CAP_REACTIONS | CHORUS_CAP_TYPING | CHORUS_CAP_READ_RECEIPTS | CHORUS_CAP_TEMPLATES
                    | CHORUS_CAP_PAYMENTS | CHORUS_CAP_DELIVERY_STATUS),
                receiveParts: ["text", "media", "location", "interactive_reply", "unsupported"],
                sendParts: ["text", "media", "interactive", "template", "payment_request"],
                maxTextLength: UInt32(channel.maxTextLength), ratePerSecond: 40, ratePerChatPerMinute: 0, maxMediaBytes: 25 << 20))
    }

    public let host: ConnectorHost
    /// Which of the two channels this instance serves.
    public let channel: MessagingChannel
    private let instanceName: String
    private let stateDirectory: String
    private var config: Config
    private let graph: GraphClient
    private let window: ServiceWindowTracker
    private let ledger: SentLedger
    private var pacer: SendPacer
    private var stopping = false
    private var stoppedReported = false
    private var pending: [SendID: PendingSend] = [:]
    /// Calls already made for a message (by Chorus message id), kept across retries so a retry does not resend them.
    private var progress: [String: Int] = [:]
    private var mediaWaiters: [UInt64: Responder] = [:]
    private var nextWaiter: UInt64 = 0

    final class PendingSend {
        let message: OutboundMessage
        let plan: MessagingPlan
        var next: Int
        var lastId: String?
        var timer: UInt64 = 0
        var inFlight = false
        var uploaded: [Int: String] = [:]
        init(message: OutboundMessage, plan: MessagingPlan, next: Int) { self.message = message; self.plan = plan; self.next = next }
    }

    /// Validated settings.
    struct Config {
        var appSecret: String
        var verifyToken: String
        var accessToken: String
        /// The business id events are about (page id or Instagram account id).
        var businessId: String
        /// Other ids of the business (an Instagram account's page), recognised as the sender of echoes.
        var otherIds: [String]
        /// The id in the Send API path.
        var sendId: String
        /// `channel_ids.account` of events: the `account` setting, else the instance name (as the daemon assumes).
        var account: String
        var apiBaseURL: String
        var apiVersion: String
        var messagesPerSecond: Int
        var maxPacingDelayMs: Int
        var requestTimeoutMs: Int
        var mediaMaxBytes: Int
        var mediaPrefetch: Bool
        var humanAgentWindowMs: Int64
        /// The Meta app id the connector sends as; echoes carrying it are this connector's own sends.
        var appId: String?

        static func known(_ channel: MessagingChannel) -> Set<String> {
            var k: Set<String> = [
                "app_secret", "app_secret_file", "app_secret_credential",
                "verify_token", "verify_token_file", "verify_token_credential",
                "access_token", "access_token_file", "access_token_credential",
                "page_id", "account", "api_base_url", "api_version", "messages_per_second", "max_pacing_delay_ms",
                "request_timeout_ms", "media_max_bytes", "media_prefetch", "app_id",
            ]
            if channel == .instagram { k.insert("instagram_account_id") }
            return k
        }

        init(_ s: ConnectorSettings, channel: MessagingChannel) throws {
            let known = Config.known(channel)
            for (k, _) in s.values where !known.contains(k) {
                throw ConnectorError("unknown setting \"\(k)\" (known: \(known.sorted().joined(separator: ", ")))")
            }
            func secret(_ key: String) throws -> String {
                guard let v = s[key], !v.isEmpty else {
                    throw ConnectorError("setting \"\(key)\" is required (give \(key)_file or \(key)_credential to keep it out of the config)")
                }
                var t = Substring(v)
                while let last = t.last, last == "\n" || last == "\r" || last == " " { t.removeLast() }
                return String(t)
            }
            func numericId(_ key: String) throws -> String {
                let v = try s.string(key)
                guard v.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                    throw ConnectorError("setting \"\(key)\": expected a numeric id, found \"\(v)\"")
                }
                return v
            }
            appSecret = try secret("app_secret")
            verifyToken = try secret("verify_token")
            accessToken = try secret("access_token")
            switch channel {
            case .messenger:
                businessId = try numericId("page_id")
                otherIds = []
                sendId = businessId
            case .instagram:
                businessId = try numericId("instagram_account_id")
                let page = s["page_id"].flatMap { $0.isEmpty ? nil : $0 }
                if page != nil { _ = try numericId("page_id") }
                otherIds = page.map { [$0] } ?? []
                // Facebook Login: POST /{page-id}/messages; Instagram Login: POST /{ig-id}/messages.
                sendId = page ?? businessId
            }
            // The same default the daemon uses for first-contact sends (instance + to): the instance name.
            account = s["account"].flatMap { $0.isEmpty ? nil : $0 } ?? s.instanceName
            apiBaseURL = s["api_base_url"] ?? GraphClient.defaultBaseURL
            guard apiBaseURL.hasPrefix("https://") || apiBaseURL.hasPrefix("http://") else {
                throw ConnectorError("setting \"api_base_url\": expected an http(s) URL, found \"\(apiBaseURL)\"")
            }
            apiVersion = s["api_version"] ?? GraphClient.defaultVersion
            guard apiVersion.hasPrefix("v"), Double(apiVersion.dropFirst()) != nil else {
                throw ConnectorError("setting \"api_version\": expected a Graph API version like v21.0, found \"\(apiVersion)\"")
            }
            messagesPerSecond = try s.int("messages_per_second", default: 40)
            maxPacingDelayMs = try s.int("max_pacing_delay_ms", default: 30_000)
            requestTimeoutMs = try s.int("request_timeout_ms", default: 20_000)
            mediaMaxBytes = try s.int("media_max_bytes", default: 25 << 20)
            mediaPrefetch = try s.bool("media_prefetch", default: true)
            humanAgentWindowMs = 7 * 24 * 3_600_000
            appId = s["app_id"].flatMap { $0.isEmpty ? nil : $0 }
            guard messagesPerSecond > 0, maxPacingDelayMs >= 0, requestTimeoutMs > 0, mediaMaxBytes > 0 else {
                throw ConnectorError("messages_per_second, request_timeout_ms and media_max_bytes must be positive, max_pacing_delay_ms not negative")
            }
        }

        var pacer: SendPacer {
            // No per-recipient pair rate on Messenger: a generous per-chat bucket only keeps one chat from starving the others.
            SendPacer(ratePerSecond: Double(messagesPerSecond), recipientRatePerSecond: 5, recipientBurst: 20)
        }
    }

    /// Creates an instance for `channel`; validates the settings, starts nothing.
    public init(channel: MessagingChannel, host: ConnectorHost, settings: ConnectorSettings) throws {
        self.channel = channel
        self.host = host
        instanceName = settings.instanceName
        stateDirectory = settings.stateDirectory
        let c = try Config(settings, channel: channel)
        config = c
        graph = GraphClient(host: host, baseURL: c.apiBaseURL, version: c.apiVersion, accessToken: c.accessToken, timeoutMs: UInt32(c.requestTimeoutMs))
        window = ServiceWindowTracker(store: .host(host))
        ledger = SentLedger(store: .host(host))
        pacer = c.pacer
    }

    /// `Connector` conformance: a Messenger instance (the Instagram plugin uses `init(channel:host:settings:)`).
    public convenience init(host: ConnectorHost, settings: ConnectorSettings) throws {
        try self.init(channel: .messenger, host: host, settings: settings)
    }

    public func start() throws {
        try host.route("GET", "/") { [unowned self] req, res in WebhookVerification.handle(req, verifyToken: self.config.verifyToken, res) }
        try host.route("POST", "/") { [unowned self] req, res in self.webhook(req, res) }
        try host.route("GET", "/media/*") { [unowned self] req, res in self.serveMedia(req, res) }
        host.log(.info, "\(channel.rawValue) connector ready", [("business_id", config.businessId), ("api", graph.url(config.sendId + "/messages"))])
    }

    public func reload(settings: ConnectorSettings) throws {
        let c = try Config(settings, channel: channel)
        guard c.businessId == config.businessId else {
            throw ConnectorError("\(channel == .messenger ? "page_id" : "instagram_account_id") cannot change on reload; restart the instance")
        }
        config = c
        graph.update(baseURL: c.apiBaseURL, version: c.apiVersion, accessToken: c.accessToken)
        graph.timeoutMs = UInt32(c.requestTimeoutMs)
        pacer = c.pacer
    }

    public func stop() {
        stopping = true
        for (id, p) in pending where !p.inFlight {
            if p.timer != 0 { host.cancelTimer(p.timer) }
            pending[id] = nil
            host.sendResult(id, .retryable(code: "stopping", message: "instance is stopping"))
        }
        finishStopIfIdle()
    }

    private func finishStopIfIdle() {
        guard stopping, pending.isEmpty, !stoppedReported else { return }
        stoppedReported = true
        host.stopped()
    }

    // MARK: Inbound

    private var mediaPathPrefix: String { "/webhooks/\(instanceName)/media/" }

    private func webhook(_ req: IncomingRequest, _ res: Responder) {
        if case .failure(let why) = GraphSignature.verify(req, secret: config.appSecret) {
            host.count("webhook_bad_signature")
            host.log(.warning, "webhook refused: \(why)", [("remote", req.remoteAddress)])
            res.respond(status: 401, json: ["error": .string(why.description)])
            return
        }
        let doc: JSONValue
        do { doc = try JSONParser.parse(req.body) } catch {
            host.count("webhook_malformed")
            res.respond(status: 400, json: ["error": .string("malformed JSON: \(error)")])
            return
        }
        let mapper = MessagingInbound(channel: channel, account: config.account,
                                      businessIds: Set([config.businessId] + config.otherIds),
                                      mediaPathPrefix: mediaPathPrefix, storesMedia: config.mediaPrefetch, ledger: ledger, appId: config.appId)
        let out: MessagingInbound.Output
        do { out = try mapper.events(from: doc) } catch {
            host.count("webhook_malformed")
            res.respond(status: 400, json: ["error": .string("\(error)")])
            return
        }
        for s in out.skipped {
            host.count("webhook_items_skipped")
            host.log(.debug, "webhook item not taken: \(s)")
        }
        if out.events.isEmpty {
            afterCommit(out)
            res.respond(status: 200, json: ["accepted": 0])
            return
        }
        var remaining = out.events.count
        var unavailable: String?
        var invalid: String?
        for ev in out.events {
            host.emit(ev) { [weak self] result in
                switch result {
                case .committed, .duplicate: break
                case .unavailable(let why): unavailable = why
                case .invalid(let why):
                    invalid = why
                    self?.host.log(.error, "event refused by the host (connector bug): \(why)")
                }
                remaining -= 1
                guard remaining == 0 else { return }
                if let unavailable {
                    res.respond(status: 503, headers: [("Retry-After", "5"), ("Content-Type", "application/json")],
                                body: JSONWriter.encode(["error": .string(unavailable)]))
                } else if let invalid {
                    res.respond(status: 500, json: ["error": .string(invalid)])
                } else {
                    res.respond(status: 200, json: ["accepted": .int(out.events.count)])
                    self?.afterCommit(out)
                }
            }
        }
    }

    /// Bookkeeping once a webhook's events are durable: the service window, the sent-message ledger, media.
    private func afterCommit(_ out: MessagingInbound.Output) {
        for i in out.inbound { window.recordInbound(chat: i.chat, atMs: i.atMs, messageId: i.messageId) }
        for u in out.ledger {
            switch u {
            case .sent(let chat, let mid, let at): ledger.record(chat: chat, mid: mid, atMs: at)
            case .read(let chat, let mids): ledger.forget(chat: chat, mids: mids)
            }
        }
        for m in out.media {
            // A redelivered webhook names media already fetched (or being fetched): once is enough.
            if host.kvGet("media:" + m.key) != nil { continue }
            host.kvPut("media:" + m.key, Array(m.url.utf8))
            fetchMedia(m, waiter: nil)
        }
    }

    // MARK: Media

    private var mediaDirectory: String { stateDirectory + "/\(channel.rawValue)-media/" + instanceName }

    private func mediaFile(_ key: String) -> String { mediaDirectory + "/" + percentEncodePathSegment(key) }

    private func serveMedia(_ req: IncomingRequest, _ res: Responder) {
        let key = percentDecode(req.path.split(separator: "/").last.map(String.init) ?? "")
        guard !key.isEmpty else { res.respond(status: 404); return }
        nextWaiter += 1
        let token = nextWaiter
        mediaWaiters[token] = res
        let path = mediaFile(key)
        let host = self.host
        let owner = WeakConnector(self)
        DispatchQueue.global().async {
            let bytes = readWholeFile(path)
            host.post {
                guard let self = owner.value else { return }
                if let bytes {
                    self.mediaWaiters.removeValue(forKey: token)?.respond(status: 200, headers: [("Content-Type", "application/octet-stream")], body: bytes)
                } else if let url = self.host.kvGetString("media:" + key) {
                    self.fetchMedia(MediaFetch(key: key, url: url), waiter: token)
                } else {
                    self.mediaWaiters.removeValue(forKey: token)?.respond(status: 404, json: ["error": "unknown media"])
                }
            }
        }
    }

    /// Downloads an attachment (with the access token only when the URL is on the Graph API origin), stores it
    /// under the state directory, and answers `waiter` when given.
    private func fetchMedia(_ m: MediaFetch, waiter: UInt64?) {
        let limit = config.mediaMaxBytes
        var headers: [(String, String)] = []
        if m.url.hasPrefix(graph.baseURL + "/") { headers.append(graph.authorizationHeader) }
        host.request(method: "GET", url: m.url, headers: headers, timeoutMs: UInt32(max(config.requestTimeoutMs, 60_000))) { [weak self] r in
            guard let self else { return }
            let answer = waiter.flatMap { self.mediaWaiters.removeValue(forKey: $0) }
            guard (200..<300).contains(r.status) else {
                self.host.count("media_failed")
                self.host.log(.warning, "media download failed", [("key", m.key), ("status", String(r.status)), ("reason", r.error ?? "")])
                answer?.respond(status: r.status == 0 || r.status >= 500 ? 502 : 404, json: ["error": .string("media download failed: HTTP \(r.status)")])
                return
            }
            guard r.body.count <= limit else {
                self.host.count("media_failed")
                self.host.log(.warning, "media over media_max_bytes", [("key", m.key), ("bytes", String(r.body.count))])
                answer?.respond(status: 413, json: ["error": .string("media is \(r.body.count) bytes, over media_max_bytes (\(limit))")])
                return
            }
            self.host.count("media_downloaded")
            answer?.respond(status: 200, headers: [("Content-Type", r.header("content-type") ?? "application/octet-stream")], body: r.body)
            let dir = self.mediaDirectory, path = self.mediaFile(m.key), bytes = r.body
            DispatchQueue.global().async { writeWholeFile(dir: dir, path: path, bytes: bytes) }
        }
    }

    // MARK: Outbound

    public func send(_ message: OutboundMessage) throws {
        if stopping { host.sendResult(message.id, .retryable(code: "stopping", message: "instance is stopping")); return }
        let to = message.to
        let plan: MessagingPlan
        do { plan = try MessagingOutbound(channel: channel).plan(message.json) } catch let r as MessagingRefusal {
            host.sendResult(message.id, .permanent(code: r.code, message: r.message))
            return
        }
        if let refusal = windowRefusal(plan, to: to) {
            host.count("sends_outside_window")
            host.sendResult(message.id, .permanent(code: "outside_customer_service_window", message: refusal))
            return
        }
        let p = PendingSend(message: message, plan: plan, next: progress[message.messageId] ?? 0)
        pending[message.id] = p
        schedule(p)
    }

    /// The 24-hour rule: free-form messages only within 24 hours of the person's last message;
    /// outside it, only with a message tag (HUMAN_AGENT: within 7 days).
    private func windowRefusal(_ plan: MessagingPlan, to: String) -> String? {
        if plan.isAction {
            // Sender actions are allowed only while the window is open, too; a closed window makes them fail at Meta.
            return window.isOpen(chat: to) ? nil
                : "the 24-hour messaging window with \(to) is closed: sender actions (read, typing, reactions) are only allowed within it"
        }
        if window.isOpen(chat: to) { return nil }
        switch plan.tag {
        case nil:
            return "the 24-hour messaging window with \(to) is closed (no message from them in the last 24 hours): a message tag is needed "
                + "(options.tag: \(channel.messageTags.sorted().joined(separator: ", "))) or a template the person opted in to"
        case "HUMAN_AGENT":
            guard let last = window.lastInbound(chat: to), wallClockMilliseconds() - last < config.humanAgentWindowMs else {
                return "the HUMAN_AGENT tag allows replies within 7 days of the person's last message; \(to) has not written in that time"
            }
            return nil
        default:
            return nil
        }
    }

    private func schedule(_ p: PendingSend) {
        let wait = pacer.reserveRecipient(p.message.to)
        guard wait <= Int64(config.maxPacingDelayMs) else {
            finish(p, .retryable(code: "paced", message: "too many messages to this recipient", retryAfterMs: UInt32(min(wait, 3_600_000))))
            return
        }
        after(wait, p) { [weak self] p in self?.scheduleSender(p) }
    }

    private func scheduleSender(_ p: PendingSend) {
        let wait = pacer.reserveSender()
        guard wait <= Int64(config.maxPacingDelayMs) else {
            finish(p, .retryable(code: "paced", message: "the \(channel.rawValue) send rate is exhausted", retryAfterMs: UInt32(min(wait, 3_600_000))))
            return
        }
        after(wait, p) { [weak self] p in self?.call(p) }
    }

    private func after(_ ms: Int64, _ p: PendingSend, _ body: @escaping (PendingSend) -> Void) {
        if ms <= 0 { body(p); return }
        p.timer = host.timer(afterMs: UInt64(ms)) { [weak p] in
            guard let p else { return }
            p.timer = 0
            body(p)
        }
    }

    private func call(_ p: PendingSend) {
        guard pending[p.message.id] === p else { return }
        if stopping { finish(p, .retryable(code: "stopping", message: "instance is stopping")); return }
        var body = p.plan.calls[p.next]
        if let upload = p.plan.uploads[p.next] {
            guard let id = p.uploaded[p.next] else { startUpload(p, upload); return }
            if case .object(var o) = body, case .object(var m)? = o["message"], case .object(var a)? = m["attachment"] {
                a["payload"] = ["attachment_id": .string(id)]
                m["attachment"] = .object(a)
                o["message"] = .object(m)
                body = .object(o)
            }
        }
        p.inFlight = true
        let startedMs = wallClockMilliseconds()
        graph.post(config.sendId + "/messages", json: body) { [weak self] result in
            guard let self else { return }
            p.inFlight = false
            switch result {
            case .success(let doc):
                if let mid = doc["message_id"]?.stringValue {
                    p.lastId = mid
                    // The request's start time is at or before Meta's timestamp for the message, so a watermark covers it.
                    self.ledger.record(chat: p.message.to, mid: mid, atMs: startedMs)
                }
                p.next += 1
                if p.next < p.plan.calls.count {
                    self.progress[p.message.messageId] = p.next
                    if self.stopping { self.finish(p, .retryable(code: "stopping", message: "instance is stopping")) } else { self.schedule(p) }
                    return
                }
                self.progress[p.message.messageId] = nil
                self.host.count("sent")
                self.finish(p, .sent(channelMessageId: p.plan.isAction ? nil : p.lastId))
            case .failure(let f):
                if f.isThrottling, case .retryable(let after) = f.disposition {
                    self.host.count("throttled")
                    self.pacer.pauseSender(forMs: Int64(after))
                }
                if !f.isRetryable { self.progress[p.message.messageId] = nil }
                self.host.count(f.isRetryable ? "send_retryable" : "send_failed")
                self.finish(p, f.sendOutcome)
            }
        }
    }

    /// Reads a local file off the loop thread and uploads it with the Attachment Upload API
    /// (`POST /{id}/message_attachments`), then makes the call with the attachment id.
    private func startUpload(_ p: PendingSend, _ u: AttachmentUpload) {
        p.inFlight = true
        let limit = config.mediaMaxBytes
        let host = self.host
        let owner = WeakConnector(self)
        let id = p.message.id
        DispatchQueue.global().async {
            let bytes = readWholeFile(u.path)
            host.post {
                guard let self = owner.value, let p = self.pending[id] else { return }
                p.inFlight = false
                guard let bytes else { self.finish(p, .permanent(code: "media_unavailable", message: "cannot read \(u.path)")); return }
                guard bytes.count <= limit else {
                    self.finish(p, .permanent(code: "media_too_large", message: "media is \(bytes.count) bytes, over media_max_bytes (\(limit))"))
                    return
                }
                self.postUpload(p, u, bytes: bytes)
            }
        }
    }

    private func postUpload(_ p: PendingSend, _ u: AttachmentUpload, bytes: [UInt8]) {
        let boundary = "chorus-\(p.message.id.rawValue)-\(monotonicMilliseconds())"
        let mime = u.mimeType ?? "application/octet-stream"
        let name = String((u.fileName ?? u.path.split(separator: "/").last.map(String.init) ?? "upload").unicodeScalars.map {
            $0 == "\"" || $0 == "\r" || $0 == "\n" ? "_" : Character($0)
        })
        let meta = JSONWriter.encodeString(["attachment": ["type": .string(u.type), "payload": ["is_reusable": true]]])
        var body: [UInt8] = []
        body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\n\(meta)\r\n".utf8)
        body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"filedata\"; filename=\"\(name)\"\r\nContent-Type: \(mime)\r\n\r\n".utf8)
        body += bytes
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        p.inFlight = true
        graph.post(config.sendId + "/message_attachments", body: body, contentType: "multipart/form-data; boundary=\(boundary)") { [weak self] result in
            guard let self else { return }
            p.inFlight = false
            switch result {
            case .success(let doc):
                guard let id = doc["attachment_id"]?.stringValue else {
                    self.finish(p, .retryable(code: "bad_response", message: "attachment upload answered without an attachment_id"))
                    return
                }
                self.host.count("media_uploaded")
                p.uploaded[p.next] = id
                self.call(p)
            case .failure(let f):
                self.finish(p, f.sendOutcome)
            }
        }
    }

    private func finish(_ p: PendingSend, _ outcome: SendOutcome) {
        guard pending.removeValue(forKey: p.message.id) != nil else { return }
        if p.timer != 0 { host.cancelTimer(p.timer); p.timer = 0 }
        host.sendResult(p.message.id, outcome)
        finishStopIfIdle()
    }
}

/// A weak reference handed through another thread and dereferenced only back on the loop thread.
private final class WeakConnector: @unchecked Sendable {
    weak var value: MessagingConnector?
    init(_ value: MessagingConnector) { self.value = value }
}

// MARK: Files (called off the loop thread)

func readWholeFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 { return nil }
        if n == 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return out
}

func writeWholeFile(dir: String, path: String, bytes: [UInt8]) {
    var partial = ""
    for comp in dir.split(separator: "/") {
        partial += "/" + comp
        mkdir(partial, 0o700)
    }
    let tmp = path + ".tmp"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { return }
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, bytes.count - off) }
        if n <= 0 { break }
        off += n
    }
    fsync(fd)
    close(fd)
    if off == bytes.count { rename(tmp, path) } else { unlink(tmp) }
}

func percentDecode(_ s: String) -> String {
    var out = [UInt8]()
    let b = Array(s.utf8)
    var i = 0
    while i < b.count {
        if b[i] == UInt8(ascii: "%"), i + 2 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) {
            out.append(v); i += 3; continue
        }
        out.append(b[i]); i += 1
    }
    return String(decoding: out, as: UTF8.self)
}
