import ChorusConnectorSDK
import ChorusJSON

/// Why a send cannot be made (reported as a permanent failure with this code).
public struct TeamsPlanError: Error, Sendable {
    public let code: String
    public let message: String
    init(_ code: String, _ message: String) { self.code = code; self.message = message }
}

/// One Connector API call: method, path below the serviceUrl, and the activity body (nil for DELETE).
public struct TeamsCall: Sendable {
    public let method: String
    public let path: String
    public let body: JSONValue?
    /// The channel message id when the call does not answer one (update, delete).
    public let knownMessageId: String?
}

/// Plans the Connector API call for an outbound Chorus message. Pure: no I/O.
public enum TeamsOutbound {
    /// Teams' documented message size is about 28 KB; text beyond this is refused.
    public static let maxTextLength = 28_000

    /// The call for `m`, sent to conversation `conversation`.
    public static func plan(_ m: JSONValue, conversation: String) throws(TeamsPlanError) -> TeamsCall {
        let type = m["type"]?.stringValue ?? "message"
        let base = "/v3/conversations/\(TeamsText.percentEncode(conversation))/activities"
        switch type {
        case "message":
            var activity = try content(m["parts"]?.arrayValue ?? [])
            if let reply = m["reply_to"]?["channel_message_id"]?.stringValue ?? m["thread_id"]?.stringValue, !reply.isEmpty {
                activity["replyToId"] = .string(reply)
                return TeamsCall(method: "POST", path: base + "/" + TeamsText.percentEncode(reply), body: .object(activity), knownMessageId: nil)
            }
            return TeamsCall(method: "POST", path: base, body: .object(activity), knownMessageId: nil)
        case "edit":
            let target = try target(m)
            var activity = try content(m["parts"]?.arrayValue ?? [])
            activity["id"] = .string(target)
            return TeamsCall(method: "PUT", path: base + "/" + TeamsText.percentEncode(target), body: .object(activity), knownMessageId: target)
        case "delete":
            let target = try target(m)
            return TeamsCall(method: "DELETE", path: base + "/" + TeamsText.percentEncode(target), body: nil, knownMessageId: target)
        case "typing":
            return TeamsCall(method: "POST", path: base, body: ["type": "typing"], knownMessageId: nil)
        default:
            throw TeamsPlanError("unsupported_type", "the Bot Framework Connector API has no \(type) for bots")
        }
    }

    static func target(_ m: JSONValue) throws(TeamsPlanError) -> String {
        guard let id = m["target"]?["channel_message_id"]?.stringValue, !id.isEmpty else {
            throw TeamsPlanError("missing_target", "target.channel_message_id is required (the message was not sent through this channel)")
        }
        return id
    }

    /// A message activity for parts: text as markdown, media URLs as attachments, interactive and payment
    /// parts as one Adaptive Card.
    static func content(_ parts: [JSONValue]) throws(TeamsPlanError) -> JSONObject {
        guard !parts.isEmpty else { throw TeamsPlanError("empty_message", "no parts") }
        var texts: [String] = []
        var attachments: [JSONValue] = []
        var card: [JSONValue] = []
        var actions: [JSONValue] = []
        for (i, p) in parts.enumerated() {
            switch p["type"]?.stringValue ?? "" {
            case "text":
                texts.append(p["text"]?.stringValue ?? "")
            case "media":
                guard let url = p["url"]?.stringValue ?? p["ref"]?.stringValue, url.hasPrefix("https://") || url.hasPrefix("http://") else {
                    throw TeamsPlanError("unsupported_media", "parts[\(i)]: Teams needs a media url or an http(s) ref")
                }
                var a: JSONObject = ["contentType": .string(p["mime_type"]?.stringValue ?? mime(p["kind"]?.stringValue)), "contentUrl": .string(url)]
                if let n = p["file_name"]?.stringValue { a["name"] = .string(n) }
                attachments.append(.object(a))
                if let c = p["caption"]?.stringValue, !c.isEmpty { texts.append(c) }
            case "interactive":
                let style = p["style"]?.stringValue ?? ""
                if let h = p["header"]?.stringValue, !h.isEmpty { card.append(["type": "TextBlock", "text": .string(h), "weight": "Bolder", "size": "Medium", "wrap": true]) }
                if let b = p["body"]?.stringValue, !b.isEmpty { card.append(["type": "TextBlock", "text": .string(b), "wrap": true]) }
                switch style {
                case "buttons", "quick_replies", "cta_url":
                    let buttons = p["buttons"]?.arrayValue ?? []
                    guard !buttons.isEmpty else { throw TeamsPlanError("invalid_card", "parts[\(i)]: no buttons") }
                    for b in buttons {
                        let title = b["title"]?.stringValue ?? ""
                        if let url = b["url"]?.stringValue, !url.isEmpty {
                            actions.append(["type": "Action.OpenUrl", "title": .string(title), "url": .string(url)])
                        } else {
                            var data: JSONObject = ["choice_id": .string(b["id"]?.stringValue ?? ""), "title": .string(title)]
                            if let pl = b["payload"]?.stringValue { data["payload"] = .string(pl) }
                            actions.append(["type": "Action.Submit", "title": .string(title), "data": .object(data)])
                        }
                    }
                case "list":
                    var choices: [JSONValue] = []
                    for s in p["sections"]?.arrayValue ?? [] {
                        for r in s["rows"]?.arrayValue ?? [] {
                            choices.append(["title": .string(r["title"]?.stringValue ?? ""), "value": .string(r["id"]?.stringValue ?? "")])
                        }
                    }
                    guard !choices.isEmpty else { throw TeamsPlanError("invalid_card", "parts[\(i)]: a list without rows") }
                    card.append(["type": "Input.ChoiceSet", "id": "choice_id", "style": "compact", "choices": .array(choices)])
                    let opener = p["buttons"]?.arrayValue?.first?["title"]?.stringValue ?? "Choose"
                    actions.append(["type": "Action.Submit", "title": .string(opener)])
                default:
                    throw TeamsPlanError("unsupported_part", "parts[\(i)]: Teams cannot show interactive style \(style)")
                }
                if let f = p["footer"]?.stringValue, !f.isEmpty { card.append(["type": "TextBlock", "text": .string(f), "isSubtle": true, "wrap": true]) }
            case "payment_request":
                guard let link = p["link"]?.stringValue, !link.isEmpty else {
                    throw TeamsPlanError("unsupported_part", "parts[\(i)]: Teams can only show a payment request with a link")
                }
                let amount = TeamsText.formatAmount(p["amount"]?.intValue ?? 0, p["currency"]?.stringValue ?? "")
                card.append(["type": "TextBlock", "text": .string("Payment request: \(amount)"), "weight": "Bolder", "wrap": true])
                if let d = p["description"]?.stringValue, !d.isEmpty { card.append(["type": "TextBlock", "text": .string(d), "wrap": true]) }
                actions.append(["type": "Action.OpenUrl", "title": .string("Pay \(amount)"), "url": .string(link)])
            default:
                throw TeamsPlanError("unsupported_part", "parts[\(i)]: Teams cannot send \(p["type"]?.stringValue ?? "untyped") parts")
            }
        }
        let text = texts.joined(separator: "\n\n")
        guard text.count <= maxTextLength else { throw TeamsPlanError("msg_too_long", "text longer than \(maxTextLength) characters") }
        var activity: JSONObject = ["type": "message"]
        if !text.isEmpty { activity["text"] = .string(text); activity["textFormat"] = "markdown" }
        if !card.isEmpty || !actions.isEmpty {
            var content: JSONObject = ["type": "AdaptiveCard", "version": "1.4",
                                       "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "body": .array(card)]
            if !actions.isEmpty { content["actions"] = .array(actions) }
            attachments.append(["contentType": "application/vnd.microsoft.card.adaptive", "content": .object(content)])
        }
        if !attachments.isEmpty { activity["attachments"] = .array(attachments) }
        return activity
    }

    static func mime(_ kind: String?) -> String {
        switch kind {
        case "image", "sticker": return "image/*"
        case "video": return "video/*"
        case "audio", "voice": return "audio/*"
        default: return "application/octet-stream"
        }
    }
}
