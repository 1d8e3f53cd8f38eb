import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// Errors thrown by ``StoreWriter`` and ``StoreReader``.
///
/// Every failed ``StoreWriter/commit(_:)`` has been rolled back completely when one of these is
/// thrown, and the connection stays usable.
public enum StoreError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The disk (or the configured `max_page_count`) is full: `SQLITE_FULL`, or an I/O error caused by
    /// `ENOSPC`/`EDQUOT`. The daemon answers 503 and refuses sends; commits work again once space returns.
    case diskFull(String)
    /// Any other I/O failure (`SQLITE_IOERR`, `SQLITE_CANTOPEN`, …).
    case io(String)
    /// The database file is damaged or is not a database (`SQLITE_CORRUPT`, `SQLITE_NOTADB`).
    case corrupt(String)
    /// A uniqueness or integrity rule was violated, or an update targeted a row that does not exist.
    case constraint(String)
    /// Anything else, with SQLite's (extended) result code. Code `SQLITE_MISUSE` is used for calls on a
    /// closed store, `SQLITE_ERROR` for an unsupported schema version.
    case other(code: Int32, message: String)

    public var description: String {
        switch self {
        case .diskFull(let m): return "store: disk full: \(m)"
        case .io(let m): return "store: I/O error: \(m)"
        case .corrupt(let m): return "store: database corrupt: \(m)"
        case .constraint(let m): return "store: constraint violated: \(m)"
        case .other(let code, let m): return "store: SQLite error \(code): \(m)"
        }
    }

    /// `true` for ``diskFull(_:)``.
    public var isDiskFull: Bool {
        if case .diskFull = self { return true }
        return false
    }

    /// Classifies a SQLite result code.
    ///
    /// - Parameters:
    ///   - code: the (extended) result code returned by SQLite.
    ///   - message: SQLite's error message.
    ///   - systemErrno: `sqlite3_system_errno()` at the time of the error, 0 when unknown.
    ///   - context: what the store was doing, prefixed to the message.
    static func classify(code: Int32, message: String, systemErrno: Int32, context: String) -> StoreError {
        let text = context.isEmpty ? message : "\(context): \(message)"
        switch code & 0xff {
        case SQLITE_FULL:
            return .diskFull(text)
        case SQLITE_IOERR:
            if systemErrno == ENOSPC || systemErrno == EDQUOT {
                return .diskFull("\(text) (\(String(cString: strerror(systemErrno))))")
            }
            if systemErrno != 0 {
                return .io("\(text) (\(String(cString: strerror(systemErrno))))")
            }
            return .io(text)
        case SQLITE_CANTOPEN:
            return .io(text)
        case SQLITE_CORRUPT, SQLITE_NOTADB:
            return .corrupt(text)
        case SQLITE_CONSTRAINT:
            return .constraint(text)
        default:
            return .other(code: code, message: text)
        }
    }
}
