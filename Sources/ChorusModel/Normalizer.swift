import ChorusJSON

/// What the host knows about the instance an event came from.
public struct InstanceContext: Sendable {
    public var name: String
    public var channel: String
    /// Keep the channel's raw payload (`raw`) in stored events.
    public var keepRaw: Bool
    public init(name: String, channel: String, keepRaw: Bool) {
        self.name = name; self.channel = channel; self.keepRaw = keepRaw
    }
}

/// An event ready to be committed: its final JSON plus the fields the store indexes.
public struct NormalizedEvent: Sendable {
    public var id: String
    public var type: String
    public var direction: String
    /// nil only for a status event whose chat the plugin did not know: the daemon resolves it from the send.
    public var conversationId: String?
    public var chatId: String?
    public var accountId: String
    public var dedupKey: String?
    public var channelMessageId: String?
    /// For status events: the channel's id of the outbound message described.
    public var statusChannelMessageId: String?
    /// For status events: the Chorus message id, when the plugin gave it.
    public var statusMessageId: String?
    public var statusState: String?
    public var receivedAtMs: Int64
    /// The complete event object, in schema key order.
    public var object: JSONObject

    public func encode() -> [UInt8] { JSONWriter.encode(.object(object)) }
}

/// Turns what a plugin emits into a schema-v1 event: validates it, assigns the
/// Chorus id, the conversation and contact ids and the receive time.
public enum EventNormalizer {
    static let inboundKeys: Set<String> = [
        "type", "direction", "channel_ids", "sender", "participants", "timestamp", "reply_to", "thread_id",
        "parts", "status", "reaction", "target", "typing", "read", "conversation", "context", "raw", "dedup_key",
    ]

    /// Normalizes one event emitted by a plugin.
    public static func normalize(json bytes: [UInt8], context: InstanceContext, ids: inout IdentifierGenerator,
                                 nowMs: Int64) throws(SchemaError) -> NormalizedEvent
    {
        let value: JSONValue
        do { value = try JSONParser.parse(bytes) } catch { throw SchemaError("", "\(error)") }
        return try normalize(value, context: context, ids: &ids, nowMs: nowMs)
    }

    public static func normalize(_ value: JSONValue, context: InstanceContext, ids: inout IdentifierGenerator,
                                 nowMs: Int64) throws(SchemaError) -> NormalizedEvent
    {
        let c = try Check(value, "")
        try c.allowOnly(inboundKeys)
        let type = try c.string("type", required: true, oneOf: Schema.eventTypes)!
        let direction = try c.string("direction", oneOf: Schema.directions) ?? "inbound"

        // Channel ids.
        var channelMessageId: String?
        var chatId: String?
        var accountId = context.name
        var channelIds = JSONObject()
        if let ci = try c.objectField("channel_ids") {
            try ci.allowOnly(["message", "chat", "account", "thread"])
            channelMessageId = try ci.string("message")
            chatId = try ci.string("chat")
            if let a = try ci.string("account") { accountId = a }
            channelIds = ci.object
        }
        let timestampMs = try c.timestamp("timestamp")

        // Participants.
        var sender: JSONValue?
        if let s = c.object["sender"], !s.isNull { sender = .object(try participant(s, path: "sender", channel: context.channel)) }
        var participants: [JSONValue] = []
        for (i, p) in (try c.array("participants", max: 10_000) ?? []).enumerated() {
            participants.append(.object(try participant(p, path: "participants[\(i)]", channel: context.channel)))
        }

        // Type-specific content.
        var statusObject: JSONObject?
        var statusCMID: String?, statusMID: String?, statusState: String?
        switch type {
        case "message":
            guard chatId != nil else { throw SchemaError("channel_ids.chat", "is required for a message") }
            try PartValidator.validate(parts: c.object["parts"])
        case "status":
            let s = try c.objectField("status", required: true)!
            try s.allowOnly(["state", "channel_message_id", "message_id", "error", "retryable", "pricing", "recipient"])
            statusState = try s.string("state", required: true, oneOf: Schema.statusStates)
            statusCMID = try s.string("channel_message_id")
            statusMID = try s.string("message_id")
            if statusCMID == nil && statusMID == nil {
                throw SchemaError("status.channel_message_id", "a status needs channel_message_id or message_id")
            }
            if let e = try s.objectField("error") {
                try e.allowOnly(["code", "message", "title", "details"])
                _ = try e.string("code"); _ = try e.string("message", nonEmpty: false); _ = try e.string("title", nonEmpty: false)
            }
            _ = try s.bool("retryable")
            statusObject = s.object
        case "reaction":
            guard chatId != nil else { throw SchemaError("channel_ids.chat", "is required for a reaction") }
        case "edit":
            guard chatId != nil else { throw SchemaError("channel_ids.chat", "is required for an edit") }
            try PartValidator.validate(parts: c.object["parts"])
        case "delete":
            guard chatId != nil else { throw SchemaError("channel_ids.chat", "is required for a delete") }
        case "typing":
            guard chatId != nil else { throw SchemaError("channel_ids.chat", "is required for typing") }
        case "read":
            guard chatId != nil else { throw SchemaError("channel_ids.chat", "is required for a read receipt") }
        case "conversation":
            guard chatId != nil else { throw SchemaError("channel_ids.chat", "is required for a conversation event") }
        default:
            break
        }
        // The type-specific objects are required by their type and, wherever they appear,
        // validated: they are copied into the stored event.
        if let r = try c.objectField("reaction", required: type == "reaction") {
            try r.allowOnly(["emoji", "action"])
            let action = try r.string("action", oneOf: ["add", "remove"]) ?? "add"
            _ = try r.string("emoji", required: action == "add", nonEmpty: action == "add")
        }
        try target(c, required: type == "reaction" || type == "edit" || type == "delete")
        if let t = try c.objectField("typing") {
            try t.allowOnly(["state"])
            _ = try t.string("state", oneOf: ["on", "off"])
        }
        if let r = try c.objectField("read") {
            try r.allowOnly(["up_to_channel_message_id", "watermark"])
            _ = try r.string("up_to_channel_message_id"); _ = try r.timestamp("watermark")
        }
        if let cv = try c.objectField("conversation", required: type == "conversation") {
            _ = try cv.string("action", required: true)
        }
        if type != "message" && type != "edit" && c.object["parts"] != nil {
            throw SchemaError("parts", "only message and edit events carry parts")
        }
        if let r = try c.objectField("reply_to") {
            try r.allowOnly(["channel_message_id", "message_id"])
            _ = try r.string("channel_message_id"); _ = try r.string("message_id")
        }
        _ = try c.string("thread_id")
        if let ctx = c.object["context"], !ctx.isNull, ctx.objectValue == nil { throw SchemaError("context", "expected object, found \(ctx.typeName)") }
        let explicitDedup = try c.string("dedup_key", maxLength: 512)

        let id = ids.next(prefix: "evt", nowMs: UInt64(max(nowMs, 0)))
        let conversationId = chatId.map { ChorusIdentifiers.conversationId(channel: context.channel, account: accountId, chat: $0) }

        // Dedup key: a channel retry of the same thing must map to the same key.
        var dedupKey = explicitDedup
        if dedupKey == nil {
            switch type {
            case "status":
                dedupKey = "status:\(statusCMID ?? statusMID!):\(statusState!)"
            case "message", "edit", "delete", "reaction":
                if let m = channelMessageId { dedupKey = "\(type):\(m)" }
            default:
                break
            }
        }

        // Assemble in documented key order.
        var o = JSONObject()
        o["schema"] = .int(Schema.version)
        o["id"] = .string(id)
        o["type"] = .string(type)
        o["direction"] = .string(direction)
        o["channel"] = .string(context.channel)
        o["instance"] = .string(context.name)
        if let conversationId { o["conversation_id"] = .string(conversationId) }
        if !channelIds.isEmpty { o["channel_ids"] = .object(channelIds) }
        if let sender { o["sender"] = sender }
        if !participants.isEmpty { o["participants"] = .array(participants) }
        if let timestampMs { o["timestamp"] = .string(Timestamp.format(ms: timestampMs)) }
        o["received_at"] = .string(Timestamp.format(ms: nowMs))
        for key in ["reply_to", "thread_id", "parts", "reaction", "target", "typing", "read", "conversation", "context"] {
            if let v = c.object[key], !v.isNull { o[key] = v }
        }
        if let statusObject { o["status"] = .object(statusObject) }
        if context.keepRaw, let raw = c.object["raw"], !raw.isNull { o["raw"] = raw }

        return NormalizedEvent(
            id: id, type: type, direction: direction, conversationId: conversationId, chatId: chatId,
            accountId: accountId, dedupKey: dedupKey, channelMessageId: channelMessageId,
            statusChannelMessageId: statusCMID, statusMessageId: statusMID, statusState: statusState,
            receivedAtMs: nowMs, object: o)
    }

    static func target(_ c: Check, required: Bool) throws(SchemaError) {
        guard let t = try c.objectField("target", required: required) else { return }
        try t.allowOnly(["channel_message_id", "message_id"])
        let a = try t.string("channel_message_id"), b = try t.string("message_id")
        if a == nil && b == nil { throw SchemaError("target.channel_message_id", "is required") }
    }

    static func participant(_ v: JSONValue, path: String, channel: String) throws(SchemaError) -> JSONObject {
        let p = try Check(v, path)
        try p.allowOnly(["id", "name", "phone", "email", "username", "role", "contact_id", "is_bot"])
        let native = try p.string("id", required: true)!
        _ = try p.string("name", nonEmpty: false); _ = try p.string("phone"); _ = try p.string("email"); _ = try p.string("username")
        _ = try p.string("role", oneOf: Schema.roles); _ = try p.bool("is_bot")
        var o = p.object
        o["contact_id"] = .string(ChorusIdentifiers.contactId(channel: channel, nativeId: native))
        return o
    }

    /// Sets the conversation id and Chorus message id of a status event once the daemon resolved them.
    public static func resolveStatus(_ event: inout NormalizedEvent, conversationId: String?, messageId: String?) {
        if let conversationId, event.conversationId == nil {
            event.conversationId = conversationId
            var o = JSONObject()
            for (k, v) in event.object {
                o[k] = v
                if k == "instance" { o["conversation_id"] = .string(conversationId) }
            }
            event.object = o
        }
        if let messageId, case .object(var s)? = event.object["status"] {
            s["message_id"] = .string(messageId)
            event.object["status"] = .object(s)
            event.statusMessageId = messageId
        }
    }
}
