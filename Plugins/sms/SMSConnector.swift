import CChorusPlugin
import ChorusConnectorSDK
import ChorusJSON

/// The SMS connector: SMS and MMS through Twilio's Messaging API (or any
/// service that speaks it), described in `docs/connectors/sms.md`.
///
/// Routes (mounted at `/webhooks/<instance>`), both signed by Twilio with
/// `X-Twilio-Signature` and refused with 403 when the signature does not match:
/// - `POST /inbound` — an incoming SMS/MMS (`From`, `To`, `Body`, `MessageSid`,
///   `NumMedia`, `MediaUrlN`, `MediaContentTypeN`): a `message` event, and for
///   the opt-out/opt-in keywords a `conversation` event too. Answered with empty
///   TwiML once the events are committed.
/// - `POST /status` — a status callback (`MessageSid`, `MessageStatus`,
///   `ErrorCode`): a `status` event (`sent`, `delivered`, `read`, `failed`).
///
/// Outbound messages go to the Messages API with a status callback pointing at
/// `/status`; their encoding and segment count are computed by `SMSSegments`,
/// and numbers that opted out are refused without calling the API.
public final class SMSConnector: Connector {
    /// The plugin's descriptor: channel `sms`, text and media in, text-like parts out.
    public static let descriptor = ConnectorDescriptor(
        name: "sms", version: "1.0.0", channel: "sms",
        summary: "SMS and MMS through the Twilio Messaging API (webhooks in, Messages API out)",
        capabilities: .init(
            flags: UInt64(CHORUS_CAP_DELIVERY_STATUS),
            receiveParts: ["text", "media"],
            sendParts: ["text", "media", "location", "contact", "interactive", "payment_request", "product"],
            maxTextLength: UInt32(SMSConnector.maxBodyCharacters), ratePerSecond: 0, ratePerChatPerMinute: 0,
            maxMediaBytes: 5 << 20))

    /// Twilio's limit on a message body, in characters (error 21617 beyond it).
    public static let maxBodyCharacters = 1600
    /// Twilio's limit on media URLs per message.
    public static let maxMediaPerMessage = 10

    /// Keywords that opt a number out (case-insensitive, the whole trimmed body), as Twilio's default opt-out handling.
    public static let optOutKeywords: Set<String> = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]
    /// Keywords that opt a number back in.
    public static let optInKeywords: Set<String> = ["START", "YES", "UNSTOP"]

    /// The host this instance was created with.
    public let host: ConnectorHost
    let instanceName: String
    private var config: SMSConfig
    /// Sends handed over and not yet reported.
    private var pending: Set<SendID> = []
    private var stopping = false
    private var stoppedReported = false

    /// Validates the settings (see `docs/connectors/sms.md`); throws `ConnectorError` naming the bad key.
    public init(host: ConnectorHost, settings: ConnectorSettings) throws {
        self.host = host
        self.instanceName = settings.instanceName
        self.config = try SMSConfig(settings)
    }

    /// Registers `POST /inbound` and `POST /status`.
    public func start() throws {
        try host.route("POST", "/inbound") { [unowned self] req, res in self.inbound(req, res) }
        try host.route("POST", "/status") { [unowned self] req, res in self.statusCallback(req, res) }
        host.log(.info, "sms channel ready", [
            ("api_base_url", config.apiBaseURL), ("public_base_url", config.publicBaseURL),
            ("sender", config.fromNumber ?? config.messagingServiceSid ?? ""), ("max_segments", String(config.maxSegments)),
        ])
    }

    /// Applies new settings atomically, or throws and keeps the running ones.
    public func reload(settings: ConnectorSettings) throws {
        config = try SMSConfig(settings)
    }

    /// Refuses new sends (retryable) and reports `stopped` once every in-flight API call has been reported.
    public func stop() {
        stopping = true
        reportStoppedIfIdle()
    }

    private func reportStoppedIfIdle() {
        guard stopping, pending.isEmpty, !stoppedReported else { return }
        stoppedReported = true
        host.stopped()
    }

    /// The URL Twilio posts status callbacks to.
    var statusCallbackURL: String { config.publicBaseURL + "/webhooks/" + instanceName + "/status" }

    // MARK: Webhooks

    /// Checks content type and signature and parses the form; answers the error itself and returns nil when refused.
    private func verifiedForm(_ req: IncomingRequest, _ res: Responder) -> [(name: String, value: String)]? {
        if let ct = req.header("content-type"), !ct.lowercased().hasPrefix("application/x-www-form-urlencoded") {
            res.respond(status: 415, json: ["error": .string("expected Content-Type application/x-www-form-urlencoded, found \(ct)")])
            return nil
        }
        let params: [(name: String, value: String)]
        do {
            params = try FormEncoding.parse(req.body)
        } catch {
            // The signature cannot be checked on a body we cannot read; nothing is emitted.
            host.count("webhook_malformed")
            host.log(.warning, "malformed webhook body refused", [("path", req.path), ("error", "\(error)")])
            res.respond(status: 400, json: ["error": .string("malformed form body: \(error)")])
            return nil
        }
        guard let signature = req.header("x-twilio-signature"), !signature.isEmpty else {
            host.count("webhook_bad_signature")
            host.log(.warning, "webhook without X-Twilio-Signature refused", [("path", req.path), ("remote", req.remoteAddress)])
            res.respond(status: 403, json: ["error": "missing X-Twilio-Signature"])
            return nil
        }
        let url = config.publicBaseURL + req.path + (req.query.isEmpty ? "" : "?" + req.query)
        guard TwilioSignature.isValid(signature: signature, authToken: config.authToken, url: url, params: params) else {
            host.count("webhook_bad_signature")
            host.log(.warning, "webhook with a bad X-Twilio-Signature refused (is public_base_url the URL Twilio calls?)",
                     [("url", url), ("remote", req.remoteAddress)])
            res.respond(status: 403, json: ["error": "X-Twilio-Signature does not match"])
            return nil
        }
        return params
    }

    private func inbound(_ req: IncomingRequest, _ res: Responder) {
        guard let params = verifiedForm(req, res) else { return }
        let events: [JSONValue]
        let optChange: InboundSMS.OptChange?
        let from: String
        do {
            let sms = try InboundSMS(params)
            events = sms.events()
            optChange = sms.optChange
            from = sms.from
        } catch {
            host.count("webhook_malformed")
            host.log(.warning, "malformed inbound webhook refused", [("error", "\(error)")])
            res.respond(status: 400, json: ["error": .string("\(error)")])
            return
        }
        // Record the opt-out (or opt-in) durably before acknowledging anything.
        if let change = optChange {
            let ok: Bool
            switch change {
            case .optOut(let keyword):
                ok = host.kvPut(SMSConnector.optOutKey(from), Array(JSONWriter.encode(["keyword": .string(keyword)])))
            case .optIn:
                ok = host.kvPut(SMSConnector.optOutKey(from), nil)
            }
            guard ok else {
                host.log(.error, "cannot record an opt-out change; asking Twilio to retry")
                res.respond(status: 503, headers: [("Retry-After", "5")], body: [])
                return
            }
            host.count(change.isOptOut ? "opt_outs" : "opt_ins")
        }
        host.count("inbound")
        emitInOrder(events, res)
    }

    private func statusCallback(_ req: IncomingRequest, _ res: Responder) {
        guard let params = verifiedForm(req, res) else { return }
        let update: StatusCallback
        do {
            update = try StatusCallback(params)
        } catch {
            host.count("webhook_malformed")
            host.log(.warning, "malformed status callback refused", [("error", "\(error)")])
            res.respond(status: 400, json: ["error": .string("\(error)")])
            return
        }
        guard let event = update.event() else {
            // queued / accepted / sending / scheduled: the host already recorded the send as accepted.
            if !StatusCallback.intermediate.contains(update.status) {
                host.count("status_unknown")
                host.log(.warning, "status callback with an unknown MessageStatus ignored", [("status", update.status), ("sid", update.sid)])
            }
            SMSConnector.respondTwiML(res)
            return
        }
        if update.errorCode == "21610", let to = update.to {
            // Twilio reports the recipient unsubscribed: refuse further sends without calling the API.
            _ = host.kvPut(SMSConnector.optOutKey(to), Array(#"{"keyword":"21610"}"#.utf8))
        }
        emitInOrder([event], res)
    }

    /// Emits events one after the other and answers Twilio after the last commit (or the first refusal).
    private func emitInOrder(_ events: [JSONValue], _ res: Responder, index: Int = 0) {
        guard index < events.count else {
            SMSConnector.respondTwiML(res)
            return
        }
        host.emit(events[index]) { [weak self] result in
            guard let self else { res.respond(status: 503, headers: [("Retry-After", "5")]); return }
            switch result {
            case .committed, .duplicate:
                self.emitInOrder(events, res, index: index + 1)
            case .unavailable(let why):
                self.host.log(.warning, "event not committed; asking Twilio to retry", [("reason", why)])
                res.respond(status: 503, headers: [("Retry-After", "5"), ("Content-Type", "application/json")],
                            body: JSONWriter.encode(["error": .string(why)]))
            case .invalid(let why):
                if why.hasPrefix("status for an unknown message") {
                    // A callback about a message this daemon never sent (another system shares the number): acknowledge and drop.
                    self.host.count("status_unknown_message")
                    self.host.log(.notice, "status callback for a message not sent by this daemon dropped", [("detail", why)])
                    SMSConnector.respondTwiML(res)
                } else {
                    self.host.log(.error, "event refused by the host", [("reason", why)])
                    res.respond(status: 500, json: ["error": .string("event refused: \(why)")])
                }
            }
        }
    }

    static func respondTwiML(_ res: Responder) {
        res.respond(status: 200, headers: [("Content-Type", "text/xml")], body: Array("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".utf8))
    }

    static func optOutKey(_ number: String) -> String { "optout:" + number }

    /// Whether `number` has opted out (replied STOP and not START since).
    public func isOptedOut(_ number: String) -> Bool { host.kvGet(SMSConnector.optOutKey(number)) != nil }

    // MARK: Outbound

    /// Sends one message through the Messages API; ends in exactly one `sendResult` (see the type's documentation).
    public func send(_ message: OutboundMessage) throws {
        if stopping {
            host.sendResult(message.id, .retryable(code: "stopping", message: "instance is stopping"))
            return
        }
        guard message.type == "message" else {
            host.sendResult(message.id, .permanent(code: "unsupported", message: "SMS cannot send a \(message.type)"))
            return
        }
        let to = message.to
        guard !to.isEmpty else {
            host.sendResult(message.id, .permanent(code: "invalid_recipient", message: "the message has no recipient (to)"))
            return
        }
        if isOptedOut(to) {
            host.count("refused_opted_out")
            host.sendResult(message.id, .permanent(code: "opted_out",
                                                   message: "\(to) opted out (replied STOP); nothing is sent to it until it replies START"))
            return
        }
        let rendered: OutboundSMS
        do {
            rendered = try OutboundSMS(parts: message.parts)
        } catch let e as OutboundSMS.Refusal {
            host.sendResult(message.id, .permanent(code: e.code, message: e.message))
            return
        }
        let seg = SMSSegments.compute(rendered.body)
        let characters = rendered.body.unicodeScalars.count
        if characters > SMSConnector.maxBodyCharacters {
            host.sendResult(message.id, .permanent(code: "body_too_long",
                message: "the SMS body is \(characters) characters; Twilio accepts at most \(SMSConnector.maxBodyCharacters) (\(seg))"))
            return
        }
        if seg.segments > config.maxSegments {
            host.count("refused_too_many_segments")
            host.sendResult(message.id, .permanent(code: "too_many_segments",
                message: "the SMS body is \(seg.segments) segments of \(seg.encoding.rawValue) (\(seg.units) \(seg.encoding == .gsm7 ? "septets" : "UTF-16 units")); the limit is max_segments = \(config.maxSegments)"))
            return
        }
        var fields: [(String, String)] = [("To", to)]
        if let service = config.messagingServiceSid { fields.append(("MessagingServiceSid", service)) } else if let from = config.fromNumber { fields.append(("From", from)) }
        if !rendered.body.isEmpty { fields.append(("Body", rendered.body)) }
        for url in rendered.mediaURLs { fields.append(("MediaUrl", url)) }
        fields.append(("StatusCallback", statusCallbackURL))
        let auth = "Basic " + Base64.encode(Array((config.accountSid + ":" + config.authToken).utf8))
        pending.insert(message.id)
        let sendId = message.id
        host.request(method: "POST", url: config.messagesURL,
                     headers: [("Authorization", auth), ("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
                     body: FormEncoding.encode(fields), timeoutMs: UInt32(config.requestTimeoutMs)) { [weak self] response in
            guard let self, self.pending.remove(sendId) != nil else { return }
            self.finishSend(sendId, to: to, segments: seg, media: rendered.mediaURLs.count, response: response)
            self.reportStoppedIfIdle()
        }
    }

    private func finishSend(_ id: SendID, to: String, segments seg: SMSSegments.Result, media: Int, response: HTTPResult) {
        let body = try? JSONParser.parse(response.body)
        switch response.status {
        case 200..<300:
            guard let sid = body?["sid"]?.stringValue, !sid.isEmpty else {
                // Accepted but unreadable: do not retry (it may have been sent); report it sent without an id.
                host.log(.error, "Messages API answered \(response.status) without a message sid")
                host.sendResult(id, .sent(channelMessageId: nil))
                return
            }
            host.count("sent")
            host.count("segments", Int64(seg.segments))
            host.log(.info, "sms sent", [
                ("sid", sid), ("encoding", seg.encoding.rawValue), ("segments", String(seg.segments)), ("units", String(seg.units)),
                ("media", String(media)), ("api_num_segments", body?["num_segments"]?.stringValue ?? body?["num_segments"]?.intValue.map { String($0) } ?? ""),
            ])
            host.sendResult(id, .sent(channelMessageId: sid))
        case 0:
            host.count("send_retryable")
            host.sendResult(id, .retryable(code: "transport", message: response.error ?? "no response from the Messages API"))
        default:
            let code = body?["code"]?.intValue.map { String($0) } ?? body?["code"]?.stringValue
            let text = body?["message"]?.stringValue ?? String(decoding: response.body.prefix(300), as: UTF8.self)
            let message = "Messages API \(response.status)" + (code.map { " (code \($0))" } ?? "") + ": " + text
            if response.status == 429 || code == "20429" || response.status >= 500 {
                let retryAfter = response.header("retry-after").flatMap { UInt32($0.trimmedWhitespace()) }.map { min($0, 3600) * 1000 } ?? 0
                host.count("send_retryable")
                host.log(.warning, "send throttled or failed on the API side; will retry", [("status", String(response.status)), ("code", code ?? "")])
                host.sendResult(id, .retryable(code: code ?? String(response.status), message: message, retryAfterMs: retryAfter))
            } else {
                if code == "21610" {
                    // Twilio knows the recipient replied STOP: remember it so the next send is refused without an API call.
                    _ = host.kvPut(SMSConnector.optOutKey(to), Array(#"{"keyword":"21610"}"#.utf8))
                }
                host.count("send_failed")
                host.sendResult(id, .permanent(code: code ?? String(response.status), message: message))
            }
        }
    }
}

/// The plugin's one exported symbol.
@_cdecl("chorus_plugin_entry")
public func chorus_plugin_entry(_ offer: UnsafePointer<chorus_host_offer>?,
                                _ out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?) -> chorus_status
{
    ConnectorExport.entry(offer: offer, out: out, descriptor: SMSConnector.descriptor) { host, settings in
        try SMSConnector(host: host, settings: settings)
    }
}

/// `SMSSegments.compute` for C callers and tools (`dlsym(handle, "chorus_sms_segments")`): returns the
/// number of segments of the NUL-terminated UTF-8 `text`, and writes the encoding (0 = GSM-7, 1 = UCS-2)
/// and the size in units when the pointers are not NULL. Returns -1 when `text` is NULL or not UTF-8.
@_cdecl("chorus_sms_segments")
public func chorus_sms_segments(_ text: UnsafePointer<CChar>?, _ encoding: UnsafeMutablePointer<Int32>?,
                                _ units: UnsafeMutablePointer<Int32>?) -> Int32
{
    guard let text, let s = String(validatingCString: text) else { return -1 }
    let r = SMSSegments.compute(s)
    encoding?.pointee = r.encoding == .gsm7 ? 0 : 1
    units?.pointee = Int32(clamping: r.units)
    return Int32(clamping: r.segments)
}
