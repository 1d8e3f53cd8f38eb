import CChorusPlugin
import ChorusConnectorSDK
import ChorusJSON
import Dispatch
import EmailMIME
import EmailTransport
#if canImport(Glibc)
import Glibc
#endif

/// The email connector: one business mailbox, described in `docs/connectors/email.md`.
///
/// Mail comes in through IMAP (a watched mailbox, IDLE with a polling fallback, the last UID
/// kept durably) and/or an LMTP listener an MTA delivers into (answered only after the commit).
/// MIME is parsed with GMime (`EmailMIME`); threads map onto conversations through
/// `Message-ID`, `In-Reply-To` and `References` (`ThreadBook`). Replies go out through SMTP
/// submission; delivery reports coming back become `failed` (or `delivered`) status events on
/// the message they concern.
public final class EmailConnector: Connector {
    /// The plugin's descriptor: channel `email`.
    public static let descriptor = ConnectorDescriptor(
        name: "email", version: "1.0.0", channel: "email",
        summary: "Email: IMAP (IDLE) or LMTP in, SMTP submission out, MIME through GMime, threads as conversations",
        capabilities: .init(
            flags: UInt64(CHORUS_CAP_DELIVERY_STATUS),
            receiveParts: ["text", "media"],
            sendParts: ["text", "media", "location", "contact", "interactive", "payment_request", "product"],
            maxTextLength: 1 << 20, ratePerSecond: 0, ratePerChatPerMinute: 0,
            maxMediaBytes: 25 << 20))

    /// The host this instance was created with.
    public let host: ConnectorHost
    let instanceName: String
    private(set) var config: EmailConfig
    let threads: ThreadBook
    let media: MediaFiles
    private var inbound: EmailInbound
    private var imapWatcher: IMAPWatcher?
    private var lmtp: LMTPListener?
    /// Access tokens for XOAUTH2, with `auth = "oauth2"` (loop thread; the IMAP worker asks through `onLoop`).
    private(set) var oauth2: OAuth2TokenSource?
    /// Sends handed over and not yet reported.
    private var pending: Set<SendID> = []
    /// SMTP submissions run here, one at a time per instance, off the loop thread.
    private let smtpQueue: DispatchQueue
    private var stopping = false
    private var stoppedReported = false

    var mediaPathPrefix: String { "/webhooks/\(instanceName)/media/" }

    /// Validates the settings (see `docs/connectors/email.md`); throws `ConnectorError` naming the bad key.
    public init(host: ConnectorHost, settings: ConnectorSettings) throws {
        self.host = host
        self.instanceName = settings.instanceName
        let config = try EmailConfig(settings)
        self.config = config
        threads = ThreadBook(host: host)
        media = MediaFiles(directory: settings.stateDirectory + "/email-media/" + settings.instanceName)
        inbound = EmailInbound(account: config.address, mediaPathPrefix: "/webhooks/\(settings.instanceName)/media/",
                               publicBaseURL: config.publicBaseURL)
        smtpQueue = DispatchQueue(label: "chorus.email.smtp." + settings.instanceName)
        oauth2 = config.oauth2.map { OAuth2TokenSource(host: host, settings: $0) }
    }

    /// Opens the LMTP listener, starts the IMAP watcher and registers the media route.
    public func start() throws {
        try host.route("GET", "/media/*") { [unowned self] req, res in self.serveMedia(req, res) }
        if let listenHost = config.lmtpHost {
            let allowed = config.lmtpRecipients
            let listener = LMTPListener(host: host, hostname: config.messageIDDomain, maxMessageBytes: config.maxMessageBytes,
                                        acceptRecipient: { allowed.isEmpty || allowed.contains($0.lowercased()) },
                                        deliver: { [unowned self] envelope, done in self.deliverLMTP(envelope, done) })
            try listener.start(address: listenHost, port: config.lmtpPort)
            lmtp = listener
        }
        if let imap = config.imap {
            let watcher = IMAPWatcher(connector: self, settings: imap, config: config)
            imapWatcher = watcher
            watcher.start()
        }
        host.log(.info, "email channel ready", [
            ("address", config.address),
            ("imap", config.imap.map { "\($0.host):\($0.port) \($0.security.rawValue) \($0.mailbox)" } ?? "off"),
            ("lmtp", lmtp.map { "\(config.lmtpHost ?? ""):\($0.port)" } ?? "off"),
            ("smtp", config.smtp.map { "\($0.host):\($0.port) \($0.security.rawValue)" } ?? "off"),
            ("auth", config.oauth2.map { "oauth2 (token endpoint \($0.tokenURL))" } ?? config.auth.rawValue),
        ])
    }

    /// Applies new settings when only outbound and presentation settings changed; a change of the
    /// IMAP account, the LMTP listener or the media location needs a restart of the instance.
    public func reload(settings: ConnectorSettings) throws {
        let new = try EmailConfig(settings)
        guard new.imap?.host == config.imap?.host, new.imap?.port == config.imap?.port,
              new.imap?.username == config.imap?.username, new.imap?.mailbox == config.imap?.mailbox,
              new.lmtpHost == config.lmtpHost, new.lmtpPort == config.lmtpPort, new.address == config.address,
              new.imap == nil || new.auth == config.auth
        else {
            throw ConnectorError("the IMAP account or its auth, the LMTP listener or the address changed: restart the instance (remove and re-add it, or restart chorusd)")
        }
        if new.oauth2 != config.oauth2 {
            // New client or refresh token: a fresh source (the IMAP worker takes its next token from it).
            oauth2 = new.oauth2.map { OAuth2TokenSource(host: host, settings: $0) }
        }
        config = new
        inbound = EmailInbound(account: new.address, mediaPathPrefix: mediaPathPrefix, publicBaseURL: new.publicBaseURL)
        imapWatcher?.update(config: new)
    }

    /// Closes the listener, stops the IMAP watcher, refuses new sends, and reports `stopped` once
    /// the watcher has finished and every submission in flight has been reported.
    public func stop() {
        stopping = true
        lmtp?.stop()
        if let w = imapWatcher {
            w.stop { [weak self] in
                self?.imapWatcher = nil
                self?.reportStoppedIfIdle()
            }
        }
        reportStoppedIfIdle()
    }

    private func reportStoppedIfIdle() {
        guard stopping, pending.isEmpty, imapWatcher == nil, !stoppedReported else { return }
        stoppedReported = true
        host.stopped()
    }

    // MARK: Media route

    private func serveMedia(_ req: IncomingRequest, _ res: Responder) {
        let key = String(req.path.split(separator: "/").last ?? "")
        let media = self.media
        let box = ResponderBox(res)
        let host = self.host
        DispatchQueue.global().async {
            let bytes = media.read(key)
            host.post {
                if let bytes {
                    box.res.respond(status: 200, headers: [("Content-Type", "application/octet-stream")], body: bytes)
                } else {
                    box.res.respond(status: 404, json: ["error": "no such media"])
                }
            }
        }
    }

    // MARK: Inbound

    /// How one received mail ended.
    enum IngestOutcome: Sendable, Equatable {
        /// Committed (or seen before): the transport may acknowledge it.
        case stored
        /// Not a mail that can be read at all: refuse it, don't retry.
        case malformed(String)
        /// Bigger than `max_message_bytes`.
        case tooBig(Int)
        /// Not committed (disk full, shutting down): the transport must try again later.
        case unavailable(String)
    }

    /// Parses `raw` and stores its attachments off the loop thread, then emits its event(s).
    /// `completion` runs on the loop thread, exactly once.
    func ingest(_ raw: [UInt8], transport: String, envelope: (from: String, recipients: [String])?,
                completion: @escaping (IngestOutcome) -> Void) {
        let max = config.maxMessageBytes
        guard raw.count <= max else {
            host.count("inbound_too_big")
            completion(.tooBig(raw.count))
            return
        }
        let media = self.media
        let host = self.host
        let done = LoopBox(completion)
        let env = envelope.map { EnvelopeBox(from: $0.from, recipients: $0.recipients) }
        let weakSelf = WeakConnector(self)
        DispatchQueue.global().async {
            let parsed: Result<(ParsedMail, [String]), IngestFailure>
            do {
                let mail = try MailParser.parse(raw, maxBytes: max)
                var digests: [String] = []
                for a in mail.attachments { digests.append(try media.store(a.data)) }
                parsed = .success((mail, digests))
            } catch let e as MailParseError {
                parsed = .failure(.malformed(e.description))
            } catch {
                parsed = .failure(.storage("\(error)"))
            }
            let result = ParsedBox(parsed)
            host.post {
                guard let self = weakSelf.value else { done.value(.unavailable("instance stopped")); return }
                switch result.value {
                case .failure(.malformed(let why)):
                    self.host.count("inbound_malformed")
                    self.host.log(.warning, "mail refused: it cannot be read as a message", [("transport", transport), ("error", why)])
                    done.value(.malformed(why))
                case .failure(.storage(let why)):
                    self.host.log(.error, "cannot store a mail's attachments; it will be taken again", [("error", why)])
                    done.value(.unavailable(why))
                case .success(let (mail, digests)):
                    self.emitMail(mail, raw: raw, digests: digests, transport: transport,
                                  envelope: env.map { ($0.from, $0.recipients) }, completion: done.value)
                }
            }
        }
    }

    private func emitMail(_ mail: ParsedMail, raw: [UInt8], digests: [String], transport: String,
                          envelope: (from: String, recipients: [String])?, completion: @escaping (IngestOutcome) -> Void) {
        let messageID = EmailInbound.messageID(mail, raw: raw)
        if let report = mail.deliveryReport, let original = report.originalMessageID, threads.knows(original) {
            let events = inbound.statusEvents(report, originalMessageID: original, reportMessageID: messageID)
            if !events.isEmpty {
                host.count("delivery_reports")
                emitInOrder(events) { [weak self] outcome in
                    guard let self else { completion(.unavailable("instance stopped")); return }
                    if case .malformed = outcome {
                        // The daemon does not know the send (sent by another system): keep the report as a message.
                        self.emitMessage(mail, messageID: messageID, digests: digests, transport: transport, envelope: envelope, completion: completion)
                    } else {
                        completion(outcome)
                    }
                }
                return
            }
        }
        emitMessage(mail, messageID: messageID, digests: digests, transport: transport, envelope: envelope, completion: completion)
    }

    private func emitMessage(_ mail: ParsedMail, messageID: String, digests: [String], transport: String,
                             envelope: (from: String, recipients: [String])?, completion: @escaping (IngestOutcome) -> Void) {
        let chat = threads.chat(messageID: messageID, inReplyTo: mail.inReplyTo, references: mail.references)
        var thread = threads.thread(chat) ?? ThreadBook.Thread(
            to: EmailInbound.replyAddresses(mail), subject: ThreadBook.baseSubject(mail.subject), references: [], last: nil)
        let replyTo = EmailInbound.replyAddresses(mail)
        if !replyTo.isEmpty && !mail.autoSubmitted { thread.to = replyTo }
        for id in mail.references + mail.inReplyTo + [messageID] where !thread.references.contains(id) { thread.references.append(id) }
        thread.last = messageID
        // Not durable alone: the thread record is committed with the event (or before it), never after it.
        threads.record(messageID: messageID, chat: chat, thread: thread)
        let event = inbound.messageEvent(mail, messageID: messageID, chat: chat, stored: digests, transport: transport, envelope: envelope)
        host.count("inbound")
        emitInOrder([event], completion: completion)
    }

    /// Emits events one after the other; `.malformed` reports a status about a send the daemon does not know.
    private func emitInOrder(_ events: [JSONValue], index: Int = 0, completion: @escaping (IngestOutcome) -> Void) {
        guard index < events.count else { completion(.stored); return }
        host.emit(events[index]) { [weak self] result in
            guard let self else { completion(.unavailable("instance stopped")); return }
            switch result {
            case .committed, .duplicate:
                self.emitInOrder(events, index: index + 1, completion: completion)
            case .unavailable(let why):
                self.host.log(.warning, "mail not committed; it will be taken again", [("reason", why)])
                completion(.unavailable(why))
            case .invalid(let why):
                if why.hasPrefix("status for an unknown message") {
                    completion(.malformed(why))
                } else {
                    self.host.log(.error, "event refused by the host", [("reason", why)])
                    completion(.malformed("event refused: \(why)"))
                }
            }
        }
    }

    /// An LMTP transaction: one event for the message, then one reply per recipient.
    private func deliverLMTP(_ envelope: LMTPSession.Envelope,
                             _ done: @escaping ([(recipient: String, accepted: Bool, message: String)]) -> Void) {
        ingest(envelope.data, transport: "lmtp", envelope: (envelope.from, envelope.recipients)) { outcome in
            let reply: (Bool, String)
            switch outcome {
            case .stored: reply = (true, "committed")
            case .malformed(let why): reply = (false, "550 5.6.0 message cannot be read: \(why)")
            case .tooBig(let n): reply = (false, "552 5.3.4 message is \(n) bytes; the limit is \(self.config.maxMessageBytes)")
            case .unavailable(let why): reply = (false, "451 4.3.0 not stored, try again later: \(why)")
            }
            done(envelope.recipients.map { (recipient: $0, accepted: reply.0, message: reply.1) })
        }
    }

    // MARK: Outbound

    /// Sends one message through SMTP submission; ends in exactly one `sendResult`.
    public func send(_ message: OutboundMessage) throws {
        if stopping {
            host.sendResult(message.id, .retryable(code: "stopping", message: "instance is stopping"))
            return
        }
        guard message.type == "message" else {
            host.sendResult(message.id, .permanent(code: "unsupported", message: "email cannot send a \(message.type)"))
            return
        }
        guard let smtp = config.smtp else {
            host.sendResult(message.id, .permanent(code: "not_configured", message: "instance \(instanceName) has no smtp_host: it only receives"))
            return
        }
        let plan: SendPlan
        do {
            plan = try SendPlan(message: message, config: config, threads: threads, mediaPathPrefix: mediaPathPrefix)
        } catch let e as EmailOutbound.Refusal {
            host.sendResult(message.id, .permanent(code: e.code, message: e.message))
            return
        }
        pending.insert(message.id)
        fetchAttachments(plan.rendered.attachments) { [weak self] result in
            guard let self else { return }
            switch result {
            case .failure(let refusal):
                self.pending.remove(message.id)
                self.host.sendResult(message.id, refusal.retryable
                    ? .retryable(code: refusal.code, message: refusal.message)
                    : .permanent(code: refusal.code, message: refusal.message))
                self.reportStoppedIfIdle()
            case .success(let attachments):
                self.submit(plan, attachments: attachments, smtp: smtp, id: message.id)
            }
        }
    }

    /// Submits, with an access token first when `auth = "oauth2"`. A token the server refuses (535) is
    /// dropped and the submission made once more with a fresh one; refused again, the send fails permanently.
    private func submit(_ plan: SendPlan, attachments: [MailAttachment], smtp: SMTPSettings, id: SendID, afterRefusal: Bool = false) {
        guard config.auth == .oauth2 else {
            submitNow(plan, attachments: attachments, smtp: smtp, id: id, afterRefusal: afterRefusal)
            return
        }
        guard let source = oauth2 else {
            pending.remove(id)
            host.sendResult(id, .permanent(code: "not_configured", message: "auth = \"oauth2\" without oauth2 settings"))
            reportStoppedIfIdle()
            return
        }
        source.token { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let token):
                var withToken = smtp
                withToken.oauth2AccessToken = token
                self.submitNow(plan, attachments: attachments, smtp: withToken, id: id, afterRefusal: afterRefusal)
            case .failure(let failure):
                guard self.pending.remove(id) != nil else { return }
                if failure.permanent {
                    self.host.count("send_failed")
                    self.host.sendResult(id, .permanent(code: "oauth2_\(failure.code)", message: "no OAuth2 access token: \(failure.message)"))
                } else {
                    self.host.count("send_retryable")
                    self.host.sendResult(id, .retryable(code: "oauth2_unavailable", message: "no OAuth2 access token: \(failure.message)"))
                }
                self.reportStoppedIfIdle()
            }
        }
    }

    private func submitNow(_ plan: SendPlan, attachments: [MailAttachment], smtp: SMTPSettings, id: SendID, afterRefusal: Bool) {
        var mail = plan.mail
        mail.attachments = attachments
        let envelopeFrom = config.address
        let host = self.host
        let weakSelf = WeakConnector(self)
        let box = MailBox(mail)
        smtpQueue.async {
            let result: SMTPResult
            do {
                let bytes = try MailBuilder.build(box.mail)
                result = SMTPSubmitter.submit(smtp, from: envelopeFrom, recipients: plan.envelopeRecipients, message: bytes)
            } catch {
                result = .failed(code: 0, message: "cannot build the message: \(error)", retryable: false)
            }
            host.post {
                guard let self = weakSelf.value, self.pending.contains(id) else { return }
                var result = result
                if case .failed(535, let message, true) = result, let token = smtp.oauth2AccessToken {
                    self.oauth2?.invalidate(token)
                    if !afterRefusal {
                        self.host.log(.notice, "smtp: the server refused the OAuth2 access token; submitting again with a fresh one",
                                      [("message_id", plan.mail.messageID)])
                        var plain = smtp
                        plain.oauth2AccessToken = nil
                        self.submit(plan, attachments: attachments, smtp: plain, id: id, afterRefusal: true)
                        return
                    }
                    // A fresh token refused too: the account, the scope or the server's setup, not the token's age.
                    result = .failed(code: 535, message: message, retryable: false)
                }
                self.pending.remove(id)
                self.finishSend(plan, id: id, result: result)
                self.reportStoppedIfIdle()
            }
        }
    }

    private func finishSend(_ plan: SendPlan, id: SendID, result: SMTPResult) {
        switch result {
        case .accepted(let response):
            // Record the thread before reporting: a reply may come back at once.
            var thread = plan.thread
            if !thread.references.contains(plan.mail.messageID) { thread.references.append(plan.mail.messageID) }
            thread.last = plan.mail.messageID
            let (host, mailID) = (self.host, plan.mail.messageID)
            threads.record(messageID: mailID, chat: plan.chat, thread: thread) {
                host.log(.error, "sent, but the thread could not be recorded; replies may open a new conversation", [("message_id", mailID)])
            }
            host.count("sent")
            host.log(.info, "mail submitted", [("message_id", plan.mail.messageID), ("response", response)])
            host.sendResult(id, .sent(channelMessageId: plan.mail.messageID))
        case .failed(let code, let message, let retryable):
            let c = code == 0 ? "smtp" : "smtp_\(code)"
            if retryable {
                host.count("send_retryable")
                host.sendResult(id, .retryable(code: c, message: message))
            } else {
                host.count("send_failed")
                host.sendResult(id, .permanent(code: c, message: message))
            }
        }
    }

    /// Why an attachment could not be fetched.
    struct FetchRefusal: Error {
        let code: String
        let message: String
        let retryable: Bool
    }

    /// Fetches attachment bytes (URLs through the host's HTTP client, stored media from disk); `done` runs on the loop.
    private func fetchAttachments(_ list: [EmailOutbound.Attachment], done: @escaping (Result<[MailAttachment], FetchRefusal>) -> Void) {
        guard !list.isEmpty else { done(.success([])); return }
        var results = [MailAttachment?](repeating: nil, count: list.count)
        var remaining = list.count
        var failed = false
        let limit = config.maxMessageBytes
        func finish(_ i: Int, _ r: Result<MailAttachment, FetchRefusal>) {
            guard !failed else { return }
            switch r {
            case .failure(let e): failed = true; done(.failure(e))
            case .success(let a):
                results[i] = a
                remaining -= 1
                if remaining == 0 { done(.success(results.compactMap { $0 })) }
            }
        }
        for (i, a) in list.enumerated() {
            switch a.source {
            case .url(let url):
                host.request(method: "GET", url: url, timeoutMs: 60_000) { response in
                    guard (200..<300).contains(response.status) else {
                        finish(i, .failure(FetchRefusal(code: "media_fetch_failed",
                            message: "attachment \(url): " + (response.status == 0 ? (response.error ?? "no response") : "HTTP \(response.status)"),
                            retryable: response.status == 0 || response.status >= 500 || response.status == 429)))
                        return
                    }
                    guard response.body.count <= limit else {
                        finish(i, .failure(FetchRefusal(code: "media_too_big",
                            message: "attachment \(url) is \(response.body.count) bytes; max_message_bytes is \(limit)", retryable: false)))
                        return
                    }
                    let type = a.mimeType ?? response.header("content-type").map { String($0.split(separator: ";")[0]).lowercased() } ?? "application/octet-stream"
                    finish(i, .success(MailAttachment(filename: a.fileName, contentType: type, data: response.body)))
                }
            case .stored(let digest):
                let media = self.media
                let host = self.host
                let box = LoopBox<(MailAttachment?) -> Void> { att in
                    if let att { finish(i, .success(att)) } else {
                        finish(i, .failure(FetchRefusal(code: "media_not_found", message: "no stored media \(digest)", retryable: false)))
                    }
                }
                DispatchQueue.global().async {
                    let bytes = media.read(digest)
                    host.post {
                        box.value(bytes.map { MailAttachment(filename: a.fileName, contentType: a.mimeType ?? "application/octet-stream", data: $0) })
                    }
                }
            }
        }
    }
}

/// Everything a send needs, decided on the loop thread before any I/O.
struct SendPlan: Sendable {
    let chat: String
    let thread: ThreadBook.Thread
    let mail: OutgoingMail
    let rendered: EmailOutbound
    let envelopeRecipients: [String]

    init(message: OutboundMessage, config: EmailConfig, threads: ThreadBook, mediaPathPrefix: String) throws {
        let to = message.to
        let options = message.json["options"]
        var thread: ThreadBook.Thread
        if let known = threads.thread(to) {
            thread = known
        } else if EmailConfig.isAddress(to.lowercased()) {
            thread = ThreadBook.Thread(to: [to.lowercased()], subject: "", references: [], last: nil)
        } else {
            throw EmailOutbound.Refusal(code: "invalid_recipient",
                                        message: "\"\(to)\" is neither a thread this instance knows nor an email address")
        }
        guard !thread.to.isEmpty else {
            throw EmailOutbound.Refusal(code: "invalid_recipient", message: "the thread \(to) has no address to reply to")
        }
        rendered = try EmailOutbound(parts: message.parts, mediaPathPrefix: mediaPathPrefix)
        let subject: String
        if let s = options?["subject"]?.stringValue, !s.isEmpty {
            subject = s
        } else if !thread.subject.isEmpty || thread.last != nil {
            subject = EmailOutbound.replySubject(thread.subject)
        } else {
            throw EmailOutbound.Refusal(code: "subject_required",
                                        message: "a first mail to \(to) needs a subject: give options.subject")
        }
        if thread.subject.isEmpty { thread.subject = ThreadBook.baseSubject(subject) }
        var cc: [MailAddress] = []
        for v in options?["cc"]?.arrayValue ?? [] {
            guard let a = v.stringValue, EmailConfig.isAddress(a.lowercased()) else {
                throw EmailOutbound.Refusal(code: "invalid", message: "options.cc: expected an array of email addresses")
            }
            cc.append(MailAddress(address: a))
        }
        let local = message.messageId.isEmpty ? nil : message.messageId
        let messageID = local.map { "\($0)@\(config.messageIDDomain)" } ?? MailBuilder.newMessageID(domain: config.messageIDDomain)
        var mail = OutgoingMail(from: config.fromAddress, to: thread.to.map { MailAddress(address: $0) }, subject: subject,
                                messageID: messageID, date: Int64(time(nil)))
        mail.cc = cc
        mail.text = rendered.text
        mail.html = rendered.html
        // In-Reply-To: the message the consumer answers, else the newest message of the thread.
        let parent = message.json["reply_to"]?["channel_message_id"]?.stringValue ?? thread.last
        if let parent {
            mail.inReplyTo = parent
            var refs = thread.references
            if let at = refs.firstIndex(of: parent) { refs = Array(refs[...at]) } else { refs.append(parent) }
            mail.references = refs
        }
        mail.extraHeaders = [("X-Chorus-Message-Id", message.messageId)].filter { !$0.1.isEmpty }.map { (name: $0.0, value: $0.1) }
        self.mail = mail
        self.thread = thread
        self.chat = to
        envelopeRecipients = thread.to + cc.map { $0.address }
    }
}

// MARK: Boxes for handing values across threads (each is dereferenced on one thread at a time)

final class LoopBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

final class WeakConnector: @unchecked Sendable {
    weak var value: EmailConnector?
    init(_ value: EmailConnector) { self.value = value }
}

final class ResponderBox: @unchecked Sendable {
    let res: Responder
    init(_ res: Responder) { self.res = res }
}

struct EnvelopeBox: Sendable {
    let from: String
    let recipients: [String]
}

enum IngestFailure: Error {
    case malformed(String)
    case storage(String)
}

final class ParsedBox: @unchecked Sendable {
    let value: Result<(ParsedMail, [String]), IngestFailure>
    init(_ value: Result<(ParsedMail, [String]), IngestFailure>) { self.value = value }
}

final class MailBox: @unchecked Sendable {
    let mail: OutgoingMail
    init(_ mail: OutgoingMail) { self.mail = mail }
}

/// The plugin's one exported symbol.
@_cdecl("chorus_plugin_entry")
public func chorus_plugin_entry(_ offer: UnsafePointer<chorus_host_offer>?,
                                _ out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?) -> chorus_status
{
    ConnectorExport.entry(offer: offer, out: out, descriptor: EmailConnector.descriptor) { host, settings in
        try EmailConnector(host: host, settings: settings)
    }
}
