/// How hard ``StoreWriter/commit(_:)`` works to make a batch survive a crash.
///
/// The store always runs SQLite in WAL mode; the policy picks `PRAGMA synchronous`
/// and the transaction granularity. See `docs/storage.md` for the crash semantics
/// and measured costs of each.
public enum FsyncPolicy: String, Sendable, CaseIterable {
    /// `synchronous=FULL` and every op of a batch is its own transaction (one fsync per op).
    /// The slowest policy; kept for comparison and for paranoid deployments.
    case always
    /// `synchronous=FULL`, one transaction (one WAL fsync) per ``StoreWriter/commit(_:)`` call.
    /// A batch is durable against process crash, OS crash and power loss when `commit` returns.
    /// The default.
    case grouped
    /// `synchronous=OFF`, one transaction per commit, no fsync at all. A committed batch survives
    /// a process crash (`kill -9`: the data is in the OS page cache) but the most recent batches
    /// can be lost on an OS crash or power loss. The database itself stays consistent in WAL mode.
    case off
}

/// A new event to append to the log.
public struct NewEvent: Sendable, Equatable {
    /// Chorus event id, unique across the store.
    public var id: String
    /// Plugin instance name that produced (or will send) the event.
    public var instance: String
    /// Channel kind of the instance (e.g. `telegram`).
    public var channelKind: String
    /// Event type: `message`, `status`, `reaction`, `edit`, `delete`, `typing`, `read`, `conversation`.
    public var type: String
    /// `inbound` or `outbound`.
    public var direction: String
    /// Chorus conversation id the event belongs to.
    public var conversationId: String
    /// Channel-level identity of the event, e.g. `"<type>:<channel message id>"`. A second event with the
    /// same `(instance, dedupKey)` is reported as a duplicate and not stored, even after the first one
    /// was pruned (dedup keys are retained longer than events, see ``StoreWriter/dedupRetentionMs``).
    public var dedupKey: String?
    /// Wall-clock reception time, milliseconds since the Unix epoch.
    public var receivedAtMs: Int64
    /// The complete encoded event, returned byte for byte by the readers.
    public var json: [UInt8]

    /// Creates an event to append.
    public init(id: String, instance: String, channelKind: String, type: String, direction: String,
                conversationId: String, dedupKey: String? = nil, receivedAtMs: Int64, json: [UInt8]) {
        self.id = id
        self.instance = instance
        self.channelKind = channelKind
        self.type = type
        self.direction = direction
        self.conversationId = conversationId
        self.dedupKey = dedupKey
        self.receivedAtMs = receivedAtMs
        self.json = json
    }
}

/// What happened to one appended event.
public enum AppendOutcome: Sendable, Equatable {
    /// Stored under this sequence number.
    case appended(seq: Int64)
    /// Not stored: an event with the same `(instance, dedupKey)` (or the same id) exists.
    case duplicate(existingId: String, seq: Int64)
}

/// An event as stored in the log.
public struct StoredEvent: Sendable, Equatable {
    /// Monotonic sequence number, assigned at append time and never reused, even after pruning.
    public let seq: Int64
    /// Chorus event id.
    public let id: String
    /// Plugin instance name.
    public let instance: String
    /// Channel kind of the instance.
    public let channelKind: String
    /// Event type (`message`, `status`, …).
    public let type: String
    /// `inbound` or `outbound`.
    public let direction: String
    /// Chorus conversation id.
    public let conversationId: String
    /// Reception time, ms since the Unix epoch.
    public let receivedAtMs: Int64
    /// The encoded event exactly as appended.
    public let json: [UInt8]

    /// Creates a stored event value (normally produced by ``StoreReader``).
    public init(seq: Int64, id: String, instance: String, channelKind: String, type: String, direction: String,
                conversationId: String, receivedAtMs: Int64, json: [UInt8]) {
        self.seq = seq
        self.id = id
        self.instance = instance
        self.channelKind = channelKind
        self.type = type
        self.direction = direction
        self.conversationId = conversationId
        self.receivedAtMs = receivedAtMs
        self.json = json
    }
}

/// A conversation known to the daemon.
public struct ConversationRecord: Sendable, Equatable {
    /// Chorus conversation id.
    public var id: String
    /// Plugin instance the conversation lives on.
    public var instance: String
    /// Channel kind of the instance.
    public var channelKind: String
    /// The channel's own chat identifier.
    public var chatId: String
    /// The channel account the conversation belongs to, when the channel has several. An upsert with
    /// `nil` keeps the stored value.
    public var accountId: String?
    /// Last inbound message time (ms since epoch), for customer-service windows. Upserts keep the maximum;
    /// an upsert with `nil` keeps the stored value.
    public var lastInboundAtMs: Int64?
    /// Last event time (ms since epoch). Upserts keep the maximum.
    public var lastEventAtMs: Int64

    /// Creates a conversation record.
    public init(id: String, instance: String, channelKind: String, chatId: String, accountId: String? = nil,
                lastInboundAtMs: Int64? = nil, lastEventAtMs: Int64) {
        self.id = id
        self.instance = instance
        self.channelKind = channelKind
        self.chatId = chatId
        self.accountId = accountId
        self.lastInboundAtMs = lastInboundAtMs
        self.lastEventAtMs = lastEventAtMs
    }
}

/// The durable state of one outbound message.
public struct SendRecord: Sendable, Equatable {
    /// Chorus message id of the outbound message.
    public var id: String
    /// Consumer-supplied idempotency key, unique together with ``client``. `nil` disables idempotency.
    public var idempotencyKey: String?
    /// Consumer identity (e.g. `"uid:1000"`).
    public var client: String
    /// Plugin instance that delivers the message.
    public var instance: String
    /// Chorus conversation id of the destination.
    public var conversationId: String
    /// `accepted`, `sending`, `sent`, `failed` or `retrying`.
    public var state: String
    /// Delivery attempts made so far.
    public var attempts: Int
    /// The channel's id for the sent message, once known.
    public var channelMessageId: String?
    /// Chorus error code of the last failed attempt.
    public var errorCode: String?
    /// Human-readable detail of the last failed attempt.
    public var errorMessage: String?
    /// When the next delivery attempt is due (ms since epoch), for `retrying`.
    public var nextAttemptAtMs: Int64?
    /// When the send was accepted (ms since epoch).
    public var createdAtMs: Int64
    /// When the state last changed (ms since epoch).
    public var updatedAtMs: Int64
    /// The outbound message as accepted.
    public var json: [UInt8]

    /// Creates a send record.
    public init(id: String, idempotencyKey: String?, client: String, instance: String, conversationId: String,
                state: String, attempts: Int = 0, channelMessageId: String? = nil, errorCode: String? = nil,
                errorMessage: String? = nil, nextAttemptAtMs: Int64? = nil, createdAtMs: Int64,
                updatedAtMs: Int64, json: [UInt8]) {
        self.id = id
        self.idempotencyKey = idempotencyKey
        self.client = client
        self.instance = instance
        self.conversationId = conversationId
        self.state = state
        self.attempts = attempts
        self.channelMessageId = channelMessageId
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.nextAttemptAtMs = nextAttemptAtMs
        self.createdAtMs = createdAtMs
        self.updatedAtMs = updatedAtMs
        self.json = json
    }

    /// The states in which a send still needs work from the daemon.
    public static let unfinishedStates: [String] = ["accepted", "sending", "retrying"]
}

/// One write operation inside a ``StoreWriter/commit(_:)``. The daemon batches these.
public enum WriteOp: Sendable {
    /// Appends an event (or reports it as a duplicate). Result: `.appended` or `.duplicate`.
    case appendEvent(NewEvent)
    /// Sets (or with `nil`, deletes) a plugin key/value entry. Result: `.ok`.
    case putKV(instance: String, key: String, value: [UInt8]?)
    /// Inserts or updates a conversation; timestamps only move forward. Result: `.ok`.
    case upsertConversation(ConversationRecord)
    /// Records an accepted outbound message. Result: `.ok`, or `.existingSend` when the same
    /// `(client, idempotencyKey)` (or the same send id) is already stored; nothing is changed then.
    case insertSend(SendRecord)
    /// Updates the delivery state of a send. Throws ``StoreError/constraint(_:)`` when no send has this id.
    case updateSend(id: String, state: String, attempts: Int, channelMessageId: String?, errorCode: String?,
                    errorMessage: String?, nextAttemptAtMs: Int64?, updatedAtMs: Int64)
    /// Creates or replaces a durable subscription (filter and cursor). Result: `.ok`.
    case saveSubscription(name: String, filterJSON: [UInt8], cursor: Int64)
    /// Moves a subscription's cursor forward; a smaller cursor or an unknown name is a no-op. Result: `.ok`.
    case ackSubscription(name: String, cursor: Int64)
    /// Deletes a subscription; an unknown name is a no-op. Result: `.ok`.
    case deleteSubscription(name: String)
}

/// The result of one ``WriteOp``.
public enum WriteResult: Sendable, Equatable {
    /// The op was applied (or was a documented no-op).
    case ok
    /// The event was stored under this seq.
    case appended(seq: Int64)
    /// The event was not stored: this is the event that already holds its dedup key or id.
    case duplicate(existingId: String, seq: Int64)
    /// `insertSend` hit an existing send with the same `(client, idempotencyKey)` or id; this is the stored one.
    case existingSend(SendRecord)

    /// The append outcome when this is the result of an `appendEvent`.
    public var appendOutcome: AppendOutcome? {
        switch self {
        case .appended(let seq): return .appended(seq: seq)
        case .duplicate(let id, let seq): return .duplicate(existingId: id, seq: seq)
        case .ok, .existingSend: return nil
        }
    }
}

/// Sizes and bounds of the store, from ``StoreReader/stats()``.
public struct StoreStats: Sendable, Equatable {
    /// Number of retained events.
    public let eventCount: Int64
    /// Total size of the retained events' JSON, in bytes.
    public let eventBytes: Int64
    /// Smallest retained seq, 0 when no event is retained.
    public let firstSeq: Int64
    /// Largest seq ever assigned (the high-water mark; it survives pruning), 0 for a new store.
    public let lastSeq: Int64
    /// Size of the main database file.
    public let databaseBytes: Int64
    /// Size of the `-wal` file (0 when absent).
    public let walBytes: Int64

    /// Creates a stats value.
    public init(eventCount: Int64, eventBytes: Int64, firstSeq: Int64, lastSeq: Int64, databaseBytes: Int64,
                walBytes: Int64) {
        self.eventCount = eventCount
        self.eventBytes = eventBytes
        self.firstSeq = firstSeq
        self.lastSeq = lastSeq
        self.databaseBytes = databaseBytes
        self.walBytes = walBytes
    }
}

/// A durable subscription as stored.
public struct SubscriptionRecord: Sendable, Equatable {
    /// Unique subscription name.
    public var name: String
    /// The consumer's filter, stored as given.
    public var filterJSON: [UInt8]
    /// Last acknowledged seq: every event with `seq <= cursor` has been processed by the consumer.
    public var cursor: Int64

    /// Creates a subscription record.
    public init(name: String, filterJSON: [UInt8], cursor: Int64) {
        self.name = name
        self.filterJSON = filterJSON
        self.cursor = cursor
    }
}

/// Outcome of ``StoreWriter/checkpoint()``.
public struct CheckpointResult: Sendable, Equatable {
    /// Frames in the WAL when the checkpoint ran (0 after a complete TRUNCATE checkpoint).
    public let walFrames: Int32
    /// Frames copied back into the database.
    public let checkpointedFrames: Int32
    /// `false` when readers kept the checkpoint from completing; it is retried on the next call.
    public let complete: Bool
}
