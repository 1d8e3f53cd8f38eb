import ChorusJSON
import ChorusLoop
import ChorusModel
import ChorusProtocol
import ChorusStore

/// Subscriptions, acknowledgements, replay and introspection on the consumer socket.
extension Daemon {
    func durableRecords() -> [String: SubscriptionRecord] {
        var out: [String: SubscriptionRecord] = [:]
        for r in (try? loopReader.subscriptionRecords()) ?? [] { out[r.name] = r }
        return out
    }

    func subscribe(session: ConsumerSession, id: JSONValue?, name: String?, filter: SubscriptionFilter?, from: StartPosition?) {
        func fail(_ code: ErrorCode, _ m: String, _ field: String? = nil) {
            session.write(ServerFrame.error(ProtocolError(code: code, message: m, field: field, id: id)))
        }
        if let f = filter, let wanted = f.instances, !session.rights.instances.contains("*") {
            if let bad = wanted.first(where: { !session.rights.mayUse(instance: $0) }) {
                return fail(.forbidden, "this connection may not read instance \(bad)", "filter.instances")
            }
        }
        var effectiveFilter = filter ?? .all
        if !session.rights.instances.contains("*") && effectiveFilter.instances == nil {
            effectiveFilter.instances = session.rights.instances
        }
        let durable = name != nil
        let subName = name ?? hub.ephemeralName()
        if hub.subscriber(named: subName) != nil {
            return fail(.busy, "subscription \"\(subName)\" is already connected", "name")
        }
        var stored: SubscriptionRecord?
        if durable { stored = (try? loopReader.subscriptionRecords())?.first { $0.name == subName } }
        if durable, filter == nil, let s = stored, let f = try? SubscriptionFilter(json: try? JSONParser.parse(s.filterJSON)) {
            effectiveFilter = f
        }
        let position: Int64
        switch from ?? (durable ? .stored : .now) {
        case .now: position = hub.lastSeq
        case .earliest: position = 0
        case .stored: position = stored?.cursor ?? hub.lastSeq
        case .cursor(let c):
            guard c >= 0 else { return fail(.invalid, "cursor must be ≥ 0", "cursor") }
            position = min(c, hub.lastSeq)
        case .timeMs(let t):
            position = (try? loopReader.seq(atOrAfterTimeMs: t)) ?? 0
        }
        let acked = durable ? (stored?.cursor ?? position) : position
        let sub = Subscriber(name: subName, durable: durable, filter: effectiveFilter, session: session, position: position, acked: acked)
        let reply = ServerFrame.reply(type: "subscribed", id: id, fields: [
            "sub": .string(subName), "durable": .bool(durable), "cursor": .int(position),
        ])
        if durable {
            // Persist the (new) filter and the starting point; a resumed subscription keeps its acked cursor.
            let cursor = (from == nil || from == .stored) ? acked : position
            sub.acked = cursor
            committer.enqueue(.saveSubscription(name: subName, filterJSON: JSONWriter.encode(effectiveFilter.json), cursor: cursor)) {
                [weak self, weak session] result in
                guard let self, let session, !session.isClosed else { return }
                if case .failure(let e) = result {
                    session.write(ServerFrame.error(ProtocolError(code: .unavailable, message: "could not store the subscription: \(e)", id: id)))
                    return
                }
                guard self.hub.subscriber(named: subName) == nil else {
                    session.write(ServerFrame.error(ProtocolError(code: .busy, message: "subscription \"\(subName)\" is already connected", field: "name", id: id)))
                    return
                }
                session.write(reply)
                session.addSubscription(subName)
                self.hub.add(sub)
            }
        } else {
            session.write(reply)
            session.addSubscription(subName)
            hub.add(sub)
        }
    }

    func ack(session: ConsumerSession, id: JSONValue?, sub: String, cursor: Int64) {
        guard let s = hub.subscriber(named: sub), s.session === session else {
            return session.write(ServerFrame.error(ProtocolError(code: .notFound, message: "no subscription \"\(sub)\" on this connection", field: "sub", id: id)))
        }
        guard s.durable else {
            return session.write(ServerFrame.error(ProtocolError(code: .invalid, message: "\"\(sub)\" is ephemeral: there is nothing to acknowledge", field: "sub", id: id)))
        }
        guard cursor <= s.position else {
            return session.write(ServerFrame.error(ProtocolError(code: .invalid, message: "cursor \(cursor) is beyond what was delivered (\(s.position))", field: "cursor", id: id)))
        }
        guard cursor > s.acked else {
            if id != nil { session.write(ServerFrame.ok(id: id)) }
            return
        }
        s.acked = cursor
        committer.enqueue(.ackSubscription(name: sub, cursor: cursor)) { [weak session] result in
            guard let id, let session else { return }
            switch result {
            case .success: session.write(ServerFrame.ok(id: id))
            case .failure(let e): session.write(ServerFrame.error(ProtocolError(code: .unavailable, message: "ack not stored: \(e)", id: id)))
            }
        }
    }

    func replay(session: ConsumerSession, id: JSONValue?, filter: SubscriptionFilter, fromCursor: Int64?, toCursor: Int64?,
                fromTimeMs: Int64?, toTimeMs: Int64?, limit: Int?)
    {
        var scoped = filter
        if !session.rights.instances.contains("*") {
            scoped.instances = (scoped.instances ?? session.rights.instances).intersection(session.rights.instances)
        }
        let f = scoped
        let readers = self.readers
        let lastSeq = hub.lastSeq
        let subName = "replay-" + (id.map { $0.stringValue ?? "\($0)" } ?? "0")
        let maxCount = limit ?? 10_000
        loop.offload({ () -> Result<(JSONValue, [UInt8], Int, Int64), Error> in
            Result {
                try readers.with { r in
                    var after = try fromCursor ?? (fromTimeMs.map { try r.seq(atOrAfterTimeMs: $0) } ?? 0)
                    let until = toCursor ?? lastSeq
                    var out: [UInt8] = []
                    var count = 0
                    var last: Int64 = after
                    scan: while count < maxCount {
                        let batch = try r.events(after: after, limit: 1024)
                        if batch.isEmpty { break }
                        for e in batch {
                            if e.seq > until { break scan }
                            if let t = toTimeMs, e.receivedAtMs > t { break scan }
                            after = e.seq
                            guard f.matches(channel: e.channelKind, instance: e.instance, conversationId: e.conversationId,
                                            type: e.type, direction: e.direction) else { continue }
                            ServerFrame.appendEvent(sub: subName, cursor: e.seq, eventJSON: e.json, to: &out)
                            count += 1
                            last = e.seq
                            if count >= maxCount { break scan }
                        }
                    }
                    return (id ?? .null, out, count, last)
                }
            }
        }, completion: { [weak session] result in
            guard let session, !session.isClosed else { return }
            switch result {
            case .success(let (_, bytes, count, last)):
                if !bytes.isEmpty { session.write(bytes) }
                session.write(ServerFrame.reply(type: "replay_done", id: id, fields: ["count": .int(count), "last_cursor": .int(last)]))
            case .failure(let e):
                session.write(ServerFrame.error(ProtocolError(code: .internal, message: "replay failed: \(e)", id: id)))
            }
        })
    }

    func stats(session: ConsumerSession, id: JSONValue?) {
        let readers = self.readers
        loop.offload({ () -> Result<StoreStats, Error> in Result { try readers.with { try $0.stats() } } },
                     completion: { [weak self, weak session] result in
            guard let self, let session else { return }
            var log = JSONObject()
            if case .success(let s) = result {
                log = ["last_cursor": .int(s.lastSeq), "first_cursor": .int(s.firstSeq), "events": .int(s.eventCount),
                       "bytes": .int(s.eventBytes), "database_bytes": .int(s.databaseBytes), "wal_bytes": .int(s.walBytes)]
            }
            log["healthy"] = .bool(self.committer.lastError == nil)
            if let e = self.committer.lastError { log["error"] = .string("\(e)") }
            log["commits"] = .int(self.committer.commits)
            log["largest_batch"] = .int(self.committer.largestBatch)
            let fields: JSONObject = [
                "uptime_ms": .int(Daemon.nowMs() - self.startedAtMs),
                "version": .string(Daemon.version),
                "log": .object(log),
                "http": ["requests": .int(self.counters.httpRequests), "port": self.httpServer.map { .int($0.boundPort) } ?? .null,
                         "open_connections": .int(self.httpServer?.openConnections ?? 0)],
                "events": ["accepted": .int(self.counters.eventsAccepted), "duplicate": .int(self.counters.eventsDuplicate),
                           "invalid": .int(self.counters.eventsInvalid), "refused": .int(self.counters.eventsRefused)],
                "sends": ["accepted": .int(self.counters.sendsAccepted), "refused": .int(self.counters.sendsRefused)],
                "consumers": .int(self.sessions.count),
                "subscriptions": .array(self.hub.statsJSON()),
                "instances": .array(self.instancesJSON()),
            ]
            session.write(ServerFrame.reply(type: "stats", id: id, fields: fields))
        })
    }

    func listSubscriptions(session: ConsumerSession, id: JSONValue?) {
        let list: [JSONValue] = ((try? loopReader.subscriptionRecords()) ?? []).map { r in
            let live = hub.subscriber(named: r.name)
            return [
                "name": .string(r.name),
                "filter": (try? JSONParser.parse(r.filterJSON)) ?? .null,
                "acked": .int(live?.acked ?? r.cursor),
                "connected": .bool(live != nil),
                "lag": .int(max(0, hub.lastSeq - (live?.acked ?? r.cursor))),
            ]
        }
        session.write(ServerFrame.reply(type: "subscriptions", id: id, fields: ["subscriptions": .array(list)]))
    }

    func resetSubscription(session: ConsumerSession, id: JSONValue?, name: String, to: StartPosition) {
        guard let rec = (try? loopReader.subscriptionRecords())?.first(where: { $0.name == name }) else {
            return session.write(ServerFrame.error(ProtocolError(code: .notFound, message: "no durable subscription \"\(name)\"", field: "name", id: id)))
        }
        guard hub.subscriber(named: name) == nil else {
            return session.write(ServerFrame.error(ProtocolError(code: .busy, message: "subscription \"\(name)\" is connected; disconnect it first", field: "name", id: id)))
        }
        let cursor: Int64
        switch to {
        case .earliest: cursor = 0
        case .now, .stored: cursor = hub.lastSeq
        case .cursor(let c): cursor = max(0, min(c, hub.lastSeq))
        case .timeMs(let t): cursor = (try? loopReader.seq(atOrAfterTimeMs: t)) ?? 0
        }
        committer.enqueue(.saveSubscription(name: name, filterJSON: rec.filterJSON, cursor: cursor)) { [weak session] result in
            switch result {
            case .success: session?.write(ServerFrame.reply(type: "ok", id: id, fields: ["cursor": .int(cursor)]))
            case .failure(let e): session?.write(ServerFrame.error(ProtocolError(code: .unavailable, message: "\(e)", id: id)))
            }
        }
    }

    func deleteSubscription(session: ConsumerSession, id: JSONValue?, name: String) {
        guard hub.subscriber(named: name) == nil else {
            return session.write(ServerFrame.error(ProtocolError(code: .busy, message: "subscription \"\(name)\" is connected; disconnect it first", field: "name", id: id)))
        }
        guard (try? loopReader.subscriptionRecords())?.contains(where: { $0.name == name }) == true else {
            return session.write(ServerFrame.error(ProtocolError(code: .notFound, message: "no durable subscription \"\(name)\"", field: "name", id: id)))
        }
        committer.enqueue(.deleteSubscription(name: name)) { [weak session] result in
            switch result {
            case .success: session?.write(ServerFrame.ok(id: id))
            case .failure(let e): session?.write(ServerFrame.error(ProtocolError(code: .unavailable, message: "\(e)", id: id)))
            }
        }
    }

    func pluginsJSON() -> [JSONValue] {
        var seen: Set<String> = []
        var out: [JSONValue] = []
        for rt in instances.values.sorted(by: { $0.config.name < $1.config.name }) {
            if let p = rt.instance?.plugin, !seen.contains(p.path) { seen.insert(p.path); out.append(p.json) }
        }
        for (ref, err) in pluginErrors where !seen.contains(ref) {
            seen.insert(ref)
            out.append(["name": .string(ref), "loaded": false, "error": .string(err)])
        }
        return out
    }

    func instancesJSON() -> [JSONValue] {
        instances.values.sorted { $0.config.name < $1.config.name }.map { $0.json() }
    }
}
