import ChorusJSON
import MetaGraph

/// The two Meta channels that share the Messenger Platform's messaging shape
/// (`entry[].messaging[]` webhooks, the Send API): Messenger (Facebook Pages)
/// and Instagram (professional accounts).
public enum MessagingChannel: String, Sendable {
    case messenger
    case instagram

    /// The webhook's `object` field for this channel.
    public var webhookObject: String { self == .messenger ? "page" : "instagram" }

    /// The longest text message the Send API takes (characters).
    public var maxTextLength: Int { self == .messenger ? 2000 : 1000 }

    /// The message tags this channel accepts for sends outside the 24-hour window.
    public var messageTags: Set<String> {
        self == .messenger ? ["HUMAN_AGENT", "ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "CUSTOMER_FEEDBACK"]
                           : ["HUMAN_AGENT"]
    }
}

/// A webhook attachment whose bytes the connector fetches after the commit
/// (Meta's attachment URLs expire), stored under `key`.
struct MediaFetch: Equatable {
    let key: String
    let url: String
}

/// What the connector must do once a webhook's events are durable.
enum LedgerUpdate: Equatable {
    /// A message the business sent (an echo): remember its time for later watermarks.
    case sent(chat: String, mid: String, atMs: Int64)
    /// Statuses `read` were emitted for these messages: forget them.
    case read(chat: String, mids: [String])
}

/// Turns a Messenger / Instagram Messaging webhook into normalized events:
/// one per `messaging[]` (and `standby[]`) item of every entry, and one status
/// per outbound message a delivery or read covers. Pure apart from reading the
/// ledger of sent messages: no I/O.
struct MessagingInbound {
    let channel: MessagingChannel
    /// `channel_ids.account` of every event.
    let account: String
    /// The page id / Instagram account id: the business side of every event.
    let businessIds: Set<String>
    /// The instance's media route (`/webhooks/<instance>/media/`), for `ref` of fetched media.
    let mediaPathPrefix: String
    /// Whether attachments are fetched and stored (then their parts get a `ref`).
    let storesMedia: Bool
    /// Outbound messages per chat, for watermarks.
    let ledger: SentLedger
    /// The Meta app id of this connector's sends (echoes carrying it are not stored again), if configured.
    var appId: String? = nil

    /// An inbound message, for the service window.
    struct Inbound: Equatable { let chat: String; let atMs: Int64; let messageId: String? }

    struct Output {
        var events: [JSONValue] = []
        var inbound: [Inbound] = []
        var media: [MediaFetch] = []
        var ledger: [LedgerUpdate] = []
        /// Items not turned into events, with the reason (logged at debug level).
        var skipped: [String] = []
    }

    /// Why a webhook body is refused (HTTP 400).
    enum PayloadError: Error, CustomStringConvertible, Equatable {
        case wrongObject(expected: String, found: String)
        case noEntries
        var description: String {
            switch self {
            case .wrongObject(let e, let f): return "expected object \"\(e)\", found \(f)"
            case .noEntries: return "the webhook has no entry array"
            }
        }
    }

    func events(from doc: JSONValue) throws -> Output {
        guard doc["object"]?.stringValue == channel.webhookObject else {
            throw PayloadError.wrongObject(expected: channel.webhookObject, found: doc["object"].map { JSONWriter.encodeString($0) } ?? "none")
        }
        guard let entries = doc["entry"]?.arrayValue else { throw PayloadError.noEntries }
        var out = Output()
        for entry in entries {
            // One app's webhook carries every page (or account) subscribed to it: take only this instance's.
            if let id = entry["id"]?.stringValue, !businessIds.contains(id) {
                out.skipped.append("entry for another \(channel == .messenger ? "page" : "account"): " + id)
                continue
            }
            for item in entry["messaging"]?.arrayValue ?? [] { map(item, standby: false, into: &out) }
            for item in entry["standby"]?.arrayValue ?? [] { map(item, standby: true, into: &out) }
            // Messenger's "changes" form (messaging_postbacks delivered as a field/value change).
            for change in entry["changes"]?.arrayValue ?? [] {
                if let value = change["value"], case .object = value, value["sender"] != nil {
                    map(value, standby: false, into: &out)
                } else {
                    out.skipped.append("change field " + (change["field"]?.stringValue ?? "?"))
                }
            }
        }
        return out
    }

    // MARK: One messaging item

    private func map(_ item: JSONValue, standby: Bool, into out: inout Output) {
        let senderId = item["sender"]?["id"]?.stringValue ?? item["sender"]?["user_ref"]?.stringValue
        let recipientId = item["recipient"]?["id"]?.stringValue
        guard let senderId else { out.skipped.append("item without sender"); return }
        let fromBusiness = businessIds.contains(senderId) || item["message"]?["is_echo"]?.boolValue == true
        // The chat is the customer: the recipient of an echo, the sender of everything else.
        guard let chat = fromBusiness ? recipientId : senderId else { out.skipped.append("echo without recipient"); return }
        let atMs = MessagingInbound.epochMs(item["timestamp"])
        var base: JSONObject = [:]
        var ids: JSONObject = ["chat": .string(chat), "account": .string(account)]
        if let atMs { base["timestamp"] = .string(MessagingInbound.rfc3339(ms: atMs)) }
        base["sender"] = fromBusiness ? ["id": .string(senderId), "role": "business"] : ["id": .string(senderId), "role": "customer"]
        var context: JSONObject = [:]
        if standby { context["standby"] = true }

        if let message = item["message"], case .object = message {
            let mid = message["mid"]?.stringValue
            if let mid { ids["message"] = .string(mid) }
            if message["is_deleted"]?.boolValue == true {
                guard let mid else { out.skipped.append("delete without mid"); return }
                var ev = base
                ev["type"] = "delete"
                ids["message"] = nil
                ev["channel_ids"] = .object(ids)
                ev["target"] = ["channel_message_id": .string(mid)]
                ev["dedup_key"] = .string("delete:" + mid)
                out.events.append(.object(ev))
                return
            }
            if fromBusiness, let mid, isOwnSend(message, chat: chat, mid: mid) {
                // The echo of a send of this instance: the host already recorded it; only Meta's timestamp is news.
                if let atMs { out.ledger.append(.sent(chat: chat, mid: mid, atMs: atMs)) }
                out.skipped.append("echo of a message this instance sent")
                return
            }
            var ev = base
            ev["type"] = "message"
            if fromBusiness {
                ev["direction"] = "outbound"
                context["echo"] = true
                if let app = message["app_id"] { context["app_id"] = app }
                if let meta = message["metadata"]?.stringValue { context["metadata"] = .string(meta) }
                if let mid, let atMs { out.ledger.append(.sent(chat: chat, mid: mid, atMs: atMs)) }
            }
            ev["channel_ids"] = .object(ids)
            ev["parts"] = .array(parts(of: message, mid: mid ?? "", into: &out))
            if let reply = message["reply_to"]?["mid"]?.stringValue { ev["reply_to"] = ["channel_message_id": .string(reply)] }
            if let story = message["reply_to"]?["story"] { context["reply_to_story"] = story }
            for key in ["referral", "commands", "nlp", "is_self_reply"] { if let v = message[key] { context[key] = v } }
            if let r = item["referral"] { context["referral"] = r }
            if !context.isEmpty { ev["context"] = .object(context) }
            out.events.append(.object(ev))
            if !fromBusiness, let atMs { out.inbound.append(Inbound(chat: chat, atMs: atMs, messageId: mid)) }
            return
        }

        if let postback = item["postback"], case .object = postback {
            var reply: JSONObject = ["type": "interactive_reply", "kind": "postback",
                                     "choice_id": .string(nonEmpty(postback["payload"]?.stringValue) ?? nonEmpty(postback["title"]?.stringValue) ?? "postback")]
            if let t = postback["title"]?.stringValue { reply["title"] = .string(t) }
            if let p = postback["payload"]?.stringValue { reply["payload"] = .string(p) }
            var ev = base
            ev["type"] = "message"
            if let mid = postback["mid"]?.stringValue {
                ids["message"] = .string(mid)
            } else {
                ev["dedup_key"] = .string("postback:\(senderId):\(atMs ?? 0):\(postback["payload"]?.stringValue ?? "")")
            }
            ev["channel_ids"] = .object(ids)
            ev["parts"] = [.object(reply)]
            if let r = postback["referral"] { context["referral"] = r }
            if !context.isEmpty { ev["context"] = .object(context) }
            out.events.append(.object(ev))
            if let atMs { out.inbound.append(Inbound(chat: chat, atMs: atMs, messageId: postback["mid"]?.stringValue)) }
            return
        }

        if let reaction = item["reaction"], case .object = reaction {
            guard let mid = reaction["mid"]?.stringValue else { out.skipped.append("reaction without mid"); return }
            let remove = reaction["action"]?.stringValue == "unreact"
            var r: JSONObject = [:]
            let emoji = nonEmpty(reaction["emoji"]?.stringValue) ?? MessagingInbound.emoji(forReaction: reaction["reaction"]?.stringValue)
            if remove {
                r["action"] = "remove"
                if let emoji { r["emoji"] = .string(emoji) }
            } else {
                r["emoji"] = .string(emoji ?? "👍")
            }
            var ev = base
            ev["type"] = "reaction"
            ev["channel_ids"] = .object(ids)
            ev["reaction"] = .object(r)
            ev["target"] = ["channel_message_id": .string(mid)]
            ev["dedup_key"] = .string("reaction:\(senderId):\(mid):\(remove ? "unreact" : "react"):\(atMs ?? 0)")
            if let name = reaction["reaction"]?.stringValue { context["reaction"] = .string(name) }
            if !context.isEmpty { ev["context"] = .object(context) }
            out.events.append(.object(ev))
            return
        }

        if let delivery = item["delivery"], case .object = delivery {
            var mids = (delivery["mids"]?.arrayValue ?? []).compactMap { $0.stringValue }
            if mids.isEmpty, let watermark = MessagingInbound.epochMs(delivery["watermark"]) {
                mids = ledger.covered(chat: chat, upToMs: watermark).map { $0.mid }
            }
            if mids.isEmpty { out.skipped.append("delivery covering no known message"); return }
            for mid in mids { out.events.append(status("delivered", mid: mid, ids: ids, base: base)) }
            return
        }

        if let read = item["read"], case .object = read {
            var covered: [String] = []
            if let watermark = MessagingInbound.epochMs(read["watermark"]) {
                covered = ledger.covered(chat: chat, upToMs: watermark).map { $0.mid }
            }
            if let mid = read["mid"]?.stringValue {
                // Instagram's messaging_seen names the last message seen: everything sent up to it is read.
                // An unknown mid (sent from elsewhere, or already read) adds nothing: it is kept in the read event below.
                if let t = ledger.time(chat: chat, mid: mid) {
                    covered = ledger.covered(chat: chat, upToMs: t).map { $0.mid }
                }
            }
            if covered.isEmpty {
                // No known outbound message is covered: keep the receipt as a read event.
                var ev = base
                ev["type"] = "read"
                ev["channel_ids"] = .object(ids)
                var r: JSONObject = [:]
                if let w = MessagingInbound.epochMs(read["watermark"]) { r["watermark"] = .string(MessagingInbound.rfc3339(ms: w)) }
                if let mid = read["mid"]?.stringValue { r["up_to_channel_message_id"] = .string(mid) }
                ev["read"] = .object(r)
                out.events.append(.object(ev))
                return
            }
            for mid in covered { out.events.append(status("read", mid: mid, ids: ids, base: base)) }
            out.ledger.append(.read(chat: chat, mids: covered))
            return
        }

        if let edit = item["message_edit"], case .object = edit {
            guard let mid = edit["mid"]?.stringValue else { out.skipped.append("edit without mid"); return }
            var ev = base
            ev["type"] = "edit"
            ev["channel_ids"] = .object(ids)
            ev["target"] = ["channel_message_id": .string(mid)]
            ev["parts"] = [["type": "text", "text": .string(edit["text"]?.stringValue ?? "")]]
            let n = edit["num_edit"]?.intValue ?? edit["num_edit"]?.stringValue.flatMap { Int64($0) } ?? atMs ?? 0
            ev["dedup_key"] = .string("edit:\(mid):\(n)")
            if !context.isEmpty { ev["context"] = .object(context) }
            out.events.append(.object(ev))
            return
        }

        // Anything else (optins, referrals, handovers, policy notices, …): kept as an unsupported message.
        let known: Set<String> = ["sender", "recipient", "timestamp"]
        let kind = item.objectValue?.keys.first(where: { !known.contains($0) }) ?? "unknown"
        var ev = base
        ev["type"] = "message"
        ev["channel_ids"] = .object(ids)
        ev["parts"] = [["type": "unsupported", "channel_type": .string(kind), "description": .string("\(channel.rawValue) \(kind) event")]]
        ev["dedup_key"] = .string("\(kind):\(senderId):\(atMs ?? 0)")
        context[kind] = item[kind]
        ev["context"] = .object(context)
        ev["raw"] = item
        out.events.append(.object(ev))
    }

    /// Whether an echo is of a message this connector sent: the app id matches the configured one, or the mid is in the ledger.
    private func isOwnSend(_ message: JSONValue, chat: String, mid: String) -> Bool {
        if let appId, let echoApp = message["app_id"], echoApp.stringValue == appId || echoApp.intValue.map(String.init) == appId { return true }
        return ledger.time(chat: chat, mid: mid) != nil
    }

    private func status(_ state: String, mid: String, ids: JSONObject, base: JSONObject) -> JSONValue {
        var ids = ids
        ids["message"] = nil
        var ev: JSONObject = ["type": "status", "direction": "outbound", "channel_ids": .object(ids),
                              "status": ["state": .string(state), "channel_message_id": .string(mid)]]
        if let t = base["timestamp"] { ev["timestamp"] = t }
        return .object(ev)
    }

    // MARK: Message content

    private func parts(of message: JSONValue, mid: String, into out: inout Output) -> [JSONValue] {
        var parts: [JSONValue] = []
        let text = message["text"]?.stringValue
        if let qr = message["quick_reply"], case .object = qr {
            var r: JSONObject = ["type": "interactive_reply", "kind": "quick_reply",
                                 "choice_id": .string(nonEmpty(qr["payload"]?.stringValue) ?? nonEmpty(text) ?? "quick_reply")]
            if let text { r["title"] = .string(text) }
            if let p = qr["payload"]?.stringValue { r["payload"] = .string(p) }
            parts.append(.object(r))
        } else if let text {
            parts.append(["type": "text", "text": .string(text)])
        }
        for (i, a) in (message["attachments"]?.arrayValue ?? []).enumerated() {
            parts.append(attachment(a, key: "\(mid)-\(i)", into: &out))
        }
        if message["is_unsupported"]?.boolValue == true {
            parts.append(["type": "unsupported", "channel_type": "unsupported_message", "description": "a message type the API does not expose"])
        }
        if parts.isEmpty {
            parts.append(["type": "unsupported", "channel_type": "empty_message", "description": "a message without text or attachments"])
        }
        return parts
    }

    private func attachment(_ a: JSONValue, key: String, into out: inout Output) -> JSONValue {
        let type = a["type"]?.stringValue ?? "unknown"
        let payload = a["payload"]
        let url = payload?["url"]?.stringValue
        let kind: String?
        switch type {
        case "image": kind = payload?["sticker_id"] != nil ? "sticker" : "image"
        case "video": kind = "video"
        case "audio": kind = "audio"
        case "file": kind = "file"
        default: kind = nil
        }
        if let kind, let url, !url.isEmpty {
            var p: JSONObject = ["type": "media", "kind": .string(kind), "url": .string(url)]
            if let title = nonEmpty(a["title"]?.stringValue ?? payload?["title"]?.stringValue) { p["file_name"] = .string(title) }
            if storesMedia {
                p["ref"] = .string(mediaPathPrefix + percentEncodePathSegment(key))
                out.media.append(MediaFetch(key: key, url: url))
            }
            return .object(p)
        }
        if type == "location", let c = payload?["coordinates"], let lat = c["lat"]?.doubleValue, let lon = c["long"]?.doubleValue {
            var p: JSONObject = ["type": "location", "latitude": .double(lat), "longitude": .double(lon)]
            if let t = nonEmpty(a["title"]?.stringValue) { p["name"] = .string(t) }
            if let u = nonEmpty(a["url"]?.stringValue) { p["url"] = .string(u) }
            return .object(p)
        }
        // Shares, story mentions, reels, posts, templates, fallbacks: not modelled.
        var desc = type
        if let t = nonEmpty(a["title"]?.stringValue ?? payload?["title"]?.stringValue) { desc += ": " + t }
        if let url { desc += " " + url }
        return ["type": "unsupported", "channel_type": .string(type), "description": .string(desc)]
    }

    // MARK: Helpers

    /// Meta's millisecond timestamps (numbers, or strings in the "changes" form; 10-digit values are seconds).
    static func epochMs(_ v: JSONValue?) -> Int64? {
        let n: Int64?
        switch v {
        case .string(let s)?: n = Int64(s)
        case .number?: n = v?.intValue ?? v?.doubleValue.map { Int64($0) }
        default: n = nil
        }
        guard let n else { return nil }
        return n < 100_000_000_000 ? n * 1000 : n
    }

    /// RFC 3339 with milliseconds.
    static func rfc3339(ms: Int64) -> String {
        let secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        let frac = ms - secs * 1000
        let s = MetaConvert.rfc3339(epochSeconds: secs)
        var f = String(frac)
        while f.count < 3 { f = "0" + f }
        return String(s.dropLast()) + "." + f + "Z"
    }

    /// Meta's reaction names as emoji (for reactions sent without `emoji`), and back.
    static let reactionEmoji: [String: String] = [
        "love": "❤️", "like": "👍", "dislike": "👎", "smile": "😆", "laugh": "😆", "wow": "😮", "sad": "😢", "angry": "😠",
    ]

    static func emoji(forReaction name: String?) -> String? { name.flatMap { reactionEmoji[$0] } }
}

func nonEmpty(_ s: String?) -> String? { (s?.isEmpty ?? true) ? nil : s }
