import ChorusJSON

/// One Bot API call of a send.
struct APICall {
    /// The Bot API method (`sendMessage`, `editMessageText`, …).
    let method: String
    /// Its parameters, sent as a JSON body.
    let params: JSONObject
    /// The chat it goes to (pacing key).
    let chat: String
    /// Whether the call counts against Telegram's message limits (paced).
    let paced: Bool
    /// Whether a successful call returns a `Message` whose id names what was sent.
    let returnsMessage: Bool
}

/// Why an outbound message cannot be carried by Telegram: a permanent failure with a code.
struct PlanError: Error, CustomStringConvertible {
    let code: String
    let message: String
    var description: String { message }
}

/// Turns an outbound Chorus message ("What a plugin receives", docs/schema.md) into Bot API calls.
///
/// Pure: the connector runs the calls in order. Limits checked here are Telegram's own
/// (<https://core.telegram.org/bots/api>): 4096 characters of text, 1024 of caption, 1–64 bytes of
/// callback data, invoice titles of 1–32 and descriptions of 1–255 characters.
struct OutboundPlanner {
    /// The provider token for invoices; nil sends payment requests as a URL button.
    let paymentProviderToken: String?

    static let maxText = 4096
    static let maxCaption = 1024

    func plan(_ m: JSONValue) throws(PlanError) -> [APICall] {
        guard let to = m["to"]?.stringValue, !to.isEmpty else { throw PlanError(code: "no_recipient", message: "the message has no \"to\" chat id") }
        let type = m["type"]?.stringValue ?? "message"
        switch type {
        case "message": return try planMessage(m, to: to)
        case "edit": return try planEdit(m, to: to)
        case "delete":
            let (chat, id) = try target(m)
            return [APICall(method: "deleteMessage", params: ["chat_id": Self.chatValue(chat), "message_id": .int(id)],
                            chat: chat, paced: false, returnsMessage: false)]
        case "typing":
            if m["typing"]?["state"]?.stringValue == "off" { return [] }  // Telegram's chat action simply expires.
            let action = m["options"]?["action"]?.stringValue ?? "typing"
            return [APICall(method: "sendChatAction", params: ["chat_id": Self.chatValue(to), "action": .string(action)],
                            chat: to, paced: false, returnsMessage: false)]
        case "reaction":
            let (chat, id) = try target(m)
            let remove = m["reaction"]?["action"]?.stringValue == "remove"
            var reaction: [JSONValue] = []
            if !remove, let e = m["reaction"]?["emoji"]?.stringValue { reaction = [["type": "emoji", "emoji": .string(e)]] }
            return [APICall(method: "setMessageReaction",
                            params: ["chat_id": Self.chatValue(chat), "message_id": .int(id), "reaction": .array(reaction)],
                            chat: chat, paced: false, returnsMessage: false)]
        default:
            throw PlanError(code: "unsupported_type", message: "Telegram cannot carry a \"\(type)\" message")
        }
    }

    /// A chat id as Telegram takes it: an integer, or a `@channelusername` string.
    static func chatValue(_ chat: String) -> JSONValue {
        if let i = Int64(chat) { return .int(i) }
        return .string(chat)
    }

    /// Splits `"<chat>:<message>"` (the connector's channel message ids).
    static func splitKey(_ key: String) -> (String, Int64)? {
        guard let colon = key.lastIndex(of: ":"), let id = Int64(key[key.index(after: colon)...]) else { return nil }
        let chat = String(key[..<colon])
        return chat.isEmpty ? nil : (chat, id)
    }

    func target(_ m: JSONValue) throws(PlanError) -> (String, Int64) {
        guard let key = m["target"]?["channel_message_id"]?.stringValue else {
            throw PlanError(code: "target_unknown", message: "target.channel_message_id is required (the Telegram message is not known)")
        }
        guard let t = Self.splitKey(key) else {
            throw PlanError(code: "target_invalid", message: "target.channel_message_id \"\(key)\" is not a Telegram \"<chat_id>:<message_id>\" id")
        }
        return t
    }

    static func parseMode(_ format: String?) -> JSONValue? {
        switch format {
        case "markdown": return "MarkdownV2"
        case "html": return "HTML"
        default: return nil
        }
    }

    static func length(_ s: String) -> Int { s.utf16.count }

    // MARK: Messages

    func planMessage(_ m: JSONValue, to: String) throws(PlanError) -> [APICall] {
        let parts = m["parts"]?.arrayValue ?? []
        guard !parts.isEmpty else { throw PlanError(code: "no_parts", message: "the message has no parts") }
        // Extras on every message-producing call: thread, options; the reply only on the first.
        var common = JSONObject()
        if let t = m["thread_id"]?.stringValue {
            guard let tid = Int64(t) else { throw PlanError(code: "thread_invalid", message: "thread_id \"\(t)\" is not a Telegram message_thread_id") }
            common["message_thread_id"] = .int(tid)
        }
        if case .object(let opts)? = m["options"] { for (k, v) in opts where k != "action" { common[k] = v } }
        var replyParameters: JSONValue?
        if let r = m["reply_to"]?["channel_message_id"]?.stringValue, let (chat, id) = Self.splitKey(r) {
            var rp: JSONObject = ["message_id": .int(id)]
            if chat != to { rp["chat_id"] = Self.chatValue(chat) }
            replyParameters = .object(rp)
        }

        var calls: [APICall] = []
        var i = 0
        while i < parts.count {
            let p = parts[i]
            let type = p["type"]?.stringValue ?? ""
            var params: JSONObject = ["chat_id": Self.chatValue(to)]
            var method: String
            switch type {
            case "text":
                // A text directly followed by an interactive part without a body becomes its text.
                if i + 1 < parts.count, parts[i + 1]["type"]?.stringValue == "interactive", parts[i + 1]["body"]?.stringValue == nil {
                    i += 1
                    continue
                }
                let text = p["text"]?.stringValue ?? ""
                try checkText(text, at: i)
                method = "sendMessage"
                params["text"] = .string(text)
                if let pm = Self.parseMode(p["format"]?.stringValue) { params["parse_mode"] = pm }
            case "media":
                method = try media(p, at: i, into: &params)
            case "location":
                guard let lat = p["latitude"]?.doubleValue, let lon = p["longitude"]?.doubleValue else {
                    throw PlanError(code: "location_invalid", message: "parts[\(i)]: latitude and longitude are required")
                }
                params["latitude"] = .double(lat)
                params["longitude"] = .double(lon)
                if let name = p["name"]?.stringValue, let address = p["address"]?.stringValue {
                    method = "sendVenue"
                    params["title"] = .string(name)
                    params["address"] = .string(address)
                } else {
                    method = "sendLocation"
                }
            case "contact":
                guard let phone = p["phones"]?.arrayValue?.first?["number"]?.stringValue else {
                    throw PlanError(code: "contact_needs_phone", message: "parts[\(i)]: Telegram contacts need a phone number (phones[0].number)")
                }
                method = "sendContact"
                params["phone_number"] = .string(phone)
                let first = p["name"]?["first"]?.stringValue ?? p["name"]?["formatted"]?.stringValue ?? phone
                params["first_name"] = .string(first)
                if let last = p["name"]?["last"]?.stringValue { params["last_name"] = .string(last) }
            case "interactive":
                let previous = i > 0 && parts[i - 1]["type"]?.stringValue == "text" && p["body"]?.stringValue == nil ? parts[i - 1] : nil
                method = "sendMessage"
                try interactive(p, at: i, precedingText: previous, into: &params)
            case "payment_request":
                method = try payment(p, at: i, messageId: m["message_id"]?.stringValue ?? "", into: &params)
            default:
                throw PlanError(code: "unsupported_part", message: "parts[\(i)]: Telegram cannot send a \"\(type)\" part")
            }
            for (k, v) in common where params[k] == nil { params[k] = v }
            if let rp = replyParameters, calls.isEmpty { params["reply_parameters"] = rp }
            calls.append(APICall(method: method, params: params, chat: to, paced: true, returnsMessage: true))
            i += 1
        }
        return calls
    }

    func checkText(_ text: String, at i: Int) throws(PlanError) {
        guard !text.isEmpty else { throw PlanError(code: "text_empty", message: "parts[\(i)]: Telegram does not send empty text") }
        guard Self.length(text) <= Self.maxText else {
            throw PlanError(code: "text_too_long", message: "parts[\(i)]: text longer than Telegram's \(Self.maxText) characters")
        }
    }

    func media(_ p: JSONValue, at i: Int, into params: inout JSONObject) throws(PlanError) -> String {
        guard let file = p["url"]?.stringValue ?? p["channel_media_id"]?.stringValue else {
            throw PlanError(code: "media_needs_url", message: "parts[\(i)]: Telegram media must be given by url or channel_media_id (a Telegram file_id)")
        }
        let (method, field): (String, String)
        switch p["kind"]?.stringValue ?? "" {
        case "image": (method, field) = ("sendPhoto", "photo")
        case "video": (method, field) = ("sendVideo", "video")
        case "audio": (method, field) = ("sendAudio", "audio")
        case "voice": (method, field) = ("sendVoice", "voice")
        case "sticker": (method, field) = ("sendSticker", "sticker")
        default: (method, field) = ("sendDocument", "document")
        }
        params[field] = .string(file)
        if let c = p["caption"]?.stringValue, !c.isEmpty {
            guard method != "sendSticker" else { throw PlanError(code: "caption_not_supported", message: "parts[\(i)]: Telegram stickers have no caption") }
            guard Self.length(c) <= Self.maxCaption else {
                throw PlanError(code: "caption_too_long", message: "parts[\(i)]: caption longer than Telegram's \(Self.maxCaption) characters")
            }
            params["caption"] = .string(c)
        }
        return method
    }

    func interactive(_ p: JSONValue, at i: Int, precedingText: JSONValue?, into params: inout JSONObject) throws(PlanError) {
        let body = p["body"]?.stringValue ?? precedingText?["text"]?.stringValue
        let text = [p["header"]?.stringValue, body, p["footer"]?.stringValue].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: "\n\n")
        guard !text.isEmpty else {
            throw PlanError(code: "interactive_needs_text", message: "parts[\(i)]: Telegram keyboards need a message text (body, or a text part before)")
        }
        try checkText(text, at: i)
        params["text"] = .string(text)
        if let pm = Self.parseMode(precedingText?["format"]?.stringValue) { params["parse_mode"] = pm }
        let style = p["style"]?.stringValue ?? ""
        switch style {
        case "buttons", "cta_url":
            var rows: [JSONValue] = []
            for (j, b) in (p["buttons"]?.arrayValue ?? []).enumerated() {
                rows.append([try inlineButton(b, at: "parts[\(i)].buttons[\(j)]")])
            }
            guard !rows.isEmpty else { throw PlanError(code: "interactive_needs_buttons", message: "parts[\(i)]: no buttons") }
            params["reply_markup"] = ["inline_keyboard": .array(rows)]
        case "list":
            var rows: [JSONValue] = []
            for (s, section) in (p["sections"]?.arrayValue ?? []).enumerated() {
                for (r, row) in (section["rows"]?.arrayValue ?? []).enumerated() {
                    rows.append([try inlineButton(["title": row["title"] ?? .null, "id": row["id"] ?? .null], at: "parts[\(i)].sections[\(s)].rows[\(r)]")])
                }
            }
            guard !rows.isEmpty else { throw PlanError(code: "interactive_needs_rows", message: "parts[\(i)]: the list has no rows") }
            params["reply_markup"] = ["inline_keyboard": .array(rows)]
        case "quick_replies":
            let buttons = (p["buttons"]?.arrayValue ?? []).compactMap { $0["title"]?.stringValue }
            guard !buttons.isEmpty else { throw PlanError(code: "interactive_needs_buttons", message: "parts[\(i)]: no buttons") }
            params["reply_markup"] = ["keyboard": .array(buttons.map { [["text": .string($0)]] }), "one_time_keyboard": true, "resize_keyboard": true]
        default:
            throw PlanError(code: "unsupported_interactive_style", message: "parts[\(i)]: Telegram cannot show an interactive \"\(style)\"")
        }
    }

    func inlineButton(_ b: JSONValue, at path: String) throws(PlanError) -> JSONValue {
        guard let title = b["title"]?.stringValue, !title.isEmpty else { throw PlanError(code: "button_needs_title", message: "\(path): title is required") }
        if let url = b["url"]?.stringValue { return ["text": .string(title), "url": .string(url)] }
        guard let data = b["payload"]?.stringValue ?? b["id"]?.stringValue, !data.isEmpty else {
            throw PlanError(code: "button_needs_id", message: "\(path): id or url is required")
        }
        guard data.utf8.count <= 64 else {
            throw PlanError(code: "callback_data_too_long", message: "\(path): Telegram callback data is at most 64 bytes")
        }
        return ["text": .string(title), "callback_data": .string(data)]
    }

    // MARK: Payments

    /// ISO 4217 currencies without minor units (the amount is already in whole units).
    static let zeroDecimal: Set<String> = ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]

    /// `11499 EUR` → `"114.99 EUR"`.
    static func formatAmount(_ amount: Int64, _ currency: String) -> String {
        if zeroDecimal.contains(currency) { return "\(amount) \(currency)" }
        let cents = amount % 100
        return "\(amount / 100).\(cents < 10 ? "0" : "")\(cents) \(currency)"
    }

    static func truncated(_ s: String, _ n: Int) -> String {
        s.count <= n ? s : String(s.prefix(n - 1)) + "…"
    }

    func payment(_ p: JSONValue, at i: Int, messageId: String, into params: inout JSONObject) throws(PlanError) -> String {
        guard let amount = p["amount"]?.intValue, let currency = p["currency"]?.stringValue else {
            throw PlanError(code: "payment_invalid", message: "parts[\(i)]: amount and currency are required")
        }
        let description = p["description"]?.stringValue ?? ""
        if let token = paymentProviderToken {
            let title = description.isEmpty ? (p["order_id"]?.stringValue.map { "Order \($0)" } ?? "Payment") : description
            params["title"] = .string(Self.truncated(title, 32))
            params["description"] = .string(Self.truncated(description.isEmpty ? title : description, 255))
            params["payload"] = .string(p["order_id"]?.stringValue ?? p["provider_reference"]?.stringValue ?? messageId)
            params["provider_token"] = .string(token)
            params["currency"] = .string(currency)
            params["prices"] = [["label": .string(Self.truncated(title, 32)), "amount": .int(amount)]]
            return "sendInvoice"
        }
        guard let link = p["link"]?.stringValue else {
            throw PlanError(code: "payment_link_required",
                            message: "parts[\(i)]: without a payment_provider_token a Telegram payment request needs a link")
        }
        let text = description.isEmpty ? "Payment request: \(Self.formatAmount(amount, currency))" : "\(description): \(Self.formatAmount(amount, currency))"
        params["text"] = .string(text)
        params["reply_markup"] = ["inline_keyboard": [[["text": .string("Pay \(Self.formatAmount(amount, currency))"), "url": .string(link)]]]]
        return "sendMessage"
    }

    // MARK: Edits

    func planEdit(_ m: JSONValue, to: String) throws(PlanError) -> [APICall] {
        let (chat, id) = try target(m)
        let parts = m["parts"]?.arrayValue ?? []
        var params: JSONObject = ["chat_id": Self.chatValue(chat), "message_id": .int(id)]
        var text: String?
        for (i, p) in parts.enumerated() {
            switch p["type"]?.stringValue {
            case "text":
                guard text == nil else { throw PlanError(code: "edit_unsupported", message: "parts[\(i)]: a Telegram edit carries one text") }
                text = p["text"]?.stringValue
                if let pm = Self.parseMode(p["format"]?.stringValue) { params["parse_mode"] = pm }
            case "interactive":
                var scratch = JSONObject()
                let previous = text.map { JSONValue.object(["type": "text", "text": .string($0)]) }
                try interactive(p, at: i, precedingText: previous, into: &scratch)
                guard case .object(let markup)? = scratch["reply_markup"], markup["inline_keyboard"] != nil else {
                    throw PlanError(code: "edit_unsupported", message: "parts[\(i)]: an edited Telegram message can only carry an inline keyboard")
                }
                text = scratch["text"]?.stringValue
                params["reply_markup"] = .object(markup)
            default:
                throw PlanError(code: "edit_unsupported", message: "parts[\(i)]: Telegram edits carry text (and an inline keyboard) only")
            }
        }
        guard let t = text else { throw PlanError(code: "edit_unsupported", message: "an edit needs a text part") }
        try checkText(t, at: 0)
        params["text"] = .string(t)
        return [APICall(method: "editMessageText", params: params, chat: chat, paced: true, returnsMessage: false)]
    }
}
