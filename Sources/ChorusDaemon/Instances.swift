import CChorusPlugin
import ChorusConfig
import ChorusJSON
import ChorusLoop
import ChorusModel
import ChorusPluginHost
import ChorusProtocol
import ChorusStore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A send waiting for, or handed to, a plugin.
final class PendingSend {
    var record: SendRecord
    let route: OutboundRoute
    let pluginJSON: [UInt8]
    var number: UInt64 = 0
    init(record: SendRecord, route: OutboundRoute, pluginJSON: [UInt8]) {
        self.record = record; self.route = route; self.pluginJSON = pluginJSON
    }
}

/// The daemon's side of one configured instance: the plugin instance, its send queue and counters.
final class InstanceRuntime {
    var config: InstanceConfig
    var instance: PluginInstance?
    var error: String?
    var context: InstanceContext
    var queue: [PendingSend] = []
    var queueHead = 0
    var inFlight: [UInt64: PendingSend] = [:]
    var retryTimers: [UInt64: LoopTimer] = [:]
    var counters: [String: Int64] = [:]
    var onStopped: (() -> Void)?
    /// Conversation ids whose last-inbound time was written recently (to avoid rewriting it per message).
    var conversationTouched = BoundedMap<String, Int64>(capacity: 100_000)

    init(config: InstanceConfig, channel: String, keepRaw: Bool) {
        self.config = config
        self.context = InstanceContext(name: config.name, channel: channel, keepRaw: keepRaw)
    }

    var queuedCount: Int { queue.count - queueHead }
    var state: String { instance?.state.rawValue ?? "failed" }

    func count(_ name: String, _ delta: Int64 = 1) { counters[name, default: 0] += delta }

    func json() -> JSONValue {
        var c = JSONObject()
        for (k, v) in counters.sorted(by: { $0.key < $1.key }) { c[k] = .int(v) }
        if let i = instance { for (k, v) in i.counters.sorted(by: { $0.key < $1.key }) { c["plugin." + k] = .int(v) } }
        return [
            "name": .string(config.name), "plugin": .string(config.plugin), "channel": .string(context.channel),
            "state": .string(state), "error": error.map { .string($0) } ?? .null, "counters": .object(c),
            "pending_sends": .int(queuedCount + inFlight.count),
            "capabilities": instance?.plugin.capabilities.json ?? .null,
        ]
    }
}

/// Routes of the shared HTTP ingress: `/webhooks/<instance><path>`.
struct RouteTable {
    struct Route {
        let method: String
        let path: String
        let prefix: Bool
        let handler: (HTTPRequest, HTTPResponder) -> Void
    }
    private(set) var byInstance: [String: [Route]] = [:]

    mutating func add(instance: String, method: String, path: String, handler: @escaping (HTTPRequest, HTTPResponder) -> Void) -> Bool {
        let prefix = path.hasSuffix("*")
        let p = prefix ? String(path.dropLast()) : path
        if byInstance[instance, default: []].contains(where: { $0.method == method && $0.path == p && $0.prefix == prefix }) { return false }
        byInstance[instance, default: []].append(Route(method: method, path: p, prefix: prefix, handler: handler))
        return true
    }

    mutating func removeAll(instance: String) { byInstance.removeValue(forKey: instance) }

    enum Match { case handler((HTTPRequest, HTTPResponder) -> Void), methodNotAllowed([String]), notFound }

    func match(method: String, path: String) -> Match {
        guard path.hasPrefix("/webhooks/") else { return .notFound }
        let rest = path.dropFirst("/webhooks/".count)
        let name: Substring, sub: String
        if let slash = rest.firstIndex(of: "/") { name = rest[..<slash]; sub = String(rest[slash...]) } else { name = rest; sub = "/" }
        guard let routes = byInstance[String(name)] else { return .notFound }
        var allowed: [String] = []
        for r in routes where r.prefix ? sub.hasPrefix(r.path) : sub == r.path {
            if r.method == method || (method == "HEAD" && r.method == "GET") { return .handler(r.handler) }
            allowed.append(r.method)
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed)
    }
}

extension Daemon: PluginInstanceDelegate {
    // MARK: Instance lifecycle

    var pluginDirectories: [String] { config.daemon.pluginDirectories + options.defaultPluginDirectories }

    /// Loads the plugin and starts one instance. Failures are logged and kept for `instances`; the daemon carries on.
    func startInstance(_ ic: InstanceConfig) {
        let rt = InstanceRuntime(config: ic, channel: "unknown", keepRaw: config.daemon.rawPayloads)
        instances[ic.name] = rt
        let plugin: LoadedPlugin
        do {
            let path = try PluginLoader.resolve(ic.plugin, directories: pluginDirectories)
            plugin = try PluginLoader.load(path: path)
        } catch {
            rt.error = "\(error)"
            pluginErrors.append((ic.plugin, "\(error)"))
            logger.error("instance \(ic.name) not started: plugin refused: \(error)")
            return
        }
        rt.context = InstanceContext(name: ic.name, channel: plugin.channel, keepRaw: config.daemon.rawPayloads)
        let settings: [(String, String)]
        do { settings = try resolveSecrets(ic) } catch {
            rt.error = "\(error)"
            logger.error("instance \(ic.name) not started: \(error)")
            return
        }
        let dir = config.daemon.stateDirectory + "/instances/" + ic.name
        try? Daemon.makeDirectories(dir)
        let inst = PluginInstance(name: ic.name, plugin: plugin, settings: settings, stateDirectory: dir, loop: loop,
                                  httpClient: httpClient, logger: logger)
        inst.delegate = self
        rt.instance = inst
        do {
            try inst.create()
            try inst.start()
            rt.error = nil
            logger.info("instance \(ic.name) running", metadata: ["plugin": .string("\(plugin.name) \(plugin.version)"), "channel": .string(plugin.channel)])
        } catch {
            rt.error = "\(error)"
            logger.error("instance \(ic.name) failed: \(error)")
            routes.removeAll(instance: ic.name)
            if inst.state == .failed { inst.destroy() }
            rt.instance = nil
        }
    }

    /// Settings with secrets resolved: `key_file = PATH` also gives `key` = the file's content;
    /// `key_credential = NAME` gives `key` = `$CREDENTIALS_DIRECTORY/NAME`'s content (systemd LoadCredential=).
    func resolveSecrets(_ ic: InstanceConfig) throws -> [(String, String)] {
        var out: [(String, String)] = []
        for (k, v) in ic.settings {
            out.append((k, v))
            if k.hasSuffix("_file") {
                out.append((String(k.dropLast(5)), try Daemon.readSecret(v, key: "instance \(ic.name) setting \(k)")))
            } else if k.hasSuffix("_credential") {
                guard let dir = getenv("CREDENTIALS_DIRECTORY").map({ String(cString: $0) }) else {
                    throw DaemonError("instance \(ic.name) setting \(k): $CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the systemd unit)")
                }
                out.append((String(k.dropLast(11)), try Daemon.readSecret(dir + "/" + v, key: "instance \(ic.name) setting \(k)")))
            }
        }
        return out
    }

    static func readSecret(_ path: String, key: String) throws -> String {
        guard let f = fopen(path, "r") else { throw DaemonError("\(key): cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            bytes.append(contentsOf: buf[0..<n])
            if bytes.count > 1 << 20 { throw DaemonError("\(key): \(path) is larger than 1 MiB") }
        }
        while let last = bytes.last, last == 10 || last == 13 { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Stops an instance; `done` runs when it reported its pending sends or the timeout passed.
    func stopInstance(_ rt: InstanceRuntime, done: @escaping () -> Void) {
        for t in rt.retryTimers.values { t.close() }
        rt.retryTimers.removeAll()
        guard let inst = rt.instance, inst.state == .running else {
            rt.instance?.destroy()
            rt.instance = nil
            routes.removeAll(instance: rt.config.name)
            done()
            return
        }
        var finished = false
        let timer = LoopTimer(loop: loop)
        let finish = { [unowned self] in
            guard !finished else { return }
            finished = true
            timer.close()
            if !rt.inFlight.isEmpty {
                self.logger.warning("instance \(rt.config.name) stopped with \(rt.inFlight.count) sends unreported; they are retried at next start")
            }
            self.stopping.removeAll { $0 === rt }
            inst.destroy()
            rt.instance = nil
            rt.inFlight.removeAll()
            self.routes.removeAll(instance: rt.config.name)
            done()
        }
        rt.onStopped = finish
        stopping.append(rt)
        timer.start(timeoutMilliseconds: UInt64(config.daemon.shutdownTimeoutMs)) { [unowned self] in
            self.logger.warning("instance \(rt.config.name) did not finish stopping within \(self.config.daemon.shutdownTimeoutMs) ms")
            inst.forceStopped()
            finish()
        }
        inst.stop()
    }

    public func instanceStopped(_ instance: PluginInstance) {
        // The runtime may already be out of `instances` (removed by a reload).
        guard let rt = stopping.first(where: { $0.instance === instance }) else { return }
        rt.onStopped?()
        rt.onStopped = nil
    }

    // MARK: Host API for plugins

    public func instance(_ instance: PluginInstance, emit json: [UInt8],
                         completion: @escaping (chorus_status, String?, String?) -> Void)
    {
        guard let rt = instances[instance.name], !shuttingDown || rt.instance === instance else {
            completion(CHORUS_ERR_UNAVAILABLE, nil, "instance is not running"); return
        }
        let now = Daemon.nowMs()
        var ev: NormalizedEvent
        do {
            ev = try EventNormalizer.normalize(json: json, context: rt.context, ids: &ids, nowMs: now)
        } catch {
            rt.count("events_invalid")
            counters.eventsInvalid += 1
            logger.warning("instance \(instance.name) emitted an invalid event: \(error)")
            completion(CHORUS_ERR_INVALID, nil, "\(error)")
            return
        }
        if ev.type == "status", ev.conversationId == nil || ev.statusMessageId == nil {
            resolveStatusTarget(&ev, instance: instance.name)
        }
        if ev.type == "status", let mid = ev.statusMessageId, let state = ev.statusState, state == "sent" || state == "failed" {
            // The host already records "sent"/"failed" from the plugin's send result under this key:
            // a channel callback saying the same thing is then a duplicate, not a second status.
            ev.dedupKey = "send-status:\(mid):\(state)"
        }
        guard let conversationId = ev.conversationId else {
            rt.count("events_invalid")
            completion(CHORUS_ERR_INVALID, nil, "status for an unknown message (channel_message_id \(ev.statusChannelMessageId ?? "?")): give channel_ids.chat")
            return
        }
        var ops: [WriteOp] = [.appendEvent(NewEvent(
            id: ev.id, instance: instance.name, channelKind: rt.context.channel, type: ev.type, direction: ev.direction,
            conversationId: conversationId, dedupKey: ev.dedupKey, receivedAtMs: now, json: ev.encode()))]
        if let chat = ev.chatId {
            let last = rt.conversationTouched[conversationId]
            if ev.direction == "inbound", last == nil || now - last! > 60_000 {
                rt.conversationTouched[conversationId] = now
                let rec = ConversationRecord(id: conversationId, instance: instance.name, channelKind: rt.context.channel,
                                             chatId: chat, accountId: ev.accountId, lastInboundAtMs: now, lastEventAtMs: now)
                ops.append(.upsertConversation(rec))
                conversations[conversationId] = rec
                conversationByChat[instance.name + "\u{1F}" + chat] = conversationId
            }
        }
        committer.enqueue(ops) { [weak self] result in
            switch result {
            case .success(let r):
                switch r.first {
                case .appended?:
                    rt.count("events_accepted"); self?.counters.eventsAccepted += 1
                    completion(CHORUS_OK, ev.id, nil)
                case .duplicate(let existing, _)?:
                    rt.count("events_duplicate"); self?.counters.eventsDuplicate += 1
                    completion(CHORUS_ERR_DUPLICATE, existing, "duplicate of \(existing)")
                default:
                    completion(CHORUS_ERR_INTERNAL, nil, "unexpected store result")
                }
            case .failure(let error):
                rt.count("events_refused"); self?.counters.eventsRefused += 1
                completion(CHORUS_ERR_UNAVAILABLE, nil, "\(error)")
            }
        }
    }

    func resolveStatusTarget(_ ev: inout NormalizedEvent, instance: String) {
        guard let cmid = ev.statusChannelMessageId else {
            if let mid = ev.statusMessageId, let rec = try? loopReader.send(id: mid) {
                EventNormalizer.resolveStatus(&ev, conversationId: rec.conversationId, messageId: nil)
            }
            return
        }
        if let ref = recentSends[instance + "\u{1F}" + cmid] {
            EventNormalizer.resolveStatus(&ev, conversationId: ref.conversationId, messageId: ref.messageId)
        } else if let rec = try? loopReader.send(instance: instance, channelMessageId: cmid) {
            recentSends[instance + "\u{1F}" + cmid] = SendRef(messageId: rec.id, conversationId: rec.conversationId)
            EventNormalizer.resolveStatus(&ev, conversationId: rec.conversationId, messageId: rec.id)
        }
    }

    public func instance(_ instance: PluginInstance, sendId: UInt64, outcome: chorus_send_outcome, channelMessageId: String?,
                         errorCode: String?, errorMessage: String?, retryAfterMs: UInt32)
    {
        guard let rt = instances[instance.name], let p = rt.inFlight.removeValue(forKey: sendId) else { return }
        sendFinished(rt, p, outcome: outcome, channelMessageId: channelMessageId, errorCode: errorCode,
                     errorMessage: errorMessage, retryAfterMs: retryAfterMs)
    }

    public func instance(_ instance: PluginInstance, route method: String, path: String,
                         handler: @escaping (HTTPRequest, HTTPResponder) -> Void) -> Bool
    {
        routes.add(instance: instance.name, method: method, path: path, handler: handler)
    }

    public func instance(_ instance: PluginInstance, kvGet key: String) -> [UInt8]? {
        if let pending = pendingKV[instance.name + "\u{1F}" + key] { return pending.value }
        return try? loopReader.kv(instance: instance.name, key: key)
    }

    public func instance(_ instance: PluginInstance, kvPut key: String, value: [UInt8]?) -> Bool {
        // A kv_put_async of this key still queued would land after this write: give it this value, so the last write wins.
        committer.rewriteQueuedKV(instance: instance.name, key: key, value: value)
        // Durable on return, as the ABI promises: the loop waits for this one commit. An async write already
        // on the writer thread commits first (the writer is serial).
        guard case .success = committer.commitNow([.putKV(instance: instance.name, key: key, value: value)]) else { return false }
        pendingKV.removeValue(forKey: instance.name + "\u{1F}" + key)
        return true
    }

    public func instance(_ instance: PluginInstance, kvPutAsync key: String, value: [UInt8]?, completion: @escaping (Bool) -> Void) {
        let slot = instance.name + "\u{1F}" + key
        kvWrites += 1
        let number = kvWrites
        pendingKV[slot] = (value, number)
        // The same queue as emitted events: an event emitted after this write is committed with it or after it.
        committer.enqueue(.putKV(instance: instance.name, key: key, value: value)) { [weak self] result in
            if let self, self.pendingKV[slot]?.number == number { self.pendingKV.removeValue(forKey: slot) }
            if case .success = result { completion(true) } else { completion(false) }
        }
    }

    // MARK: HTTP ingress

    func route(_ req: HTTPRequest, _ res: HTTPResponder) {
        counters.httpRequests += 1
        if shuttingDown {
            res.respond(status: 503, headers: [("Retry-After", "5"), ("Content-Type", "text/plain")], body: Array("shutting down\n".utf8))
            return
        }
        switch (req.method, req.path) {
        case ("GET", "/healthz"):
            let healthy = committer.lastError == nil
            res.respond(status: healthy ? 200 : 503, headers: [("Content-Type", "application/json")],
                        body: JSONWriter.encode(["status": healthy ? "ok" : "store_unavailable",
                                                 "error": committer.lastError.map { .string("\($0)") } ?? .null]))
            return
        case ("GET", "/metrics"):
            res.respond(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")], body: Array(metricsText().utf8))
            return
        default:
            break
        }
        switch routes.match(method: req.method, path: req.path) {
        case .handler(let h):
            if committer.lastError != nil && req.method == "POST" {
                // Disk full or store broken: channels retry on 503, and nothing is half-stored.
                res.respond(status: 503, headers: [("Retry-After", "30"), ("Content-Type", "text/plain")],
                            body: Array("store unavailable: \(committer.lastError!)\n".utf8))
                committer.probe()
                return
            }
            h(req, res)
        case .methodNotAllowed(let allowed):
            res.respond(status: 405, headers: [("Allow", allowed.joined(separator: ", ")), ("Content-Type", "text/plain")],
                        body: Array("method \(req.method) not allowed here\n".utf8))
        case .notFound:
            res.respond(status: 404, headers: [("Content-Type", "text/plain")], body: Array("no route for \(req.path)\n".utf8))
        }
    }

    func metricsText() -> String {
        var s = "# chorusd metrics\n"
        s += "chorus_events_accepted_total \(counters.eventsAccepted)\n"
        s += "chorus_events_duplicate_total \(counters.eventsDuplicate)\n"
        s += "chorus_events_invalid_total \(counters.eventsInvalid)\n"
        s += "chorus_events_refused_total \(counters.eventsRefused)\n"
        s += "chorus_sends_accepted_total \(counters.sendsAccepted)\n"
        s += "chorus_sends_refused_total \(counters.sendsRefused)\n"
        s += "chorus_log_last_cursor \(hub.lastSeq)\n"
        s += "chorus_store_commits_total \(committer.commits)\n"
        s += "chorus_consumer_connections \(sessions.count)\n"
        for (name, rt) in instances.sorted(by: { $0.key < $1.key }) {
            for (k, v) in rt.counters.sorted(by: { $0.key < $1.key }) {
                s += "chorus_instance_\(k){instance=\"\(name)\"} \(v)\n"
            }
            s += "chorus_instance_pending_sends{instance=\"\(name)\"} \(rt.queuedCount + rt.inFlight.count)\n"
        }
        for sub in hub.subscribers.values.sorted(by: { $0.name < $1.name }) {
            s += "chorus_subscription_lag{subscription=\"\(sub.name)\"} \(max(0, hub.lastSeq - sub.position))\n"
        }
        return s
    }
}
