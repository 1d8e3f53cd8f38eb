import ChorusJSON
import MetaGraph

/// Why a send cannot be mapped to the Send API (reported as a permanent failure).
struct MessagingRefusal: Error, CustomStringConvertible, Equatable {
    let code: String
    let message: String
    init(_ code: String, _ message: String) { self.code = code; self.message = message }
    var description: String { message }
}

/// A local file uploaded with the Attachment Upload API before the call that sends it.
struct AttachmentUpload: Equatable {
    /// `image`, `video`, `audio` or `file`.
    let type: String
    let path: String
    let mimeType: String?
    let fileName: String?
}

/// What one send becomes: Send API calls (`POST /{id}/messages`) made in order.
struct MessagingPlan {
    /// Request bodies.
    var calls: [JSONValue]
    /// Uploads to make before the call at that index; the attachment id goes into its `message.attachment.payload`.
    var uploads: [Int: AttachmentUpload] = [:]
    /// Sender actions (mark_seen, typing, react) answer without a message id and are not messages to the user.
    var isAction: Bool
    /// The message tag the send carries (allowed outside the 24-hour window).
    var tag: String?
}

/// Maps outbound messages (docs/schema.md, "What a plugin receives") to Send
/// API request bodies for Messenger and Instagram. Pure: no I/O.
struct MessagingOutbound {
    let channel: MessagingChannel

    func plan(_ msg: JSONValue) throws -> MessagingPlan {
        let type = msg["type"]?.stringValue ?? "message"
        guard let to = nonEmpty(msg["to"]?.stringValue) else { throw MessagingRefusal("invalid_recipient", "the send has no recipient (to)") }
        let recipient: JSONValue = ["id": .string(to)]
        func action(_ name: String, payload: JSONValue? = nil) -> MessagingPlan {
            var b: JSONObject = ["recipient": recipient, "sender_action": .string(name)]
            if let payload { b["payload"] = payload }
            return MessagingPlan(calls: [.object(b)], isAction: true, tag: nil)
        }
        switch type {
        case "message":
            return try planMessage(msg, recipient: recipient)
        case "read":
            return action("mark_seen")
        case "typing":
            return action(msg["typing"]?["state"]?.stringValue == "off" ? "typing_off" : "typing_on")
        case "reaction":
            guard let target = nonEmpty(msg["target"]?["channel_message_id"]?.stringValue) else {
                throw MessagingRefusal("missing_target", "a reaction needs target.channel_message_id (the mid of the message)")
            }
            if msg["reaction"]?["action"]?.stringValue == "remove" {
                return action("unreact", payload: ["message_id": .string(target)])
            }
            let emoji = msg["reaction"]?["emoji"]?.stringValue ?? ""
            guard let name = MessagingOutbound.reactionName(emoji) else {
                throw MessagingRefusal("unsupported_reaction", "\(channel.rawValue) reactions are love, like, laugh, wow, sad and angry; \"\(emoji)\" has no equivalent")
            }
            return action("react", payload: ["message_id": .string(target), "reaction": .string(name)])
        default:
            throw MessagingRefusal("unsupported_type", "the \(channel.rawValue) Send API cannot \(type) a message")
        }
    }

    /// Emoji → Meta's reaction names (the Send API takes names, not emoji).
    static func reactionName(_ emoji: String) -> String? {
        let e = emoji.unicodeScalars.filter { $0.value != 0xFE0F }.map(String.init).joined()
        switch e {
        case "❤", "😍", "♥": return "love"
        case "👍": return "like"
        case "😆", "😂", "😄", "🤣": return "laugh"
        case "😮", "😲": return "wow"
        case "😢", "😭": return "sad"
        case "😠", "😡": return "angry"
        default: return nil
        }
    }

    private func planMessage(_ msg: JSONValue, recipient: JSONValue) throws -> MessagingPlan {
        let parts = msg["parts"]?.arrayValue ?? []
        guard !parts.isEmpty else { throw MessagingRefusal("empty_message", "a message needs at least one part") }
        var tag: String?
        if let t = nonEmpty(msg["options"]?["tag"]?.stringValue) {
            guard channel.messageTags.contains(t) else {
                throw MessagingRefusal("invalid_tag", "\(channel.rawValue) message tags are \(channel.messageTags.sorted().joined(separator: ", ")); found \"\(t)\"")
            }
            tag = t
        }
        var envelope: JSONObject = ["recipient": recipient]
        if let tag {
            envelope["messaging_type"] = "MESSAGE_TAG"
            envelope["tag"] = .string(tag)
        } else {
            envelope["messaging_type"] = "RESPONSE"
        }
        if let reply = nonEmpty(msg["reply_to"]?["channel_message_id"]?.stringValue) { envelope["reply_to"] = ["mid": .string(reply)] }

        // Text parts ride on the one part that can carry text (quick replies, button templates); otherwise each is a message.
        let texts = parts.filter { $0["type"]?.stringValue == "text" }.compactMap { $0["text"]?.stringValue }.filter { !$0.isEmpty }
        let others = parts.filter { $0["type"]?.stringValue != "text" }
        let carrier = others.firstIndex { carriesText($0) }
        var messages: [JSONObject] = []
        var uploads: [Int: AttachmentUpload] = [:]
        if carrier == nil {
            for t in texts { messages.append(["text": .string(try checkedText(t))]) }
        }
        for (i, part) in others.enumerated() {
            let leading = i == carrier ? texts.joined(separator: "\n\n") : ""
            let (m, upload) = try message(for: part, leadingText: leading)
            if let upload { uploads[messages.count] = upload }
            messages.append(m)
        }
        var calls: [JSONValue] = []
        for m in messages {
            var b = envelope
            b["message"] = .object(m)
            calls.append(.object(b))
        }
        return MessagingPlan(calls: calls, uploads: uploads, isAction: false, tag: tag)
    }

    private func carriesText(_ part: JSONValue) -> Bool {
        switch part["type"]?.stringValue {
        case "interactive": return ["quick_replies", "buttons", "cta_url"].contains(part["style"]?.stringValue ?? "")
        case "payment_request": return true
        default: return false
        }
    }

    private func checkedText(_ t: String) throws -> String {
        guard t.count <= channel.maxTextLength else {
            throw MessagingRefusal("text_too_long", "\(channel.rawValue) text messages are limited to \(channel.maxTextLength) characters")
        }
        return t
    }

    private func joinText(_ leading: String, _ own: String?) -> String {
        [leading, own ?? ""].filter { !$0.isEmpty }.joined(separator: "\n\n")
    }

    private func message(for part: JSONValue, leadingText: String) throws -> (JSONObject, AttachmentUpload?) {
        let type = part["type"]?.stringValue ?? ""
        switch type {
        case "media":
            let kind = part["kind"]?.stringValue ?? "file"
            let t: String
            switch kind {
            case "image", "sticker": t = "image"
            case "video": t = "video"
            case "audio", "voice": t = "audio"
            default: t = "file"
            }
            if channel == .instagram && t == "file" {
                throw MessagingRefusal("unsupported_media", "Instagram messages cannot carry files (images, videos and audio only)")
            }
            if let id = nonEmpty(part["channel_media_id"]?.stringValue) {
                return (["attachment": ["type": .string(t), "payload": ["attachment_id": .string(id)]]], nil)
            }
            if let url = nonEmpty(part["url"]?.stringValue) {
                return (["attachment": ["type": .string(t), "payload": ["url": .string(url), "is_reusable": true]]], nil)
            }
            if let ref = nonEmpty(part["ref"]?.stringValue), ref.hasPrefix("/") {
                let upload = AttachmentUpload(type: t, path: ref, mimeType: part["mime_type"]?.stringValue, fileName: part["file_name"]?.stringValue)
                return (["attachment": ["type": .string(t), "payload": ["is_reusable": true]]], upload)
            }
            throw MessagingRefusal("media_unavailable", "a media part needs url, channel_media_id (an attachment id) or ref (an absolute file path to upload)")
        case "interactive":
            return (try interactive(part, leadingText: leadingText), nil)
        case "template":
            return (try template(part), nil)
        case "payment_request":
            guard let link = nonEmpty(part["link"]?.stringValue) else {
                throw MessagingRefusal("payment_link_required", "\(channel.rawValue) shows a payment request as a URL button: the part needs a link")
            }
            guard let amount = part["amount"]?.intValue, let currency = part["currency"]?.stringValue else {
                throw MessagingRefusal("invalid_payment_request", "a payment request needs amount and currency")
            }
            let price = MetaConvert.decimal(minorUnits: amount, currency: currency) + " " + currency
            var text = joinText(leadingText, part["description"]?.stringValue)
            text = text.isEmpty ? "Amount due: " + price : text + "\n" + "Amount due: " + price
            return (buttonTemplate(text: try checkedText(text), buttons: [["type": "web_url", "url": .string(link), "title": .string("Pay " + price)]]), nil)
        case "location", "contact", "product", "order":
            throw MessagingRefusal("unsupported_part", "the \(channel.rawValue) Send API cannot send a \(type) part")
        default:
            throw MessagingRefusal("unsupported_part", "the \(channel.rawValue) Send API cannot send a \"\(type)\" part")
        }
    }

    private func buttonTemplate(text: String, buttons: [JSONValue]) -> JSONObject {
        ["attachment": ["type": "template", "payload": ["template_type": "button", "text": .string(text), "buttons": .array(buttons)]]]
    }

    private func interactive(_ part: JSONValue, leadingText: String) throws -> JSONObject {
        let style = part["style"]?.stringValue ?? ""
        let buttons = part["buttons"]?.arrayValue ?? []
        let text = joinText(leadingText, part["body"]?.stringValue)
        switch style {
        case "quick_replies":
            guard !text.isEmpty else { throw MessagingRefusal("missing_text", "quick replies need a text (body, or a text part)") }
            guard buttons.count <= 13 else { throw MessagingRefusal("too_many_buttons", "\(channel.rawValue) shows at most 13 quick replies") }
            let replies: [JSONValue] = buttons.map { b in
                let title = b["title"]?.stringValue ?? ""
                return ["content_type": "text", "title": .string(String(title.prefix(20))),
                        "payload": .string(nonEmpty(b["payload"]?.stringValue) ?? nonEmpty(b["id"]?.stringValue) ?? title)]
            }
            return ["text": .string(try checkedText(text)), "quick_replies": .array(replies)]
        case "buttons", "cta_url":
            guard !text.isEmpty else { throw MessagingRefusal("missing_text", "a button message needs a text (body, or a text part)") }
            guard buttons.count <= 3 else { throw MessagingRefusal("too_many_buttons", "\(channel.rawValue) button templates have at most 3 buttons") }
            let mapped: [JSONValue] = buttons.map { b in
                let title = String((b["title"]?.stringValue ?? "").prefix(20))
                if let url = nonEmpty(b["url"]?.stringValue) {
                    return ["type": "web_url", "url": .string(url), "title": .string(title)]
                }
                return ["type": "postback", "title": .string(title),
                        "payload": .string(nonEmpty(b["payload"]?.stringValue) ?? nonEmpty(b["id"]?.stringValue) ?? title)]
            }
            return buttonTemplate(text: try checkedText(String(text.prefix(640))), buttons: mapped)
        default:
            throw MessagingRefusal("unsupported_part", "\(channel.rawValue) cannot show an interactive \(style) (quick_replies, buttons and cta_url only)")
        }
    }

    /// A `template` part names a Messenger template type: `generic` (its `components` are the elements),
    /// `button` (its `components` are the buttons, `parameters.body[0]` the text) or `media` (elements).
    private func template(_ part: JSONValue) throws -> JSONObject {
        let name = part["name"]?.stringValue ?? ""
        let components = part["components"]?.arrayValue ?? []
        switch name {
        case "generic", "media":
            guard !components.isEmpty else { throw MessagingRefusal("invalid_template", "a \(name) template needs its elements in components") }
            guard components.count <= 10 else { throw MessagingRefusal("invalid_template", "a generic template has at most 10 elements") }
            return ["attachment": ["type": "template", "payload": ["template_type": .string(name), "elements": .array(components)]]]
        case "button":
            guard let text = nonEmpty(part["parameters"]?["body"]?.arrayValue?.first?.stringValue) else {
                throw MessagingRefusal("invalid_template", "a button template needs its text in parameters.body[0]")
            }
            guard (1...3).contains(components.count) else { throw MessagingRefusal("invalid_template", "a button template has 1 to 3 buttons (components)") }
            return buttonTemplate(text: try checkedText(text), buttons: components)
        default:
            throw MessagingRefusal("unsupported_template", "\(channel.rawValue) templates are generic, button and media; found \"\(name)\"")
        }
    }
}
