import CSQLite
import Foundation

/// The single writer of a Chorus store: one read-write SQLite connection in WAL mode.
///
/// The daemon owns exactly one writer per database and calls it from one dedicated thread, grouping
/// all appends of a loop iteration into one ``commit(_:)`` (one transaction, one fsync under
/// ``FsyncPolicy/grouped``). Calls are serialised by an internal lock, so the object is `Sendable`
/// and may be handed to that thread, but concurrent callers simply wait for each other.
///
/// Opening a writer creates the database file if needed and migrates the schema
/// (`PRAGMA user_version`).
public final class StoreWriter: @unchecked Sendable {
    /// The database file path.
    public let path: String
    /// The durability policy chosen at open.
    public let fsync: FsyncPolicy
    /// How long dedup keys are kept, at least, whatever the event retention: a channel that redelivers
    /// an old message after its event was pruned is still recognised. Default 7 days.
    public let dedupRetentionMs: Int64

    /// Events/dedup rows deleted per transaction while pruning, so a large prune never holds the write
    /// lock (and grows the WAL) for long.
    public static let pruneChunkRows = 5_000
    /// Default value of ``dedupRetentionMs``: 7 days.
    public static let defaultDedupRetentionMs: Int64 = 7 * 24 * 3_600 * 1_000

    private let lock = NSLock()
    private let connection: SQLiteConnection

    /// Event bookkeeping of the open transaction, folded into `store_meta` with one UPDATE at COMMIT.
    /// `lastSeq` is loaded from `store_meta` (under the write lock) by the first append of a transaction,
    /// so seqs stay correct even if another process wrote to the file in between.
    private struct PendingMeta {
        var lastSeq: Int64
        var addedCount: Int64 = 0
        var addedBytes: Int64 = 0
        var removedCount: Int64 = 0
        var removedBytes: Int64 = 0
        var seqChanged = false
    }
    private var pending: PendingMeta?

    /// Opens (creating if needed) the store at `path`.
    ///
    /// - Parameters:
    ///   - path: database file; its directory must exist. `path-wal` and `path-shm` live beside it.
    ///   - fsync: durability policy, see ``FsyncPolicy``.
    ///   - dedupRetentionMs: minimum age before ``prune(olderThanMs:maxBytes:force:)`` drops dedup keys.
    /// - Throws: ``StoreError`` when the file cannot be opened, is not a database, WAL mode cannot be
    ///   enabled, or its schema is newer than this build.
    public init(path: String, fsync: FsyncPolicy = .grouped,
                dedupRetentionMs: Int64 = StoreWriter.defaultDedupRetentionMs) throws {
        self.path = path
        self.fsync = fsync
        self.dedupRetentionMs = dedupRetentionMs
        connection = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                          busyTimeoutMs: 5_000)
        do {
            // page_size only matters for a new file; it must precede the first write (journal_mode=WAL).
            try connection.exec("PRAGMA page_size = 4096")
            let mode = try connection.queryText("PRAGMA journal_mode = WAL")
            guard mode?.lowercased() == "wal" else {
                throw StoreError.other(code: SQLITE_ERROR,
                                       message: "cannot enable WAL mode on \(path) (journal_mode is \(mode ?? "unknown"))")
            }
            try connection.exec("PRAGMA synchronous = \(fsync == .off ? "OFF" : "FULL")")
            try connection.exec("""
                PRAGMA cache_size = -16384;
                PRAGMA temp_store = MEMORY;
                PRAGMA journal_size_limit = 67108864;
                PRAGMA wal_autocheckpoint = 1000;
                PRAGMA foreign_keys = OFF;
                PRAGMA trusted_schema = OFF;
                """)
            try Schema.migrate(connection)
        } catch {
            connection.close()
            throw error
        }
    }

    deinit { connection.close() }

    /// Closes the connection (the last connection to close checkpoints and removes the WAL).
    /// Later calls throw ``StoreError/other(code:message:)`` with `SQLITE_MISUSE`. Idempotent.
    public func close() {
        lock.lock()
        defer { lock.unlock() }
        connection.close()
    }

    // MARK: Commit

    /// Applies `ops` and returns one result per op, in order.
    ///
    /// Under ``FsyncPolicy/grouped`` and ``FsyncPolicy/off`` all ops form one transaction: on error the
    /// whole batch is rolled back and the error thrown, and nothing committed before is affected. Under
    /// ``FsyncPolicy/always`` each op is its own transaction; on error the failing op is rolled back,
    /// the ops before it stay committed, and the ops after it are not attempted.
    ///
    /// After ``StoreError/diskFull(_:)`` the connection stays usable and later commits succeed once
    /// space is available again.
    public func commit(_ ops: [WriteOp]) throws -> [WriteResult] {
        lock.lock()
        defer { lock.unlock() }
        _ = try connection.db()
        if ops.isEmpty { return [] }
        var results: [WriteResult] = []
        results.reserveCapacity(ops.count)
        switch fsync {
        case .always:
            for op in ops {
                let result = try transaction { try apply(op) }
                results.append(result)
            }
        case .grouped, .off:
            try transaction {
                for op in ops { results.append(try apply(op)) }
            }
        }
        return results
    }

    /// Convenience: appends events in one commit and returns their outcomes.
    public func append(_ events: [NewEvent]) throws -> [AppendOutcome] {
        try commit(events.map { .appendEvent($0) }).compactMap(\.appendOutcome)
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, rolling back on any error (including a failing COMMIT).
    private func transaction<R>(_ body: () throws -> R) throws -> R {
        // A ROLLBACK that failed earlier (an I/O error during rollback) would leave a transaction open.
        rollbackIfNeeded()
        try connection.statement("BEGIN IMMEDIATE").runAndReset()
        pending = nil
        defer { pending = nil }
        do {
            let result = try body()
            try flushPendingMeta()
            try connection.statement("COMMIT").runAndReset()
            return result
        } catch {
            rollbackIfNeeded()
            throw error
        }
    }

    /// The transaction's bookkeeping, loading `store_meta.last_seq` on first use.
    private func pendingMeta() throws -> PendingMeta {
        if let pending { return pending }
        let loaded = PendingMeta(lastSeq: try connection.queryInt(SQL.lastSeq) ?? 0)
        pending = loaded
        return loaded
    }

    private func flushPendingMeta() throws {
        guard let p = pending, p.seqChanged || p.addedCount != 0 || p.removedCount != 0 else { return }
        let s = try connection.statement(SQL.updateMeta)
        defer { s.reset() }
        s.bind(1, p.lastSeq)
        s.bind(2, p.addedCount - p.removedCount)
        s.bind(3, p.addedBytes - p.removedBytes)
        try s.run()
    }

    private func rollbackIfNeeded() {
        // SQLite may already have rolled back by itself (e.g. after SQLITE_FULL in some paths).
        if !connection.isAutocommit {
            try? connection.exec("ROLLBACK")
        }
    }

    private func apply(_ op: WriteOp) throws -> WriteResult {
        switch op {
        case .appendEvent(let event):
            return try appendEvent(event)
        case .putKV(let instance, let key, let value):
            try putKV(instance: instance, key: key, value: value)
            return .ok
        case .upsertConversation(let record):
            try upsertConversation(record)
            return .ok
        case .insertSend(let record):
            return try insertSend(record)
        case .updateSend(let id, let state, let attempts, let channelMessageId, let errorCode, let errorMessage,
                         let nextAttemptAtMs, let updatedAtMs):
            try updateSend(id: id, state: state, attempts: attempts, channelMessageId: channelMessageId,
                           errorCode: errorCode, errorMessage: errorMessage, nextAttemptAtMs: nextAttemptAtMs,
                           updatedAtMs: updatedAtMs)
            return .ok
        case .saveSubscription(let name, let filterJSON, let cursor):
            let s = try connection.statement(SQL.saveSubscription)
            defer { s.reset() }
            s.bind(1, name)
            s.bindBlobCopy(2, filterJSON)
            s.bind(3, cursor)
            try s.run()
            return .ok
        case .ackSubscription(let name, let cursor):
            let s = try connection.statement(SQL.ackSubscription)
            defer { s.reset() }
            s.bind(1, name)
            s.bind(2, cursor)
            try s.run()
            return .ok
        case .deleteSubscription(let name):
            let s = try connection.statement(SQL.deleteSubscription)
            defer { s.reset() }
            s.bind(1, name)
            try s.run()
            return .ok
        }
    }

    private func appendEvent(_ e: NewEvent) throws -> WriteResult {
        var meta = try pendingMeta()
        let seq = meta.lastSeq + 1
        // Claim the dedup key first (one insert, no lookup, on the common path).
        if let key = e.dedupKey {
            let s = try connection.statement(SQL.claimDedup)
            let claimed: Bool = try {
                defer { s.reset() }
                s.bind(1, e.instance)
                s.bind(2, key)
                s.bind(3, e.id)
                s.bind(4, seq)
                s.bind(5, e.receivedAtMs)
                try s.run()
                return connection.changes > 0
            }()
            if !claimed {
                let q = try connection.statement(SQL.findDedup)
                defer { q.reset() }
                q.bind(1, e.instance)
                q.bind(2, key)
                guard try q.step() else {
                    throw StoreError.constraint("dedup key \(key) of \(e.instance) was neither claimed nor found")
                }
                return .duplicate(existingId: q.string(0), seq: q.int64(1))
            }
        }
        let insert = try connection.statement(SQL.insertEvent)
        do {
            try insert.withStaticBlob(9, e.json) {
                defer { insert.reset() }
                insert.bind(1, seq)
                insert.bind(2, e.id)
                insert.bind(3, e.instance)
                insert.bind(4, e.channelKind)
                insert.bind(5, e.type)
                insert.bind(6, e.direction)
                insert.bind(7, e.conversationId)
                insert.bind(8, e.receivedAtMs)
                try insert.run()
            }
        } catch StoreError.constraint(let message) {
            // Same Chorus event id appended again (a replayed commit): release the key claimed above and
            // report the stored event. The failed INSERT was undone on its own (conflict mode ABORT).
            let q = try connection.statement(SQL.seqOfEvent)
            let existing: Int64? = try {
                defer { q.reset() }
                q.bind(1, e.id)
                return try q.step() ? q.int64(0) : nil
            }()
            guard let existing else { throw StoreError.constraint(message) }
            if let key = e.dedupKey {
                let d = try connection.statement(SQL.releaseDedup)
                defer { d.reset() }
                d.bind(1, e.instance)
                d.bind(2, key)
                d.bind(3, seq)
                try d.run()
            }
            return .duplicate(existingId: e.id, seq: existing)
        }
        meta.lastSeq = seq
        meta.seqChanged = true
        meta.addedCount += 1
        meta.addedBytes += Int64(e.json.count)
        pending = meta
        return .appended(seq: seq)
    }

    private func putKV(instance: String, key: String, value: [UInt8]?) throws {
        if let value {
            let s = try connection.statement(SQL.putKV)
            try s.withStaticBlob(3, value) {
                defer { s.reset() }
                s.bind(1, instance)
                s.bind(2, key)
                try s.run()
            }
        } else {
            let s = try connection.statement(SQL.deleteKV)
            defer { s.reset() }
            s.bind(1, instance)
            s.bind(2, key)
            try s.run()
        }
    }

    private func upsertConversation(_ c: ConversationRecord) throws {
        let s = try connection.statement(SQL.upsertConversation)
        defer { s.reset() }
        s.bind(1, c.id)
        s.bind(2, c.instance)
        s.bind(3, c.channelKind)
        s.bind(4, c.chatId)
        s.bind(5, c.accountId)
        s.bind(6, c.lastInboundAtMs)
        s.bind(7, c.lastEventAtMs)
        try s.run()
    }

    private func insertSend(_ r: SendRecord) throws -> WriteResult {
        let s = try connection.statement(SQL.insertSend)
        let inserted: Bool = try s.withStaticBlob(14, r.json) {
            defer { s.reset() }
            s.bind(1, r.id)
            s.bind(2, r.idempotencyKey)
            s.bind(3, r.client)
            s.bind(4, r.instance)
            s.bind(5, r.conversationId)
            s.bind(6, r.state)
            s.bind(7, Int64(r.attempts))
            s.bind(8, r.channelMessageId)
            s.bind(9, r.errorCode)
            s.bind(10, r.errorMessage)
            s.bind(11, r.nextAttemptAtMs)
            s.bind(12, r.createdAtMs)
            s.bind(13, r.updatedAtMs)
            try s.run()
            return connection.changes > 0
        }
        if inserted { return .ok }
        if let key = r.idempotencyKey {
            let q = try connection.statement(SQL.sendByIdempotencyKey)
            defer { q.reset() }
            q.bind(1, r.client)
            q.bind(2, key)
            if try q.step() { return .existingSend(SendRecord(row: q)) }
        }
        let q = try connection.statement(SQL.sendById)
        defer { q.reset() }
        q.bind(1, r.id)
        if try q.step() { return .existingSend(SendRecord(row: q)) }
        throw StoreError.constraint("send \(r.id) was neither inserted nor found")
    }

    private func updateSend(id: String, state: String, attempts: Int, channelMessageId: String?,
                            errorCode: String?, errorMessage: String?, nextAttemptAtMs: Int64?,
                            updatedAtMs: Int64) throws {
        let s = try connection.statement(SQL.updateSend)
        defer { s.reset() }
        s.bind(1, id)
        s.bind(2, state)
        s.bind(3, Int64(attempts))
        s.bind(4, channelMessageId)
        s.bind(5, errorCode)
        s.bind(6, errorMessage)
        s.bind(7, nextAttemptAtMs)
        s.bind(8, updatedAtMs)
        try s.run()
        if connection.changes == 0 {
            throw StoreError.constraint("updateSend: no send with id \(id)")
        }
    }

    // MARK: Retention

    /// Deletes events received before `olderThanMs` (an absolute time, ms since the Unix epoch) and/or,
    /// oldest seq first, as many as needed to bring the retained event JSON down to `maxBytes`.
    ///
    /// Unless `force` is set, events a durable subscription has not acknowledged (`seq > cursor` of any
    /// subscription) are kept, even if that leaves the store above `maxBytes`. Deletion runs in chunks of
    /// ``pruneChunkRows`` rows per transaction. It also drops dedup keys older than both `olderThanMs`
    /// (when given) and ``dedupRetentionMs`` before now. Seqs are never reused after pruning. Freed pages
    /// are reused by later appends; the file does not shrink.
    ///
    /// - Returns: the number of events deleted.
    public func prune(olderThanMs: Int64?, maxBytes: Int64?, force: Bool) throws -> Int {
        lock.lock()
        defer { lock.unlock() }
        _ = try connection.db()
        var bound = Int64.max
        if !force, let minCursor = try connection.queryInt(SQL.minSubscriptionCursor) {
            bound = minCursor
        }
        var deleted = 0
        if let cutoff = olderThanMs {
            deleted += try inChunks {
                let s = try connection.statement(SQL.pruneByAge)
                defer { s.reset() }
                s.bind(1, cutoff)
                s.bind(2, bound)
                s.bind(3, Int64(Self.pruneChunkRows))
                return try deleteCounting(s)
            }
        }
        if let maxBytes {
            while true {
                let total = try connection.queryInt(SQL.eventBytes) ?? 0
                if total <= maxBytes { break }
                let excess = total - max(maxBytes, 0)
                let scan = try connection.statement(SQL.oldestEventSizes)
                var cutoffSeq: Int64?
                do {
                    defer { scan.reset() }
                    scan.bind(1, bound)
                    scan.bind(2, Int64(Self.pruneChunkRows))
                    var accumulated: Int64 = 0
                    while try scan.step() {
                        cutoffSeq = scan.int64(0)
                        accumulated += scan.int64(1)
                        if accumulated >= excess { break }
                    }
                }
                guard let cutoffSeq else { break }
                deleted += try transaction {
                    let s = try connection.statement(SQL.deleteEventsThrough)
                    defer { s.reset() }
                    s.bind(1, cutoffSeq)
                    return try deleteCounting(s)
                }
            }
        }
        let dedupCutoff = min(olderThanMs ?? Int64.max, Self.wallClockMs() - dedupRetentionMs)
        _ = try pruneDedupLocked(olderThanMs: dedupCutoff)
        return deleted
    }

    /// Runs a `DELETE … RETURNING length(json)` on events and records what it removed in the
    /// transaction's bookkeeping. Returns the number of deleted events.
    private func deleteCounting(_ s: SQLiteStatement) throws -> Int {
        var meta = try pendingMeta()
        var count: Int64 = 0
        var bytes: Int64 = 0
        while try s.step() {
            count += 1
            bytes += s.int64(0)
        }
        meta.removedCount += count
        meta.removedBytes += bytes
        pending = meta
        return Int(count)
    }

    /// Deletes dedup keys of events received before `olderThanMs` (ms since epoch), in chunks.
    /// ``prune(olderThanMs:maxBytes:force:)`` already does this with a safe cutoff; this is for explicit use.
    /// - Returns: the number of dedup keys deleted.
    public func pruneDedup(olderThanMs: Int64) throws -> Int {
        lock.lock()
        defer { lock.unlock() }
        _ = try connection.db()
        return try pruneDedupLocked(olderThanMs: olderThanMs)
    }

    private func pruneDedupLocked(olderThanMs: Int64) throws -> Int {
        try deleteInChunks(SQL.pruneDedup, before: olderThanMs)
    }

    /// Runs `delete` (one chunk of at most ``pruneChunkRows`` rows, returning how many it removed)
    /// in its own transaction until a chunk comes back short, so no prune holds the writer for long.
    private func inChunks(_ delete: () throws -> Int) throws -> Int {
        var deleted = 0
        while true {
            let n: Int = try transaction { try delete() }
            deleted += n
            if n < Self.pruneChunkRows { return deleted }
        }
    }

    /// Chunked `DELETE` whose statement binds a cutoff (?1) and the chunk size (?2).
    private func deleteInChunks(_ sql: String, before cutoff: Int64) throws -> Int {
        try inChunks {
            let s = try connection.statement(sql)
            defer { s.reset() }
            s.bind(1, cutoff)
            s.bind(2, Int64(Self.pruneChunkRows))
            try s.run()
            return connection.changes
        }
    }

    /// Deletes finished sends (`sent`, `failed`) last updated before `updatedBeforeMs` (ms since epoch).
    /// Unfinished sends are never deleted. After this, an `insertSend` with a deleted send's idempotency
    /// key is accepted as new.
    /// - Returns: the number of sends deleted.
    public func pruneSends(updatedBeforeMs: Int64) throws -> Int {
        lock.lock()
        defer { lock.unlock() }
        _ = try connection.db()
        return try deleteInChunks(SQL.pruneSends, before: updatedBeforeMs)
    }

    // MARK: Maintenance

    /// Runs `PRAGMA wal_checkpoint(TRUNCATE)`: copies the WAL into the database and truncates the WAL
    /// to zero bytes. Readers in the middle of a read can keep it from completing; then `complete` is
    /// `false` and nothing is lost (the next checkpoint catches up).
    @discardableResult
    public func checkpoint() throws -> CheckpointResult {
        lock.lock()
        defer { lock.unlock() }
        let db = try connection.db()
        var walFrames: Int32 = 0
        var checkpointed: Int32 = 0
        let rc = sqlite3_wal_checkpoint_v2(db, nil, SQLITE_CHECKPOINT_TRUNCATE, &walFrames, &checkpointed)
        switch rc {
        case SQLITE_OK:
            return CheckpointResult(walFrames: walFrames, checkpointedFrames: checkpointed, complete: true)
        case SQLITE_BUSY:
            return CheckpointResult(walFrames: walFrames, checkpointedFrames: checkpointed, complete: false)
        default:
            throw connection.error(rc, "checkpoint")
        }
    }

    /// Caps the database at `pages` pages (`PRAGMA max_page_count`, per connection, 4096-byte pages);
    /// commits that would grow it further fail with ``StoreError/diskFull(_:)``. SQLite never sets the
    /// cap below the current size. Useful as a hard quota below the real disk size.
    /// - Returns: the cap in effect.
    @discardableResult
    public func setMaxPageCount(_ pages: Int64) throws -> Int64 {
        lock.lock()
        defer { lock.unlock() }
        _ = try connection.db()
        return try connection.queryInt("PRAGMA max_page_count = \(max(pages, 1))") ?? 0
    }

    /// The number of pages of the database (`PRAGMA page_count`), as seen by the writer.
    public func pageCount() throws -> Int64 {
        lock.lock()
        defer { lock.unlock() }
        _ = try connection.db()
        return try connection.queryInt("PRAGMA page_count") ?? 0
    }

    static func wallClockMs() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}

extension SQLiteStatement {
    /// Steps to completion and resets.
    func runAndReset() throws {
        defer { reset() }
        try run()
    }
}

/// The SQL text of every cached statement.
enum SQL {
    static let findDedup = "SELECT event_id, seq FROM dedup WHERE instance = ?1 AND dedup_key = ?2"
    static let claimDedup = """
        INSERT INTO dedup(instance, dedup_key, event_id, seq, received_at) VALUES (?1, ?2, ?3, ?4, ?5)
        ON CONFLICT DO NOTHING
        """
    static let releaseDedup = "DELETE FROM dedup WHERE instance = ?1 AND dedup_key = ?2 AND seq = ?3"
    static let insertEvent = """
        INSERT INTO events(seq, id, instance, channel_kind, type, direction, conversation_id, received_at, json)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
        """
    static let seqOfEvent = "SELECT seq FROM events WHERE id = ?1"
    static let updateMeta = """
        UPDATE store_meta SET last_seq = ?1, event_count = event_count + ?2, event_bytes = event_bytes + ?3
        WHERE id = 1
        """
    static let putKV = """
        INSERT INTO kv(instance, key, value) VALUES (?1, ?2, ?3)
        ON CONFLICT(instance, key) DO UPDATE SET value = excluded.value
        """
    static let deleteKV = "DELETE FROM kv WHERE instance = ?1 AND key = ?2"
    static let upsertConversation = """
        INSERT INTO conversations(id, instance, channel_kind, chat_id, account_id, last_inbound_at, last_event_at)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
        ON CONFLICT(id) DO UPDATE SET
            instance = excluded.instance,
            channel_kind = excluded.channel_kind,
            chat_id = excluded.chat_id,
            account_id = COALESCE(excluded.account_id, account_id),
            last_inbound_at = COALESCE(MAX(last_inbound_at, excluded.last_inbound_at),
                                       last_inbound_at, excluded.last_inbound_at),
            last_event_at = MAX(last_event_at, excluded.last_event_at)
        """
    static let sendColumns = """
        id, idempotency_key, client, instance, conversation_id, state, attempts, channel_message_id,
        error_code, error_message, next_attempt_at, created_at, updated_at, json
        """
    static let insertSend = """
        INSERT INTO sends(\(sendColumns))
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) ON CONFLICT DO NOTHING
        """
    static let sendByIdempotencyKey = "SELECT \(sendColumns) FROM sends WHERE client = ?1 AND idempotency_key = ?2"
    static let sendById = "SELECT \(sendColumns) FROM sends WHERE id = ?1"
    static let sendByChannelMessageId = """
        SELECT \(sendColumns) FROM sends WHERE instance = ?1 AND channel_message_id = ?2
        ORDER BY created_at DESC LIMIT 1
        """
    static let unfinishedSends = """
        SELECT \(sendColumns) FROM sends WHERE state IN ('accepted', 'sending', 'retrying') ORDER BY created_at, id
        """
    static let updateSend = """
        UPDATE sends SET state = ?2, attempts = ?3, channel_message_id = ?4, error_code = ?5, error_message = ?6,
            next_attempt_at = ?7, updated_at = ?8
        WHERE id = ?1
        """
    static let saveSubscription = """
        INSERT INTO subscriptions(name, filter, cursor) VALUES (?1, ?2, ?3)
        ON CONFLICT(name) DO UPDATE SET filter = excluded.filter, cursor = excluded.cursor
        """
    static let ackSubscription = "UPDATE subscriptions SET cursor = ?2 WHERE name = ?1 AND cursor < ?2"
    static let deleteSubscription = "DELETE FROM subscriptions WHERE name = ?1"
    static let minSubscriptionCursor = "SELECT MIN(cursor) FROM subscriptions"
    static let pruneByAge = """
        DELETE FROM events WHERE seq IN
            (SELECT seq FROM events WHERE received_at < ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3)
        RETURNING length(json)
        """
    static let eventBytes = "SELECT event_bytes FROM store_meta WHERE id = 1"
    static let oldestEventSizes = "SELECT seq, length(json) FROM events WHERE seq <= ?1 ORDER BY seq LIMIT ?2"
    static let deleteEventsThrough = "DELETE FROM events WHERE seq <= ?1 RETURNING length(json)"
    static let pruneDedup = """
        DELETE FROM dedup WHERE (instance, dedup_key) IN
            (SELECT instance, dedup_key FROM dedup WHERE received_at < ?1 LIMIT ?2)
        """
    static let pruneSends = """
        DELETE FROM sends WHERE id IN
            (SELECT id FROM sends WHERE state IN ('sent', 'failed') AND updated_at < ?1 LIMIT ?2)
        """
    static let eventColumns = "seq, id, instance, channel_kind, type, direction, conversation_id, received_at, json"
    static let eventsAfter = "SELECT \(eventColumns) FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    static let eventById = "SELECT \(eventColumns) FROM events WHERE id = ?1"
    static let firstSeq = "SELECT MIN(seq) FROM events"
    static let lastSeq = "SELECT last_seq FROM store_meta WHERE id = 1"
    static let firstSeqAtOrAfterTime = """
        SELECT seq FROM events WHERE received_at >= ?1 ORDER BY received_at, seq LIMIT 1
        """
    static let getKV = "SELECT value FROM kv WHERE instance = ?1 AND key = ?2"
    static let conversationById = """
        SELECT id, instance, channel_kind, chat_id, account_id, last_inbound_at, last_event_at
        FROM conversations WHERE id = ?1
        """
    static let subscriptions = "SELECT name, filter, cursor FROM subscriptions ORDER BY name"
    static let meta = "SELECT event_count, event_bytes FROM store_meta WHERE id = 1"
}

extension SendRecord {
    /// Reads a row selected with ``SQL/sendColumns``.
    init(row s: SQLiteStatement) {
        self.init(id: s.string(0), idempotencyKey: s.optionalString(1), client: s.string(2),
                  instance: s.string(3), conversationId: s.string(4), state: s.string(5),
                  attempts: Int(s.int64(6)), channelMessageId: s.optionalString(7), errorCode: s.optionalString(8),
                  errorMessage: s.optionalString(9), nextAttemptAtMs: s.optionalInt64(10),
                  createdAtMs: s.int64(11), updatedAtMs: s.int64(12), json: s.blob(13))
    }
}

extension StoredEvent {
    /// Reads a row selected with ``SQL/eventColumns``.
    init(row s: SQLiteStatement) {
        self.init(seq: s.int64(0), id: s.string(1), instance: s.string(2), channelKind: s.string(3),
                  type: s.string(4), direction: s.string(5), conversationId: s.string(6),
                  receivedAtMs: s.int64(7), json: s.blob(8))
    }
}
