import ChorusJSON

/// A request a consumer sends (the `op` of a client frame) with its validated arguments.
public enum ClientCommand: Sendable, Equatable {
    /// Announces the client and the protocol version it speaks.
    case hello(protocol: Int, client: String?)
    /// Liveness check; answered by `pong`.
    case ping
    /// Starts a subscription. `name` nil → ephemeral; `filter` nil → all events (or the
    /// stored filter of a durable subscription); `from` nil → `now` (ephemeral) or `stored` (durable).
    case subscribe(name: String?, filter: SubscriptionFilter?, from: StartPosition?)
    /// Stops delivering on a subscription of this connection (a durable one keeps its state).
    case unsubscribe(sub: String)
    /// Acknowledges every event of a durable subscription up to and including `cursor`.
    case ack(sub: String, cursor: Int64)
    /// Sends a message; `message` is validated by the daemon against the schema.
    case send(idempotencyKey: String?, message: JSONValue)
    /// Re-reads stored events: those after `fromCursor`, up to and including `toCursor`,
    /// received within `fromTimeMs...toTimeMs`, at most `limit`.
    case replay(filter: SubscriptionFilter, fromCursor: Int64?, toCursor: Int64?, fromTimeMs: Int64?, toTimeMs: Int64?,
                limit: Int?)
    /// Lists the loaded plugins.
    case plugins
    /// Lists the connector instances.
    case instances
    /// Daemon statistics.
    case stats
    /// Lists the durable subscriptions.
    case subscriptions
    /// Moves a durable subscription (admin): `.earliest`, `.now`, `.cursor` or `.timeMs`.
    case resetSubscription(name: String, to: StartPosition)
    /// Deletes a durable subscription (admin).
    case deleteSubscription(name: String)

    /// Every op of protocol version 1, in documentation order (the `ops` of the server's hello).
    public static let allOps = [
        "hello", "ping", "subscribe", "unsubscribe", "ack", "send", "replay", "plugins", "instances", "stats",
        "subscriptions", "reset_subscription", "delete_subscription",
    ]

    /// The wire name of the command (`"reset_subscription"`, …).
    public var op: String {
        switch self {
        case .hello: return "hello"
        case .ping: return "ping"
        case .subscribe: return "subscribe"
        case .unsubscribe: return "unsubscribe"
        case .ack: return "ack"
        case .send: return "send"
        case .replay: return "replay"
        case .plugins: return "plugins"
        case .instances: return "instances"
        case .stats: return "stats"
        case .subscriptions: return "subscriptions"
        case .resetSubscription: return "reset_subscription"
        case .deleteSubscription: return "delete_subscription"
        }
    }

    /// Whether the command needs the `admin` access right.
    public var requiresAdmin: Bool {
        switch self {
        case .resetSubscription, .deleteSubscription: return true
        default: return false
        }
    }
}

/// One frame a client sends: an optional correlation `id` and a command.
public struct ClientFrame: Sendable, Equatable {
    /// The frame's `id` (a string or an integer), echoed in the reply.
    public var id: JSONValue?
    public var command: ClientCommand

    public init(id: JSONValue? = nil, command: ClientCommand) {
        self.id = id
        self.command = command
    }

    /// Longest accepted string `id`, in bytes.
    public static let maxIdBytes = 256

    /// Names that the server gives to ephemeral subscriptions and replays; a durable subscription may not use them.
    public static let reservedNamePrefixes = ["eph-", "replay-"]

    private static let allowedFields: [String: Set<String>] = [
        "hello": ["protocol", "client"],
        "ping": [],
        "subscribe": ["name", "filter", "from", "cursor", "time"],
        "unsubscribe": ["sub"],
        "ack": ["sub", "cursor"],
        "send": ["idempotency_key", "message"],
        "replay": ["filter", "from_cursor", "to_cursor", "from_time", "to_time", "limit"],
        "plugins": [],
        "instances": [],
        "stats": [],
        "subscriptions": [],
        "reset_subscription": ["name", "to"],
        "delete_subscription": ["name"],
    ]

    /// Parses and validates one frame; errors carry the frame's id when it could be read.
    ///
    /// - Not JSON (including an object that repeats a name), or not an object → `bad_frame`.
    /// - Missing or non-string `op` → `invalid` (field `op`); an op that does not exist → `unknown_op`.
    /// - A field the op does not take → `unknown_field` naming it.
    /// - A missing required field, a wrong type or a bad value → `invalid` naming the field
    ///   (`filter.channels` for fields inside the filter).
    /// - `hello` with a protocol other than ``protocolVersion`` → `unsupported`.
    public static func parse(_ bytes: [UInt8]) throws(ProtocolError) -> ClientFrame {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes, maxDepth: 32)
        } catch {
            throw ProtocolError(code: .badFrame, message: "the frame is not valid JSON: \(error)")
        }
        guard case .object(let object) = value else {
            throw ProtocolError(code: .badFrame, message: "a frame must be a JSON object, found \(value.typeName)")
        }
        let id = try readId(object)
        do throws(ProtocolError) {
            return ClientFrame(id: id, command: try parseCommand(object))
        } catch {
            var e = error
            e.id = id
            throw e
        }
    }

    /// Parses a frame given as text (convenience for tests and tools).
    public static func parse(_ text: String) throws(ProtocolError) -> ClientFrame {
        try parse(Array(text.utf8))
    }

    private static func readId(_ object: JSONObject) throws(ProtocolError) -> JSONValue? {
        guard let id = object["id"] else { return nil }
        switch id {
        case .number(.int):
            return id
        case .string(let s):
            if s.utf8.count > maxIdBytes {
                throw .invalid("id", "field 'id' is longer than \(maxIdBytes) bytes")
            }
            return id
        case .null:
            return nil
        default:
            throw .invalid("id", "field 'id' must be a string or an integer, found \(id.typeName)")
        }
    }

    private static func parseCommand(_ object: JSONObject) throws(ProtocolError) -> ClientCommand {
        guard let opValue = object["op"] else {
            throw .invalid("op", "field 'op' is required (one of \(ClientCommand.allOps.joined(separator: ", ")))")
        }
        guard case .string(let op) = opValue else {
            throw .invalid("op", "field 'op' must be a string, found \(opValue.typeName)")
        }
        guard let allowed = allowedFields[op] else {
            throw ProtocolError(code: .unknownOp,
                                message: "unknown op '\(op)' (known: \(ClientCommand.allOps.joined(separator: ", ")))",
                                field: "op")
        }
        let r = FieldReader(object: object)
        try r.rejectUnknown(allowed: allowed.union(["op", "id"]), op: op)

        switch op {
        case "hello":
            let version = try r.int("protocol", required: true)!
            guard version == Int64(protocolVersion) else {
                throw ProtocolError(code: .unsupported,
                                    message: "protocol version \(version) is not supported; this server speaks version \(protocolVersion)",
                                    field: "protocol")
            }
            return .hello(protocol: Int(version), client: try r.string("client", maxBytes: 256))
        case "ping":
            return .ping
        case "subscribe":
            return try parseSubscribe(r)
        case "unsubscribe":
            return .unsubscribe(sub: try r.subscriptionName("sub", required: true)!)
        case "ack":
            let sub = try r.subscriptionName("sub", required: true)!
            return .ack(sub: sub, cursor: try r.int("cursor", required: true)!)
        case "send":
            let key = try r.string("idempotency_key", maxBytes: 256)
            let message = try r.object("message", required: true)!
            return .send(idempotencyKey: key, message: .object(message))
        case "replay":
            return try parseReplay(r)
        case "plugins":
            return .plugins
        case "instances":
            return .instances
        case "stats":
            return .stats
        case "subscriptions":
            return .subscriptions
        case "reset_subscription":
            let name = try r.subscriptionName("name", required: true)!
            return .resetSubscription(name: name, to: try parseResetTarget(r))
        default:  // "delete_subscription"
            return .deleteSubscription(name: try r.subscriptionName("name", required: true)!)
        }
    }

    private static func parseSubscribe(_ r: FieldReader) throws(ProtocolError) -> ClientCommand {
        let name = try r.subscriptionName("name")
        if let name, let prefix = reservedNamePrefixes.first(where: { name.hasPrefix($0) }) {
            throw .invalid("name", "field 'name' may not start with '\(prefix)': that prefix is reserved for server-chosen names")
        }
        var filter: SubscriptionFilter?
        if let f = r.value("filter") { filter = try SubscriptionFilter(json: f) }
        let cursor = try r.int("cursor")
        let time = try r.time("time")
        let fromName = try r.string("from", maxBytes: 16)
        let from: StartPosition?
        switch fromName {
        case nil:
            if cursor != nil && time != nil {
                throw .invalid("time", "give either 'cursor' or 'time', not both")
            }
            from = cursor.map { .cursor($0) } ?? time.map { .timeMs($0) }
        case "now", "earliest", "stored":
            if cursor != nil { throw .invalid("cursor", "field 'cursor' is only allowed with \"from\":\"cursor\"") }
            if time != nil { throw .invalid("time", "field 'time' is only allowed with \"from\":\"time\"") }
            if fromName == "stored" && name == nil {
                throw .invalid("from", "\"from\":\"stored\" needs a durable subscription: give it a 'name'")
            }
            from = fromName == "now" ? .now : fromName == "earliest" ? .earliest : .stored
        case "cursor":
            guard let cursor else { throw .invalid("cursor", "field 'cursor' is required with \"from\":\"cursor\"") }
            if time != nil { throw .invalid("time", "field 'time' is only allowed with \"from\":\"time\"") }
            from = .cursor(cursor)
        case "time":
            guard let time else { throw .invalid("time", "field 'time' is required with \"from\":\"time\"") }
            if cursor != nil { throw .invalid("cursor", "field 'cursor' is only allowed with \"from\":\"cursor\"") }
            from = .timeMs(time)
        case let other?:
            throw .invalid("from", "field 'from' must be one of now, earliest, stored, cursor, time; found \"\(other)\"")
        }
        return .subscribe(name: name, filter: filter, from: from)
    }

    private static func parseReplay(_ r: FieldReader) throws(ProtocolError) -> ClientCommand {
        let filter = try SubscriptionFilter(json: r.value("filter"))
        let fromCursor = try r.int("from_cursor")
        let toCursor = try r.int("to_cursor")
        let fromTime = try r.time("from_time")
        let toTime = try r.time("to_time")
        let limit = try r.int("limit", min: 1)
        if let fromCursor, let toCursor, toCursor < fromCursor {
            throw .invalid("to_cursor", "field 'to_cursor' (\(toCursor)) is before 'from_cursor' (\(fromCursor))")
        }
        if let fromTime, let toTime, toTime < fromTime {
            throw .invalid("to_time", "field 'to_time' is before 'from_time'")
        }
        if let limit, limit > Int64(Int32.max) {
            throw .invalid("limit", "field 'limit' is too large")
        }
        return .replay(filter: filter, fromCursor: fromCursor, toCursor: toCursor, fromTimeMs: fromTime, toTimeMs: toTime,
                       limit: limit.map { Int($0) })
    }

    private static func parseResetTarget(_ r: FieldReader) throws(ProtocolError) -> StartPosition {
        guard let to = r.value("to") else { throw .invalid("to", "field 'to' is required") }
        switch to {
        case .number(.int(let cursor)):
            if cursor < 0 { throw .invalid("to", "field 'to' must be a cursor ≥ 0, found \(cursor)") }
            return .cursor(cursor)
        case .string("earliest"):
            return .earliest
        case .string("now"):
            return .now
        case .string(let s):
            guard let ms = parseTimestamp(s) else {
                throw .invalid("to", "field 'to' must be \"earliest\", \"now\", a cursor or an RFC 3339 time, found \"\(s)\"")
            }
            return .timeMs(ms)
        default:
            throw .invalid("to", "field 'to' must be \"earliest\", \"now\", a cursor or an RFC 3339 time, found \(to.typeName)")
        }
    }

    // MARK: Encoding

    /// The frame as one compact JSON line, without the trailing newline (for clients).
    ///
    /// `parse(encode())` gives back an equal frame.
    public func encode() -> [UInt8] {
        var w = JSONWriter(capacity: 128)
        w.beginObject()
        w.field("op", command.op)
        if let id { w.field("id", id) }
        switch command {
        case .hello(let version, let client):
            w.field("protocol", version)
            w.field("client", client)
        case .ping, .plugins, .instances, .stats, .subscriptions:
            break
        case .subscribe(let name, let filter, let from):
            w.field("name", name)
            if let filter { w.field("filter", filter.json) }
            switch from {
            case nil: break
            case .now?: w.field("from", "now")
            case .earliest?: w.field("from", "earliest")
            case .stored?: w.field("from", "stored")
            case .cursor(let c)?: w.field("from", "cursor"); w.field("cursor", c)
            case .timeMs(let ms)?: w.field("from", "time"); w.field("time", ms)
            }
        case .unsubscribe(let sub):
            w.field("sub", sub)
        case .ack(let sub, let cursor):
            w.field("sub", sub)
            w.field("cursor", cursor)
        case .send(let key, let message):
            w.field("idempotency_key", key)
            w.field("message", message)
        case .replay(let filter, let fromCursor, let toCursor, let fromTime, let toTime, let limit):
            if !filter.isAll { w.field("filter", filter.json) }
            if let fromCursor { w.field("from_cursor", fromCursor) }
            if let toCursor { w.field("to_cursor", toCursor) }
            if let fromTime { w.field("from_time", fromTime) }
            if let toTime { w.field("to_time", toTime) }
            if let limit { w.field("limit", limit) }
        case .resetSubscription(let name, let to):
            w.field("name", name)
            switch to {
            case .now: w.field("to", "now")
            case .earliest: w.field("to", "earliest")
            case .stored: w.field("to", "stored")  // not a valid reset target: the server rejects it
            case .cursor(let c): w.field("to", c)
            case .timeMs(let ms): w.field("to", formatTimestamp(ms))
            }
        case .deleteSubscription(let name):
            w.field("name", name)
        }
        w.endObject()
        return w.bytes
    }
}
