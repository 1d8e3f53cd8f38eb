#if canImport(Glibc)
import Glibc
#endif

/// Milliseconds on the monotonic clock.
func monotonicMs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
}

/// Paces Bot API calls the way Telegram asks bots to
/// (<https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this>):
/// about 30 messages per second for the whole bot, at most one per second in a chat, and at
/// most 20 per minute in a group. Calls are queued per chat and run in order, one at a time
/// per chat; a 429's `retry_after` holds back that chat (and, for the global bucket, the bot).
///
/// Loop thread only. Time comes from `now` (monotonic ms) and wake-ups from `schedule`, so the
/// connector drives it with host timers.
final class Pacer {
    struct Limits: Equatable {
        /// Calls per second for the whole bot (token bucket, burst of the same size).
        var globalPerSecond: Int
        /// Minimum spacing between two calls in one chat.
        var chatIntervalMs: UInt64
        /// Calls per rolling minute in a group or channel (negative chat id).
        var groupPerMinute: Int
    }

    /// One queued call: `run` starts it and must call `done` exactly once when it finished;
    /// `cancel` reports it failed without running (on stop).
    struct Job {
        let run: (_ done: @escaping () -> Void) -> Void
        let cancel: () -> Void
    }

    private final class ChatQueue {
        var jobs: [Job] = []
        var busy = false
        var nextAllowedMs: UInt64 = 0
        /// Start times of the calls of the rolling minute (groups only).
        var recent: [UInt64] = []
    }

    var limits: Limits
    private var chats: [String: ChatQueue] = [:]
    private var tokens: Double
    private var lastRefillMs: UInt64
    private var globalHoldUntilMs: UInt64 = 0
    private let now: () -> UInt64
    private let schedule: (_ afterMs: UInt64, _ fire: @escaping () -> Void) -> UInt64
    private let cancelTimer: (UInt64) -> Void
    private var timer: UInt64 = 0
    private var timerDueMs: UInt64 = 0

    init(limits: Limits, now: @escaping () -> UInt64 = monotonicMs,
         schedule: @escaping (UInt64, @escaping () -> Void) -> UInt64, cancelTimer: @escaping (UInt64) -> Void)
    {
        self.limits = limits
        self.now = now
        self.schedule = schedule
        self.cancelTimer = cancelTimer
        self.tokens = Double(max(1, limits.globalPerSecond))
        self.lastRefillMs = now()
    }

    /// Whether a chat id names a group, supergroup or channel (Telegram gives those negative ids).
    static func isGroup(_ chat: String) -> Bool { chat.hasPrefix("-") }

    /// Number of calls queued or running.
    var pendingCount: Int { chats.values.reduce(0) { $0 + $1.jobs.count + ($1.busy ? 1 : 0) } }

    /// Queues a call for `chat`; `front` puts it before the chat's other queued calls (the next
    /// step of a send already started, so one send's calls stay together).
    func enqueue(chat: String, front: Bool = false, _ job: Job) {
        let q = chats[chat] ?? { let q = ChatQueue(); chats[chat] = q; return q }()
        if front { q.jobs.insert(job, at: 0) } else { q.jobs.append(job) }
        pump()
    }

    /// Holds back a chat (and with `global`, every chat) for `ms` after a 429.
    func hold(chat: String, ms: UInt64, global: Bool) {
        let until = now() + ms
        if let q = chats[chat] { q.nextAllowedMs = max(q.nextAllowedMs, until) }
        if global { globalHoldUntilMs = max(globalHoldUntilMs, until) }
        pump()
    }

    /// Cancels every queued (not running) call.
    func cancelAll() {
        let all = chats.values.flatMap { $0.jobs }
        for q in chats.values { q.jobs.removeAll() }
        if timer != 0 { cancelTimer(timer); timer = 0 }
        for j in all { j.cancel() }
    }

    private func refill(_ t: UInt64) {
        let rate = Double(max(1, limits.globalPerSecond))
        tokens = min(rate, tokens + Double(t - lastRefillMs) * rate / 1000)
        lastRefillMs = t
    }

    /// Starts every call that may run now and arms a timer for the earliest one that may not.
    func pump() {
        var t = now()
        refill(t)
        var earliest: UInt64 = .max
        for (chat, q) in chats where !q.busy && !q.jobs.isEmpty {
            var ready = max(q.nextAllowedMs, globalHoldUntilMs)
            if Pacer.isGroup(chat) {
                let window: UInt64 = 60_000
                q.recent.removeAll { $0 + window <= t }
                if q.recent.count >= limits.groupPerMinute, let first = q.recent.first { ready = max(ready, first + window) }
            }
            if ready > t { earliest = min(earliest, ready); continue }
            if tokens < 1 {
                let rate = Double(max(1, limits.globalPerSecond))
                earliest = min(earliest, t + UInt64(((1 - tokens) * 1000 / rate).rounded(.up)))
                continue
            }
            tokens -= 1
            q.busy = true
            q.nextAllowedMs = t + limits.chatIntervalMs
            if Pacer.isGroup(chat) { q.recent.append(t) }
            let job = q.jobs.removeFirst()
            var finished = false
            job.run { [weak self, weak q] in
                guard !finished else { return }
                finished = true
                guard let self, let q else { return }
                q.busy = false
                self.pump()
            }
            t = now()
        }
        // Forget idle chats whose limits no longer matter.
        for (chat, q) in chats where q.jobs.isEmpty && !q.busy && q.nextAllowedMs <= t && (q.recent.last.map { $0 + 60_000 <= t } ?? true) {
            chats[chat] = nil
        }
        if earliest != .max {
            if timer != 0 && timerDueMs <= earliest { return }
            if timer != 0 { cancelTimer(timer) }
            timerDueMs = earliest
            timer = schedule(earliest > t ? earliest - t : 1) { [weak self] in
                guard let self else { return }
                self.timer = 0
                self.pump()
            }
        }
    }
}
