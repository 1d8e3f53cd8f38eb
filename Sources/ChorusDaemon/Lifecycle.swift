import CSystemd
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
        _ = csd_notify("STOPPING=1")
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
    func reload() {
        guard let path = options.configPath else {
            logger.notice("SIGHUP: running on the embedded default config; nothing to reload")
            return
        }
        let newConfig: ChorusConfiguration
        do { newConfig = try ChorusConfiguration.load(path: path) } catch {
            logger.error("SIGHUP: config not reloaded, keeping the running one: \(error)")
            return
        }
        _ = csd_notify("RELOADING=1")
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
            stopInstance(rt) {}
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
                stopInstance(rt) { [weak self] in self?.startInstance(ic) }
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
        _ = csd_notify("READY=1")
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
