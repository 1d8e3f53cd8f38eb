import ChorusJSON
import ChorusProtocol

/// The reply to `subscribe`.
public struct Subscription: Sendable, Equatable {
    /// The subscription name (`eph-<n>` for an ephemeral one).
    public var name: String
    public var durable: Bool
    /// Events after this cursor will be delivered.
    public var cursor: Int64

    public init(name: String, durable: Bool, cursor: Int64) {
        self.name = name
        self.durable = durable
        self.cursor = cursor
    }
}

/// The reply to `send`.
public struct AcceptedMessage: Sendable, Equatable {
    public var messageId: String
    public var conversationId: String?
    public var instance: String?
    /// True when the idempotency key had been used before: `messageId` is the original message's.
    public var duplicate: Bool
    /// The whole reply body.
    public var body: JSONObject

    public init(messageId: String, conversationId: String?, instance: String?, duplicate: Bool, body: JSONObject) {
        self.messageId = messageId
        self.conversationId = conversationId
        self.instance = instance
        self.duplicate = duplicate
        self.body = body
    }
}

/// The end of a replay.
public struct ReplaySummary: Sendable, Equatable {
    /// Events delivered.
    public var count: Int
    /// The cursor of the last event delivered, nil when none was.
    public var lastCursor: Int64?

    public init(count: Int, lastCursor: Int64?) {
        self.count = count
        self.lastCursor = lastCursor
    }
}

extension ChorusConnection {
    /// Subscribes and returns the server's `subscribed` reply.
    public func subscribe(name: String? = nil, filter: SubscriptionFilter? = nil, from: StartPosition? = nil)
        throws(ClientError) -> Subscription
    {
        let body = try call(.subscribe(name: name, filter: filter, from: from), expecting: "subscribed")
        guard let sub = body["sub"]?.stringValue, let cursor = body["cursor"]?.intValue else {
            throw .protocolError(ProtocolError(code: .internal, message: "the 'subscribed' reply lacks 'sub' or 'cursor'"))
        }
        return Subscription(name: sub, durable: body["durable"]?.boolValue ?? (name != nil), cursor: cursor)
    }

    /// Sends a message (the `message` object of docs/protocol.md, `send`) and returns the `accepted` reply.
    public func sendMessage(_ message: JSONValue, idempotencyKey: String? = nil) throws(ClientError) -> AcceptedMessage {
        let body = try call(.send(idempotencyKey: idempotencyKey, message: message), expecting: "accepted")
        guard let messageId = body["message_id"]?.stringValue else {
            throw .protocolError(ProtocolError(code: .internal, message: "the 'accepted' reply lacks 'message_id'"))
        }
        return AcceptedMessage(messageId: messageId, conversationId: body["conversation_id"]?.stringValue,
                               instance: body["instance"]?.stringValue, duplicate: body["duplicate"]?.boolValue ?? false,
                               body: body)
    }

    /// Sends a message and waits for a status event of it whose state is in `until` (or `failed`).
    ///
    /// It subscribes (ephemerally, to status events only) before sending so that no status can be
    /// missed, and unsubscribes afterwards. Other messages that arrive meanwhile are kept for
    /// ``nextMessage(timeoutMilliseconds:)``.
    ///
    /// - Returns: the accepted reply and the status event that ended the wait.
    public func sendMessageAndWait(_ message: JSONValue, idempotencyKey: String? = nil,
                                   until states: Set<String> = ["sent", "delivered", "read"],
                                   timeoutMilliseconds: Int = 60_000) throws(ClientError)
        -> (accepted: AcceptedMessage, status: JSONValue)
    {
        let sub = try subscribe(filter: SubscriptionFilter(types: ["status"]), from: .now)
        // Messages not for this wait, given back to the queue at the end in their original order.
        var held: [ServerMessage] = []
        // Status events that arrive while `send` waits for its reply are queued by `request`: look there first.
        var pending: [ServerMessage] = []
        var pendingIndex = 0
        defer {
            for m in held { requeue(m) }
            for m in pending[pendingIndex...] { requeue(m) }
        }
        do throws(ClientError) {
            let accepted = try sendMessage(message, idempotencyKey: idempotencyKey)
            let deadline = Clock.deadline(after: timeoutMilliseconds)
            while let m = takeQueued() { pending.append(m) }
            while true {
                let m: ServerMessage
                if pendingIndex < pending.count {
                    m = pending[pendingIndex]
                    pendingIndex += 1
                } else {
                    m = try receiveDirect(deadline: deadline)
                }
                guard case .event(sub.name, _, let event) = m else {
                    if case .goodbye(let reason) = m { throw ClientError.closed(reason: reason) }
                    held.append(m)
                    continue
                }
                guard let status = event["status"], status["message_id"]?.stringValue == accepted.messageId,
                      let state = status["state"]?.stringValue
                else { continue }
                if state == "failed" || states.contains(state) {
                    try call(.unsubscribe(sub: sub.name))
                    return (accepted, event)
                }
            }
        } catch {
            switch error {
            case .closed, .connectionFailed: break
            default: _ = try? call(.unsubscribe(sub: sub.name))
            }
            throw error
        }
    }

    /// Replays stored events, calling `each` with every event's cursor and body, in cursor order.
    ///
    /// Messages for other subscriptions that arrive meanwhile are kept for ``nextMessage(timeoutMilliseconds:)``.
    /// `timeoutMilliseconds` bounds the wait between two frames of the replay (default: the connection's).
    public func replay(filter: SubscriptionFilter = .all, fromCursor: Int64? = nil, toCursor: Int64? = nil,
                       fromTimeMs: Int64? = nil, toTimeMs: Int64? = nil, limit: Int? = nil,
                       timeoutMilliseconds: Int? = nil, each: (Int64, JSONValue) -> Void) throws(ClientError) -> ReplaySummary
    {
        let id = freshRequestId()
        let replaySub = "replay-" + (id.stringValue ?? "\(id)")
        try send(ClientFrame(id: id, command: .replay(filter: filter, fromCursor: fromCursor, toCursor: toCursor,
                                                      fromTimeMs: fromTimeMs, toTimeMs: toTimeMs, limit: limit)))
        var held: [ServerMessage] = []
        defer { for m in held { requeue(m) } }
        var delivered = 0
        var last: Int64?
        while true {
            let m = try receiveDirect(deadline: Clock.deadline(after: timeoutMilliseconds ?? self.timeoutMilliseconds))
            switch m {
            case .event(replaySub, let cursor, let event):
                delivered += 1
                last = cursor
                each(cursor, event)
            case .reply("replay_done", id, let body):
                return ReplaySummary(count: Int(body["count"]?.intValue ?? Int64(delivered)),
                                     lastCursor: body["last_cursor"]?.intValue ?? last)
            case .reply(let type, id, _):
                throw .protocolError(ProtocolError(code: .internal, message: "expected 'replay_done', got '\(type)'"))
            case .error(let e) where e.id == id:
                throw .protocolError(e)
            case .goodbye(let reason):
                throw .closed(reason: reason)
            default:
                held.append(m)
            }
        }
    }
}
