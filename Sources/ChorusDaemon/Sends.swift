import CChorusPlugin
import ChorusJSON
import ChorusLoop
import ChorusModel
import ChorusPluginHost
import ChorusProtocol
import ChorusStore

/// Outbound messages: accepted durably, dispatched to the instance's plugin
/// with bounded concurrency, retried with backoff, and each ending in exactly
/// one final status event (sent or failed).
extension Daemon {
    func send(session: ConsumerSession, id: JSONValue?, idempotencyKey: String?, message: JSONValue) {
        func refuse(_ code: ErrorCode, _ msg: String, field: String? = nil) {
            counters.sendsRefused += 1
            session.write(ServerFrame.error(ProtocolError(code: code, message: msg, field: field, id: id)))
        }
        if shuttingDown { return refuse(.unavailable, "chorusd is shutting down") }
        let request: OutboundRequest
        do { request = try OutboundRequest.validate(message) } catch {
            return refuse(.invalid, "\(error)", field: error.path.isEmpty ? "message" : error.path)
        }
        // Route.
        let route: OutboundRoute
        if let conv = request.conversationId {
            guard let rec = conversationRecord(conv) else {
                return refuse(.notFound, "unknown conversation \(conv)", field: "message.conversation_id")
            }
            guard let rt = instances[rec.instance] else {
                return refuse(.notFound, "conversation \(conv) belongs to instance \(rec.instance), which is not configured")
            }
            route = OutboundRoute(instance: rec.instance, channel: rt.context.channel, conversationId: conv,
                                  chatId: rec.chatId, accountId: rec.accountId ?? rec.instance)
        } else {
            let name = request.instance!, to = request.to!
            guard let rt = instances[name] else { return refuse(.notFound, "unknown instance \(name)", field: "message.instance") }
            let account = rt.instance?.setting("account") ?? name
            let conv = conversationByChat[name + "\u{1F}" + to]
                ?? ChorusIdentifiers.conversationId(channel: rt.context.channel, account: account, chat: to)
            route = OutboundRoute(instance: name, channel: rt.context.channel, conversationId: conv, chatId: to, accountId: account)
        }
        guard session.rights.mayUse(instance: route.instance) else {
            return refuse(.forbidden, "this connection may not send through instance \(route.instance)")
        }
        guard let rt = instances[route.instance], let inst = rt.instance, inst.state == .running else {
            return refuse(.unavailable, "instance \(route.instance) is not running\(instances[route.instance]?.error.map { ": \($0)" } ?? "")")
        }
        // Capabilities.
        let caps = inst.plugin.capabilities
        if !caps.sendParts.isEmpty {
            for (i, t) in request.partTypes.enumerated() where !caps.sendParts.contains(t) {
                return refuse(.unsupported, "instance \(route.instance) (\(route.channel)) cannot send \(t) parts (it sends: \(caps.sendParts.joined(separator: ", ")))",
                              field: "message.parts[\(i)].type")
            }
        }
        let needed: [String: String] = ["reaction": "reactions", "edit": "edit", "delete": "delete", "typing": "typing", "read": "read_receipts"]
        if let cap = needed[request.type], !caps.has(cap) {
            return refuse(.unsupported, "instance \(route.instance) (\(route.channel)) does not support \(request.type)")
        }
        if caps.maxTextLength > 0 {
            for (i, p) in (request.object["parts"]?.arrayValue ?? []).enumerated() {
                if let t = p["text"]?.stringValue, t.count > caps.maxTextLength {
                    return refuse(.invalid, "text of \(t.count) characters exceeds \(route.channel)'s limit of \(caps.maxTextLength)", field: "message.parts[\(i)].text")
                }
            }
        }
        if rt.queuedCount + rt.inFlight.count >= rt.config.sendQueueLimit {
            return refuse(.unavailable, "instance \(route.instance)'s send queue is full (\(rt.config.sendQueueLimit)); retry later")
        }
        if committer.lastError != nil {
            committer.probe()
            return refuse(.unavailable, "the store cannot commit: \(committer.lastError!)")
        }
        let now = Daemon.nowMs()
        let messageId = ids.next(prefix: "msg", nowMs: UInt64(now))
        let eventId = ids.next(prefix: "evt", nowMs: UInt64(now))
        let target = request.object["target"]?["message_id"]?.stringValue.flatMap { mid in
            (try? loopReader.send(id: mid))?.flatMap { $0.channelMessageId }
        }
        let pluginJSON = HostEvents.pluginMessage(messageId: messageId, request: request, route: route, targetChannelMessageId: target)
        let record = SendRecord(id: messageId, idempotencyKey: idempotencyKey, client: session.clientIdentity, instance: route.instance,
                                conversationId: route.conversationId, state: "accepted", attempts: 0, channelMessageId: nil,
                                errorCode: nil, errorMessage: nil, nextAttemptAtMs: nil, createdAtMs: now, updatedAtMs: now, json: pluginJSON)
        let event = HostEvents.outboundEvent(id: eventId, messageId: messageId, request: request, route: route, nowMs: now)
        let ops: [WriteOp] = [
            .insertSend(record),
            .appendEvent(NewEvent(id: eventId, instance: route.instance, channelKind: route.channel, type: request.type,
                                  direction: "outbound", conversationId: route.conversationId,
                                  // With an idempotency key, a repeated send is a duplicate event too (stored once).
                                  dedupKey: idempotencyKey.map { "send-key:\(session.clientIdentity):\($0)" } ?? "send:" + messageId,
                                  receivedAtMs: now, json: JSONWriter.encode(.object(event)))),
            .upsertConversation(ConversationRecord(id: route.conversationId, instance: route.instance, channelKind: route.channel,
                                                   chatId: route.chatId, accountId: route.accountId, lastInboundAtMs: nil, lastEventAtMs: now)),
        ]
        committer.enqueue(ops) { [weak self, weak session] result in
            guard let self else { return }
            switch result {
            case .failure(let error):
                self.counters.sendsRefused += 1
                session?.write(ServerFrame.error(ProtocolError(code: .unavailable, message: "could not store the message: \(error)", id: id)))
            case .success(let results):
                if case .existingSend(let existing)? = results.first {
                    session?.write(ServerFrame.reply(type: "accepted", id: id, fields: [
                        "message_id": .string(existing.id), "conversation_id": .string(existing.conversationId),
                        "instance": .string(existing.instance), "duplicate": true, "state": .string(existing.state),
                    ]))
                    return
                }
                self.counters.sendsAccepted += 1
                rt.count("sends_accepted")
                self.conversations[route.conversationId] = ConversationRecord(
                    id: route.conversationId, instance: route.instance, channelKind: route.channel, chatId: route.chatId,
                    accountId: route.accountId, lastInboundAtMs: nil, lastEventAtMs: now)
                session?.write(ServerFrame.reply(type: "accepted", id: id, fields: [
                    "message_id": .string(messageId), "conversation_id": .string(route.conversationId),
                    "instance": .string(route.instance), "duplicate": false,
                ]))
                self.enqueueSend(rt, PendingSend(record: record, route: route, pluginJSON: pluginJSON))
            }
        }
    }

    func conversationRecord(_ id: String) -> ConversationRecord? {
        if let c = conversations[id] { return c }
        if let c = (try? loopReader.conversation(id: id)) ?? nil {
            conversations[id] = c
            return c
        }
        return nil
    }

    func enqueueSend(_ rt: InstanceRuntime, _ p: PendingSend) {
        rt.queue.append(p)
        pumpSends(rt)
    }

    /// Hands queued sends to the plugin, up to the instance's concurrency.
    func pumpSends(_ rt: InstanceRuntime) {
        guard let inst = rt.instance, inst.state == .running, !shuttingDown else { return }
        while rt.inFlight.count < rt.config.sendConcurrency && rt.queueHead < rt.queue.count {
            let p = rt.queue[rt.queueHead]
            rt.queueHead += 1
            if rt.queueHead > 1024 && rt.queueHead * 2 > rt.queue.count { rt.queue.removeFirst(rt.queueHead); rt.queueHead = 0 }
            p.number = nextSendNumber
            nextSendNumber += 1
            p.record.attempts += 1
            rt.inFlight[p.number] = p
            let status = inst.send(id: p.number, json: p.pluginJSON)
            if status != CHORUS_OK {
                rt.inFlight.removeValue(forKey: p.number)
                sendFinished(rt, p, outcome: CHORUS_SEND_FAILED_PERMANENT, channelMessageId: nil,
                             errorCode: status == CHORUS_ERR_UNSUPPORTED ? "unsupported" : "refused",
                             errorMessage: "the connector refused the message (status \(status.rawValue))", retryAfterMs: 0)
            }
        }
    }

    func sendFinished(_ rt: InstanceRuntime, _ p: PendingSend, outcome: chorus_send_outcome, channelMessageId: String?,
                      errorCode: String?, errorMessage: String?, retryAfterMs: UInt32)
    {
        let now = Daemon.nowMs()
        var state: String
        var retryable: Bool? = nil
        if outcome == CHORUS_SEND_SENT {
            state = "sent"
            rt.count("sends_sent")
            if let cmid = channelMessageId {
                recentSends[rt.config.name + "\u{1F}" + cmid] = SendRef(messageId: p.record.id, conversationId: p.route.conversationId)
            }
        } else if outcome == CHORUS_SEND_FAILED_RETRYABLE && p.record.attempts < rt.config.maxSendAttempts && !shuttingDown {
            // Retry later with exponential backoff (or what the channel asked for), capped at 5 minutes.
            rt.count("sends_retried")
            let backoff = min(300_000, 500 * (1 << min(p.record.attempts, 20)))
            let delay = retryAfterMs > 0 ? Int(retryAfterMs) : backoff
            p.record.state = "retrying"
            committer.enqueue(.updateSend(id: p.record.id, state: "retrying", attempts: p.record.attempts, channelMessageId: nil,
                                          errorCode: errorCode, errorMessage: errorMessage, nextAttemptAtMs: now + Int64(delay),
                                          updatedAtMs: now)) { _ in }
            let timer = LoopTimer(loop: loop)
            let key = p.number
            rt.retryTimers[key] = timer
            timer.start(timeoutMilliseconds: UInt64(delay)) { [weak self, weak rt] in
                guard let self, let rt else { return }
                rt.retryTimers.removeValue(forKey: key)?.close()
                rt.queue.insert(p, at: rt.queueHead)
                self.pumpSends(rt)
            }
            pumpSends(rt)
            return
        } else if outcome == CHORUS_SEND_FAILED_RETRYABLE && p.record.attempts < rt.config.maxSendAttempts {
            // Shutting down: a send that could still succeed is not failed for good. It stays unfinished in
            // the store and is dispatched again at the next start — nothing accepted is lost.
            rt.count("sends_deferred")
            committer.enqueue(.updateSend(id: p.record.id, state: "retrying", attempts: p.record.attempts, channelMessageId: nil,
                                          errorCode: errorCode, errorMessage: errorMessage, nextAttemptAtMs: now,
                                          updatedAtMs: now)) { _ in }
            return
        } else {
            state = "failed"
            retryable = outcome == CHORUS_SEND_FAILED_RETRYABLE
            rt.count("sends_failed")
        }
        let eventId = ids.next(prefix: "evt", nowMs: UInt64(now))
        let event = HostEvents.statusEvent(id: eventId, messageId: p.record.id, route: p.route, state: state,
                                           channelMessageId: channelMessageId, errorCode: errorCode, errorMessage: errorMessage,
                                           retryable: retryable, nowMs: now)
        committer.enqueue([
            .updateSend(id: p.record.id, state: state, attempts: p.record.attempts, channelMessageId: channelMessageId,
                        errorCode: errorCode, errorMessage: errorMessage, nextAttemptAtMs: nil, updatedAtMs: now),
            .appendEvent(NewEvent(id: eventId, instance: p.route.instance, channelKind: p.route.channel, type: "status",
                                  direction: "outbound", conversationId: p.route.conversationId,
                                  dedupKey: "send-status:\(p.record.id):\(state)", receivedAtMs: now,
                                  json: JSONWriter.encode(.object(event)))),
        ]) { [weak self] result in
            if case .failure(let e) = result {
                self?.logger.error("could not record the outcome of \(p.record.id): \(e); it will be sent again after restart")
            }
        }
        pumpSends(rt)
    }

    /// Sends accepted before a restart and not finished are dispatched again (at least once).
    func resumeUnfinishedSends() {
        guard let unfinished = try? loopReader.unfinishedSends(), !unfinished.isEmpty else { return }
        var resumed = 0
        for rec in unfinished {
            guard let rt = instances[rec.instance], rt.instance != nil else { continue }
            guard let conv = conversationRecord(rec.conversationId) else { continue }
            let route = OutboundRoute(instance: rec.instance, channel: rt.context.channel, conversationId: rec.conversationId,
                                      chatId: conv.chatId, accountId: conv.accountId ?? rec.instance)
            enqueueSend(rt, PendingSend(record: rec, route: route, pluginJSON: rec.json))
            resumed += 1
        }
        logger.notice("resumed \(resumed) sends accepted before the restart")
    }
}
