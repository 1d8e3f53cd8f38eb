import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// One SQLite connection with a cache of prepared statements.
///
/// Not thread-safe by itself: ``StoreWriter`` and ``StoreReader`` serialise access with a lock,
/// which is also why the connection is opened with `SQLITE_OPEN_NOMUTEX`.
final class SQLiteConnection {
    private(set) var handle: OpaquePointer?
    private var statements: [String: SQLiteStatement] = [:]
    let path: String

    /// Opens `path` with the given `SQLITE_OPEN_*` flags and enables extended result codes.
    init(path: String, flags: Int32, busyTimeoutMs: Int32) throws {
        self.path = path
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
        if rc != SQLITE_OK {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            let sysErrno = db.map { sqlite3_system_errno($0) } ?? 0
            sqlite3_close_v2(db)
            throw StoreError.classify(code: rc, message: message, systemErrno: sysErrno, context: "opening \(path)")
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, busyTimeoutMs)
    }

    deinit { close() }

    var isOpen: Bool { handle != nil }

    /// Finalises every cached statement and closes the connection. Idempotent.
    func close() {
        for statement in statements.values { statement.finalize() }
        statements.removeAll()
        if let db = handle {
            sqlite3_close_v2(db)
            handle = nil
        }
    }

    /// The open handle, or a misuse error once closed.
    func db() throws -> OpaquePointer {
        guard let db = handle else {
            throw StoreError.other(code: SQLITE_MISUSE, message: "store at \(path) is closed")
        }
        return db
    }

    /// Builds a ``StoreError`` from the connection's current error state.
    func error(_ code: Int32, _ context: String) -> StoreError {
        guard let db = handle else {
            return StoreError.classify(code: code, message: String(cString: sqlite3_errstr(code)),
                                       systemErrno: 0, context: context)
        }
        let extended = sqlite3_extended_errcode(db)
        let effective = (extended & 0xff) == (code & 0xff) ? extended : code
        return StoreError.classify(code: effective, message: String(cString: sqlite3_errmsg(db)),
                                   systemErrno: sqlite3_system_errno(db), context: context)
    }

    /// Runs one or more SQL statements that return no rows of interest.
    func exec(_ sql: String) throws {
        let db = try db()
        let rc = sqlite3_exec(db, sql, nil, nil, nil)
        if rc != SQLITE_OK { throw error(rc, "") }
    }

    /// Returns the cached prepared statement for `sql`, preparing it on first use.
    func statement(_ sql: String) throws -> SQLiteStatement {
        if let cached = statements[sql] { return cached }
        let db = try db()
        var raw: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &raw, nil)
        guard rc == SQLITE_OK, let raw else {
            throw error(rc, "preparing statement")
        }
        let statement = SQLiteStatement(raw, connection: self)
        statements[sql] = statement
        return statement
    }

    /// Runs a single-value query (e.g. a PRAGMA) and returns the first column of the first row as text.
    func queryText(_ sql: String) throws -> String? {
        let s = try statement(sql)
        defer { s.reset() }
        guard try s.step() else { return nil }
        return s.optionalString(0)
    }

    /// Runs a single-value query and returns the first column of the first row as an integer
    /// (`nil` when there is no row or the value is NULL).
    func queryInt(_ sql: String, _ binds: [Int64] = []) throws -> Int64? {
        let s = try statement(sql)
        defer { s.reset() }
        for (i, v) in binds.enumerated() { s.bind(Int32(i + 1), v) }
        guard try s.step() else { return nil }
        return s.optionalInt64(0)
    }

    /// Rows changed by the last INSERT/UPDATE/DELETE on this connection (not counting triggers).
    var changes: Int {
        guard let db = handle else { return 0 }
        return Int(sqlite3_changes(db))
    }

    /// `true` when no transaction is open.
    var isAutocommit: Bool {
        guard let db = handle else { return true }
        return sqlite3_get_autocommit(db) != 0
    }
}

/// A prepared statement owned by a ``SQLiteConnection``'s cache.
///
/// Usage pattern: bind, `step()` until it returns `false`, then `reset()` (callers use `defer`),
/// which also clears the bindings so no pointer outlives the call that bound it.
final class SQLiteStatement {
    private var raw: OpaquePointer?
    private unowned let connection: SQLiteConnection
    /// The first failed bind since the last reset; reported by the next `step()`.
    private var bindFailure: Int32 = SQLITE_OK

    init(_ raw: OpaquePointer, connection: SQLiteConnection) {
        self.raw = raw
        self.connection = connection
    }

    func finalize() {
        if let raw { sqlite3_finalize(raw) }
        raw = nil
    }

    /// Advances the statement: `true` when a row is available, `false` when done.
    func step() throws -> Bool {
        if bindFailure != SQLITE_OK {
            let rc = bindFailure
            bindFailure = SQLITE_OK
            throw StoreError.classify(code: rc, message: String(cString: sqlite3_errstr(rc)), systemErrno: 0,
                                      context: "binding a parameter")
        }
        let rc = sqlite3_step(raw)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw connection.error(rc, "")
        }
    }

    /// Runs the statement to completion, ignoring any rows.
    func run() throws {
        while try step() {}
    }

    /// Resets the statement and clears its bindings.
    func reset() {
        bindFailure = SQLITE_OK
        sqlite3_reset(raw)
        sqlite3_clear_bindings(raw)
    }

    // MARK: Binding (1-based indices)

    private func check(_ rc: Int32) {
        if rc != SQLITE_OK && bindFailure == SQLITE_OK { bindFailure = rc }
    }

    func bind(_ index: Int32, _ value: Int64) {
        check(sqlite3_bind_int64(raw, index, value))
    }

    func bind(_ index: Int32, _ value: Int64?) {
        if let value { bind(index, value) } else { check(sqlite3_bind_null(raw, index)) }
    }

    /// Binds text with `SQLITE_TRANSIENT` (SQLite copies it; identifiers are short).
    func bind(_ index: Int32, _ value: String) {
        let count = Int32(value.utf8.count)
        check(value.withCString { csqlite_bind_text_transient(raw, index, $0, count) })
    }

    func bind(_ index: Int32, _ value: String?) {
        if let value { bind(index, value) } else { check(sqlite3_bind_null(raw, index)) }
    }

    /// Binds a blob with `SQLITE_TRANSIENT` (SQLite copies it).
    func bindBlobCopy(_ index: Int32, _ value: [UInt8]) {
        guard value.count <= Int(Int32.max) else { return check(SQLITE_TOOBIG) }
        if value.isEmpty {
            check(sqlite3_bind_zeroblob(raw, index, 0))
            return
        }
        value.withUnsafeBytes { buf in
            check(csqlite_bind_blob_transient(raw, index, buf.baseAddress, Int32(buf.count)))
        }
    }

    /// Binds `value` without copying (`SQLITE_STATIC`) and runs `body` while the buffer is pinned.
    /// The statement must be stepped to completion and reset inside `body` (or by its caller before
    /// the buffer is released), which the store guarantees by resetting in a `defer` inside `body`.
    func withStaticBlob<R>(_ index: Int32, _ value: [UInt8], _ body: () throws -> R) rethrows -> R {
        if value.count > Int(Int32.max) {
            check(SQLITE_TOOBIG)
            return try body()
        }
        if value.isEmpty {
            check(sqlite3_bind_zeroblob(raw, index, 0))
            return try body()
        }
        return try value.withUnsafeBytes { buf in
            check(csqlite_bind_blob_static(raw, index, buf.baseAddress, Int32(buf.count)))
            defer { sqlite3_bind_null(raw, index) }
            return try body()
        }
    }

    // MARK: Columns (0-based indices)

    func isNull(_ column: Int32) -> Bool {
        sqlite3_column_type(raw, column) == SQLITE_NULL
    }

    func int64(_ column: Int32) -> Int64 {
        sqlite3_column_int64(raw, column)
    }

    func optionalInt64(_ column: Int32) -> Int64? {
        isNull(column) ? nil : sqlite3_column_int64(raw, column)
    }

    func string(_ column: Int32) -> String {
        guard let text = sqlite3_column_text(raw, column) else { return "" }
        let count = Int(sqlite3_column_bytes(raw, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    func optionalString(_ column: Int32) -> String? {
        isNull(column) ? nil : string(column)
    }

    func blob(_ column: Int32) -> [UInt8] {
        guard let bytes = sqlite3_column_blob(raw, column) else { return [] }
        let count = Int(sqlite3_column_bytes(raw, column))
        return [UInt8](UnsafeRawBufferPointer(start: bytes, count: count))
    }
}
