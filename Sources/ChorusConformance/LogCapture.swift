// LogCapture.swift — collects what the plugin host logs during a conformance run.
//
// `PluginInstance` logs through swift-log; the conformance kit gives it a logger whose handler records
// every entry here (so checks can see, for example, a refused second send_result) and optionally
// forwards a formatted line to a sink (chorus-conformance --verbose).

import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One log entry written during a conformance run.
public struct ConformanceLogEntry: Sendable, Equatable, CustomStringConvertible {
    /// The swift-log level name ("info", "error", ...).
    public let level: String
    /// The message.
    public let message: String
    /// Metadata as `key=value` pairs, sorted by key.
    public let metadata: [String]

    /// `"<level>: <message> [key=value ...]"`.
    public var description: String {
        metadata.isEmpty ? "\(level): \(message)" : "\(level): \(message) [\(metadata.joined(separator: " "))]"
    }
}

/// Thread-safe store of log entries (swift-log handlers must be Sendable).
final class LogCapture: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var stored: [ConformanceLogEntry] = []
    private let sink: (@Sendable (ConformanceLogEntry) -> Void)?

    init(sink: (@Sendable (ConformanceLogEntry) -> Void)?) {
        self.sink = sink
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func append(_ entry: ConformanceLogEntry) {
        pthread_mutex_lock(mutex)
        stored.append(entry)
        pthread_mutex_unlock(mutex)
        sink?(entry)
    }

    var entries: [ConformanceLogEntry] {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return stored
    }

    /// A logger (at trace level) whose entries land here.
    func logger(label: String) -> Logger {
        var logger = Logger(label: label) { _ in CapturingLogHandler(capture: self) }
        logger.logLevel = .trace
        return logger
    }
}

/// A swift-log handler that records into a `LogCapture`.
struct CapturingLogHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = self.metadata
        if let explicit = event.metadata { all.merge(explicit) { _, new in new } }
        let pairs = all.map { "\($0.key)=\($0.value)" }.sorted()
        capture.append(ConformanceLogEntry(level: event.level.rawValue, message: event.message.description, metadata: pairs))
    }
}
