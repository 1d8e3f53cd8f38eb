import CChorusPlugin
import ChorusConnectorSDK
import ChorusJSON
import MetaGraph

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
    private var config: Config
    private let graph: GraphClient
    private let window: ServiceWindowTracker
    private let ledger: SentLedger
    /// Sends in progress: pacing, uploads, retries and the stop bookkeeping.
    private let sends: GraphSendQueue<MessagingSendChannel>
    /// Downloaded attachments and the media route.
    private let mediaStore: GraphMediaStore

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
            func numericId(_ key: String) throws -> String {
                let v = try s.string(key)
                guard v.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                    throw ConnectorError("setting \"\(key)\": expected a numeric id, found \"\(v)\"")
                }
                return v
            }
            appSecret = try GraphSettings.secret(s, "app_secret")
            verifyToken = try GraphSettings.secret(s, "verify_token")
            accessToken = try GraphSettings.secret(s, "access_token")
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
            account = GraphSettings.account(s)
            apiBaseURL = try GraphSettings.apiBaseURL(s)
            apiVersion = try GraphSettings.apiVersion(s)
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
        let c = try Config(settings, channel: channel)
        config = c
        graph = GraphClient(host: host, baseURL: c.apiBaseURL, version: c.apiVersion, accessToken: c.accessToken, timeoutMs: UInt32(c.requestTimeoutMs))
        window = ServiceWindowTracker(store: .host(host))
        let ledger = SentLedger(store: .host(host))
        self.ledger = ledger
        sends = GraphSendQueue(host: host, graph: graph, channel: MessagingSendChannel(channel: channel), pacer: c.pacer,
                               messagesPath: c.sendId + "/messages", uploadPath: c.sendId + "/message_attachments",
                               maxPacingDelayMs: c.maxPacingDelayMs, mediaMaxBytes: c.mediaMaxBytes, requestTimeoutMs: c.requestTimeoutMs)
        // The request's start time is at or before Meta's timestamp for the message, so a watermark covers it.
        sends.onMessageSent = { message, mid, startedMs in ledger.record(chat: message.to, mid: mid, atMs: startedMs) }
        mediaStore = GraphMediaStore(host: host, directory: settings.stateDirectory + "/\(channel.rawValue)-media/" + settings.instanceName)
    }

    /// `Connector` conformance: a Messenger instance (the Instagram plugin uses `init(channel:host:settings:)`).
    public convenience init(host: ConnectorHost, settings: ConnectorSettings) throws {
        try self.init(channel: .messenger, host: host, settings: settings)
    }

    public func start() throws {
        try GraphWebhook.register(on: host, verifyToken: { [unowned self] in self.config.verifyToken },
                                  deliveries: { [unowned self] req, res in self.webhook(req, res) },
                                  media: { [unowned self] req, res in self.serveMedia(req, res) })
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
        sends.configure(pacer: c.pacer, maxPacingDelayMs: c.maxPacingDelayMs, mediaMaxBytes: c.mediaMaxBytes, requestTimeoutMs: c.requestTimeoutMs)
        sends.messagesPath = c.sendId + "/messages"
        sends.uploadPath = c.sendId + "/message_attachments"
    }

    public func stop() {
        sends.stop()
    }

    // MARK: Inbound

    private var mediaPathPrefix: String { "/webhooks/\(instanceName)/media/" }

    private func webhook(_ req: IncomingRequest, _ res: Responder) {
        guard let doc = GraphWebhook.verifiedBody(req, appSecret: config.appSecret, host: host, res) else { return }
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
        GraphWebhook.commit(out.events, host: host, res) { [weak self] in self?.afterCommit(out) }
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

    private func serveMedia(_ req: IncomingRequest, _ res: Responder) {
        mediaStore.serve(req, res) { [weak self] key, waiter in
            guard let self else { return }
            if let url = self.host.kvGetString("media:" + key) {
                self.fetchMedia(MediaFetch(key: key, url: url), waiter: waiter)
            } else {
                self.mediaStore.takeWaiter(waiter)?.respond(status: 404, json: ["error": "unknown media"])
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
            let answer = self.mediaStore.takeWaiter(waiter)
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
            self.mediaStore.store(m.key, bytes: r.body)
        }
    }

    // MARK: Outbound

    public func send(_ message: OutboundMessage) throws {
        if sends.isStopping { host.sendResult(message.id, .retryable(code: "stopping", message: "instance is stopping")); return }
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
        sends.submit(message, plan: plan)
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

}

extension MessagingPlan: GraphSendPlan {
    var reportsMessageId: Bool { !isAction }
}

/// How Messenger and Instagram sends differ from the other Graph channels (see `GraphSendQueue`).
struct MessagingSendChannel: GraphSendChannel {
    typealias Plan = MessagingPlan
    let channel: MessagingChannel

    /// The attachment id goes into `message.attachment.payload`.
    func body(_ call: JSONValue, uploadedId: String, for upload: AttachmentUpload) -> JSONValue {
        guard case .object(var o) = call, case .object(var m)? = o["message"], case .object(var a)? = m["attachment"] else { return call }
        a["payload"] = ["attachment_id": .string(uploadedId)]
        m["attachment"] = .object(a)
        o["message"] = .object(m)
        return .object(o)
    }

    func messageId(in response: JSONValue) -> String? { response["message_id"]?.stringValue }

    func source(of upload: AttachmentUpload) -> GraphUploadSource { .file(upload.path) }

    /// The Attachment Upload API (`POST /{id}/message_attachments`): `message`, then `filedata`.
    func form(for upload: AttachmentUpload, fetchedContentType: String?) -> GraphUploadForm {
        let meta = JSONWriter.encodeString(["attachment": ["type": .string(upload.type), "payload": ["is_reusable": true]]])
        return GraphUploadForm(fields: [("message", meta)], fileField: "filedata",
                               fileName: upload.fileName ?? upload.path.split(separator: "/").last.map(String.init) ?? "upload",
                               mimeType: upload.mimeType ?? "application/octet-stream")
    }

    func uploadedId(in response: JSONValue) -> String? { response["attachment_id"]?.stringValue }

    var missingUploadIdMessage: String { "attachment upload answered without an attachment_id" }

    /// No per-recipient pair rate on Messenger: every throttle pauses the sender.
    func isRecipientThrottle(_ failure: GraphFailure) -> Bool { false }

    var recipientPacedMessage: String { "too many messages to this recipient" }

    var senderPacedMessage: String { "the \(channel.rawValue) send rate is exhausted" }
}
