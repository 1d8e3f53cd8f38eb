import ChorusJSON
import MetaGraph

/// Turns a WhatsApp Cloud API webhook (`object: whatsapp_business_account`)
/// into normalized events: one per message and one per status, across every
/// entry and change. Pure: no I/O.
struct WhatsAppInbound {
    /// The value for `channel_ids.account`.
    let account: String
    /// Only changes for this phone number id are taken (nil: all).
    let phoneNumberId: String?
    /// The instance's webhook mount, for media references (`/webhooks/<instance>/media/<id>`).
    let mediaPathPrefix: String

    /// An inbound message seen in the webhook, for the service-window tracker.
    struct Inbound { let chat: String; let atMs: Int64; let messageId: String }

    struct Output {
        var events: [JSONValue] = []
        var inbound: [Inbound] = []
        /// Media ids referenced by message events (for prefetching).
        var media: [String] = []
        /// Changes skipped: another phone number, or a field this connector does not take.
        var skipped: [String] = []
    }

    enum PayloadError: Error, CustomStringConvertible {
        case notWhatsApp(String)
        var description: String {
            switch self { case .notWhatsApp(let o): return "expected object \"whatsapp_business_account\", found \(o)" }
        }
    }

    func events(from doc: JSONValue) throws -> Output {
        guard doc["object"]?.stringValue == "whatsapp_business_account" else {
            throw PayloadError.notWhatsApp(doc["object"].map { JSONWriter.encodeString($0) } ?? "none")
        }
        var out = Output()
        for entry in doc["entry"]?.arrayValue ?? [] {
            for change in entry["changes"]?.arrayValue ?? [] {
                let field = change["field"]?.stringValue ?? ""
                guard let value = change["value"], case .object = value else { continue }
                guard field == "messages" else { out.skipped.append("field " + field); continue }
                let number = value["metadata"]?["phone_number_id"]?.stringValue
                if let phoneNumberId, let number, number != phoneNumberId {
                    out.skipped.append("phone_number_id " + number)
                    continue
                }
                let contacts = value["contacts"]?.arrayValue ?? []
                for m in value["messages"]?.arrayValue ?? [] {
                    message(m, contacts: contacts, into: &out)
                }
                for s in value["statuses"]?.arrayValue ?? [] {
                    if let ev = status(s) { out.events.append(ev) }
                }
                for e in value["errors"]?.arrayValue ?? [] {
                    // Change-level errors (not tied to a message): keep them visible as a conversation event.
                    var conv: JSONObject = ["action": "channel_error"]
                    conv["error"] = e
                    let chat = number ?? account
                    // Redeliveries of the same error are the same event: key it by its content.
                    let key = "channel-error:" + sha256Hex(JSONWriter.encode(e) + Array(chat.utf8))
                    out.events.append(["type": "conversation", "channel_ids": ["chat": .string(chat), "account": .string(account)],
                                       "conversation": .object(conv), "dedup_key": .string(key)])
                }
            }
        }
        return out
    }

    // MARK: Identity

    /// The sender: wa_id when present, else the business-scoped user id (BSUID).
    func sender(_ m: JSONValue, contacts: [JSONValue]) -> (participant: JSONObject, identity: JSONObject)? {
        let from = m["from"]?.stringValue
        let fromUserId = m["from_user_id"]?.stringValue
        let contact: JSONValue? = contacts.first { c in
            (from != nil && c["wa_id"]?.stringValue == from) || (fromUserId != nil && c["user_id"]?.stringValue == fromUserId)
        } ?? (contacts.count == 1 ? contacts[0] : nil)
        let waId = contact?["wa_id"]?.stringValue ?? from
        let userId = contact?["user_id"]?.stringValue ?? fromUserId
        guard let id = waId ?? userId, !id.isEmpty else { return nil }
        var p: JSONObject = ["id": .string(id), "role": "customer"]
        if let name = contact?["profile"]?["name"]?.stringValue { p["name"] = .string(name) }
        if let waId, !waId.isEmpty, waId.allSatisfy({ $0.isNumber }) { p["phone"] = .string("+" + waId) }
        if let u = contact?["profile"]?["username"]?.stringValue, !u.isEmpty { p["username"] = .string(u) }
        var identity = JSONObject()
        if let waId { identity["wa_id"] = .string(waId) }
        if let userId { identity["user_id"] = .string(userId) }
        return (p, identity)
    }

    // MARK: Messages

    func message(_ m: JSONValue, contacts: [JSONValue], into out: inout Output) {
        let type = m["type"]?.stringValue ?? "unknown"
        let wamid = m["id"]?.stringValue
        guard let (participant, identity) = sender(m, contacts: contacts) else {
            out.skipped.append("message without a sender")
            return
        }
        let chat = participant["id"]!.stringValue!
        var ids: JSONObject = ["chat": .string(chat), "account": .string(account)]
        if let wamid { ids["message"] = .string(wamid) }
        var ev: JSONObject = ["type": "message", "direction": "inbound", "channel_ids": .object(ids), "sender": .object(participant)]
        if let ts = MetaConvert.timestamp(unixSeconds: m["timestamp"]) { ev["timestamp"] = .string(ts) }
        var context = JSONObject()
        if !identity.isEmpty { context["identity"] = .object(identity) }
        if let referral = m["referral"] { context["referral"] = referral }
        if let c = m["context"] {
            if c["forwarded"]?.boolValue == true { context["forwarded"] = true }
            if c["frequently_forwarded"]?.boolValue == true { context["frequently_forwarded"] = true }
            if let rp = c["referred_product"] { context["referred_product"] = rp }
            if let id = c["id"]?.stringValue, c["forwarded"]?.boolValue != true, c["frequently_forwarded"]?.boolValue != true {
                ev["reply_to"] = ["channel_message_id": .string(id)]
            }
        }
        if let errors = m["errors"] { context["errors"] = errors }
        let atMs = MetaConvert.epochMs(unixSeconds: m["timestamp"]) ?? wallClockMilliseconds()

        switch type {
        case "reaction" where m["reaction"]?["message_id"]?.stringValue?.isEmpty == false:
            let r = m["reaction"]
            let emoji = r?["emoji"]?.stringValue ?? ""
            ev["type"] = "reaction"
            ev["reaction"] = emoji.isEmpty ? ["action": "remove"] : ["emoji": .string(emoji)]
            ev["target"] = ["channel_message_id": .string(r?["message_id"]?.stringValue ?? "")]
            ev["reply_to"] = nil
        case "system":
            // A system message (the user changed number, …): a conversation event, deduplicated by its wamid.
            let s = m["system"]
            var conv: JSONObject = ["action": .string(s?["type"]?.stringValue ?? "system")]
            if let b = s?["body"] { conv["body"] = b }
            for k in ["wa_id", "new_wa_id", "identity", "customer", "user_id", "new_user_id"] { if let v = s?[k] { conv[k] = v } }
            ev["type"] = "conversation"
            ev["conversation"] = .object(conv)
            ev["channel_ids"] = ["chat": .string(chat), "account": .string(account)]
            if let wamid { ev["dedup_key"] = .string("system:" + wamid) }
        default:
            let parts = self.parts(type: type, m, media: &out.media)
            ev["parts"] = .array(parts)
            if parts.first?["type"]?.stringValue == "unsupported" { ev["raw"] = m }
        }
        if !context.isEmpty { ev["context"] = .object(context) }
        out.events.append(.object(ev))
        if let wamid, type != "system" { out.inbound.append(Inbound(chat: chat, atMs: atMs, messageId: wamid)) }
    }

    func parts(type: String, _ m: JSONValue, media: inout [String]) -> [JSONValue] {
        switch type {
        case "text":
            return [["type": "text", "text": .string(m["text"]?["body"]?.stringValue ?? "")]]
        case "image", "video", "audio", "voice", "document", "sticker":
            guard let o = m[type] else { return [unsupported(type, "media object missing")] }
            var p: JSONObject = ["type": "media"]
            switch type {
            case "document": p["kind"] = "file"
            case "audio": p["kind"] = o["voice"]?.boolValue == true ? "voice" : "audio"
            default: p["kind"] = .string(type)
            }
            if let id = o["id"]?.stringValue, !id.isEmpty {
                p["channel_media_id"] = .string(id)
                p["ref"] = .string(mediaPathPrefix + percentEncodePathSegment(id))
                media.append(id)
            }
            if let u = o["url"]?.stringValue, !u.isEmpty, p["channel_media_id"] == nil { p["url"] = .string(u) }
            if p["channel_media_id"] == nil && p["url"] == nil { return [unsupported(type, "media without an id")] }
            if let v = o["mime_type"]?.stringValue, !v.isEmpty { p["mime_type"] = .string(v) }
            if let v = o["sha256"]?.stringValue, !v.isEmpty { p["sha256"] = .string(v) }
            if let v = o["caption"]?.stringValue { p["caption"] = .string(v) }
            if let v = o["filename"]?.stringValue, !v.isEmpty { p["file_name"] = .string(v) }
            return [.object(p)]
        case "location":
            guard let l = m["location"], let lat = l["latitude"]?.doubleValue, let lon = l["longitude"]?.doubleValue,
                  (-90...90).contains(lat), (-180...180).contains(lon) else { return [unsupported(type, "location without coordinates")] }
            var p: JSONObject = ["type": "location", "latitude": .double(lat), "longitude": .double(lon)]
            for (src, dst) in [("name", "name"), ("address", "address"), ("url", "url")] {
                if let v = l[src]?.stringValue, !v.isEmpty { p[dst] = .string(v) }
            }
            return [.object(p)]
        case "contacts":
            let cards = (m["contacts"]?.arrayValue ?? []).compactMap(contactPart)
            return cards.isEmpty ? [unsupported(type, "contacts without names")] : Array(cards.prefix(100))
        case "interactive":
            let i = m["interactive"]
            switch i?["type"]?.stringValue {
            case "button_reply":
                guard let id = i?["button_reply"]?["id"]?.stringValue, !id.isEmpty else { break }
                return [["type": "interactive_reply", "choice_id": .string(id), "title": .string(i?["button_reply"]?["title"]?.stringValue ?? ""), "kind": "button"]]
            case "list_reply":
                guard let id = i?["list_reply"]?["id"]?.stringValue, !id.isEmpty else { break }
                var p: JSONObject = ["type": "interactive_reply", "choice_id": .string(id), "title": .string(i?["list_reply"]?["title"]?.stringValue ?? ""), "kind": "list"]
                if let d = i?["list_reply"]?["description"]?.stringValue { p["description"] = .string(d) }
                return [.object(p)]
            default: break
            }
            return [unsupported("interactive." + (i?["type"]?.stringValue ?? "unknown"), "an interactive reply Chorus does not model")]
        case "button":
            let b = m["button"]
            let payload = b?["payload"]?.stringValue ?? ""
            let text = b?["text"]?.stringValue ?? ""
            let choice = payload.isEmpty ? text : payload
            guard !choice.isEmpty else { return [unsupported(type, "template button without payload")] }
            return [["type": "interactive_reply", "choice_id": .string(choice), "title": .string(text), "kind": "template_button", "payload": .string(payload)]]
        case "order":
            return [orderPart(m["order"]) ?? unsupported(type, "order without items")]
        case "reaction":
            return [unsupported(type, "a reaction without the id of the message it reacts to")]
        case "unsupported":
            let title = m["errors"]?.arrayValue?.first?["title"]?.stringValue ?? m["errors"]?.arrayValue?.first?["message"]?.stringValue
            return [unsupported(m["unsupported"]?["type"]?.stringValue ?? "unsupported", title ?? "a message type WhatsApp does not deliver to the API")]
        default:
            return [unsupported(type, "a WhatsApp message type Chorus does not model")]
        }
    }

    func unsupported(_ channelType: String, _ description: String) -> JSONValue {
        ["type": "unsupported", "channel_type": .string(channelType), "description": .string(description)]
    }

    func contactPart(_ c: JSONValue) -> JSONValue? {
        let n = c["name"]
        let first = n?["first_name"]?.stringValue, last = n?["last_name"]?.stringValue
        let formatted = n?["formatted_name"]?.stringValue ?? [first, last].compactMap { $0 }.joined(separator: " ")
        guard !formatted.isEmpty else { return nil }
        var name: JSONObject = ["formatted": .string(formatted)]
        for (src, dst) in [("first_name", "first"), ("last_name", "last"), ("middle_name", "middle"), ("prefix", "prefix"), ("suffix", "suffix")] {
            if let v = n?[src]?.stringValue, !v.isEmpty { name[dst] = .string(v) }
        }
        var p: JSONObject = ["type": "contact", "name": .object(name)]
        let phones: [JSONValue] = (c["phones"]?.arrayValue ?? []).compactMap { ph in
            guard let num = ph["phone"]?.stringValue, !num.isEmpty else { return nil }
            var o: JSONObject = ["number": .string(num)]
            if let t = ph["type"]?.stringValue, !t.isEmpty { o["type"] = .string(t) }
            if let w = ph["wa_id"]?.stringValue, !w.isEmpty { o["channel_id"] = .string(w) }
            return .object(o)
        }
        if !phones.isEmpty { p["phones"] = .array(phones) }
        let emails: [JSONValue] = (c["emails"]?.arrayValue ?? []).compactMap { e in
            guard let a = e["email"]?.stringValue, !a.isEmpty else { return nil }
            var o: JSONObject = ["address": .string(a)]
            if let t = e["type"]?.stringValue, !t.isEmpty { o["type"] = .string(t) }
            return .object(o)
        }
        if !emails.isEmpty { p["emails"] = .array(emails) }
        if let org = c["org"] { p["organization"] = org }
        if let urls = c["urls"] { p["urls"] = urls }
        if let a = c["addresses"] { p["addresses"] = a }
        if let b = c["birthday"] { p["birthday"] = b }
        return .object(p)
    }

    func orderPart(_ o: JSONValue?) -> JSONValue? {
        guard let o else { return nil }
        var items: [JSONValue] = []
        var total: Int64 = 0
        var currency: String?
        for it in o["product_items"]?.arrayValue ?? [] {
            guard let pid = it["product_retailer_id"]?.stringValue, !pid.isEmpty else { continue }
            let q = it["quantity"]?.intValue ?? it["quantity"]?.stringValue.flatMap { Int64($0) } ?? 1
            var item: JSONObject = ["product_id": .string(pid), "quantity": .int(max(q, 1))]
            if let cur = it["currency"]?.stringValue, cur.count == 3, let amount = MetaConvert.minorUnits(it["item_price"], currency: cur) {
                item["price"] = ["amount": .int(amount), "currency": .string(cur.uppercased())]
                if currency == nil || currency == cur.uppercased() { currency = cur.uppercased(); total += amount * max(q, 1) } else { currency = "" }
            }
            items.append(.object(item))
        }
        guard !items.isEmpty else { return nil }
        var p: JSONObject = ["type": "order", "items": .array(Array(items.prefix(1000)))]
        if let cur = currency, !cur.isEmpty { p["total"] = ["amount": .int(total), "currency": .string(cur)] }
        if let c = o["catalog_id"]?.stringValue, !c.isEmpty { p["catalog_id"] = .string(c) }
        if let t = o["text"]?.stringValue { p["note"] = .string(t) }
        return .object(p)
    }

    // MARK: Statuses

    static let states: Set<String> = ["sent", "delivered", "read", "failed"]

    func status(_ s: JSONValue) -> JSONValue? {
        guard let wamid = s["id"]?.stringValue, !wamid.isEmpty, let state = s["status"]?.stringValue, Self.states.contains(state) else { return nil }
        var status: JSONObject = ["state": .string(state), "channel_message_id": .string(wamid)]
        if state == "failed" {
            let e = s["errors"]?.arrayValue?.first
            var err: JSONObject = ["code": .string(e?["code"].flatMap { $0.intValue.map { String($0) } ?? $0.stringValue } ?? "unknown")]
            err["title"] = .string(e?["title"]?.stringValue ?? "")
            err["message"] = .string(e?["message"]?.stringValue ?? e?["error_data"]?["details"]?.stringValue ?? "")
            if let d = e?["error_data"] { err["details"] = d }
            status["error"] = .object(err)
            let code = Int(e?["code"]?.intValue ?? 0)
            status["retryable"] = .bool(GraphRetryPolicy.throttlingCodes[code] != nil || GraphRetryPolicy.transientCodes.contains(code))
        }
        if let p = s["pricing"] { status["pricing"] = p }
        var recipient = JSONObject()
        if let r = s["recipient_id"]?.stringValue { recipient["wa_id"] = .string(r) }
        if let u = s["recipient_user_id"]?.stringValue { recipient["user_id"] = .string(u) }
        if !recipient.isEmpty { status["recipient"] = .object(recipient) }
        var ev: JSONObject = ["type": "status", "direction": "outbound", "status": .object(status)]
        if let chat = s["recipient_id"]?.stringValue ?? s["recipient_user_id"]?.stringValue, !chat.isEmpty {
            ev["channel_ids"] = ["chat": .string(chat), "account": .string(account)]
        }
        if let ts = MetaConvert.timestamp(unixSeconds: s["timestamp"]) { ev["timestamp"] = .string(ts) }
        var context = JSONObject()
        if let p = s["pricing"] { context["pricing"] = p }
        if let c = s["conversation"] { context["conversation"] = c }
        if let b = s["biz_opaque_callback_data"] { context["biz_opaque_callback_data"] = b }
        if !context.isEmpty { ev["context"] = .object(context) }
        return .object(ev)
    }
}
