import CSystemd
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// chorusd's side of systemd's notification protocol (`sd_notify(3)`, `Type=notify` and
/// `Type=notify-reload`): `READY=1`, `RELOADING=1` with `MONOTONIC_USEC=`, `STOPPING=1`, `STATUS=`
/// and `WATCHDOG=1`, each message one datagram to `$NOTIFY_SOCKET`.
///
/// Without `$NOTIFY_SOCKET` (not started by systemd, or not as a notify service) every call is a no-op.
/// Loop thread only.
final class ServiceNotifier {
    /// True when `$NOTIFY_SOCKET` is set: the service manager listens.
    let isActive: Bool
    private let logger: Logger
    private var failureLogged = false
    /// The last `STATUS=` text sent.
    private(set) var lastStatus: String?

    init(logger: Logger) {
        self.logger = logger
        isActive = getenv("NOTIFY_SOCKET") != nil
    }

    /// Sends one message of `KEY=value` assignments (one datagram). Values must not contain newlines;
    /// any are replaced by spaces.
    func send(_ assignments: [(String, String)]) {
        guard isActive, !assignments.isEmpty else { return }
        let text = ServiceNotifier.message(assignments)
        for (key, value) in assignments where key == "STATUS" { lastStatus = value }
        let rc = csd_notify(text)
        if rc < 0 && !failureLogged {
            failureLogged = true
            logger.warning("cannot notify the service manager through $NOTIFY_SOCKET: \(String(cString: strerror(-rc)))")
        }
    }

    /// The datagram for `assignments`: `KEY=value` lines joined by newlines.
    static func message(_ assignments: [(String, String)]) -> String {
        assignments.map { key, value in
            key + "=" + String(value.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
        }.joined(separator: "\n")
    }

    /// `READY=1` with the status line.
    func ready(status: String) { send([("READY", "1"), ("STATUS", status)]) }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (required by systemd ≥ 253's `Type=notify-reload`, ignored by older
    /// versions) and the status line, in one datagram.
    func reloading(status: String) {
        send([("RELOADING", "1"), ("MONOTONIC_USEC", String(ServiceNotifier.monotonicMicroseconds())), ("STATUS", status)])
    }

    /// `STOPPING=1` with the status line.
    func stopping(status: String) { send([("STOPPING", "1"), ("STATUS", status)]) }

    /// `STATUS=` alone, unless it equals the last one sent.
    func status(_ status: String) {
        guard status != lastStatus else { return }
        send([("STATUS", status)])
    }

    /// `WATCHDOG=1`.
    func watchdog() { send([("WATCHDOG", "1")]) }

    /// `CLOCK_MONOTONIC` in microseconds, as systemd's `MONOTONIC_USEC=` wants it.
    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1_000
    }
}

/// What `systemctl status chorus` shows on its `Status:` line, for example
/// `3/3 instances up, 2 subscribers, backlog 0 events, 0 sends`.
struct ServiceStatus: Equatable {
    /// Running instances.
    var instancesUp = 0
    /// Enabled instances in the configuration.
    var instancesConfigured = 0
    /// Names of the configured instances that are not running (failed to load, create or start), sorted.
    var failed: [String] = []
    /// Live subscriptions on the consumer socket.
    var subscribers = 0
    /// Committed events not yet written to a subscriber, summed over the subscriptions.
    var backlogEvents: Int64 = 0
    /// Accepted sends not yet reported by their channel (queued, in flight, or waiting for a retry).
    var pendingSends = 0
    /// Why the store cannot commit, if it cannot.
    var storeError: String?
    /// A note that stays until the next successful reload (a reload that failed).
    var note: String?
    /// Shutting down: the line reports what is still draining instead.
    var stopping = false
    /// During shutdown: writes not durable yet (running and waiting group commits).
    var uncommittedWrites = 0

    /// The one-line text.
    var line: String {
        if stopping {
            var s = "stopping: draining \(pendingSends) send\(pendingSends == 1 ? "" : "s")"
            if uncommittedWrites > 0 { s += ", \(uncommittedWrites) write\(uncommittedWrites == 1 ? "" : "s") to commit" }
            return s
        }
        var s = "\(instancesUp)/\(instancesConfigured) instances up"
        if !failed.isEmpty { s += " (failed: \(failed.joined(separator: ", ")))" }
        s += ", \(subscribers) subscriber\(subscribers == 1 ? "" : "s")"
        s += ", backlog \(backlogEvents) event\(backlogEvents == 1 ? "" : "s"), \(pendingSends) send\(pendingSends == 1 ? "" : "s")"
        if let storeError { s += "; store cannot commit: \(ServiceStatus.clip(storeError))" }
        if let note { s += "; \(ServiceStatus.clip(note))" }
        return s
    }

    /// The first line of `text`, at most 160 characters.
    static func clip(_ text: String) -> String {
        let first = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        return first.count > 160 ? String(first.prefix(159)) + "…" : first
    }
}
