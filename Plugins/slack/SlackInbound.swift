import ChorusConnectorSDK
import ChorusJSON

/// A request body Slack should not have sent: answered 400, nothing stored.
public struct SlackMalformedRequest: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// What an Events API request body asks for.
public enum SlackEnvelope: Sendable {
    /// `url_verification`: answer with the challenge.
    case urlVerification(challenge: String)
    /// `event_callback`: one normalized event to emit (its `dedup_key` is `event:<event_id>`).
    case event(JSONValue, eventId: String, kind: String)
    /// An envelope type Chorus does not act on (`app_rate_limited`, …): acknowledged, nothing stored.
    case ignored(type: String)
}

/// Turns Slack Events API callbacks and interactivity payloads into normalized Chorus events
/// (docs/schema.md). Pure: no I/O, so every mapping is testable in isolation.
public enum SlackInbound {
    /// Subtypes mapped to ordinary messages (their content is a message like any other).
    static let messageLikeSubtypes: Set<String> = ["bot_message", "file_share", "thread_broadcast", "me_message"]

    /// Parses an Events API body (raw JSON bytes).
    public static func envelope(_ body: [UInt8], account: String) throws(SlackMalformedRequest) -> SlackEnvelope {
        let root: JSONValue
        do { root = try JSONParser.parse(body) } catch { throw SlackMalformedRequest("malformed JSON: \(error)") }
        guard case .object = root else { throw SlackMalformedRequest("expected a JSON object, found \(root.typeName)") }
        guard let type = root["type"]?.stringValue, !type.isEmpty else { throw SlackMalformedRequest("\"type\" is required") }
        switch type {
        case "url_verification":
            guard let challenge = root["challenge"]?.stringValue, !challenge.isEmpty else {
                throw SlackMalformedRequest("url_verification without a challenge")
            }
            return .urlVerification(challenge: challenge)
        case "event_callback":
            guard let eventId = root["event_id"]?.stringValue, !eventId.isEmpty else {
                throw SlackMalformedRequest("event_callback without an event_id")
            }
            guard let inner = root["event"], case .object = inner, let innerType = inner["type"]?.stringValue, !innerType.isEmpty else {
                throw SlackMalformedRequest("event_callback without an event object with a type")
            }
            let (event, kind) = map(event: inner, envelope: root, account: account)
            return .event(event, eventId: eventId, kind: kind)
        default:
            return .ignored(type: type)
        }
    }

    /// The dedup key of an Events API callback. A message is keyed by its Slack id (`message:<channel>:<ts>`), so
    /// Slack's redeliveries and the second copy an app gets when it subscribes to both `app_mention` and
    /// `message.*` are stored once; everything else (edits, deletions, reactions, unsupported events) by its
    /// `event_id` (`event:<event_id>`), which Slack keeps across redeliveries (`X-Slack-Retry-Num`).
    public static func dedupKey(for event: JSONValue, eventId: String) -> String {
        if event["type"]?.stringValue == "message", let id = event["channel_ids"]?["message"]?.stringValue {
            return "message:\(id)"
        }
        return "event:\(eventId)"
    }

    /// The context every event carries: team, event id, app.
    static func baseContext(_ envelope: JSONValue) -> JSONObject {
        var ctx = JSONObject()
        if let t = envelope["team_id"]?.stringValue { ctx["team"] = .string(t) }
        if let e = envelope["event_id"]?.stringValue { ctx["event_id"] = .string(e) }
        if let a = envelope["api_app_id"]?.stringValue { ctx["api_app_id"] = .string(a) }
        if let c = envelope["context_team_id"]?.stringValue { ctx["context_team_id"] = .string(c) }
        if let et = envelope["event_time"]?.intValue { ctx["event_time"] = .int(et) }
        return ctx
    }

    /// Maps one inner event; returns the event and its kind (`message`, `message_changed`, `reaction_added`, …).
    static func map(event e: JSONValue, envelope: JSONValue, account: String) -> (JSONValue, String) {
        let type = e["type"]?.stringValue ?? "unknown"
        var ctx = baseContext(envelope)
        if let ct = e["channel_type"]?.stringValue { ctx["channel_type"] = .string(ct) }
        switch type {
        case "message":
            let subtype = e["subtype"]?.stringValue
            switch subtype {
            case nil:
                return (message(e, account: account, context: ctx, envelope: envelope), "message")
            case let s? where messageLikeSubtypes.contains(s):
                ctx["subtype"] = .string(s)
                return (message(e, account: account, context: ctx, envelope: envelope), s)
            case "message_changed":
                return (edit(e, account: account, context: ctx, envelope: envelope), "message_changed")
            case "message_deleted":
                return (delete(e, account: account, context: ctx, envelope: envelope), "message_deleted")
            case let s?:
                ctx["subtype"] = .string(s)
                return (unsupported(e, channelType: s, account: account, context: ctx, envelope: envelope), s)
            }
        case "app_mention":
            // Also delivered as a message.channels event when the app subscribes to both: stored once by its message id.
            return (message(e, account: account, context: ctx, envelope: envelope), "app_mention")
        case "reaction_added", "reaction_removed":
            if e["item"]?["type"]?.stringValue == "message", let ch = e["item"]?["channel"]?.stringValue,
               let ts = e["item"]?["ts"]?.stringValue, let emoji = e["reaction"]?.stringValue, !emoji.isEmpty
            {
                return (reaction(e, added: type == "reaction_added", channel: ch, ts: ts, name: emoji, account: account,
                                 context: ctx, envelope: envelope), type)
            }
            return (unsupported(e, channelType: type, account: account, context: ctx, envelope: envelope), type)
        default:
            return (unsupported(e, channelType: type, account: account, context: ctx, envelope: envelope), type)
        }
    }

    // MARK: Pieces

    static func ids(chat: String, ts: String?, account: String, thread: String? = nil) -> JSONValue {
        var o: JSONObject = ["chat": .string(chat), "account": .string(account)]
        if let ts, !ts.isEmpty { o["message"] = .string("\(chat):\(ts)") }
        if let thread { o["thread"] = .string(thread) }
        return .object(o)
    }

    /// The sender of a message-shaped object: a user, or a bot (bot_id, `bot_message`).
    static func sender(_ m: JSONValue) -> JSONValue? {
        let bot = m["bot_id"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        if let user = m["user"]?.stringValue, !user.isEmpty {
            var s: JSONObject = ["id": .string(user), "role": bot != nil ? "bot" : "customer"]
            if bot != nil { s["is_bot"] = true }
            if let name = m["user_profile"]?["display_name"]?.stringValue ?? m["user_profile"]?["real_name"]?.stringValue, !name.isEmpty {
                s["name"] = .string(name)
            }
            if let handle = m["user_profile"]?["name"]?.stringValue, !handle.isEmpty { s["username"] = .string(handle) }
            return .object(s)
        }
        if let bot {
            var s: JSONObject = ["id": .string(bot), "role": "bot", "is_bot": true]
            if let name = m["username"]?.stringValue ?? m["bot_profile"]?["name"]?.stringValue, !name.isEmpty { s["name"] = .string(name) }
            return .object(s)
        }
        if let user = m["user"]?["id"]?.stringValue, !user.isEmpty { return ["id": .string(user), "role": "customer"] }
        return nil
    }

    /// The chat an event is about: `channel` (a string or an object with an id), `channel_id`, `item.channel`;
    /// for events outside any conversation, the team (so nothing is dropped).
    static func chat(of e: JSONValue, envelope: JSONValue) -> String {
        if let c = e["channel"]?.stringValue, !c.isEmpty { return c }
        if let c = e["channel"]?["id"]?.stringValue, !c.isEmpty { return c }
        if let c = e["channel_id"]?.stringValue, !c.isEmpty { return c }
        if let c = e["item"]?["channel"]?.stringValue, !c.isEmpty { return c }
        if let t = envelope["team_id"]?.stringValue, !t.isEmpty { return "team:\(t)" }
        return "slack"
    }

    static func timestamp(_ e: JSONValue, _ envelope: JSONValue, key: String = "ts") -> String? {
        if let ts = e[key]?.stringValue, let t = SlackText.rfc3339(slackTs: ts) { return t }
        if let ts = e["event_ts"]?.stringValue, let t = SlackText.rfc3339(slackTs: ts) { return t }
        if let secs = envelope["event_time"]?.intValue, secs > 0 { return SlackText.rfc3339(unixSeconds: secs) }
        return nil
    }

    /// Parts of a message-shaped object: its text (Slack mrkdwn) and its files.
    static func parts(_ m: JSONValue) -> [JSONValue] {
        var parts: [JSONValue] = []
        let text = m["text"]?.stringValue ?? ""
        let files = m["files"]?.arrayValue ?? []
        if !text.isEmpty || files.isEmpty { parts.append(["type": "text", "text": .string(text), "format": "markdown"]) }
        for f in files { parts.append(mediaPart(f)) }
        return parts
    }

    /// A Slack file object as a media part (`url_private` needs the bot token to fetch).
    static func mediaPart(_ f: JSONValue) -> JSONValue {
        let mime = f["mimetype"]?.stringValue ?? ""
        let kind: String
        if mime.hasPrefix("image/") { kind = "image" } else if mime.hasPrefix("video/") { kind = "video" } else if mime.hasPrefix("audio/") {
            kind = f["subtype"]?.stringValue == "slack_audio" ? "voice" : "audio"
        } else { kind = "file" }
        var p: JSONObject = ["type": "media", "kind": .string(kind)]
        if let u = f["url_private"]?.stringValue ?? f["url_private_download"]?.stringValue, !u.isEmpty { p["url"] = .string(u) }
        if let id = f["id"]?.stringValue, !id.isEmpty { p["channel_media_id"] = .string(id) }
        if p["url"] == nil && p["channel_media_id"] == nil, let perm = f["permalink"]?.stringValue, !perm.isEmpty { p["url"] = .string(perm) }
        if p["url"] == nil && p["channel_media_id"] == nil {
            // A file object without any reference (a tombstone of a deleted file): say so rather than invent one.
            var u: JSONObject = ["type": "unsupported", "channel_type": "file"]
            if let n = f["name"]?.stringValue { u["description"] = .string(n) }
            return .object(u)
        }
        if !mime.isEmpty { p["mime_type"] = .string(mime) }
        if let n = f["name"]?.stringValue, !n.isEmpty { p["file_name"] = .string(n) }
        if let s = f["size"]?.intValue, s >= 0 { p["size"] = .int(s) }
        if let w = f["original_w"]?.intValue, w >= 0 { p["width"] = .int(w) }
        if let h = f["original_h"]?.intValue, h >= 0 { p["height"] = .int(h) }
        if let title = f["title"]?.stringValue, !title.isEmpty, title != f["name"]?.stringValue { p["caption"] = .string(title) }
        return .object(p)
    }

    static func finish(_ ev: inout JSONObject, context: JSONObject, e: JSONValue) {
        var ctx = context
        if let blocks = e["blocks"], case .array(let a) = blocks, !a.isEmpty { ctx["blocks"] = blocks }
        if let atts = e["attachments"], case .array(let a) = atts, !a.isEmpty { ctx["attachments"] = atts }
        if !ctx.isEmpty { ev["context"] = .object(ctx) }
        ev["raw"] = e
    }

    static func message(_ e: JSONValue, account: String, context: JSONObject, envelope: JSONValue) -> JSONValue {
        let chat = Self.chat(of: e, envelope: envelope)
        let ts = e["ts"]?.stringValue
        let thread = e["thread_ts"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        var ev: JSONObject = ["type": "message", "direction": "inbound", "channel_ids": ids(chat: chat, ts: ts, account: account, thread: thread)]
        if let s = sender(e) { ev["sender"] = s }
        if let t = timestamp(e, envelope) { ev["timestamp"] = .string(t) }
        if let thread {
            ev["thread_id"] = .string(thread)
            if thread != ts { ev["reply_to"] = ["channel_message_id": .string("\(chat):\(thread)")] }
        }
        ev["parts"] = .array(parts(e))
        finish(&ev, context: context, e: e)
        return .object(ev)
    }

    static func edit(_ e: JSONValue, account: String, context: JSONObject, envelope: JSONValue) -> JSONValue {
        let chat = Self.chat(of: e, envelope: envelope)
        let m = e["message"] ?? .object(JSONObject())
        guard let ts = m["ts"]?.stringValue, !ts.isEmpty else {
            return unsupported(e, channelType: "message_changed", account: account, context: context, envelope: envelope)
        }
        let thread = m["thread_ts"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        var ev: JSONObject = ["type": "edit", "direction": "inbound", "channel_ids": ids(chat: chat, ts: ts, account: account, thread: thread)]
        if let s = sender(m) { ev["sender"] = s }
        if let t = timestamp(m["edited"] ?? .null, envelope) ?? timestamp(e, envelope) { ev["timestamp"] = .string(t) }
        if let thread { ev["thread_id"] = .string(thread) }
        ev["target"] = ["channel_message_id": .string("\(chat):\(ts)")]
        ev["parts"] = .array(parts(m))
        var ctx = context
        ctx["subtype"] = "message_changed"
        if let prev = e["previous_message"]?["text"]?.stringValue { ctx["previous_text"] = .string(prev) }
        finish(&ev, context: ctx, e: e)
        return .object(ev)
    }

    static func delete(_ e: JSONValue, account: String, context: JSONObject, envelope: JSONValue) -> JSONValue {
        let chat = Self.chat(of: e, envelope: envelope)
        guard let ts = e["deleted_ts"]?.stringValue ?? e["previous_message"]?["ts"]?.stringValue, !ts.isEmpty else {
            return unsupported(e, channelType: "message_deleted", account: account, context: context, envelope: envelope)
        }
        var ev: JSONObject = ["type": "delete", "direction": "inbound", "channel_ids": ids(chat: chat, ts: ts, account: account)]
        if let prev = e["previous_message"], let s = sender(prev) { ev["sender"] = s }
        if let t = timestamp(e, envelope) { ev["timestamp"] = .string(t) }
        ev["target"] = ["channel_message_id": .string("\(chat):\(ts)")]
        var ctx = context
        ctx["subtype"] = "message_deleted"
        finish(&ev, context: ctx, e: e)
        return .object(ev)
    }

    static func reaction(_ e: JSONValue, added: Bool, channel: String, ts: String, name: String, account: String,
                         context: JSONObject, envelope: JSONValue) -> JSONValue
    {
        var ev: JSONObject = ["type": "reaction", "direction": "inbound", "channel_ids": ids(chat: channel, ts: nil, account: account)]
        if let s = sender(e) { ev["sender"] = s }
        if let t = timestamp(e, envelope, key: "event_ts") { ev["timestamp"] = .string(t) }
        ev["target"] = ["channel_message_id": .string("\(channel):\(ts)")]
        let emoji = SlackEmoji.emoji(forName: name)
        ev["reaction"] = added ? ["emoji": .string(emoji)] : ["action": "remove", "emoji": .string(emoji)]
        var ctx = context
        ctx["reaction_name"] = .string(name)
        if let iu = e["item_user"]?.stringValue { ctx["item_user"] = .string(iu) }
        finish(&ev, context: ctx, e: e)
        return .object(ev)
    }

    /// Something Chorus does not model, as a message with an `unsupported` part, so it is never dropped.
    static func unsupported(_ e: JSONValue, channelType: String, account: String, context: JSONObject, envelope: JSONValue,
                            description: String? = nil) -> JSONValue
    {
        let chat = Self.chat(of: e, envelope: envelope)
        var ev: JSONObject = ["type": "message", "direction": "inbound", "channel_ids": ids(chat: chat, ts: nil, account: account)]
        if let s = sender(e) { ev["sender"] = s }
        if let t = timestamp(e, envelope) { ev["timestamp"] = .string(t) }
        var part: JSONObject = ["type": "unsupported", "channel_type": .string(channelType)]
        if let d = description ?? e["text"]?.stringValue { part["description"] = .string(d) }
        ev["parts"] = [.object(part)]
        finish(&ev, context: context, e: e)
        return .object(ev)
    }

    /// The fallback for an event the daemon refused: the same payload as an `unsupported` message with the reason.
    static func fallback(for original: JSONValue, kind: String, reason: String, account: String) -> JSONValue {
        let raw = original["raw"] ?? .null
        let chat = original["channel_ids"]?["chat"]?.stringValue ?? "slack"
        var ev: JSONObject = ["type": "message", "direction": "inbound", "channel_ids": ["chat": .string(chat), "account": .string(account)]]
        ev["parts"] = [["type": "unsupported", "channel_type": .string(kind), "description": .string("not representable: \(reason)")]]
        if let ctx = original["context"] { ev["context"] = ctx }
        ev["raw"] = raw
        return .object(ev)
    }

    // MARK: Interactivity

    /// Parses an interactivity request body (`payload=<JSON>`, form-encoded) into one event.
    public static func interaction(_ body: [UInt8], account: String) throws(SlackMalformedRequest) -> (JSONValue, dedupKey: String?, kind: String) {
        guard let payloadText = SlackText.formFields(body).first(where: { $0.0 == "payload" })?.1, !payloadText.isEmpty else {
            throw SlackMalformedRequest("expected a form-encoded payload field")
        }
        let p: JSONValue
        do { p = try JSONParser.parse(payloadText) } catch { throw SlackMalformedRequest("payload is not JSON: \(error)") }
        guard case .object = p, let type = p["type"]?.stringValue, !type.isEmpty else {
            throw SlackMalformedRequest("payload must be an object with a type")
        }
        var ctx = JSONObject()
        if let t = p["team"]?["id"]?.stringValue { ctx["team"] = .string(t) }
        if let a = p["api_app_id"]?.stringValue { ctx["api_app_id"] = .string(a) }
        if let t = p["trigger_id"]?.stringValue { ctx["trigger_id"] = .string(t) }
        if let r = p["response_url"]?.stringValue { ctx["response_url"] = .string(r) }
        ctx["interaction_type"] = .string(type)
        let envelope: JSONValue = ["team_id": p["team"]?["id"] ?? .null]
        let chat = p["channel"]?["id"]?.stringValue ?? p["container"]?["channel_id"]?.stringValue ?? Self.chat(of: .null, envelope: envelope)
        var sender: JSONObject?
        if let uid = p["user"]?["id"]?.stringValue, !uid.isEmpty {
            var s: JSONObject = ["id": .string(uid), "role": "customer"]
            if let n = p["user"]?["name"]?.stringValue, !n.isEmpty { s["name"] = .string(n) }
            if let u = p["user"]?["username"]?.stringValue, !u.isEmpty { s["username"] = .string(u) }
            sender = s
        }
        var ev: JSONObject = ["type": "message", "direction": "inbound", "channel_ids": ["chat": .string(chat), "account": .string(account)]]
        if let sender { ev["sender"] = .object(sender) }
        guard type == "block_actions", let actions = p["actions"]?.arrayValue, !actions.isEmpty else {
            ev["parts"] = [["type": "unsupported", "channel_type": .string(type)]]
            ev["context"] = .object(ctx)
            ev["raw"] = p
            return (.object(ev), p["trigger_id"]?.stringValue.map { "interaction:\($0)" }, type)
        }
        var parts: [JSONValue] = []
        var lastActionTs: String?
        for a in actions {
            let actionId = a["action_id"]?.stringValue ?? ""
            let value = a["value"]?.stringValue ?? a["selected_option"]?["value"]?.stringValue
            let choice = value.flatMap { $0.isEmpty ? nil : $0 } ?? (actionId.isEmpty ? (a["type"]?.stringValue ?? "action") : actionId)
            var part: JSONObject = ["type": "interactive_reply", "choice_id": .string(choice),
                                    "kind": a["type"]?.stringValue == "button" ? "button" : "list"]
            if let title = a["text"]?["text"]?.stringValue ?? a["selected_option"]?["text"]?["text"]?.stringValue { part["title"] = .string(title) }
            if !actionId.isEmpty { part["payload"] = .string(actionId) }
            parts.append(.object(part))
            if let ts = a["action_ts"]?.stringValue { lastActionTs = ts }
        }
        ev["parts"] = .array(parts)
        if let ts = lastActionTs, let t = SlackText.rfc3339(slackTs: ts) { ev["timestamp"] = .string(t) }
        if let mts = p["container"]?["message_ts"]?.stringValue ?? p["message"]?["ts"]?.stringValue {
            ev["reply_to"] = ["channel_message_id": .string("\(chat):\(mts)")]
        }
        if let thread = p["container"]?["thread_ts"]?.stringValue ?? p["message"]?["thread_ts"]?.stringValue {
            ev["thread_id"] = .string(thread)
        }
        ctx["actions"] = .array(actions)
        ev["context"] = .object(ctx)
        ev["raw"] = p
        let who = sender?["id"]?.stringValue ?? "unknown"
        let key = lastActionTs.map { "interaction:\(who):\($0)" } ?? p["trigger_id"]?.stringValue.map { "interaction:\($0)" }
        return (.object(ev), key, type)
    }
}
