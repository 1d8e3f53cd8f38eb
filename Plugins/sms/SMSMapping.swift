import ChorusConnectorSDK
import ChorusJSON

/// A field Twilio must send and did not, or sent in a form that cannot be read.
struct WebhookError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

extension Array where Element == (name: String, value: String) {
    /// The first value of a form field.
    func first(_ name: String) -> String? { first { $0.name == name }?.value }
    /// The first non-empty value among several names (Twilio's current and legacy names).
    func nonEmpty(_ names: String...) -> String? {
        for n in names { if let v = first(n), !v.isEmpty { return v } }
        return nil
    }
}

/// An incoming SMS or MMS webhook (`POST /inbound`), validated.
struct InboundSMS {
    enum OptChange {
        case optOut(keyword: String)
        case optIn(keyword: String)
        var isOptOut: Bool { if case .optOut = self { return true }; return false }
    }

    let sid: String
    let from: String
    let to: String
    let body: String
    let media: [(url: String, mimeType: String?)]
    let optChange: OptChange?
    let params: [(name: String, value: String)]

    /// Most media Twilio forwards per message.
    static let maxMedia = 10

    init(_ params: [(name: String, value: String)]) throws {
        self.params = params
        guard let sid = params.nonEmpty("MessageSid", "SmsMessageSid", "SmsSid") else { throw WebhookError("MessageSid is required") }
        guard let from = params.nonEmpty("From") else { throw WebhookError("From is required") }
        guard let to = params.nonEmpty("To") else { throw WebhookError("To is required") }
        self.sid = sid; self.from = from; self.to = to
        body = params.first("Body") ?? ""
        var media: [(url: String, mimeType: String?)] = []
        if let n = params.first("NumMedia"), !n.isEmpty {
            guard let count = Int(n), (0...InboundSMS.maxMedia).contains(count) else {
                throw WebhookError("NumMedia: expected an integer from 0 to \(InboundSMS.maxMedia), found \"\(n)\"")
            }
            for i in 0..<count {
                guard let url = params.nonEmpty("MediaUrl\(i)") else { throw WebhookError("NumMedia is \(count) but MediaUrl\(i) is missing") }
                guard url.hasPrefix("https://") || url.hasPrefix("http://") else { throw WebhookError("MediaUrl\(i): expected an http(s) URL, found \"\(url)\"") }
                media.append((url, params.nonEmpty("MediaContentType\(i)")))
            }
        }
        self.media = media
        // Twilio's Advanced Opt-Out tells us the keyword class itself; otherwise match the default keywords.
        let keyword = body.trimmedWhitespace().uppercased()
        switch params.first("OptOutType")?.uppercased() {
        case "STOP": optChange = .optOut(keyword: keyword.isEmpty ? "STOP" : keyword)
        case "START": optChange = .optIn(keyword: keyword.isEmpty ? "START" : keyword)
        default:
            if SMSConnector.optOutKeywords.contains(keyword) { optChange = .optOut(keyword: keyword) }
            else if SMSConnector.optInKeywords.contains(keyword) { optChange = .optIn(keyword: keyword) }
            else { optChange = nil }
        }
    }

    static func kind(mimeType: String?) -> String {
        guard let m = mimeType?.lowercased() else { return "file" }
        if m.hasPrefix("image/") { return "image" }
        if m.hasPrefix("video/") { return "video" }
        if m.hasPrefix("audio/") { return "audio" }
        return "file"
    }

    var sender: JSONValue {
        var s: JSONObject = ["id": .string(from), "role": "customer"]
        if from.hasPrefix("+") { s["phone"] = .string(from) }
        return .object(s)
    }

    var channelIds: JSONObject { ["chat": .string(from), "account": .string(to)] }

    /// The message event, then the conversation event of an opt-out or opt-in.
    func events() -> [JSONValue] {
        var parts: [JSONValue] = []
        let captionOnMedia = media.count == 1 && !body.isEmpty
        if !body.isEmpty && !captionOnMedia { parts.append(["type": "text", "text": .string(body)]) }
        for m in media {
            var p: JSONObject = ["type": "media", "kind": .string(InboundSMS.kind(mimeType: m.mimeType)), "url": .string(m.url)]
            if let t = m.mimeType { p["mime_type"] = .string(t) }
            if captionOnMedia { p["caption"] = .string(body) }
            parts.append(.object(p))
        }
        if parts.isEmpty { parts.append(["type": "text", "text": ""]) }
        var ids = channelIds
        ids["message"] = .string(sid)
        var context = JSONObject()
        for (field, key) in [("FromCity", "from_city"), ("FromState", "from_state"), ("FromZip", "from_zip"), ("FromCountry", "from_country"),
                             ("ToCountry", "to_country"), ("NumSegments", "num_segments"), ("MessagingServiceSid", "messaging_service_sid")] {
            if let v = params.nonEmpty(field) { context[key] = .string(v) }
        }
        var raw = JSONObject()
        for p in params { raw[p.name] = .string(p.value) }
        var message: JSONObject = [
            "type": "message", "direction": "inbound", "channel_ids": .object(ids), "sender": sender, "parts": .array(parts),
            "raw": .object(raw),
        ]
        if !context.isEmpty { message["context"] = .object(context) }
        var out: [JSONValue] = [.object(message)]
        if let change = optChange {
            let (action, keyword): (String, String)
            switch change {
            case .optOut(let k): (action, keyword) = ("opt_out", k)
            case .optIn(let k): (action, keyword) = ("opt_in", k)
            }
            out.append([
                "type": "conversation", "direction": "inbound", "channel_ids": .object(channelIds), "sender": sender,
                "conversation": ["action": .string(action), "keyword": .string(keyword), "channel_message_id": .string(sid)],
                "dedup_key": .string("\(action):\(sid)"),
            ])
        }
        return out
    }
}

/// A status callback (`POST /status`), validated.
struct StatusCallback {
    let sid: String
    let status: String
    let errorCode: String?
    let to: String?

    /// Statuses before the carrier has the message: the host already recorded the send.
    static let intermediate: Set<String> = ["queued", "accepted", "sending", "scheduled", "receiving", "received"]

    init(_ params: [(name: String, value: String)]) throws {
        guard let sid = params.nonEmpty("MessageSid", "SmsSid") else { throw WebhookError("MessageSid is required") }
        guard let status = params.nonEmpty("MessageStatus", "SmsStatus") else { throw WebhookError("MessageStatus is required") }
        self.sid = sid
        self.status = status.lowercased()
        errorCode = params.nonEmpty("ErrorCode")
        to = params.nonEmpty("To")
    }

    /// The status event, or nil for the intermediate and unknown statuses.
    func event() -> JSONValue? {
        let state: String
        switch status {
        case "sent": state = "sent"
        case "delivered": state = "delivered"
        case "read": state = "read"
        case "undelivered", "failed", "canceled": state = "failed"
        default: return nil
        }
        var s: JSONObject = ["state": .string(state), "channel_message_id": .string(sid)]
        if let to { s["recipient"] = .string(to) }
        if state == "failed" {
            let code = errorCode ?? status
            var e: JSONObject = ["code": .string(code), "title": .string(status)]
            e["message"] = .string(StatusCallback.errorMessages[code] ?? "the message was \(status)" + (errorCode.map { " (Twilio error \($0))" } ?? ""))
            s["error"] = .object(e)
        }
        return ["type": "status", "direction": "outbound", "status": .object(s)]
    }

    /// Twilio's descriptions of the delivery error codes seen most (https://www.twilio.com/docs/api/errors).
    static let errorMessages: [String: String] = [
        "30001": "Queue overflow",
        "30002": "Account suspended",
        "30003": "Unreachable destination handset",
        "30004": "Message blocked",
        "30005": "Unknown destination handset",
        "30006": "Landline or unreachable carrier",
        "30007": "Message filtered (carrier violation)",
        "30008": "Unknown error",
        "30032": "Toll-free number has not been verified",
        "30034": "Message from an unregistered number (US A2P 10DLC)",
        "21610": "Attempt to send to unsubscribed recipient",
        "21211": "Invalid 'To' phone number",
        "21614": "'To' number is not a valid mobile number",
    ]
}

/// An outbound message rendered for SMS/MMS: one body and the media URLs.
struct OutboundSMS {
    /// A part the connector cannot express as SMS/MMS.
    struct Refusal: Error {
        let code: String
        let message: String
    }

    var body: String
    var mediaURLs: [String]

    init(parts: [JSONValue]) throws {
        var texts: [String] = []
        var media: [String] = []
        for (i, p) in parts.enumerated() {
            let type = p["type"]?.stringValue ?? ""
            switch type {
            case "text":
                if let t = p["text"]?.stringValue, !t.isEmpty { texts.append(t) }
            case "media":
                guard let url = p["url"]?.stringValue, url.hasPrefix("https://") || url.hasPrefix("http://") else {
                    throw Refusal(code: "unsupported_media", message: "parts[\(i)]: MMS needs a public http(s) url for media (ref and channel_media_id cannot be sent)")
                }
                media.append(url)
                if let c = p["caption"]?.stringValue, !c.isEmpty { texts.append(c) }
            case "location":
                texts.append(PlainTextParts.location(p))
            case "contact":
                texts.append(PlainTextParts.contact(p))
            case "interactive":
                guard let text = PlainTextParts.interactive(p, choicePrompt: "Reply with the number.") else {
                    throw Refusal(code: "unsupported", message: "parts[\(i)]: SMS cannot show an interactive \(p["style"]?.stringValue ?? "") message")
                }
                texts.append(text)
            case "payment_request":
                texts.append(PlainTextParts.payment(p))
            case "product":
                texts.append(PlainTextParts.product(p))
            default:
                throw Refusal(code: "unsupported", message: "parts[\(i)]: SMS cannot send a \(type) part")
            }
        }
        if media.count > SMSConnector.maxMediaPerMessage {
            throw Refusal(code: "too_many_media", message: "\(media.count) media parts; an MMS carries at most \(SMSConnector.maxMediaPerMessage)")
        }
        body = texts.joined(separator: "\n")
        mediaURLs = media
        if body.isEmpty && media.isEmpty { throw Refusal(code: "empty_message", message: "the message has neither text nor media") }
    }
}
