import CSQLite

/// The database schema and its migrations, keyed by `PRAGMA user_version`.
///
/// Each entry of ``migrations`` upgrades the schema from version `index` to `index + 1`; they run
/// inside one `BEGIN IMMEDIATE` transaction when the writer opens the store. See `docs/storage.md`.
enum Schema {
    /// The version this build writes and reads.
    static var currentVersion: Int64 { Int64(migrations.count) }

    static let migrations: [String] = [
        // Version 1.
        """
        CREATE TABLE events(
            seq             INTEGER PRIMARY KEY,
            id              TEXT    NOT NULL UNIQUE,
            instance        TEXT    NOT NULL,
            channel_kind    TEXT    NOT NULL,
            type            TEXT    NOT NULL,
            direction       TEXT    NOT NULL,
            conversation_id TEXT    NOT NULL,
            received_at     INTEGER NOT NULL,
            json            BLOB    NOT NULL
        );
        CREATE INDEX events_received_at ON events(received_at);

        CREATE TABLE dedup(
            instance    TEXT    NOT NULL,
            dedup_key   TEXT    NOT NULL,
            event_id    TEXT    NOT NULL,
            seq         INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            PRIMARY KEY (instance, dedup_key)
        ) WITHOUT ROWID;
        CREATE INDEX dedup_received_at ON dedup(received_at);

        CREATE TABLE kv(
            instance TEXT NOT NULL,
            key      TEXT NOT NULL,
            value    BLOB NOT NULL,
            PRIMARY KEY (instance, key)
        ) WITHOUT ROWID;

        CREATE TABLE conversations(
            id                TEXT    PRIMARY KEY NOT NULL,
            instance          TEXT    NOT NULL,
            channel_kind      TEXT    NOT NULL,
            chat_id           TEXT    NOT NULL,
            account_id        TEXT,
            last_inbound_at   INTEGER,
            last_event_at     INTEGER NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE sends(
            id                 TEXT    PRIMARY KEY NOT NULL,
            idempotency_key    TEXT,
            client             TEXT    NOT NULL,
            instance           TEXT    NOT NULL,
            conversation_id    TEXT    NOT NULL,
            state              TEXT    NOT NULL,
            attempts           INTEGER NOT NULL,
            channel_message_id TEXT,
            error_code         TEXT,
            error_message      TEXT,
            next_attempt_at    INTEGER,
            created_at         INTEGER NOT NULL,
            updated_at         INTEGER NOT NULL,
            json               BLOB    NOT NULL,
            UNIQUE (client, idempotency_key)
        );
        CREATE INDEX sends_channel_message ON sends(instance, channel_message_id)
            WHERE channel_message_id IS NOT NULL;
        CREATE INDEX sends_unfinished ON sends(created_at)
            WHERE state IN ('accepted', 'sending', 'retrying');
        CREATE INDEX sends_updated_at ON sends(updated_at);

        CREATE TABLE subscriptions(
            name   TEXT    PRIMARY KEY NOT NULL,
            filter BLOB    NOT NULL,
            cursor INTEGER NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE store_meta(
            id          INTEGER PRIMARY KEY CHECK (id = 1),
            last_seq    INTEGER NOT NULL,
            event_count INTEGER NOT NULL,
            event_bytes INTEGER NOT NULL
        );
        INSERT INTO store_meta(id, last_seq, event_count, event_bytes) VALUES (1, 0, 0, 0);
        """,
    ]

    /// Brings the database on `connection` to ``currentVersion``. Must run on a read-write connection.
    static func migrate(_ connection: SQLiteConnection) throws {
        try connection.exec("BEGIN IMMEDIATE")
        do {
            let version = try connection.queryInt("PRAGMA user_version") ?? 0
            if version > currentVersion {
                throw StoreError.other(code: SQLITE_ERROR, message:
                    "\(connection.path) has schema version \(version); this build supports up to \(currentVersion)")
            }
            var v = Int(version)
            while v < migrations.count {
                try connection.exec(migrations[v])
                v += 1
                try connection.exec("PRAGMA user_version = \(v)")
            }
            try connection.exec("COMMIT")
        } catch {
            if !connection.isAutocommit { try? connection.exec("ROLLBACK") }
            throw error
        }
    }

    /// Throws unless the database on `connection` has a schema this build can read.
    static func check(_ connection: SQLiteConnection) throws {
        let version = try connection.queryInt("PRAGMA user_version") ?? 0
        if version == 0 {
            throw StoreError.other(code: SQLITE_ERROR, message:
                "\(connection.path) is not an initialised Chorus store (open a StoreWriter on it first)")
        }
        if version > currentVersion {
            throw StoreError.other(code: SQLITE_ERROR, message:
                "\(connection.path) has schema version \(version); this build supports up to \(currentVersion)")
        }
    }
}
