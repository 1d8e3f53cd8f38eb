import CChorusPlugin
import ChorusConnectorSDK
import ChorusJSON
import MetaGraph

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
    private var config: Config
    private let graph: GraphClient
    private let media: GraphMediaDownloader
    private let window: ServiceWindowTracker
    /// Sends in progress: pacing, uploads, retries and the stop bookkeeping.
    private let sends: GraphSendQueue<WhatsAppSendChannel>
    /// Downloaded inbound media and the media route.
    private let mediaStore: GraphMediaStore

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
            appSecret = try GraphSettings.secret(s, "app_secret")
            verifyToken = try GraphSettings.secret(s, "verify_token")
            accessToken = try GraphSettings.secret(s, "access_token")
            phoneNumberId = try s.string("phone_number_id")
            guard phoneNumberId.allSatisfy({ $0.isNumber }) else {
                throw ConnectorError("setting \"phone_number_id\": expected the numeric phone number id, found \"\(phoneNumberId)\"")
            }
            account = GraphSettings.account(s)
            apiBaseURL = try GraphSettings.apiBaseURL(s)
            apiVersion = try GraphSettings.apiVersion(s)
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
        let c = try Config(settings)
        config = c
        graph = GraphClient(host: host, baseURL: c.apiBaseURL, version: c.apiVersion, accessToken: c.accessToken, timeoutMs: UInt32(c.requestTimeoutMs))
        media = GraphMediaDownloader(graph: graph, maxBytes: c.mediaMaxBytes)
        window = ServiceWindowTracker(store: .host(host))
        sends = GraphSendQueue(host: host, graph: graph, channel: WhatsAppSendChannel(), pacer: c.pacer,
                               messagesPath: c.phoneNumberId + "/messages", uploadPath: c.phoneNumberId + "/media",
                               maxPacingDelayMs: c.maxPacingDelayMs, mediaMaxBytes: c.mediaMaxBytes, requestTimeoutMs: c.requestTimeoutMs)
        mediaStore = GraphMediaStore(host: host, directory: settings.stateDirectory + "/whatsapp-media/" + settings.instanceName)
    }

    public func start() throws {
        try GraphWebhook.register(on: host, verifyToken: { [unowned self] in self.config.verifyToken },
                                  deliveries: { [unowned self] req, res in self.webhook(req, res) },
                                  media: { [unowned self] req, res in self.serveMedia(req, res) })
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
        sends.configure(pacer: c.pacer, maxPacingDelayMs: c.maxPacingDelayMs, mediaMaxBytes: c.mediaMaxBytes, requestTimeoutMs: c.requestTimeoutMs)
    }

    public func stop() {
        window.flush()
        sends.stop()
    }

    // MARK: Inbound

    private var mediaPathPrefix: String { "/webhooks/\(instanceName)/media/" }

    private func webhook(_ req: IncomingRequest, _ res: Responder) {
        guard let doc = GraphWebhook.verifiedBody(req, appSecret: config.appSecret, host: host, res) else { return }
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
        GraphWebhook.commit(out.events, host: host, res) { [weak self] in self?.afterCommit(out) }
    }

    /// Bookkeeping once a webhook's events are durable: the service window and media prefetch.
    private func afterCommit(_ out: WhatsAppInbound.Output) {
        for i in out.inbound { window.recordInbound(chat: i.chat, atMs: i.atMs, messageId: i.messageId) }
        if config.mediaPrefetch { for id in out.media { fetchMedia(id, waiter: nil) } }
    }

    // MARK: Media

    private func serveMedia(_ req: IncomingRequest, _ res: Responder) {
        mediaStore.serve(req, res) { [weak self] id, waiter in self?.fetchMedia(id, waiter: waiter) }
    }

    /// Downloads media `id` and stores it under the state directory; answers `waiter` when given.
    private func fetchMedia(_ id: String, waiter: UInt64?) {
        media.download(id: id) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let m):
                self.host.count("media_downloaded")
                self.mediaStore.takeWaiter(waiter)?.respond(status: 200, headers: [("Content-Type", m.mimeType ?? "application/octet-stream")], body: m.bytes)
                self.mediaStore.store(id, bytes: m.bytes)
            case .failure(let f):
                self.host.count("media_failed")
                self.host.log(.warning, "media download failed", [("media_id", id), ("code", f.code), ("reason", f.message)])
                if let res = self.mediaStore.takeWaiter(waiter) {
                    res.respond(status: f.isRetryable ? 502 : (f.code == "media_too_large" ? 413 : 404), json: ["error": .string(f.message), "code": .string(f.code)])
                }
            }
        }
    }

    // MARK: Outbound

    public func send(_ message: OutboundMessage) throws {
        if sends.isStopping { host.sendResult(message.id, .retryable(code: "stopping", message: "instance is stopping")); return }
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
        sends.submit(message, plan: plan)
    }
}

extension OutboundPlan: GraphSendPlan {
    var reportsMessageId: Bool { !isStatusUpdate }
}

/// How WhatsApp sends differ from the other Graph channels (see `GraphSendQueue`).
struct WhatsAppSendChannel: GraphSendChannel {
    typealias Plan = OutboundPlan

    func body(_ call: JSONValue, uploadedId: String, for upload: MediaUpload) -> JSONValue {
        guard case .object(var o) = call, case .object(var m)? = o[upload.waType] else { return call }
        m["id"] = .string(uploadedId)
        o[upload.waType] = .object(m)
        return .object(o)
    }

    func messageId(in response: JSONValue) -> String? { response["messages"]?.arrayValue?.first?["id"]?.stringValue }

    func source(of upload: MediaUpload) -> GraphUploadSource {
        switch upload.source {
        case .file(let path): return .file(path)
        case .url(let url): return .url(url)
        }
    }

    /// `POST /{phone-number-id}/media`: `messaging_product`, `type`, then `file`.
    func form(for upload: MediaUpload, fetchedContentType: String?) -> GraphUploadForm {
        let mimeType = upload.mimeType ?? fetchedContentType ?? guessMimeType(upload)
        return GraphUploadForm(fields: [("messaging_product", "whatsapp"), ("type", mimeType)], fileField: "file",
                               fileName: upload.fileName ?? "upload", mimeType: mimeType)
    }

    func uploadedId(in response: JSONValue) -> String? { response["id"]?.stringValue }

    var missingUploadIdMessage: String { "media upload answered without an id" }

    /// 131056 is the pair rate limit: the recipient is paused, not the number.
    func isRecipientThrottle(_ failure: GraphFailure) -> Bool { failure.graphError?.code == 131056 }

    var recipientPacedMessage: String { "too many messages to this recipient: WhatsApp's pair rate limit" }

    var senderPacedMessage: String { "this number's message rate is exhausted" }
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

/// The plugin's one exported symbol.
@_cdecl("chorus_plugin_entry")
public func chorus_plugin_entry(_ offer: UnsafePointer<chorus_host_offer>?,
                                _ out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?) -> chorus_status
{
    ConnectorExport.entry(offer: offer, out: out, descriptor: WhatsAppConnector.descriptor) { host, settings in
        try WhatsAppConnector(host: host, settings: settings)
    }
}
