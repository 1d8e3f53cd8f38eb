#if canImport(Glibc)
import Glibc
#endif

/// Milliseconds on the monotonic clock (for pacing; not wall time).
public func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Milliseconds since the Unix epoch (wall clock).
public func wallClockMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// A token bucket in its "virtual scheduling" form (GCRA): `rate` tokens per
/// second, bursts of up to `burst`. `reserve` books the next slot and says how
/// long to wait for it, so callers pace with one timer and no queue.
public struct TokenBucket: Sendable {
    /// Milliseconds between tokens (fractional).
    public let intervalMs: Double
    /// How far ahead of the steady rate a burst may run, in milliseconds.
    public let toleranceMs: Double
    /// The theoretical arrival time of the next token.
    private var tat: Double = 0

    /// `rate` tokens per second (> 0), bursts of `burst` (≥ 1).
    public init(ratePerSecond rate: Double, burst: Int) {
        intervalMs = 1000 / max(rate, 0.000_001)
        toleranceMs = intervalMs * Double(max(burst, 1) - 1)
    }

    /// The delay before a token is available at `nowMs`, without taking it.
    public func delay(nowMs: Int64) -> Int64 {
        let now = Double(nowMs)
        let allowedAt = max(now, tat - toleranceMs)
        return Int64((allowedAt - now).rounded(.up))
    }

    /// Takes the token for a send happening at `atMs` (now + the delay the caller waits).
    public mutating func take(atMs: Int64) {
        tat = max(Double(atMs), tat) + intervalMs
    }

    /// Blocks the bucket until `untilMs` (the API said to slow down).
    public mutating func pause(untilMs: Int64) {
        tat = max(tat, Double(untilMs) + toleranceMs)
    }

    /// True when the bucket is back to full (safe to forget).
    public func isIdle(nowMs: Int64) -> Bool { tat <= Double(nowMs) }
}

/// Pacing for a Meta sender: one bucket for the whole number or page (WhatsApp:
/// 80 messages/s by default) and one per recipient (WhatsApp's pair rate: a
/// burst of 45, then one message every 6 seconds to the same user).
///
/// Pacing is two steps, so that a message held back for its recipient does not
/// hold up messages to everyone else:
///
/// 1. `reserveRecipient(_:)` books the recipient's next slot (keeping the order
///    of messages to one recipient) and returns how long to wait for it;
/// 2. after that wait, `reserveSender()` books the number's next slot and
///    returns how long to wait before the API call.
///
/// Wait with `ConnectorHost.timer`. When the API throttles anyway, call
/// `pauseSender` or `pauseRecipient` with the delay it asked for.
public struct SendPacer: Sendable {
    /// Messages per second for the sender.
    public let ratePerSecond: Double
    /// Per-recipient rate (messages per second) and burst.
    public let recipientRatePerSecond: Double
    public let recipientBurst: Int
    private var sender: TokenBucket
    private var recipients: [String: TokenBucket] = [:]
    private var reservations = 0

    public init(ratePerSecond: Double = 80, burst: Int? = nil, recipientRatePerSecond: Double = 1.0 / 6.0, recipientBurst: Int = 45) {
        self.ratePerSecond = ratePerSecond
        self.recipientRatePerSecond = recipientRatePerSecond
        self.recipientBurst = recipientBurst
        sender = TokenBucket(ratePerSecond: ratePerSecond, burst: burst ?? max(1, Int(ratePerSecond)))
    }

    /// Step 1: books the next slot for a message to `recipient`; returns the milliseconds to wait for it.
    public mutating func reserveRecipient(_ recipient: String, nowMs: Int64 = monotonicMilliseconds()) -> Int64 {
        var r = recipients[recipient] ?? TokenBucket(ratePerSecond: recipientRatePerSecond, burst: recipientBurst)
        let wait = r.delay(nowMs: nowMs)
        r.take(atMs: nowMs + wait)
        recipients[recipient] = r
        reservations += 1
        if reservations % 4096 == 0 { recipients = recipients.filter { !$0.value.isIdle(nowMs: nowMs) } }
        return wait
    }

    /// Step 2: books the sender's next slot; returns the milliseconds to wait before calling the API.
    public mutating func reserveSender(nowMs: Int64 = monotonicMilliseconds()) -> Int64 {
        let wait = sender.delay(nowMs: nowMs)
        sender.take(atMs: nowMs + wait)
        return wait
    }

    /// The API throttled the sender: hold every send until `nowMs + delayMs`.
    public mutating func pauseSender(forMs delayMs: Int64, nowMs: Int64 = monotonicMilliseconds()) {
        sender.pause(untilMs: nowMs + delayMs)
    }

    /// The API throttled one recipient (pair rate): hold sends to it.
    public mutating func pauseRecipient(_ recipient: String, forMs delayMs: Int64, nowMs: Int64 = monotonicMilliseconds()) {
        var r = recipients[recipient] ?? TokenBucket(ratePerSecond: recipientRatePerSecond, burst: recipientBurst)
        r.pause(untilMs: nowMs + delayMs)
        recipients[recipient] = r
    }

    /// Recipients with pacing state (for tests and status).
    public var trackedRecipients: Int { recipients.count }
}
