import ChorusConfig
import ChorusLoop
import ChorusProtocol
import ChorusStore
#if canImport(Glibc)
import Glibc
#endif

/// Shutdown (SIGTERM), reload (SIGHUP) and retention.
extension Daemon {
    /// SIGTERM: stop accepting, stop plugins (each reports or fails its pending sends),
    /// let every commit finish, say goodbye to consumers, then leave the loop.
    func beginShutdown(reason: String) {
        guard !shuttingDown else {
            logger.warning("second \(reason): exiting now")
            loop.stop()
            return
        }
        shuttingDown = true
        notifier.stopping(status: serviceStatus().line)
        statusSentAtMs = loop.nowMilliseconds
        logger.notice("shutting down (\(reason))")
        httpServer?.stopAccepting()
        unixServer?.close()
        unixServer = nil
        var remaining = instances.count
        let afterPlugins = { [unowned self] in self.drainAndExit() }
        if remaining == 0 { afterPlugins(); return }
        for rt in instances.values {
            stopInstance(rt) {
                remaining -= 1
                if remaining == 0 { afterPlugins() }
            }
        }
    }

    private func drainAndExit() {
        if !committer.isIdle {
            committer.flush()
            let t = LoopTimer(loop: loop)
            t.start(timeoutMilliseconds: 5) { [unowned self] in t.close(); self.drainAndExit() }
            return
        }
        for s in sessions.values {
            s.write(ServerFrame.goodbye(reason: "chorusd is shutting down"))
            s.connection.closeAfterFlush()
        }
        // Give the goodbyes and pending webhook answers a moment to flush.
        let t = LoopTimer(loop: loop)
        t.start(timeoutMilliseconds: 50) { [unowned self] in
            t.close()
            self.httpServer?.close()
            self.httpClient?.close()
            for s in self.signals { s.close() }
            self.signals.removeAll()
            for timer in self.timers { timer.close() }
            self.timers.removeAll()
            self.watchdog?.close()
            for s in self.sessions.values { s.connection.close() }
            self.loop.stop()
        }
    }

    func finalShutdown() {
        worker.shutdown()
        writer.close()
        loopReader.close()
        readers.closeAll()
        loop.shutdown()
        logger.notice("chorusd stopped")
    }

    /// SIGHUP: re-read the config file; add, remove, restart or reconfigure instances.
    ///
    /// systemd is told RELOADING=1 (with MONOTONIC_USEC) at once and READY=1 when the reload is done: every
    /// removed instance stopped and every restarted one started again. A config that does not load keeps the
    /// running one; the reload still ends with READY=1 and STATUS= says it failed until a reload succeeds.
    /// A SIGHUP during a reload runs one more reload after it.
    func reload() {
        guard !shuttingDown else {
            logger.notice("SIGHUP during shutdown: ignored")
            return
        }
        guard !reloadInProgress else {
            logger.notice("SIGHUP while a reload is still in progress: reloading again when it is done")
            reloadRequestedAgain = true
            return
        }
        reloadInProgress = true
        notifier.reloading(status: "reloading the configuration")
        // Work that finishes later (stopping instances) holds one count each; the last one ends the reload.
        var outstanding = 1
        let oneDone = { [unowned self] in
            outstanding -= 1
            if outstanding == 0 { self.finishReload() }
        }
        defer { oneDone() }
        guard let path = options.configPath else {
            logger.notice("SIGHUP: running on the embedded default config; nothing to reload")
            return
        }
        let newConfig: ChorusConfiguration
        do { newConfig = try ChorusConfiguration.load(path: path) } catch {
            logger.error("SIGHUP: config not reloaded, keeping the running one: \(error)")
            statusNote = "reload failed, running the previous config: \(error)"
            return
        }
        statusNote = nil
        let old = config
        config.access = newConfig.access
        config.instances = newConfig.instances
        if newConfig.daemon != old.daemon || newConfig.http != old.http || newConfig.store != old.store || newConfig.socket != old.socket {
            logger.notice("SIGHUP: changes outside [[instance]] and [[access]] take effect at the next restart")
        }
        let newByName = Dictionary(newConfig.instances.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        // Removed or disabled instances.
        for (name, rt) in instances where newByName[name] == nil || newByName[name]?.enabled == false {
            logger.notice("SIGHUP: stopping instance \(name)")
            instances.removeValue(forKey: name)
            outstanding += 1
            stopInstance(rt) { oneDone() }
        }
        for ic in newConfig.instances where ic.enabled {
            guard let rt = instances[ic.name] else {
                logger.notice("SIGHUP: starting instance \(ic.name)")
                startInstance(ic)
                continue
            }
            guard rt.config != ic else { continue }
            if rt.config.plugin != ic.plugin || rt.instance == nil {
                logger.notice("SIGHUP: restarting instance \(ic.name)")
                instances.removeValue(forKey: ic.name)
                outstanding += 1
                stopInstance(rt) { [unowned self] in
                    // A shutdown that began meanwhile wins: no new instance.
                    if !self.shuttingDown { self.startInstance(ic) }
                    oneDone()
                }
                continue
            }
            do {
                let settings = try resolveSecrets(ic)
                try rt.instance?.reload(settings: settings)
                rt.config = ic
                logger.notice("SIGHUP: instance \(ic.name) reconfigured")
                pumpSends(rt)
            } catch {
                logger.error("SIGHUP: instance \(ic.name) keeps its previous settings: \(error)")
            }
        }
    }

    /// The end of a reload: READY=1 with the new status (unless a shutdown began meanwhile: STOPPING=1 was sent).
    private func finishReload() {
        reloadInProgress = false
        guard !shuttingDown else { return }
        notifier.ready(status: serviceStatus().line)
        statusSentAtMs = loop.nowMilliseconds
        logger.notice("reload done")
        if reloadRequestedAgain {
            reloadRequestedAgain = false
            loop.execute { [weak self] in self?.reload() }
        }
    }

    /// Deletes events past the retention age/size (never what a durable subscription still needs).
    func applyRetention() {
        let hours = config.store.retentionHours
        let maxBytes = config.store.retentionMaxBytes
        guard hours != nil || maxBytes != nil else { return }
        let cutoff = hours.map { Daemon.nowMs() - Int64($0) * 3_600_000 }
        let writer = self.writer
        let logger = self.logger
        worker.submit {
            do {
                let n = try writer.prune(olderThanMs: cutoff, maxBytes: maxBytes, force: false)
                if n > 0 { logger.info("retention: deleted \(n) events") }
                _ = try writer.pruneDedup(olderThanMs: Daemon.nowMs() - 7 * 86_400_000)
            } catch {
                logger.error("retention failed: \(error)")
            }
        }
    }
}
