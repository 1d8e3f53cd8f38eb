import ChorusJSON

/// Encoders for the frames the server sends. Each returns one line including its trailing `"\n"`.
///
/// Replies carry the `id` of the request they answer; when the request had no id,
/// the `id` key is left out.
public enum ServerFrame {
    /// The first frame on every connection.
    ///
    /// `peer` is the connecting process as the kernel reported it (SO_PEERCRED), nil when unknown;
    /// `access` the rights the daemon's `[[access]]` rules gave it.
    public static func hello(server: String, maxFrameBytes: Int, ops: [String],
                             peer: (uid: UInt32, gid: UInt32, pid: Int32)?,
                             access: (read: Bool, send: Bool, admin: Bool), schema: Int = 1) -> [UInt8]
    {
        var w = JSONWriter(capacity: 512)
        w.beginObject()
        w.field("type", "hello")
        w.field("protocol", protocolVersion)
        w.field("server", server)
        w.field("schema", schema)
        w.key("ops")
        w.beginArray()
        for op in ops { w.string(op) }
        w.endArray()
        w.field("max_frame_bytes", maxFrameBytes)
        w.key("peer")
        if let peer {
            w.beginObject()
            w.field("uid", Int64(peer.uid))
            w.field("gid", Int64(peer.gid))
            w.field("pid", Int64(peer.pid))
            w.endObject()
        } else {
            w.null()
        }
        w.key("access")
        w.beginObject()
        w.field("read", access.read)
        w.field("send", access.send)
        w.field("admin", access.admin)
        w.endObject()
        w.endObject()
        return line(w)
    }

    /// `{"type":"ok","id":..}`
    public static func ok(id: JSONValue?) -> [UInt8] {
        reply(type: "ok", id: id, fields: JSONObject())
    }

    /// `{"type":"pong","id":..}`
    public static func pong(id: JSONValue?) -> [UInt8] {
        reply(type: "pong", id: id, fields: JSONObject())
    }

    /// `{"type":"error","id":..,"code":..,"message":..,"field":..}` (`id` and `field` only when known).
    public static func error(_ e: ProtocolError) -> [UInt8] {
        var w = JSONWriter(capacity: 160)
        w.beginObject()
        w.field("type", "error")
        if let id = e.id { w.field("id", id) }
        w.field("code", e.code.rawValue)
        w.field("message", e.message)
        w.field("field", e.field)
        w.endObject()
        return line(w)
    }

    /// A generic reply: `{"type":<type>,"id":<id>,...fields}`.
    ///
    /// Keys `type` and `id` inside `fields` are ignored: the arguments decide them.
    public static func reply(type: String, id: JSONValue?, fields: JSONObject) -> [UInt8] {
        var w = JSONWriter(capacity: 64 + fields.count * 32)
        w.beginObject()
        w.field("type", type)
        if let id { w.field("id", id) }
        for (k, v) in fields where k != "type" && k != "id" { w.field(k, v) }
        w.endObject()
        return line(w)
    }

    /// Hot path: appends `{"type":"event","sub":"<sub>","cursor":N,"event":` + eventJSON + `}\n`
    /// to `out` without re-encoding the event.
    ///
    /// `eventJSON` must be one complete compact JSON value with no newline in it
    /// (what ``JSONWriter`` produces).
    public static func appendEvent(sub: String, cursor: Int64, eventJSON: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.reserveCapacity(out.count + eventJSON.count + sub.utf8.count + 48)
        out.append(contentsOf: eventPrefix)
        JSONWriter.appendString(sub, to: &out)
        out.append(contentsOf: cursorKey)
        JSONWriter.appendInt(cursor, to: &out)
        out.append(contentsOf: eventKey)
        out.append(contentsOf: eventJSON)
        out.append(UInt8(ascii: "}"))
        out.append(UInt8(ascii: "\n"))
    }

    /// Convenience over the raw-buffer ``appendEvent(sub:cursor:eventJSON:to:)``.
    public static func appendEvent(sub: String, cursor: Int64, eventJSON: [UInt8], to out: inout [UInt8]) {
        eventJSON.withUnsafeBytes { appendEvent(sub: sub, cursor: cursor, eventJSON: $0, to: &out) }
    }

    /// `{"type":"goodbye","reason":..}`, sent before the server closes the connection.
    public static func goodbye(reason: String) -> [UInt8] {
        var w = JSONWriter(capacity: 64)
        w.beginObject()
        w.field("type", "goodbye")
        w.field("reason", reason)
        w.endObject()
        return line(w)
    }

    private static let eventPrefix: [UInt8] = Array(#"{"type":"event","sub":"#.utf8)
    private static let cursorKey: [UInt8] = Array(#","cursor":"#.utf8)
    private static let eventKey: [UInt8] = Array(#","event":"#.utf8)

    private static func line(_ w: JSONWriter) -> [UInt8] {
        var bytes = w.bytes
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }
}

/// A frame received from the server, as a client sees it.
public enum ServerMessage: Sendable, Equatable {
    /// The greeting: the whole object (`protocol`, `server`, `ops`, `max_frame_bytes`, `peer`, `access`, …).
    case hello(JSONObject)
    /// An event delivered on subscription `sub` (or a `replay-<id>` pseudo-subscription).
    case event(sub: String, cursor: Int64, event: JSONValue)
    /// Any other reply (`ok`, `pong`, `subscribed`, `accepted`, `stats`, `replay_done`, …);
    /// `body` is the object without its `type` and `id` keys.
    case reply(type: String, id: JSONValue?, body: JSONObject)
    /// An error reply; its `id` is the request's when the server could read it.
    case error(ProtocolError)
    /// The server is closing the connection.
    case goodbye(String)

    /// Parses one line received from the server (with or without its newline).
    ///
    /// Malformed server output is reported as `bad_frame`; an `error` frame whose
    /// code this client does not know becomes code `internal` with the code in the message.
    public static func parse(_ line: [UInt8]) throws(ProtocolError) -> ServerMessage {
        let value: JSONValue
        do {
            value = try JSONParser.parse(line)
        } catch {
            throw ProtocolError(code: .badFrame, message: "the server sent invalid JSON: \(error)")
        }
        guard case .object(var object) = value else {
            throw ProtocolError(code: .badFrame, message: "the server sent a \(value.typeName) instead of an object")
        }
        guard case .string(let type)? = object["type"] else {
            throw ProtocolError(code: .badFrame, message: "the server sent a frame without a string 'type'", field: "type")
        }
        switch type {
        case "hello":
            return .hello(object)
        case "event":
            guard case .string(let sub)? = object["sub"] else {
                throw ProtocolError(code: .badFrame, message: "event frame without a string 'sub'", field: "sub")
            }
            guard case .number(.int(let cursor))? = object["cursor"] else {
                throw ProtocolError(code: .badFrame, message: "event frame without an integer 'cursor'", field: "cursor")
            }
            guard let event = object["event"] else {
                throw ProtocolError(code: .badFrame, message: "event frame without 'event'", field: "event")
            }
            return .event(sub: sub, cursor: cursor, event: event)
        case "error":
            let id = object["id"].flatMap { $0.isNull ? nil : $0 }
            let codeName = object["code"]?.stringValue ?? "internal"
            var message = object["message"]?.stringValue ?? ""
            let code: ErrorCode
            if let known = ErrorCode(rawValue: codeName) {
                code = known
            } else {
                code = .internal
                message = "[\(codeName)] " + message
            }
            return .error(ProtocolError(code: code, message: message, field: object["field"]?.stringValue, id: id))
        case "goodbye":
            return .goodbye(object["reason"]?.stringValue ?? "")
        default:
            let id = object["id"].flatMap { $0.isNull ? nil : $0 }
            object["type"] = nil
            object["id"] = nil
            return .reply(type: type, id: id, body: object)
        }
    }

    /// The `id` this message answers, for replies and errors.
    public var id: JSONValue? {
        switch self {
        case .reply(_, let id, _): return id
        case .error(let e): return e.id
        default: return nil
        }
    }
}
