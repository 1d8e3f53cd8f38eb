import ChorusJSON
import ChorusModel

/// Turns Telegram Bot API `Update` objects into Chorus normalized events (docs/schema.md).
///
/// Pure: no I/O, no host calls, so every rule here is deterministic. One update gives one
/// event, except a `message_reaction` update that adds and removes emoji at once (one
/// `reaction` event per change). Every event carries an explicit `dedup_key` derived from
/// the update (`update:<update_id>`, or `edit:<chat>:<message>:<edit_date>` for edits, whose
/// message id Telegram reuses), so a redelivered update is stored once.
///
/// Ids: `channel_ids.chat` is the chat id, `channel_ids.message` is `"<chat_id>:<message_id>"`
/// (Telegram message ids are only unique within a chat).
struct UpdateMapper {
    /// The value for `channel_ids.account` (the instance's `account` setting or its name).
    let account: String

    /// A mapped update: its id and the events to emit for it.
    struct Mapped {
        let updateId: Int64
        let events: [JSONValue]
        /// For a callback query: its id, to answer once the event is stored.
        let callbackQueryId: String?
        /// For a pre-checkout query: its id, to answer once the event is stored.
        let preCheckoutQueryId: String?
    }

    /// Why an update could not be read.
    struct MappingError: Error, CustomStringConvertible {
        let description: String
    }

    /// The update kinds this mapper models; everything else becomes an `unsupported` part.
    static let knownUpdateKinds: [String] = [
        "message", "edited_message", "channel_post", "edited_channel_post", "business_message",
        "edited_business_message", "callback_query", "message_reaction", "chat_member", "my_chat_member",
        "pre_checkout_query",
    ]

    /// `allowed_updates` for getUpdates / setWebhook: the modelled kinds plus the unmodelled ones
    /// Telegram only sends on request (they arrive as `unsupported`).
    static let allowedUpdates: [String] = knownUpdateKinds + [
        "inline_query", "chosen_inline_result", "shipping_query", "poll", "poll_answer",
        "message_reaction_count", "chat_join_request", "chat_boost", "removed_chat_boost",
    ]

    /// Maps one update.
    func map(_ update: JSONValue) throws(MappingError) -> Mapped {
        guard case .object(let o) = update else { throw MappingError(description: "an update must be a JSON object, found \(update.typeName)") }
        guard let updateId = o["update_id"]?.intValue else { throw MappingError(description: "update_id: required integer is missing") }
        let kinds = o.keys.filter { $0 != "update_id" }
        guard let kind = kinds.first, let body = o[kind] else {
            throw MappingError(description: "update \(updateId) carries no content besides update_id")
        }
        let dedup = "update:\(updateId)"
        var callbackId: String?
        var preCheckoutId: String?
        var events: [JSONValue]
        switch kind {
        case "message", "channel_post", "business_message":
            events = [try messageEvent(body, dedup: dedup, updateKind: kind)]
        case "edited_message", "edited_channel_post", "edited_business_message":
            events = [try editEvent(body, updateKind: kind)]
        case "callback_query":
            callbackId = body["id"]?.stringValue
            events = [try callbackEvent(body, dedup: dedup)]
        case "message_reaction":
            events = try reactionEvents(body, dedup: dedup)
        case "chat_member", "my_chat_member":
            events = [try memberEvent(body, dedup: dedup, ownStatus: kind == "my_chat_member")]
        case "pre_checkout_query":
            preCheckoutId = body["id"]?.stringValue
            events = [unsupportedEvent(kind: kind, body: body, dedup: dedup,
                                       description: "pre-checkout query for \(body["total_amount"]?.intValue.map(String.init) ?? "?") \(body["currency"]?.stringValue ?? "")")]
        default:
            events = [unsupportedEvent(kind: kind, body: body, dedup: dedup, description: "Telegram update of kind \(kind)")]
        }
        return Mapped(updateId: updateId, events: events, callbackQueryId: callbackId, preCheckoutQueryId: preCheckoutId)
    }

    // MARK: Common pieces

    static func chatId(_ chat: JSONValue?) -> String? {
        guard let id = chat?["id"] else { return nil }
        if let i = id.intValue { return String(i) }
        return id.stringValue
    }

    /// `"<chat_id>:<message_id>"`.
    static func messageKey(chat: String, message: JSONValue?) -> String? {
        guard let m = message?.intValue else { return nil }
        return "\(chat):\(m)"
    }

    func participant(user: JSONValue?) -> JSONValue? {
        guard case .object(let u)? = user, let id = u["id"]?.intValue else { return nil }
        var p = JSONObject()
        p["id"] = .string(String(id))
        let name = [u["first_name"]?.stringValue, u["last_name"]?.stringValue].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
        p["name"] = .string(name)
        if let un = u["username"]?.stringValue, !un.isEmpty { p["username"] = .string(un) }
        let isBot = u["is_bot"]?.boolValue ?? false
        p["is_bot"] = .bool(isBot)
        p["role"] = .string(isBot ? "bot" : "customer")
        return .object(p)
    }

    /// The sender of a message: `from`, or for channel posts / anonymous admins `sender_chat`.
    func sender(of message: JSONValue) -> JSONValue? {
        if let p = participant(user: message["from"]) { return p }
        if case .object(let c)? = message["sender_chat"], let id = UpdateMapper.chatId(.object(c)) {
            var p = JSONObject()
            p["id"] = .string(id)
            p["name"] = .string(c["title"]?.stringValue ?? "")
            if let un = c["username"]?.stringValue, !un.isEmpty { p["username"] = .string(un) }
            p["role"] = "member"
            return .object(p)
        }
        return nil
    }

    func channelIds(chat: String, message: String?) -> JSONValue {
        var ids = JSONObject()
        if let message { ids["message"] = .string(message) }
        ids["chat"] = .string(chat)
        ids["account"] = .string(account)
        return .object(ids)
    }

    /// Context shared by every event about a chat: its type and title.
    func chatContext(_ chat: JSONValue?) -> JSONObject {
        var c = JSONObject()
        if let t = chat?["type"]?.stringValue { c["chat_type"] = .string(t) }
        if let t = chat?["title"]?.stringValue { c["chat_title"] = .string(t) }
        return c
    }

    // MARK: Messages

    /// Service-message fields that describe membership changes.
    private static let membershipFields: [String] = ["new_chat_members", "left_chat_member", "new_chat_title"]

    /// Message fields that are metadata, not content (used to name unsupported content).
    private static let metadataFields: Set<String> = [
        "message_id", "message_thread_id", "from", "sender_chat", "sender_boost_count", "sender_business_bot",
        "date", "business_connection_id", "chat", "forward_origin", "is_topic_message", "is_automatic_forward",
        "reply_to_message", "external_reply", "quote", "reply_to_story", "via_bot", "edit_date",
        "has_protected_content", "is_from_offline", "media_group_id", "author_signature", "entities",
        "caption", "caption_entities", "show_caption_above_media", "has_media_spoiler", "link_preview_options",
        "effect_id", "reply_markup", "forward_from", "forward_from_chat", "forward_from_message_id",
        "forward_signature", "forward_sender_name", "forward_date", "text",
    ]

    func messageEvent(_ m: JSONValue, dedup: String, updateKind: String) throws(MappingError) -> JSONValue {
        guard let chat = UpdateMapper.chatId(m["chat"]) else { throw MappingError(description: "\(updateKind).chat.id is missing") }
        let key = UpdateMapper.messageKey(chat: chat, message: m["message_id"])
        var ev = JSONObject()
        if let conv = membershipConversation(m) {
            ev["type"] = "conversation"
            ev["channel_ids"] = channelIds(chat: chat, message: key)
            if let s = sender(of: m) { ev["sender"] = s }
            if let members = conv.participants, !members.isEmpty { ev["participants"] = .array(members) }
            if let ts = m["date"]?.intValue { ev["timestamp"] = .string(rfc3339(epochSeconds: ts)) }
            ev["conversation"] = .object(conv.body)
            var ctx = chatContext(m["chat"])
            ctx["update_kind"] = .string(updateKind)
            ev["context"] = .object(ctx)
            ev["dedup_key"] = .string(dedup)
            return .object(ev)
        }
        ev["type"] = "message"
        ev["channel_ids"] = channelIds(chat: chat, message: key)
        if let s = sender(of: m) { ev["sender"] = s }
        if let ts = m["date"]?.intValue { ev["timestamp"] = .string(rfc3339(epochSeconds: ts)) }
        if let r = m["reply_to_message"], let rk = UpdateMapper.messageKey(chat: chat, message: r["message_id"]) {
            ev["reply_to"] = ["channel_message_id": .string(rk)]
        }
        if m["is_topic_message"]?.boolValue == true, let t = m["message_thread_id"]?.intValue { ev["thread_id"] = .string(String(t)) }
        let (parts, extra) = contentParts(m)
        ev["parts"] = .array(parts)
        var ctx = chatContext(m["chat"])
        if updateKind != "message" { ctx["update_kind"] = .string(updateKind) }
        for (k, v) in extra { ctx[k] = v }
        if let f = m["forward_origin"] { ctx["forward_origin"] = f }
        if let q = m["quote"] { ctx["quote"] = q }
        if let g = m["media_group_id"]?.stringValue { ctx["media_group_id"] = .string(g) }
        if let b = m["business_connection_id"]?.stringValue { ctx["business_connection_id"] = .string(b) }
        if !ctx.isEmpty { ev["context"] = .object(ctx) }
        ev["dedup_key"] = .string(dedup)
        return .object(ev)
    }

    struct Conversation {
        let body: JSONObject
        let participants: [JSONValue]?
    }

    /// A service message about the chat's members or title, as a conversation action.
    func membershipConversation(_ m: JSONValue) -> Conversation? {
        if case .array(let users)? = m["new_chat_members"] {
            let members = users.compactMap { participant(user: $0) }.map { Self.asMember($0) }
            return Conversation(body: ["action": "member_joined", "members": .array(members.map(Self.idOnly))], participants: members)
        }
        if let u = m["left_chat_member"], let p = participant(user: u) {
            let member = Self.asMember(p)
            return Conversation(body: ["action": "member_left", "members": [Self.idOnly(member)]], participants: [member])
        }
        if let t = m["new_chat_title"]?.stringValue {
            return Conversation(body: ["action": "renamed", "title": .string(t)], participants: nil)
        }
        return nil
    }

    static func asMember(_ p: JSONValue) -> JSONValue {
        guard case .object(var o) = p else { return p }
        if o["is_bot"]?.boolValue != true { o["role"] = "member" }
        return .object(o)
    }

    static func idOnly(_ p: JSONValue) -> JSONValue { ["id": p["id"] ?? .null] }

    /// The parts of a message's content, and extra context (entities, media details).
    func contentParts(_ m: JSONValue) -> ([JSONValue], JSONObject) {
        var ctx = JSONObject()
        let caption = m["caption"]?.stringValue
        if let e = m["caption_entities"] { ctx["caption_entities"] = e }

        func media(_ kind: String, _ f: JSONValue, extraFields: (inout JSONObject) -> Void = { _ in }) -> JSONValue {
            var p: JSONObject = ["type": "media", "kind": .string(kind)]
            if let id = f["file_id"]?.stringValue { p["channel_media_id"] = .string(id) }
            if let mt = f["mime_type"]?.stringValue { p["mime_type"] = .string(mt) }
            if let s = f["file_size"]?.intValue, s >= 0 { p["size"] = .int(s) }
            if let c = caption { p["caption"] = .string(c) }
            if let n = f["file_name"]?.stringValue, !n.isEmpty { p["file_name"] = .string(n) }
            if let d = f["duration"]?.intValue, d >= 0 { p["duration_ms"] = .int(d * 1000) }
            if let w = f["width"]?.intValue, w >= 0 { p["width"] = .int(w) }
            if let h = f["height"]?.intValue, h >= 0 { p["height"] = .int(h) }
            extraFields(&p)
            if let u = f["file_unique_id"]?.stringValue { ctx["file_unique_id"] = .string(u) }
            return .object(p)
        }

        if let text = m["text"]?.stringValue {
            if let e = m["entities"] { ctx["entities"] = e }
            if let lp = m["link_preview_options"] { ctx["link_preview_options"] = lp }
            return ([["type": "text", "text": .string(text)]], ctx)
        }
        if case .array(let sizes)? = m["photo"], !sizes.isEmpty {
            // PhotoSize array, smallest first: keep the largest.
            let best = sizes.max { ($0["width"]?.intValue ?? 0) * ($0["height"]?.intValue ?? 0) < ($1["width"]?.intValue ?? 0) * ($1["height"]?.intValue ?? 0) } ?? sizes[sizes.count - 1]
            return ([media("image", best)], ctx)
        }
        if let a = m["animation"] {
            ctx["animation"] = true
            return ([media("video", a)], ctx)
        }
        if let d = m["document"] { return ([media("file", d)], ctx) }
        if let a = m["audio"] {
            if let t = a["title"]?.stringValue { ctx["audio_title"] = .string(t) }
            if let pf = a["performer"]?.stringValue { ctx["audio_performer"] = .string(pf) }
            return ([media("audio", a)], ctx)
        }
        if let v = m["voice"] { return ([media("voice", v)], ctx) }
        if let v = m["video"] { return ([media("video", v)], ctx) }
        if let v = m["video_note"] {
            ctx["video_note"] = true
            return ([media("video", v) { p in
                if let l = v["length"]?.intValue, l >= 0 { p["width"] = .int(l); p["height"] = .int(l) }
            }], ctx)
        }
        if let s = m["sticker"] {
            if let e = s["emoji"]?.stringValue { ctx["sticker_emoji"] = .string(e) }
            if let set = s["set_name"]?.stringValue { ctx["sticker_set"] = .string(set) }
            return ([media("sticker", s)], ctx)
        }
        if let v = m["venue"], let loc = v["location"], let lat = loc["latitude"]?.doubleValue, let lon = loc["longitude"]?.doubleValue {
            var p: JSONObject = ["type": "location", "latitude": .double(lat), "longitude": .double(lon)]
            if let t = v["title"]?.stringValue, !t.isEmpty { p["name"] = .string(t) }
            if let a = v["address"]?.stringValue, !a.isEmpty { p["address"] = .string(a) }
            for k in ["foursquare_id", "foursquare_type", "google_place_id", "google_place_type"] { if let x = v[k] { ctx[k] = x } }
            return ([.object(p)], ctx)
        }
        if let loc = m["location"], let lat = loc["latitude"]?.doubleValue, let lon = loc["longitude"]?.doubleValue {
            for k in ["live_period", "heading", "horizontal_accuracy", "proximity_alert_radius"] { if let x = loc[k] { ctx[k] = x } }
            return ([["type": "location", "latitude": .double(lat), "longitude": .double(lon)]], ctx)
        }
        if let c = m["contact"], let phone = c["phone_number"]?.stringValue, !phone.isEmpty {
            let first = c["first_name"]?.stringValue ?? ""
            let last = c["last_name"]?.stringValue ?? ""
            let formatted = [first, last].filter { !$0.isEmpty }.joined(separator: " ")
            var name: JSONObject = ["formatted": .string(formatted.isEmpty ? phone : formatted)]
            if !first.isEmpty { name["first"] = .string(first) }
            if !last.isEmpty { name["last"] = .string(last) }
            var ph: JSONObject = ["number": .string(phone)]
            if let uid = c["user_id"]?.intValue { ph["channel_id"] = .string(String(uid)) }
            if let vc = c["vcard"]?.stringValue { ctx["vcard"] = .string(vc) }
            return ([["type": "contact", "name": .object(name), "phones": [.object(ph)]]], ctx)
        }
        // Anything else: name the content field and keep the message in context.
        // (Flags that are false, such as group_chat_created in some serializations, are not content.)
        let field = m.objectValue?.entries.first { !Self.metadataFields.contains($0.key) && $0.value != .bool(false) }?.key ?? "message"
        var p: JSONObject = ["type": "unsupported", "channel_type": .string(field)]
        p["description"] = .string("Telegram message content \"\(field)\" is not modelled by Chorus")
        if let c = caption { ctx["caption"] = .string(c) }
        if let v = m[field] { ctx[field] = v }
        return ([.object(p)], ctx)
    }

    // MARK: Edits

    func editEvent(_ m: JSONValue, updateKind: String) throws(MappingError) -> JSONValue {
        guard let chat = UpdateMapper.chatId(m["chat"]) else { throw MappingError(description: "\(updateKind).chat.id is missing") }
        guard let key = UpdateMapper.messageKey(chat: chat, message: m["message_id"]) else {
            throw MappingError(description: "\(updateKind).message_id is missing")
        }
        let editDate = m["edit_date"]?.intValue ?? m["date"]?.intValue ?? 0
        var ev = JSONObject()
        ev["type"] = "edit"
        ev["channel_ids"] = channelIds(chat: chat, message: key)
        if let s = sender(of: m) { ev["sender"] = s }
        ev["timestamp"] = .string(rfc3339(epochSeconds: editDate))
        ev["target"] = ["channel_message_id": .string(key)]
        let (parts, extra) = contentParts(m)
        ev["parts"] = .array(parts)
        var ctx = chatContext(m["chat"])
        ctx["update_kind"] = .string(updateKind)
        if let d = m["date"]?.intValue { ctx["original_date"] = .string(rfc3339(epochSeconds: d)) }
        for (k, v) in extra { ctx[k] = v }
        ev["context"] = .object(ctx)
        // Telegram reuses the message id for every edit: each edit is told apart by its edit date.
        ev["dedup_key"] = .string("edit:\(key):\(editDate)")
        return .object(ev)
    }

    // MARK: Callback queries

    func callbackEvent(_ q: JSONValue, dedup: String) throws(MappingError) -> JSONValue {
        guard let qid = q["id"]?.stringValue else { throw MappingError(description: "callback_query.id is missing") }
        // The chat: the message with the keyboard, else the user's private chat.
        let message = q["message"]
        guard let chat = UpdateMapper.chatId(message?["chat"]) ?? q["from"]?["id"]?.intValue.map({ String($0) }) else {
            throw MappingError(description: "callback_query \(qid) has neither message.chat nor from")
        }
        let data = q["data"]?.stringValue
        var reply: JSONObject = ["type": "interactive_reply"]
        reply["choice_id"] = .string((data?.isEmpty == false ? data : nil) ?? q["game_short_name"]?.stringValue ?? qid)
        if let title = buttonTitle(in: message, callbackData: data) { reply["title"] = .string(title) }
        reply["kind"] = "callback"
        if let data { reply["payload"] = .string(data) }
        var ev = JSONObject()
        ev["type"] = "message"
        ev["channel_ids"] = channelIds(chat: chat, message: nil)
        if let s = participant(user: q["from"]) { ev["sender"] = s }
        if let mk = UpdateMapper.messageKey(chat: chat, message: message?["message_id"]) { ev["reply_to"] = ["channel_message_id": .string(mk)] }
        ev["parts"] = [.object(reply)]
        var ctx = chatContext(message?["chat"])
        ctx["callback_query_id"] = .string(qid)
        if let ci = q["chat_instance"]?.stringValue { ctx["chat_instance"] = .string(ci) }
        if let im = q["inline_message_id"]?.stringValue { ctx["inline_message_id"] = .string(im) }
        ev["context"] = .object(ctx)
        ev["dedup_key"] = .string(dedup)
        return .object(ev)
    }

    /// The label of the inline button whose callback_data was pressed, when the message shows its keyboard.
    func buttonTitle(in message: JSONValue?, callbackData: String?) -> String? {
        guard let callbackData, let rows = message?["reply_markup"]?["inline_keyboard"]?.arrayValue else { return nil }
        for row in rows {
            for b in row.arrayValue ?? [] where b["callback_data"]?.stringValue == callbackData { return b["text"]?.stringValue }
        }
        return nil
    }

    // MARK: Reactions

    static func reactionKey(_ r: JSONValue) -> String? {
        switch r["type"]?.stringValue {
        case "emoji": return r["emoji"]?.stringValue
        case "custom_emoji": return r["custom_emoji_id"].flatMap { $0.stringValue }.map { "custom:" + $0 }
        case "paid": return "⭐"
        default: return nil
        }
    }

    func reactionEvents(_ r: JSONValue, dedup: String) throws(MappingError) -> [JSONValue] {
        guard let chat = UpdateMapper.chatId(r["chat"]) else { throw MappingError(description: "message_reaction.chat.id is missing") }
        guard let target = UpdateMapper.messageKey(chat: chat, message: r["message_id"]) else {
            throw MappingError(description: "message_reaction.message_id is missing")
        }
        let old = (r["old_reaction"]?.arrayValue ?? []).compactMap(Self.reactionKey)
        let new = (r["new_reaction"]?.arrayValue ?? []).compactMap(Self.reactionKey)
        var changes: [JSONValue] = []
        for e in new where !old.contains(e) { changes.append(["emoji": .string(e)]) }
        for e in old where !new.contains(e) { changes.append(["action": "remove", "emoji": .string(e)]) }
        if changes.isEmpty { changes.append(new.first.map { ["emoji": .string($0)] } ?? ["action": "remove"]) }
        var sender = participant(user: r["user"])
        if sender == nil, case .object(let c)? = r["actor_chat"], let id = UpdateMapper.chatId(.object(c)) {
            sender = ["id": .string(id), "name": .string(c["title"]?.stringValue ?? ""), "role": "member"]
        }
        var out: [JSONValue] = []
        for (i, change) in changes.enumerated() {
            var ev = JSONObject()
            ev["type"] = "reaction"
            ev["channel_ids"] = channelIds(chat: chat, message: nil)
            if let sender { ev["sender"] = sender }
            if let d = r["date"]?.intValue { ev["timestamp"] = .string(rfc3339(epochSeconds: d)) }
            ev["reaction"] = change
            ev["target"] = ["channel_message_id": .string(target)]
            var ctx = chatContext(r["chat"])
            ctx["old_reaction"] = r["old_reaction"] ?? .array([])
            ctx["new_reaction"] = r["new_reaction"] ?? .array([])
            ev["context"] = .object(ctx)
            ev["dedup_key"] = .string(changes.count == 1 ? dedup : "\(dedup):\(i)")
            out.append(.object(ev))
        }
        return out
    }

    // MARK: Membership

    static func isMemberStatus(_ m: JSONValue?) -> Bool {
        switch m?["status"]?.stringValue {
        case "creator", "administrator", "member": return true
        case "restricted": return m?["is_member"]?.boolValue ?? true
        default: return false
        }
    }

    func memberEvent(_ u: JSONValue, dedup: String, ownStatus: Bool) throws(MappingError) -> JSONValue {
        guard let chat = UpdateMapper.chatId(u["chat"]) else { throw MappingError(description: "chat_member.chat.id is missing") }
        let oldM = u["old_chat_member"], newM = u["new_chat_member"]
        let wasMember = Self.isMemberStatus(oldM), isMember = Self.isMemberStatus(newM)
        let chatType = u["chat"]?["type"]?.stringValue
        let action: String
        if ownStatus && chatType == "private" {
            action = isMember ? "unblocked" : "blocked"
        } else if !wasMember && isMember {
            action = ownStatus ? "bot_added" : "member_joined"
        } else if wasMember && !isMember {
            action = ownStatus ? "bot_removed" : "member_left"
        } else {
            action = ownStatus ? "bot_status_changed" : "member_updated"
        }
        var member = participant(user: newM?["user"]).map(Self.asMember)
        if ownStatus, case .object(var o)? = member { o["role"] = "bot"; member = .object(o) }
        var conv: JSONObject = ["action": .string(action)]
        if let member { conv["members"] = [Self.idOnly(member)] }
        if let s = oldM?["status"]?.stringValue { conv["old_status"] = .string(s) }
        if let s = newM?["status"]?.stringValue { conv["new_status"] = .string(s) }
        var ev = JSONObject()
        ev["type"] = "conversation"
        ev["channel_ids"] = channelIds(chat: chat, message: nil)
        if let s = participant(user: u["from"]) { ev["sender"] = s }
        if let member { ev["participants"] = [member] }
        if let d = u["date"]?.intValue { ev["timestamp"] = .string(rfc3339(epochSeconds: d)) }
        ev["conversation"] = .object(conv)
        var ctx = chatContext(u["chat"])
        ctx["update_kind"] = .string(ownStatus ? "my_chat_member" : "chat_member")
        if let l = u["invite_link"] { ctx["invite_link"] = l }
        ev["context"] = .object(ctx)
        ev["dedup_key"] = .string(dedup)
        return .object(ev)
    }

    // MARK: Everything else

    /// An update kind Chorus does not model: a message with one `unsupported` part, never dropped.
    /// The chat is the update's chat, else its user's private chat, else the pseudo-chat `updates`.
    func unsupportedEvent(kind: String, body: JSONValue, dedup: String, description: String) -> JSONValue {
        let chat = UpdateMapper.chatId(body["chat"]) ?? UpdateMapper.chatId(body["message"]?["chat"])
            ?? (body["from"]?["id"] ?? body["user"]?["id"]).flatMap { $0.intValue }.map { String($0) }
            ?? "updates"
        var ev = JSONObject()
        ev["type"] = "message"
        ev["channel_ids"] = channelIds(chat: chat, message: nil)
        if let s = participant(user: body["from"] ?? body["user"]) { ev["sender"] = s }
        if let d = body["date"]?.intValue { ev["timestamp"] = .string(rfc3339(epochSeconds: d)) }
        ev["parts"] = [["type": "unsupported", "channel_type": .string(kind), "description": .string(description)]]
        ev["context"] = ["update_kind": .string(kind), "update": body]
        ev["dedup_key"] = .string(dedup)
        return .object(ev)
    }
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
func rfc3339(epochSeconds t: Int64) -> String {
    Timestamp.format(epochSeconds: t)
}
