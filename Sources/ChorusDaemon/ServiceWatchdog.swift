import CSystemd
import ChorusLoop
import Logging

/// systemd's watchdog (`WatchdogSec=`): `WATCHDOG=1` every half `$WATCHDOG_USEC`, sent only while chorusd is
/// healthy, so that systemd restarts a daemon that hangs.
///
/// Healthy means:
/// * **the event loop turns** — the ping is a timer on the loop itself, so anything that holds the loop
///   thread (a plugin callback that blocks: a route handler, timer, fd or HTTP callback, `start`, `send`…,
///   or a synchronous commit that does not return) stops the pings by itself;
/// * **the store's writer thread completes commits** — a group commit handed to it and not finished for
///   more than half the watchdog interval withholds the ping;
/// * **no plugin instance is wedged** — ABI v1 runs every plugin callback on the loop thread and gives the
///   host nothing else to ask a plugin, so a wedged instance is exactly one that holds the loop (above).
///   A send or a webhook a plugin accepted and has not answered yet is asynchronous work, not a wedge, and
///   work on a plugin's own threads reaches the loop through `post`, which the turning loop drains.
///
/// A late tick (the loop was blocked for longer than the interval) is logged with the delay, so the journal
/// says what happened before systemd's `Watchdog timeout` line.
final class ServiceWatchdog {
    private let loop: EventLoop
    private let timer: LoopTimer
    private let notifier: ServiceNotifier
    private let logger: Logger
    private let health: () -> String?
    /// The ping period: half of `$WATCHDOG_USEC`, in milliseconds (at least 1).
    let periodMilliseconds: UInt64
    private var lastTickMs: UInt64
    private var withheldReason: String?

    /// Reads `$WATCHDOG_USEC`/`$WATCHDOG_PID` and removes them from the environment (so plugins' child
    /// processes do not inherit them): the interval in µs, or nil when systemd expects no pings from this
    /// process (not set, or `$WATCHDOG_PID` names another process). Call it before starting plugins.
    static func intervalFromEnvironment() -> UInt64? {
        var usec: UInt64 = 0
        guard csd_watchdog_enabled(1, &usec) > 0, usec > 0 else { return nil }
        return usec
    }

    /// `health` returns nil when healthy, else why the ping is withheld.
    init(loop: EventLoop, intervalMicroseconds: UInt64, notifier: ServiceNotifier, logger: Logger, health: @escaping () -> String?) {
        self.loop = loop
        self.notifier = notifier
        self.logger = logger
        self.health = health
        periodMilliseconds = max(1, intervalMicroseconds / 2_000)
        timer = LoopTimer(loop: loop)
        lastTickMs = loop.nowMilliseconds
    }

    /// Sends a first ping now and then one every period while healthy.
    func start() {
        logger.info("systemd watchdog enabled: pinging every \(periodMilliseconds) ms while healthy")
        loop.updateTime()  // the cached loop time is stale until the loop first runs
        lastTickMs = loop.nowMilliseconds
        tick()
        timer.start(timeoutMilliseconds: periodMilliseconds, repeatMilliseconds: periodMilliseconds) { [unowned self] in self.tick() }
    }

    /// Stops pinging (shutdown: `STOPPING=1` has been sent; systemd's stop timeout applies from here).
    func close() { timer.close() }

    private func tick() {
        let now = loop.nowMilliseconds
        let elapsed = now - lastTickMs
        lastTickMs = now
        if elapsed > 2 * periodMilliseconds {
            logger.warning("the event loop was blocked for about \(elapsed - periodMilliseconds) ms (a plugin callback or a synchronous commit did not return); no watchdog ping meanwhile")
        }
        if let reason = health() {
            if withheldReason == nil { logger.error("withholding the systemd watchdog ping: \(reason)") }
            withheldReason = reason
            return
        }
        if withheldReason != nil {
            logger.notice("healthy again: systemd watchdog pings resume")
            withheldReason = nil
        }
        notifier.watchdog()
    }
}
