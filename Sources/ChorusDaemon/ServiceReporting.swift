import ChorusLoop

/// What chorusd tells systemd while it runs: READY=1 once started, STATUS= on change, the watchdog.
extension Daemon {
    /// STATUS= is refreshed at most this often (ms) when the status changes.
    static let statusMinimumIntervalMs: UInt64 = 2_000

    /// Sends READY=1 with the first status line, then keeps STATUS= current and starts the watchdog.
    /// Called once, when startServices is done.
    func startServiceReporting() {
        loop.updateTime()  // start-up ran before the loop: its cached time is stale
        notifier.ready(status: serviceStatus().line)
        statusSentAtMs = loop.nowMilliseconds
        if notifier.isActive {
            let refresh = LoopTimer(loop: loop)
            refresh.start(timeoutMilliseconds: 1_000, repeatMilliseconds: 1_000) { [unowned self] in self.refreshServiceStatus() }
            timers.append(refresh)
        }
        if let usec = watchdogIntervalUsec {
            let wd = ServiceWatchdog(loop: loop, intervalMicroseconds: usec, notifier: notifier, logger: logger) { [unowned self] in
                self.watchdogHealthProblem()
            }
            watchdog = wd
            wd.start()
        }
    }

    /// The current status (see `ServiceStatus` for what each number means).
    func serviceStatus() -> ServiceStatus {
        var s = ServiceStatus()
        s.instancesConfigured = config.instances.filter(\.enabled).count
        s.instancesUp = instances.values.filter { $0.instance?.state == .running }.count
        s.failed = instances.values.filter { $0.error != nil }.map(\.config.name).sorted()
        s.subscribers = hub.subscribers.count
        s.backlogEvents = hub.subscribers.values.reduce(0) { $0 + max(0, hub.lastSeq - $1.position) }
        let runtimes = Array(instances.values) + stopping.filter { rt in !instances.values.contains { $0 === rt } }
        s.pendingSends = runtimes.reduce(0) { $0 + $1.queuedCount + $1.inFlight.count + $1.retryTimers.count }
        s.storeError = committer.lastError.map { "\($0)" }
        s.note = statusNote
        s.stopping = shuttingDown
        s.uncommittedWrites = shuttingDown ? committer.uncommittedCount : 0
        return s
    }

    /// Sends STATUS= if it changed and the last one is at least `statusMinimumIntervalMs` old
    /// (or at once with `force`). Not during a reload: READY=1 carries the status when it ends.
    func refreshServiceStatus(force: Bool = false) {
        guard notifier.isActive, !reloadInProgress else { return }
        let now = loop.nowMilliseconds
        guard force || now &- statusSentAtMs >= Daemon.statusMinimumIntervalMs else { return }
        let line = serviceStatus().line
        guard line != notifier.lastStatus else { return }
        notifier.status(line)
        statusSentAtMs = now
    }

    /// Why the watchdog ping must be withheld, or nil when healthy. (A blocked loop needs no check here:
    /// the ping is a timer on the same loop.)
    func watchdogHealthProblem() -> String? {
        guard let watchdog else { return nil }
        if let ms = committer.inFlightMilliseconds, ms > watchdog.periodMilliseconds {
            return "the store's writer thread has not finished a commit for \(ms) ms (disk or filesystem hung?)"
        }
        return nil
    }
}
