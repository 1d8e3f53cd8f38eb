import CSystemd
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler that writes each record to the systemd journal as a structured entry
/// (`sd_journal_sendv`, journald's native protocol) instead of a line on stderr.
///
/// Fields: `MESSAGE`, `PRIORITY` (syslog level, as `SyslogLogHandler`'s prefixes), `SYSLOG_IDENTIFIER=chorusd`,
/// `CODE_FILE`, `CODE_LINE`, `CODE_FUNC` (the Swift call site), and every metadata key as `CHORUS_<KEY>`
/// upper-cased with other characters than letters, digits and `_` turned into `_` (`instance` →
/// `CHORUS_INSTANCE`, `plugin` → `CHORUS_PLUGIN`). So `journalctl -u chorus CHORUS_INSTANCE=wa-sales` shows one
/// instance's lines.
///
/// chorusd uses it when `$JOURNAL_STREAM` names its stderr (systemd connected stderr to the journal);
/// see `stderrIsJournal`. A record the journal does not take (its socket is gone) goes to stderr as a
/// prefixed line instead, so nothing is lost.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let label: String

    /// `label` is the logger's label; `level` the lowest level written.
    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?,
                    source: String, file: String, function: String, line: UInt)
    {
        var all = metadata
        if let extra { all.merge(extra) { $1 } }
        let fields = JournalLogHandler.fields(level: level, message: "\(message)", metadata: all,
                                              file: file, function: function, line: line)
        if JournalLogHandler.send(fields) != 0 {
            SyslogLogHandler.writeToStderr(SyslogLogHandler.line(level: level, message: "\(message)", metadata: all))
        }
    }

    /// The journal fields of one record, in order: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, CODE_FILE, CODE_LINE,
    /// CODE_FUNC, then the metadata as `CHORUS_<KEY>` sorted by name.
    public static func fields(level: Logger.Level, message: String, metadata: Logger.Metadata,
                              file: String, function: String, line: UInt) -> [(name: String, value: String)] {
        var out: [(String, String)] = [
            ("MESSAGE", message),
            ("PRIORITY", String(SyslogLogHandler.priority(level))),
            ("SYSLOG_IDENTIFIER", "chorusd"),
            ("CODE_FILE", file),
            ("CODE_LINE", String(line)),
            ("CODE_FUNC", function),
        ]
        var seen = Set(out.map { $0.0 })
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            let name = fieldName(forMetadataKey: key)
            guard seen.insert(name).inserted else { continue }
            out.append((name, "\(value)"))
        }
        return out
    }

    /// `CHORUS_` + the key upper-cased, other characters than `A-Z`, `0-9` and `_` replaced by `_`, at most
    /// 64 characters (journald's limit for field names).
    public static func fieldName(forMetadataKey key: String) -> String {
        var name = "CHORUS_"
        for scalar in key.unicodeScalars {
            switch scalar {
            case "a"..."z": name.unicodeScalars.append(Unicode.Scalar(scalar.value - 32)!)
            case "A"..."Z", "0"..."9", "_": name.unicodeScalars.append(scalar)
            default: name.append("_")
            }
        }
        return String(name.prefix(64))
    }

    /// Sends one entry; 0 or a negative errno.
    static func send(_ fields: [(name: String, value: String)]) -> Int32 {
        var buffer: [UInt8] = []
        var ranges: [Range<Int>] = []
        for (name, value) in fields {
            let start = buffer.count
            buffer.append(contentsOf: name.utf8)
            buffer.append(UInt8(ascii: "="))
            buffer.append(contentsOf: value.utf8)
            ranges.append(start..<buffer.count)
        }
        return buffer.withUnsafeMutableBytes { raw -> Int32 in
            let vectors = ranges.map { r in iovec(iov_base: raw.baseAddress! + r.lowerBound, iov_len: r.count) }
            return vectors.withUnsafeBufferPointer { csd_journal_send_fields($0.baseAddress, Int32($0.count)) }
        }
    }

    /// True when `journalStream` (the value of `$JOURNAL_STREAM`, `"<device>:<inode>"`) names the file
    /// descriptor 2 of this process: systemd connected stderr to the journal, so structured entries
    /// replace lines. False when the variable is unset or malformed, or stderr is something else
    /// (redirected by the operator or a wrapper script).
    public static func stderrIsJournal(journalStream: String?) -> Bool {
        guard let journalStream, let (device, inode) = parseJournalStream(journalStream) else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }

    /// `"<device>:<inode>"` as two decimal numbers, or nil.
    public static func parseJournalStream(_ text: String) -> (device: UInt64, inode: UInt64)? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return nil }
        return (device, inode)
    }
}
