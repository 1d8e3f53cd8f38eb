import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler that writes one line per record to stderr, prefixed with
/// the syslog priority (`<6>` for info…) so journald files each line at the
/// right level, then `key=value` metadata.
public struct SyslogLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let label: String

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?,
                    source: String, file: String, function: String, line lineNumber: UInt)
    {
        var all = metadata
        if let extra { all.merge(extra) { $1 } }
        SyslogLogHandler.writeToStderr(SyslogLogHandler.line(level: level, message: "\(message)", metadata: all))
    }

    /// The stderr line of one record: `<priority>message key=value…` and a newline.
    static func line(level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        var line = "<\(SyslogLogHandler.priority(level))>\(message)"
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) {
            let s = "\(v)"
            line += s.contains(" ") || s.isEmpty ? " \(k)=\"\(s)\"" : " \(k)=\(s)"
        }
        return line + "\n"
    }

    /// Writes `line` to stderr completely (retrying short writes and EINTR).
    static func writeToStderr(_ line: String) {
        var bytes = Array(line.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + off, $0.count - off) }
            if n < 0 { if errno == EINTR { continue }; return }
            off += n
        }
    }
}
