import CSQLite
import Foundation

/// A read-only connection to a Chorus store.
///
/// Open as many as needed (typically one per thread-pool thread). Each call sees only committed data:
/// in WAL mode a read is a snapshot of the last commit that finished before it started, so a reader
/// never sees part of a batch and never blocks the writer. Calls are serialised by an internal lock,
/// so a reader may be shared, but one reader per thread avoids waiting.
///
/// The store must have been created by a ``StoreWriter`` first.
public final class StoreReader: @unchecked Sendable {
    /// The database file path.
    public let path: String

    private let lock = NSLock()
    private let connection: SQLiteConnection

    /// Opens `path` read-only.
    /// - Throws: ``StoreError/io(_:)`` when the file does not exist or cannot be opened,
    ///   ``StoreError/other(code:message:)`` when it is not an initialised store of a supported version.
    public init(path: String) throws {
        self.path = path
        connection = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY, busyTimeoutMs: 5_000)
        do {
            try connection.exec("PRAGMA cache_size = -4096")
            try Schema.check(connection)
        } catch {
            connection.close()
            throw error
        }
    }

    deinit { connection.close() }

    /// Closes the connection. Later calls throw ``StoreError/other(code:message:)`` with `SQLITE_MISUSE`.
    /// Idempotent.
    public func close() {
        lock.lock()
        defer { lock.unlock() }
        connection.close()
    }

    private func locked<R>(_ body: () throws -> R) throws -> R {
        lock.lock()
        defer { lock.unlock() }
        _ = try connection.db()
        return try body()
    }

    /// Runs several statements on one snapshot (a deferred read transaction).
    private func snapshot<R>(_ body: () throws -> R) throws -> R {
        try locked {
            try connection.statement("BEGIN").runAndReset()
            defer { try? connection.statement("COMMIT").runAndReset() }
            return try body()
        }
    }

    /// Up to `limit` events with `seq > after`, in ascending seq order.
    public func events(after seq: Int64, limit: Int) throws -> [StoredEvent] {
        try locked {
            let s = try connection.statement(SQL.eventsAfter)
            defer { s.reset() }
            s.bind(1, seq)
            s.bind(2, Int64(max(limit, 0)))
            var out: [StoredEvent] = []
            out.reserveCapacity(min(max(limit, 0), 1024))
            while try s.step() { out.append(StoredEvent(row: s)) }
            return out
        }
    }

    /// The largest seq ever assigned (it survives pruning, so a cursor taken from it never replays
    /// old events); 0 for a store that never held an event.
    public func lastSeq() throws -> Int64 {
        try locked { try connection.queryInt(SQL.lastSeq) ?? 0 }
    }

    /// The smallest retained seq, 0 when no event is retained.
    public func firstSeq() throws -> Int64 {
        try locked { try connection.queryInt(SQL.firstSeq) ?? 0 }
    }

    /// The cursor to start from to replay events received at or after `atOrAfterTimeMs` (ms since epoch):
    /// the seq just before the first event received at or after that time, so that
    /// `events(after: cursor, …)` starts with it. When no retained event is that recent, ``lastSeq()``.
    /// Reception times are assumed to grow with seq; after a wall-clock step backwards the result is
    /// the first event (in time order) at or after the time.
    public func seq(atOrAfterTimeMs: Int64) throws -> Int64 {
        try snapshot {
            if let first = try connection.queryInt(SQL.firstSeqAtOrAfterTime, [atOrAfterTimeMs]) {
                return first - 1
            }
            return try connection.queryInt(SQL.lastSeq) ?? 0
        }
    }

    /// The retained event with this Chorus id.
    public func event(id: String) throws -> StoredEvent? {
        try locked {
            let s = try connection.statement(SQL.eventById)
            defer { s.reset() }
            s.bind(1, id)
            return try s.step() ? StoredEvent(row: s) : nil
        }
    }

    /// A plugin key/value entry, `nil` when absent.
    public func kv(instance: String, key: String) throws -> [UInt8]? {
        try locked {
            let s = try connection.statement(SQL.getKV)
            defer { s.reset() }
            s.bind(1, instance)
            s.bind(2, key)
            return try s.step() ? s.blob(0) : nil
        }
    }

    /// The conversation with this Chorus id.
    public func conversation(id: String) throws -> ConversationRecord? {
        try locked {
            let s = try connection.statement(SQL.conversationById)
            defer { s.reset() }
            s.bind(1, id)
            guard try s.step() else { return nil }
            return ConversationRecord(id: s.string(0), instance: s.string(1), channelKind: s.string(2),
                                      chatId: s.string(3), accountId: s.optionalString(4),
                                      lastInboundAtMs: s.optionalInt64(5), lastEventAtMs: s.int64(6))
        }
    }

    /// The send with this Chorus message id.
    public func send(id: String) throws -> SendRecord? {
        try locked {
            let s = try connection.statement(SQL.sendById)
            defer { s.reset() }
            s.bind(1, id)
            return try s.step() ? SendRecord(row: s) : nil
        }
    }

    /// The send that the channel knows as `channelMessageId` on `instance` (the newest if several).
    public func send(instance: String, channelMessageId: String) throws -> SendRecord? {
        try locked {
            let s = try connection.statement(SQL.sendByChannelMessageId)
            defer { s.reset() }
            s.bind(1, instance)
            s.bind(2, channelMessageId)
            return try s.step() ? SendRecord(row: s) : nil
        }
    }

    /// The send a client created with this idempotency key.
    public func send(client: String, idempotencyKey: String) throws -> SendRecord? {
        try locked {
            let s = try connection.statement(SQL.sendByIdempotencyKey)
            defer { s.reset() }
            s.bind(1, client)
            s.bind(2, idempotencyKey)
            return try s.step() ? SendRecord(row: s) : nil
        }
    }

    /// Sends in state `accepted`, `sending` or `retrying`, oldest first: the daemon resumes them at start.
    public func unfinishedSends() throws -> [SendRecord] {
        try locked {
            let s = try connection.statement(SQL.unfinishedSends)
            defer { s.reset() }
            var out: [SendRecord] = []
            while try s.step() { out.append(SendRecord(row: s)) }
            return out
        }
    }

    /// All durable subscriptions, by name.
    public func subscriptions() throws -> [(name: String, filterJSON: [UInt8], cursor: Int64)] {
        try subscriptionRecords().map { ($0.name, $0.filterJSON, $0.cursor) }
    }

    /// All durable subscriptions, by name, as records.
    public func subscriptionRecords() throws -> [SubscriptionRecord] {
        try locked {
            let s = try connection.statement(SQL.subscriptions)
            defer { s.reset() }
            var out: [SubscriptionRecord] = []
            while try s.step() {
                out.append(SubscriptionRecord(name: s.string(0), filterJSON: s.blob(1), cursor: s.int64(2)))
            }
            return out
        }
    }

    /// Event count and bytes, first/last seq (one consistent snapshot) and the file sizes.
    public func stats() throws -> StoreStats {
        try snapshot {
            let s = try connection.statement(SQL.meta)
            var count: Int64 = 0
            var bytes: Int64 = 0
            do {
                defer { s.reset() }
                if try s.step() {
                    count = s.int64(0)
                    bytes = s.int64(1)
                }
            }
            let first = try connection.queryInt(SQL.firstSeq) ?? 0
            let last = try connection.queryInt(SQL.lastSeq) ?? 0
            return StoreStats(eventCount: count, eventBytes: bytes, firstSeq: first, lastSeq: last,
                              databaseBytes: Self.fileSize(path), walBytes: Self.fileSize(path + "-wal"))
        }
    }

    static func fileSize(_ path: String) -> Int64 {
        var st = stat()
        guard stat(path, &st) == 0 else { return 0 }
        return Int64(st.st_size)
    }
}
