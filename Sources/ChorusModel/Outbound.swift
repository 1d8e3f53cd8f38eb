import ChorusJSON

/// An outbound message as a consumer sends it (`send` on the socket), validated.
public struct OutboundRequest: Sendable, Equatable {
    public var type: String
    public var conversationId: String?
    public var instance: String?
    public var to: String?
    /// The request as given (validated), without routing fields.
    public var object: JSONObject

    static let keys: Set<String> = [
        "type", "conversation_id", "instance", "to", "parts", "reply_to", "thread_id", "target", "reaction",
        "typing", "options", "metadata",
    ]

    /// Validates a `send` message. Routing needs `conversation_id`, or `instance` and `to`.
    public static func validate(_ value: JSONValue) throws(SchemaError) -> OutboundRequest {
        let c = try Check(value, "message")
        try c.allowOnly(keys)
        let type = try c.string("type", oneOf: Schema.outboundTypes) ?? "message"
        let conv = try c.string("conversation_id")
        let instance = try c.string("instance")
        let to = try c.string("to")
        if conv == nil && (instance == nil || to == nil) {
            throw SchemaError("message.conversation_id", "is required (or give both instance and to)")
        }
        switch type {
        case "message", "edit":
            try PartValidator.validate(parts: c.object["parts"], path: "message.parts")
        default: break
        }
        // Required by their type and, wherever they appear, validated: they reach the plugin
        // and the event log as given.
        if let r = try c.objectField("reaction", required: type == "reaction") {
            try r.allowOnly(["emoji", "action"])
            let action = try r.string("action", oneOf: ["add", "remove"]) ?? "add"
            _ = try r.string("emoji", required: action == "add")
        }
        if let t = try c.objectField("target", required: type == "edit" || type == "reaction" || type == "delete" || type == "read") {
            try t.allowOnly(["channel_message_id", "message_id"])
            if try t.string("channel_message_id") == nil, try t.string("message_id") == nil {
                throw SchemaError("message.target.channel_message_id", "is required")
            }
        }
        if let t = try c.objectField("typing") {
            try t.allowOnly(["state"])
            _ = try t.string("state", oneOf: ["on", "off"])
        }
        if type != "message" && type != "edit" && c.object["parts"] != nil {
            throw SchemaError("message.parts", "only message and edit sends carry parts")
        }
        if let r = try c.objectField("reply_to") {
            try r.allowOnly(["channel_message_id", "message_id"])
            _ = try r.string("channel_message_id"); _ = try r.string("message_id")
        }
        _ = try c.string("thread_id")
        for k in ["options", "metadata"] {
            if let v = c.object[k], !v.isNull, v.objectValue == nil { throw SchemaError("message.\(k)", "expected object, found \(v.typeName)") }
        }
        // Routing fields are carried separately; a null field is the same as an absent one.
        var o = JSONObject()
        for (k, v) in c.object where !v.isNull && k != "conversation_id" && k != "instance" && k != "to" && k != "type" { o[k] = v }
        return OutboundRequest(type: type, conversationId: conv, instance: instance, to: to, object: o)
    }

    public var partTypes: [String] { PartValidator.types(of: object["parts"]) }
}

/// Where an outbound message goes, once resolved by the daemon.
public struct OutboundRoute: Sendable, Equatable {
    public var instance: String
    public var channel: String
    public var conversationId: String
    public var chatId: String
    public var accountId: String
    public init(instance: String, channel: String, conversationId: String, chatId: String, accountId: String) {
        self.instance = instance; self.channel = channel; self.conversationId = conversationId
        self.chatId = chatId; self.accountId = accountId
    }
}

/// Builds the host-generated events and the JSON handed to plugins.
public enum HostEvents {
    /// The message a plugin receives in `send` (docs/schema.md, "What a plugin receives").
    public static func pluginMessage(messageId: String, request: OutboundRequest, route: OutboundRoute,
                                     targetChannelMessageId: String?) -> [UInt8]
    {
        var o = JSONObject()
        o["schema"] = .int(Schema.version)
        o["message_id"] = .string(messageId)
        o["type"] = .string(request.type)
        o["instance"] = .string(route.instance)
        o["conversation_id"] = .string(route.conversationId)
        o["to"] = .string(route.chatId)
        o["channel_ids"] = ["chat": .string(route.chatId), "account": .string(route.accountId)]
        for (k, v) in request.object { o[k] = v }
        if let t = targetChannelMessageId, case .object(var target)? = o["target"] {
            target["channel_message_id"] = .string(t)
            o["target"] = .object(target)
        }
        return JSONWriter.encode(.object(o))
    }

    /// The outbound message as recorded in the event log, so timelines show what was sent.
    public static func outboundEvent(id: String, messageId: String, request: OutboundRequest, route: OutboundRoute,
                                     nowMs: Int64) -> JSONObject
    {
        var o = JSONObject()
        o["schema"] = .int(Schema.version)
        o["id"] = .string(id)
        o["type"] = .string(request.type)
        o["direction"] = "outbound"
        o["channel"] = .string(route.channel)
        o["instance"] = .string(route.instance)
        o["conversation_id"] = .string(route.conversationId)
        o["message_id"] = .string(messageId)
        o["channel_ids"] = ["chat": .string(route.chatId), "account": .string(route.accountId)]
        o["received_at"] = .string(Timestamp.format(ms: nowMs))
        for k in ["reply_to", "thread_id", "parts", "reaction", "target", "typing", "metadata"] {
            if let v = request.object[k] { o[k] = v }
        }
        o["status"] = ["state": "accepted", "message_id": .string(messageId)]
        return o
    }

    /// A status event about an outbound message, generated by the host from a plugin's send result.
    public static func statusEvent(id: String, messageId: String, route: OutboundRoute, state: String,
                                   channelMessageId: String?, errorCode: String?, errorMessage: String?,
                                   retryable: Bool?, nowMs: Int64) -> JSONObject
    {
        // The C ABI may hand over "" where it means "none".
        let channelMessageId = channelMessageId.flatMap { $0.isEmpty ? nil : $0 }
        let errorCode = errorCode.flatMap { $0.isEmpty ? nil : $0 }
        var o = JSONObject()
        o["schema"] = .int(Schema.version)
        o["id"] = .string(id)
        o["type"] = "status"
        o["direction"] = "outbound"
        o["channel"] = .string(route.channel)
        o["instance"] = .string(route.instance)
        o["conversation_id"] = .string(route.conversationId)
        var ids: JSONObject = ["chat": .string(route.chatId), "account": .string(route.accountId)]
        if let channelMessageId { ids["message"] = .string(channelMessageId) }
        o["channel_ids"] = .object(ids)
        o["received_at"] = .string(Timestamp.format(ms: nowMs))
        var s: JSONObject = ["state": .string(state), "message_id": .string(messageId)]
        if let channelMessageId { s["channel_message_id"] = .string(channelMessageId) }
        if errorCode != nil || errorMessage != nil {
            var e = JSONObject()
            if let errorCode { e["code"] = .string(errorCode) }
            if let errorMessage { e["message"] = .string(errorMessage) }
            s["error"] = .object(e)
        }
        if let retryable { s["retryable"] = .bool(retryable) }
        o["status"] = .object(s)
        return o
    }
}
