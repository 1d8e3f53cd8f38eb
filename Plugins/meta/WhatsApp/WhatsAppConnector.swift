import CChorusPlugin
import ChorusConnectorSDK
import ChorusJSON
import Dispatch
import MetaGraph
#if canImport(Glibc)
import Glibc
#endif

/// The WhatsApp Cloud API connector.
///
/// Inbound: Meta's webhook at `/webhooks/<instance>` — `GET` answers the
/// subscription handshake, `POST` is verified (`X-Hub-Signature-256`) over
/// the raw body, then every message and status of every entry and change is
/// emitted; the answer is 200 once all are durable. Media is fetched through
/// the Graph media endpoint and served at `/webhooks/<instance>/media/<id>`.
///
/// Outbound: `POST {api_base_url}/{api_version}/{phone_number_id}/messages`,
/// paced per number and per recipient, with the 24-hour customer-service
/// window enforced before any call. See docs/connectors/whatsapp.md.
public final class WhatsAppConnector: Connector {
    public static let descriptor = ConnectorDescriptor(
        name: "whatsapp", version: "1.0.0", channel: "whatsapp",
        summary: "WhatsApp Cloud API (Meta Graph webhooks in, Graph API out)",
        capabilities: .init(
            flags: UInt64(CHORUS_CAP_REACTIONS | CHORUS_CAP_TYPING | CHORUS_CAP_READ_RECEIPTS | CHORUS_CAP_TEMPLATES
                | CHORUS_CAP_PAYMENTS | CHORUS_CAP_DELIVERY_STATUS),
            receiveParts: ["text", "media", "location", "contact", "interactive_reply", "order", "unsupported"],
            sendParts: ["text", "media", "location", "contact", "interactive", "template", "product", "order", "payment_request"],
            maxTextLength: UInt32(WhatsAppOutbound.maxTextLength), ratePerSecond: 80, ratePerChatPerMinute: 0, maxMediaBytes: 100 << 20))

    public let host: ConnectorHost
    private let instanceName: String
    private let stateDirectory: String
    private var config: Config
    private let graph: GraphClient
    private let media: GraphMediaDownloader
    private let window: ServiceWindowTracker
    private var pacer: SendPacer
    private var stopping = false
    private var stoppedReported = false

    /// Sends handed to us and not reported yet.
    private var pending: [SendID: PendingSend] = [:]
    /// Progress of multi-call sends, kept across retries so a retry does not resend what went out.
    private var progress: [String: Int] = [:]
    /// Media responses waiting for a background read or a download.
    private var mediaWaiters: [UInt64: Responder] = [:]
    private var nextWaiter: UInt64 = 0

    final class PendingSend {
        let message: OutboundMessage
        let plan: OutboundPlan
        var next: Int
        var lastId: String?
        var timer: UInt64 = 0
        var inFlight = false
        /// Media ids of uploads done for the call at that index.
        var uploaded: [Int: String] = [:]
        init(message: OutboundMessage, plan: OutboundPlan, next: Int) { self.message = message; self.plan = plan; self.next = next }
    }

    struct Config {
        var appSecret: String
        var verifyToken: String
        var accessToken: String
        var phoneNumberId: String
        var account: String
        var apiBaseURL: String
        var apiVersion: String
        var messagesPerSecond: Int
        var recipientPerMinute: Int
        var recipientBurst: Int
        var maxPacingDelayMs: Int
        var requestTimeoutMs: Int
        var mediaMaxBytes: Int
        var mediaPrefetch: Bool
        var outbound: WhatsAppOutbound

        static let known: Set<String> = [
            "app_secret", "app_secret_file", "app_secret_credential",
            "verify_token", "verify_token_file", "verify_token_credential",
            "access_token", "access_token_file", "access_token_credential",
            "phone_number_id", "account", "waba_id", "api_base_url", "api_version",
            "messages_per_second", "recipient_messages_per_minute", "recipient_burst", "max_pacing_delay_ms",
            "request_timeout_ms", "media_max_bytes", "media_prefetch", "preview_links", "catalog_id",
            "payment_configuration", "payment_type", "order_status_template", "order_status_template_language",
        ]

        init(_ s: ConnectorSettings) throws {
            for (k, _) in s.values where !Config.known.contains(k) {
                throw ConnectorError("unknown setting \"\(k)\" (known: \(Config.known.sorted().joined(separator: ", ")))")
            }
            func secret(_ key: String) throws -> String {
                guard let v = s[key], !v.isEmpty else {
                    throw ConnectorError("setting \"\(key)\" is required (give \(key)_file or \(key)_credential to keep it out of the config)")
                }
                // Secret files usually end with a newline.
                var t = Substring(v)
                while let last = t.last, last == "\n" || last == "\r" || last == " " { t.removeLast() }
                return String(t)
            }
            appSecret = try secret("app_secret")
            verifyToken = try secret("verify_token")
            accessToken = try secret("access_token")
            phoneNumberId = try s.string("phone_number_id")
            guard phoneNumberId.allSatisfy({ $0.isNumber }) else {
                throw ConnectorError("setting \"phone_number_id\": expected the numeric phone number id, found \"\(phoneNumberId)\"")
            }
            account = s["account"].flatMap { $0.isEmpty ? nil : $0 } ?? s.instanceName
            apiBaseURL = s["api_base_url"] ?? GraphClient.defaultBaseURL
            guard apiBaseURL.hasPrefix("https://") || apiBaseURL.hasPrefix("http://") else {
                throw ConnectorError("setting \"api_base_url\": expected an http(s) URL, found \"\(apiBaseURL)\"")
            }
            apiVersion = s["api_version"] ?? GraphClient.defaultVersion
            guard apiVersion.hasPrefix("v"), Double(apiVersion.dropFirst()) != nil else {
                throw ConnectorError("setting \"api_version\": expected a Graph API version like v21.0, found \"\(apiVersion)\"")
            }
            messagesPerSecond = try s.int("messages_per_second", default: 80)
            recipientPerMinute = try s.int("recipient_messages_per_minute", default: 10)
            recipientBurst = try s.int("recipient_burst", default: 45)
            maxPacingDelayMs = try s.int("max_pacing_delay_ms", default: 30_000)
            requestTimeoutMs = try s.int("request_timeout_ms", default: 20_000)
            mediaMaxBytes = try s.int("media_max_bytes", default: 100 << 20)
            mediaPrefetch = try s.bool("media_prefetch", default: true)
            guard messagesPerSecond > 0, recipientPerMinute > 0, recipientBurst > 0, maxPacingDelayMs >= 0,
                  requestTimeoutMs > 0, mediaMaxBytes > 0 else {
                throw ConnectorError("rate, burst, timeout and size settings must be positive")
            }
            outbound = WhatsAppOutbound(
                previewLinks: try s.bool("preview_links", default: false), catalogId: s["catalog_id"],
                paymentConfiguration: s["payment_configuration"], paymentType: s["payment_type"] ?? "upi",
                mediaRefPrefix: "/webhooks/\(s.instanceName)/media/",
                orderStatusTemplate: s["order_status_template"], orderStatusTemplateLanguage: s["order_status_template_language"] ?? "en_US")
        }

        var pacer: SendPacer {
            SendPacer(ratePerSecond: Double(messagesPerSecond), recipientRatePerSecond: Double(recipientPerMinute) / 60, recipientBurst: recipientBurst)
        }
    }

    public init(host: ConnectorHost, settings: ConnectorSettings) throws {
        self.host = host
        instanceName = settings.instanceName
        stateDirectory = settings.stateDirectory
        let c = try Config(settings)
        config = c
        graph = GraphClient(host: host, baseURL: c.apiBaseURL, version: c.apiVersion, accessToken: c.accessToken, timeoutMs: UInt32(c.requestTimeoutMs))
        media = GraphMediaDownloader(graph: graph, maxBytes: c.mediaMaxBytes)
        window = ServiceWindowTracker(store: .host(host))
        pacer = c.pacer
    }

    public func start() throws {
        try host.route("GET", "/") { [unowned self] req, res in WebhookVerification.handle(req, verifyToken: self.config.verifyToken, res) }
        try host.route("POST", "/") { [unowned self] req, res in self.webhook(req, res) }
        try host.route("GET", "/media/*") { [unowned self] req, res in self.serveMedia(req, res) }
        host.log(.info, "whatsapp connector ready", [("phone_number_id", config.phoneNumberId), ("api", graph.url(config.phoneNumberId + "/messages"))])
    }

    public func reload(settings: ConnectorSettings) throws {
        let c = try Config(settings)
        guard c.phoneNumberId == config.phoneNumberId else {
            throw ConnectorError("phone_number_id cannot change on reload; restart the instance")
        }
        config = c
        graph.update(baseURL: c.apiBaseURL, version: c.apiVersion, accessToken: c.accessToken)
        graph.timeoutMs = UInt32(c.requestTimeoutMs)
        media.maxBytes = c.mediaMaxBytes
        pacer = c.pacer
    }

    public func stop() {
        stopping = true
        window.flush()
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
        let mapper = WhatsAppInbound(account: config.account, phoneNumberId: config.phoneNumberId, mediaPathPrefix: mediaPathPrefix)
        let out: WhatsAppInbound.Output
        do { out = try mapper.events(from: doc) } catch {
            res.respond(status: 400, json: ["error": .string("\(error)")])
            return
        }
        for s in out.skipped {
            host.count("webhook_changes_skipped")
            host.log(.debug, "webhook change not taken: \(s)")
        }
        if out.events.isEmpty { res.respond(status: 200, json: ["accepted": 0]); return }
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

    /// Bookkeeping once a webhook's events are durable: the service window and media prefetch.
    private func afterCommit(_ out: WhatsAppInbound.Output) {
        for i in out.inbound { window.recordInbound(chat: i.chat, atMs: i.atMs, messageId: i.messageId) }
        if config.mediaPrefetch { for id in out.media { fetchMedia(id, waiter: nil) } }
    }

    // MARK: Media

    private var mediaDirectory: String { stateDirectory + "/whatsapp-media/" + instanceName }

    private func mediaFile(_ id: String) -> String { mediaDirectory + "/" + percentEncodePathSegment(id) }

    private func serveMedia(_ req: IncomingRequest, _ res: Responder) {
        let encoded = req.path.split(separator: "/").last.map(String.init) ?? ""
        let id = decodePercent(encoded)
        guard !id.isEmpty else { res.respond(status: 404); return }
        nextWaiter += 1
        let token = nextWaiter
        mediaWaiters[token] = res
        let path = mediaFile(id)
        let host = self.host
        let owner = LoopBound(self)
        DispatchQueue.global().async {
            let bytes = readFile(path)
            host.post {
                guard let self = owner.value else { return }
                if let bytes {
                    self.mediaWaiters.removeValue(forKey: token)?.respond(status: 200, headers: [("Content-Type", "application/octet-stream")], body: bytes)
                } else {
                    self.fetchMedia(id, waiter: token)
                }
            }
        }
    }

    /// Downloads media `id` and stores it under the state directory; answers `waiter` when given.
    private func fetchMedia(_ id: String, waiter: UInt64?) {
        media.download(id: id) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let m):
                self.host.count("media_downloaded")
                if let waiter, let res = self.mediaWaiters.removeValue(forKey: waiter) {
                    res.respond(status: 200, headers: [("Content-Type", m.mimeType ?? "application/octet-stream")], body: m.bytes)
                }
                let dir = self.mediaDirectory, path = self.mediaFile(id), bytes = m.bytes
                DispatchQueue.global().async { writeFile(dir: dir, path: path, bytes: bytes) }
            case .failure(let f):
                self.host.count("media_failed")
                self.host.log(.warning, "media download failed", [("media_id", id), ("code", f.code), ("reason", f.message)])
                if let waiter, let res = self.mediaWaiters.removeValue(forKey: waiter) {
                    res.respond(status: f.isRetryable ? 502 : (f.code == "media_too_large" ? 413 : 404), json: ["error": .string(f.message), "code": .string(f.code)])
                }
            }
        }
    }

    // MARK: Outbound

    public func send(_ message: OutboundMessage) throws {
        if stopping { host.sendResult(message.id, .retryable(code: "stopping", message: "instance is stopping")); return }
        let to = message.to
        let plan: OutboundPlan
        do { plan = try config.outbound.plan(message.json, lastInboundMessageId: window.lastInboundMessageId(chat: to)) } catch let r as OutboundRefusal {
            host.sendResult(message.id, .permanent(code: r.code, message: r.message))
            return
        }
        if !plan.templatesOnly && !window.isOpen(chat: to) {
            host.count("sends_outside_window")
            host.sendResult(message.id, .permanent(code: "outside_customer_service_window",
                message: "the 24-hour customer service window with \(to) is closed (no message from them in the last 24 hours): send a template message instead"))
            return
        }
        if plan.isNoop { host.sendResult(message.id, .sent(channelMessageId: nil)); return }
        let p = PendingSend(message: message, plan: plan, next: progress[message.messageId] ?? 0)
        pending[message.id] = p
        schedule(p)
    }

    /// Paces one API call: first the recipient's slot, then the number's (see `SendPacer`).
    private func schedule(_ p: PendingSend) {
        let wait = pacer.reserveRecipient(p.message.to)
        guard wait <= Int64(config.maxPacingDelayMs) else {
            finish(p, .retryable(code: "paced", message: "too many messages to this recipient: WhatsApp's pair rate limit", retryAfterMs: UInt32(min(wait, 3_600_000))))
            return
        }
        after(wait, p) { [weak self] p in self?.scheduleSender(p) }
    }

    private func scheduleSender(_ p: PendingSend) {
        let wait = pacer.reserveSender()
        guard wait <= Int64(config.maxPacingDelayMs) else {
            finish(p, .retryable(code: "paced", message: "this number's message rate is exhausted", retryAfterMs: UInt32(min(wait, 3_600_000))))
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
        var body = p.plan.calls[p.next]
        if let upload = p.plan.uploads[p.next] {
            guard let mediaId = p.uploaded[p.next] else { uploadThenCall(p, upload); return }
            if case .object(var o) = body, case .object(var m)? = o[upload.waType] {
                m["id"] = .string(mediaId)
                o[upload.waType] = .object(m)
                body = .object(o)
            }
        }
        p.inFlight = true
        graph.post(config.phoneNumberId + "/messages", json: body) { [weak self] result in
            guard let self else { return }
            p.inFlight = false
            switch result {
            case .success(let body):
                if let id = body["messages"]?.arrayValue?.first?["id"]?.stringValue { p.lastId = id }
                p.next += 1
                if p.next < p.plan.calls.count {
                    self.progress[p.message.messageId] = p.next
                    if self.stopping {
                        self.finish(p, .retryable(code: "stopping", message: "instance is stopping"))
                    } else {
                        self.schedule(p)
                    }
                    return
                }
                self.progress[p.message.messageId] = nil
                self.host.count("sent")
                self.finish(p, .sent(channelMessageId: p.plan.isStatusUpdate ? nil : p.lastId))
            case .failure(let f):
                if f.isThrottling, case .retryable(let after) = f.disposition {
                    self.host.count("throttled")
                    if f.graphError?.code == 131056 {
                        self.pacer.pauseRecipient(p.message.to, forMs: Int64(after))
                    } else {
                        self.pacer.pauseSender(forMs: Int64(after))
                    }
                }
                if !f.isRetryable { self.progress[p.message.messageId] = nil }
                self.host.count(f.isRetryable ? "send_retryable" : "send_failed")
                self.finish(p, f.sendOutcome)
            }
        }
    }

    // MARK: Media upload

    /// Fetches the bytes of `upload` (a file off the loop thread, or a URL), uploads them to
    /// `POST /{phone-number-id}/media`, then makes the call with the returned media id.
    private func uploadThenCall(_ p: PendingSend, _ upload: MediaUpload) {
        p.inFlight = true
        let limit = config.mediaMaxBytes
        let deliver: ([UInt8]?, String?, String) -> Void = { [weak self] bytes, contentType, failure in
            guard let self else { return }
            p.inFlight = false
            guard let bytes else {
                self.finish(p, .permanent(code: "media_unavailable", message: failure))
                return
            }
            guard bytes.count <= limit else {
                self.finish(p, .permanent(code: "media_too_large", message: "media is \(bytes.count) bytes, over media_max_bytes (\(limit))"))
                return
            }
            self.postUpload(p, upload, bytes: bytes, mimeType: upload.mimeType ?? contentType ?? guessMimeType(upload))
        }
        switch upload.source {
        case .file(let path):
            let host = self.host
            let token = PostBox(deliver)
            DispatchQueue.global().async {
                let bytes = readFile(path)
                host.post { token.value(bytes, nil, "cannot read \(path)") }
            }
        case .url(let url):
            host.request(method: "GET", url: url, timeoutMs: UInt32(config.requestTimeoutMs)) { r in
                if (200..<300).contains(r.status) {
                    deliver(r.body, r.header("content-type"), "")
                } else {
                    deliver(nil, nil, "fetching \(url) for upload failed: " + (r.error ?? "HTTP \(r.status)"))
                }
            }
        }
    }

    private func postUpload(_ p: PendingSend, _ upload: MediaUpload, bytes: [UInt8], mimeType: String) {
        let boundary = "chorus-\(p.message.id.rawValue)-\(monotonicMilliseconds())"
        var body: [UInt8] = []
        func field(_ name: String, _ value: String) {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8)
        }
        field("messaging_product", "whatsapp")
        field("type", mimeType)
        let name = (upload.fileName ?? "upload").replacingQuotes()
        body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(name)\"\r\nContent-Type: \(mimeType)\r\n\r\n".utf8)
        body += bytes
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        p.inFlight = true
        graph.post(config.phoneNumberId + "/media", body: body, contentType: "multipart/form-data; boundary=\(boundary)") { [weak self] result in
            guard let self else { return }
            p.inFlight = false
            switch result {
            case .success(let doc):
                guard let id = doc["id"]?.stringValue else {
                    self.finish(p, .retryable(code: "bad_response", message: "media upload answered without an id"))
                    return
                }
                self.host.count("media_uploaded")
                p.uploaded[p.next] = id
                if self.stopping { self.finish(p, .retryable(code: "stopping", message: "instance is stopping")); return }
                self.call(p)
            case .failure(let f):
                self.finish(p, f.sendOutcome)
            }
        }
    }

    private func finish(_ p: PendingSend, _ outcome: SendOutcome) {
        guard pending.removeValue(forKey: p.message.id) != nil else { return }
        host.sendResult(p.message.id, outcome)
        finishStopIfIdle()
    }
}

/// A loop-thread closure carried through another thread and called only back on the loop thread.
private final class PostBox: @unchecked Sendable {
    let value: ([UInt8]?, String?, String) -> Void
    init(_ value: @escaping ([UInt8]?, String?, String) -> Void) { self.value = value }
}

private func guessMimeType(_ u: MediaUpload) -> String {
    let name: String
    switch u.source {
    case .file(let p): name = u.fileName ?? p
    case .url(let url): name = u.fileName ?? url
    }
    let ext = name.split(separator: ".").last.map { $0.lowercased() } ?? ""
    switch ext {
    case "jpg", "jpeg": return "image/jpeg"
    case "png": return "image/png"
    case "webp": return "image/webp"
    case "mp4": return "video/mp4"
    case "3gp": return "video/3gpp"
    case "ogg", "opus": return "audio/ogg"
    case "mp3": return "audio/mpeg"
    case "m4a": return "audio/mp4"
    case "aac": return "audio/aac"
    case "amr": return "audio/amr"
    case "pdf": return "application/pdf"
    case "txt": return "text/plain"
    case "doc": return "application/msword"
    case "docx": return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    case "xls": return "application/vnd.ms-excel"
    case "xlsx": return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    case "ppt": return "application/vnd.ms-powerpoint"
    case "pptx": return "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    default:
        switch u.waType {
        case "image": return "image/jpeg"
        case "video": return "video/mp4"
        case "audio": return "audio/ogg"
        case "sticker": return "image/webp"
        default: return "application/octet-stream"
        }
    }
}

extension String {
    func replacingQuotes() -> String {
        String(unicodeScalars.map { $0 == "\"" || $0 == "\r" || $0 == "\n" ? "_" : Character($0) })
    }
}

/// A weak reference handed through another thread and dereferenced only back on the loop thread.
private final class LoopBound: @unchecked Sendable {
    weak var value: WhatsAppConnector?
    init(_ value: WhatsAppConnector) { self.value = value }
}

// MARK: Files (called off the loop thread)

private func readFile(_ path: String) -> [UInt8]? {
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

private func writeFile(dir: String, path: String, bytes: [UInt8]) {
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

private func decodePercent(_ s: String) -> String {
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

/// The plugin's one exported symbol.
@_cdecl("chorus_plugin_entry")
public func chorus_plugin_entry(_ offer: UnsafePointer<chorus_host_offer>?,
                                _ out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?) -> chorus_status
{
    ConnectorExport.entry(offer: offer, out: out, descriptor: WhatsAppConnector.descriptor) { host, settings in
        try WhatsAppConnector(host: host, settings: settings)
    }
}
