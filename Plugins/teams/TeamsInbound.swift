import ChorusConnectorSDK
import ChorusJSON

/// An activity body Bot Framework should not have sent: answered 400, nothing stored.
public struct TeamsMalformedActivity: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A parsed activity: the fields routing and authentication need, and the whole JSON.
public struct TeamsActivity: Sendable {
    public let json: JSONValue
    public let type: String
    public let id: String?
    public let serviceURL: String
    public let conversationId: String

    /// Parses a Bot Framework activity (raw JSON bytes); `type`, `serviceUrl` and `conversation.id` are required.
    public init(_ body: [UInt8]) throws(TeamsMalformedActivity) {
        let root: JSONValue
        do { root = try JSONParser.parse(body) } catch { throw TeamsMalformedActivity("malformed JSON: \(error)") }
        guard case .object = root else { throw TeamsMalformedActivity("expected a JSON object, found \(root.typeName)") }
        guard let type = root["type"]?.stringValue, !type.isEmpty else { throw TeamsMalformedActivity("\"type\" is required") }
        guard let service = root["serviceUrl"]?.stringValue, service.hasPrefix("https://") || service.hasPrefix("http://") else {
            throw TeamsMalformedActivity("\"serviceUrl\" is required and must be an http(s) URL")
        }
        guard let conv = root["conversation"]?["id"]?.stringValue, !conv.isEmpty else {
            throw TeamsMalformedActivity("\"conversation.id\" is required")
        }
        json = root
        self.type = type
        id = root["id"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        var s = service
        while s.hasSuffix("/") { s.removeLast() }
        serviceURL = s
        conversationId = conv
    }
}

/// Turns Bot Framework activities into normalized Chorus events (docs/schema.md). Pure: no I/O.
///
/// `channel_ids.chat` is `conversation.id`, `channel_ids.message` the activity id, `channel_ids.account` the
/// bot (`recipient.id`, or the `account` setting).
public enum TeamsInbound {
    /// Maps an activity; returns the event and its kind (the activity type, or `type/subtype`).
    public static func map(_ a: TeamsActivity, account: String?) -> (JSONValue, kind: String) {
        let j = a.json
        let acct = account ?? j["recipient"]?["id"]?.stringValue ?? "teams"
        var ctx: JSONObject = ["service_url": .string(a.serviceURL)]
        if let ch = j["channelId"]?.stringValue { ctx["channel_id"] = .string(ch) }
        if let t = j["channelData"]?["tenant"]?["id"]?.stringValue ?? j["conversation"]?["tenantId"]?.stringValue { ctx["tenant"] = .string(t) }
        if let ct = j["conversation"]?["conversationType"]?.stringValue { ctx["conversation_type"] = .string(ct) }
        if let ch = j["channelData"]?["channel"]?["id"]?.stringValue { ctx["teams_channel"] = .string(ch) }
        switch a.type {
        case "message":
            if let value = j["value"], case .object = value, (j["text"]?.stringValue ?? "").isEmpty, (j["attachments"]?.arrayValue ?? []).isEmpty {
                return (interaction(a, value: value, name: nil, account: acct, context: ctx), "message/submit")
            }
            return (message(a, account: acct, context: ctx), "message")
        case "invoke":
            let name = j["name"]?.stringValue ?? ""
            ctx["invoke_name"] = .string(name)
            return (interaction(a, value: j["value"] ?? .null, name: name, account: acct, context: ctx), "invoke")
        case "messageUpdate":
            guard let id = a.id else { return (unsupported(a, account: acct, context: ctx), "messageUpdate") }
            var ev = base("edit", a, account: acct)
            ev["target"] = ["channel_message_id": .string(id)]
            ev["parts"] = .array(parts(j))
            finish(&ev, a, ctx)
            return (.object(ev), "messageUpdate")
        case "messageDelete":
            guard let id = a.id else { return (unsupported(a, account: acct, context: ctx), "messageDelete") }
            var ev = base("delete", a, account: acct)
            ev["target"] = ["channel_message_id": .string(id)]
            finish(&ev, a, ctx)
            return (.object(ev), "messageDelete")
        case "messageReaction":
            let added = j["reactionsAdded"]?.arrayValue ?? []
            let removed = j["reactionsRemoved"]?.arrayValue ?? []
            guard let target = j["replyToId"]?.stringValue, !target.isEmpty, let r = (added + removed).first,
                  let type = r["type"]?.stringValue, !type.isEmpty
            else { return (unsupported(a, account: acct, context: ctx), "messageReaction") }
            var ev = base("reaction", a, account: acct, withMessage: false)
            ev["reaction"] = added.isEmpty ? ["action": "remove", "emoji": .string(emoji(type))] : ["emoji": .string(emoji(type))]
            ev["target"] = ["channel_message_id": .string(target)]
            ctx["reaction_type"] = .string(type)
            finish(&ev, a, ctx)
            return (.object(ev), "messageReaction")
        case "conversationUpdate":
            var conv: JSONObject
            var participants: [JSONValue] = []
            let added = j["membersAdded"]?.arrayValue ?? []
            let removed = j["membersRemoved"]?.arrayValue ?? []
            if !added.isEmpty {
                conv = ["action": "member_joined", "members": .array(added.compactMap { member($0) })]
                participants = added.compactMap { participant($0) }
            } else if !removed.isEmpty {
                conv = ["action": "member_left", "members": .array(removed.compactMap { member($0) })]
                participants = removed.compactMap { participant($0) }
            } else if let ev = j["channelData"]?["eventType"]?.stringValue, !ev.isEmpty {
                conv = ["action": .string(ev == "teamRenamed" || ev == "channelRenamed" ? "renamed" : ev)]
                if let n = j["channelData"]?["team"]?["name"]?.stringValue ?? j["channelData"]?["channel"]?["name"]?.stringValue { conv["title"] = .string(n) }
            } else {
                conv = ["action": "updated"]
            }
            if let et = j["channelData"]?["eventType"]?.stringValue { conv["event_type"] = .string(et) }
            var ev = base("conversation", a, account: acct, withMessage: false)
            ev["conversation"] = .object(conv)
            if !participants.isEmpty { ev["participants"] = .array(participants) }
            finish(&ev, a, ctx)
            return (.object(ev), "conversationUpdate")
        default:
            return (unsupported(a, account: acct, context: ctx), a.type)
        }
    }

    /// The dedup key: the activity id (Bot Framework redelivers with the same id), per type.
    public static func dedupKey(_ a: TeamsActivity) -> String? {
        a.id.map { "\(a.type):\(a.conversationId):\($0)" }
    }

    /// Teams reaction types (`like`, `heart`, …) as emoji; others travel as `:type:`.
    static let reactions: [(String, String)] = [
        ("like", "👍"), ("heart", "❤️"), ("laugh", "😆"), ("surprised", "😮"), ("sad", "😢"), ("angry", "😠"),
    ]

    static func emoji(_ type: String) -> String { reactions.first { $0.0 == type }?.1 ?? ":\(type):" }

    /// The Teams reaction type for an emoji, or nil when Teams has none.
    static func reactionType(_ emoji: String) -> String? {
        if let hit = reactions.first(where: { $0.1 == emoji || $0.1 == emoji + "\u{FE0F}" }) { return hit.0 }
        if emoji.hasPrefix(":"), emoji.hasSuffix(":"), emoji.count > 2 { return String(emoji.dropFirst().dropLast()) }
        return nil
    }

    static func participant(_ m: JSONValue) -> JSONValue? {
        guard let id = m["id"]?.stringValue, !id.isEmpty else { return nil }
        var p: JSONObject = ["id": .string(id), "role": "member"]
        if let n = m["name"]?.stringValue { p["name"] = .string(n) }
        return .object(p)
    }

    static func member(_ m: JSONValue) -> JSONValue? {
        guard let id = m["id"]?.stringValue, !id.isEmpty else { return nil }
        return ["id": .string(id)]
    }

    static func sender(_ j: JSONValue) -> JSONValue? {
        guard let id = j["from"]?["id"]?.stringValue, !id.isEmpty else { return nil }
        var s: JSONObject = ["id": .string(id), "role": "customer"]
        if let n = j["from"]?["name"]?.stringValue, !n.isEmpty { s["name"] = .string(n) }
        if j["from"]?["role"]?.stringValue == "bot" { s["role"] = "bot"; s["is_bot"] = true }
        return .object(s)
    }

    static func base(_ type: String, _ a: TeamsActivity, account: String, withMessage: Bool = true) -> JSONObject {
        var ids: JSONObject = ["chat": .string(a.conversationId), "account": .string(account)]
        if withMessage, let id = a.id { ids["message"] = .string(id) }
        var ev: JSONObject = ["type": .string(type), "direction": "inbound", "channel_ids": .object(ids)]
        if let s = sender(a.json) { ev["sender"] = s }
        if let t = a.json["timestamp"]?.stringValue, !t.isEmpty { ev["timestamp"] = .string(t) }
        return ev
    }

    static func finish(_ ev: inout JSONObject, _ a: TeamsActivity, _ ctx: JSONObject) {
        ev["context"] = .object(ctx)
        ev["raw"] = a.json
    }

    /// Text (as markdown, or the HTML Teams sends as is) and attachments as parts.
    static func parts(_ j: JSONValue) -> [JSONValue] {
        var out: [JSONValue] = []
        let text = j["text"]?.stringValue ?? ""
        let format = j["textFormat"]?.stringValue == "plain" ? "plain" : "markdown"
        var atts = j["attachments"]?.arrayValue ?? []
        // Teams repeats an HTML message's body as a text/html attachment: keep the text only.
        if !text.isEmpty { atts.removeAll { $0["contentType"]?.stringValue == "text/html" } }
        if !text.isEmpty { out.append(["type": "text", "text": .string(text), "format": .string(format)]) }
        for att in atts { out.append(attachment(att)) }
        if out.isEmpty { out.append(["type": "text", "text": "", "format": .string(format)]) }
        return out
    }

    static func attachment(_ att: JSONValue) -> JSONValue {
        let ct = att["contentType"]?.stringValue ?? ""
        let name = att["name"]?.stringValue
        if ct == "application/vnd.microsoft.teams.file.download.info" {
            var p: JSONObject = ["type": "media", "kind": "file"]
            if let u = att["content"]?["downloadUrl"]?.stringValue { p["url"] = .string(u) }
            if let id = att["content"]?["uniqueId"]?.stringValue { p["channel_media_id"] = .string(id) }
            if let name { p["file_name"] = .string(name) }
            if p["url"] != nil || p["channel_media_id"] != nil { return .object(p) }
        } else if let url = att["contentUrl"]?.stringValue, !url.isEmpty {
            let kind = ct.hasPrefix("image/") ? "image" : ct.hasPrefix("video/") ? "video" : ct.hasPrefix("audio/") ? "audio" : "file"
            var p: JSONObject = ["type": "media", "kind": .string(kind), "url": .string(url)]
            if ct.contains("/"), !ct.hasPrefix("application/vnd.microsoft") { p["mime_type"] = .string(ct) }
            if let name, !name.isEmpty { p["file_name"] = .string(name) }
            return .object(p)
        }
        var u: JSONObject = ["type": "unsupported", "channel_type": .string(ct.isEmpty ? "attachment" : ct)]
        if let name { u["description"] = .string(name) }
        return .object(u)
    }

    static func message(_ a: TeamsActivity, account: String, context: JSONObject) -> JSONValue {
        var ev = base("message", a, account: account)
        let j = a.json
        if let r = j["replyToId"]?.stringValue, !r.isEmpty {
            ev["reply_to"] = ["channel_message_id": .string(r)]
        }
        ev["parts"] = .array(parts(j))
        finish(&ev, a, context)
        return .object(ev)
    }

    /// An Adaptive Card Action.Submit (a message with a `value`) or an invoke: an `interactive_reply` whose
    /// `choice_id` is the submitted `choice_id`/`id`/`action`, and whose payload is the whole value as JSON.
    static func interaction(_ a: TeamsActivity, value: JSONValue, name: String?, account: String, context: JSONObject) -> JSONValue {
        var ev = base("message", a, account: account)
        if let r = a.json["replyToId"]?.stringValue, !r.isEmpty { ev["reply_to"] = ["channel_message_id": .string(r)] }
        let data = value["action"]?["data"] ?? value
        let choice = data["choice_id"]?.stringValue ?? data["id"]?.stringValue ?? data["action"]?.stringValue
            ?? value["action"]?["verb"]?.stringValue ?? name ?? "submit"
        var part: JSONObject = ["type": "interactive_reply", "choice_id": .string(choice.isEmpty ? "submit" : choice),
                                "kind": name == nil ? "card_action" : "callback"]
        if let t = data["title"]?.stringValue { part["title"] = .string(t) }
        if value != .null { part["payload"] = .string(JSONWriter.encodeString(value)) }
        ev["parts"] = [.object(part)]
        finish(&ev, a, context)
        return .object(ev)
    }

    static func unsupported(_ a: TeamsActivity, account: String, context: JSONObject) -> JSONValue {
        var ev = base("message", a, account: account)
        var p: JSONObject = ["type": "unsupported", "channel_type": .string(a.type)]
        if let n = a.json["name"]?.stringValue { p["description"] = .string(n) }
        ev["parts"] = [.object(p)]
        finish(&ev, a, context)
        return .object(ev)
    }
}
