import ChorusConnectorSDK
import Dispatch
import EmailTransport
import Synchronization

/// Watches one IMAP mailbox on a worker thread (libetpan calls block): IDLE when the server
/// offers it (polling every `imap_poll_interval_s` otherwise), each new message fetched, handed
/// to the connector on the loop thread, and — once its event is committed — flagged or moved and
/// its UID stored as the mailbox's last UID in the instance's durable state, together with the
/// mailbox's UIDVALIDITY. Nothing is marked before its commit, so a crash in between only
/// re-reads a message (stored once: the host deduplicates by Message-ID).
///
/// Every host call except `post` happens on the loop thread: the worker hands work over with
/// `onLoop` and waits for the answer — also for OAuth2 access tokens (`auth = "oauth2"`): one is asked
/// from the connector's `OAuth2TokenSource` before each connection, and when the server refuses it the
/// watcher drops it, gets a fresh one and reconnects at once, one time, before backing off.
final class IMAPWatcher: @unchecked Sendable {
    /// How a first run (no stored state for the mailbox) treats mail already there.
    enum Initial: String, Sendable {
        /// Mail not marked `\Seen` (the default).
        case unseen
        /// Everything in the mailbox.
        case all
        /// Nothing: only mail arriving from now on.
        case new
    }

    private struct Knobs: Sendable {
        var idle: Bool
        var pollSeconds: Int
        var processed: EmailConfig.Processed
        var processedFolder: String
        var errorFolder: String?
        var maxMessageBytes: Int
        var initial: Initial
    }

    private struct State: ~Copyable {
        var stopped = false
        var client: IMAPClient?
        var knobs: Knobs
    }

    private let host: ConnectorHost
    /// Only dereferenced on the loop thread.
    private let connector: WeakConnector
    private let settings: IMAPSettings
    /// Log in with XOAUTH2 and tokens from the connector.
    private let usesOAuth2: Bool
    private let state: Mutex<State>
    private let wake = DispatchSemaphore(value: 0)
    private let queue: DispatchQueue
    // Loop thread only:
    private var finished = false
    private var onFinished: (() -> Void)?

    /// IDLE is renewed before servers drop it (RFC 2177: at least every 29 minutes).
    static let idleRenewSeconds = 25 * 60
    /// The keyword set on processed mail (with `\Seen`) when `imap_processed = "flag"`.
    static let processedKeyword = "$Chorus"
    /// The keyword set on mail that cannot be read as a message.
    static let errorKeyword = "$ChorusError"
    /// The keyword set on mail over `max_message_bytes`.
    static let tooBigKeyword = "$ChorusTooBig"

    init(connector: EmailConnector, settings: IMAPSettings, config: EmailConfig) {
        host = connector.host
        self.connector = WeakConnector(connector)
        self.settings = settings
        usesOAuth2 = config.auth == .oauth2
        state = Mutex(State(knobs: IMAPWatcher.knobs(config)))
        queue = DispatchQueue(label: "chorus.email.imap." + connector.instanceName)
    }

    private static func knobs(_ c: EmailConfig) -> Knobs {
        Knobs(idle: c.imapIdle, pollSeconds: c.imapPollSeconds, processed: c.imapProcessed, processedFolder: c.imapProcessedFolder,
              errorFolder: c.imapErrorFolder, maxMessageBytes: c.maxMessageBytes, initial: c.imapInitial)
    }

    /// Starts the worker.
    func start() { queue.async { self.run() } }

    /// New polling/processing settings, used from the next message on.
    func update(config: EmailConfig) {
        let k = IMAPWatcher.knobs(config)
        state.withLock { $0.knobs = k }
        wake.signal()
    }

    /// Interrupts the worker (a blocked IDLE returns at once); `done` runs on the loop thread once it has finished.
    func stop(_ done: @escaping () -> Void) {
        if finished { done(); return }
        onFinished = done
        let client = state.withLock { s -> IMAPClient? in
            s.stopped = true
            return s.client
        }
        client?.interrupt()
        wake.signal()
    }

    private var isStopped: Bool { state.withLock { $0.stopped } }
    private var currentKnobs: Knobs { state.withLock { $0.knobs } }

    // MARK: Worker thread

    private func run() {
        var backoff = 1
        var refreshedAfterRefusal = false
        connecting: while !isStopped {
            var settings = self.settings
            if usesOAuth2 {
                guard let result = accessToken() else { break connecting }   // the connector is gone
                switch result {
                case .success(let token):
                    settings.oauth2AccessToken = token
                case .failure(let failure):
                    if isStopped { break connecting }
                    count("imap_errors")
                    if failure.permanent { backoff = max(backoff, 30) }   // needs the operator; the token source backs off too
                    log(.warning, "imap: no OAuth2 access token (\(failure.code)); trying again in \(backoff) s",
                        [("server", "\(settings.host):\(settings.port)")])
                    _ = wake.wait(timeout: .now() + .seconds(backoff))
                    backoff = min(backoff * 2, 60)
                    continue
                }
            }
            let client = IMAPClient(settings)
            let registered = state.withLock { s -> Bool in
                if s.stopped { return false }
                s.client = client
                return true
            }
            guard registered else { break }
            var refreshNow = false
            do {
                try client.connect()
                backoff = 1
                refreshedAfterRefusal = false
                log(.info, "imap connected", [("server", "\(settings.host):\(settings.port)"), ("mailbox", settings.mailbox),
                                                ("uidvalidity", String(client.uidValidity)),
                                                ("idle", client.capabilities.contains("IDLE") ? "yes" : "no")])
                try session(client)
            } catch let error as IMAPError where error.kind == .auth && settings.oauth2AccessToken != nil && !isStopped {
                // Most likely expired or revoked: drop it, and once in a row try a fresh one without waiting.
                let token = settings.oauth2AccessToken ?? ""
                _ = onLoop { (c: EmailConnector, done: @escaping (Bool) -> Void) in
                    c.oauth2?.invalidate(token)
                    done(true)
                }
                count("imap_errors")
                if !refreshedAfterRefusal {
                    refreshedAfterRefusal = true
                    refreshNow = true
                    log(.notice, "imap: the server refused the OAuth2 access token; getting a fresh one and reconnecting",
                        [("server", "\(settings.host):\(settings.port)")])
                } else {
                    log(.warning, "imap: \(error); reconnecting in \(backoff) s", [("server", "\(settings.host):\(settings.port)")])
                }
            } catch {
                if !isStopped {
                    count("imap_errors")
                    log(.warning, "imap: \(error); reconnecting in \(backoff) s", [("server", "\(settings.host):\(settings.port)")])
                }
            }
            client.logout()
            state.withLock { $0.client = nil }
            if isStopped { break }
            if refreshNow { continue }
            _ = wake.wait(timeout: .now() + .seconds(backoff))
            backoff = min(backoff * 2, 60)
        }
        host.post { [self] in
            finished = true
            let done = onFinished
            onFinished = nil
            done?()
        }
    }

    private var validityKey: String { "imap:" + settings.mailbox + ":uidvalidity" }
    private var lastUIDKey: String { "imap:" + settings.mailbox + ":last_uid" }

    /// One connected session: catch up, then wait for news, until an error or stop.
    private func session(_ client: IMAPClient) throws {
        let (vKey, uKey) = (validityKey, lastUIDKey)
        guard let stored = onLoop({ (c: EmailConnector, done: @escaping ((UInt32?, UInt32?)) -> Void) in
            done((c.host.kvGetString(vKey).flatMap { UInt32($0) }, c.host.kvGetString(uKey).flatMap { UInt32($0) }))
        }) else { return }
        let knobs = currentKnobs
        if knobs.processed == .move { try client.ensureMailbox(knobs.processedFolder) }
        if let e = knobs.errorFolder { try client.ensureMailbox(e) }

        var lastUID: UInt32
        if let validity = stored.0, validity == client.uidValidity {
            lastUID = stored.1 ?? 0
        } else {
            // First run, or the mailbox was recreated (UIDVALIDITY changed): UIDs mean nothing any more.
            let mode: Initial = stored.0 == nil ? knobs.initial : .all
            if stored.0 != nil {
                log(.notice, "UIDVALIDITY of the mailbox changed; reading it again (mail already stored is recognised by its Message-ID)",
                    [("mailbox", settings.mailbox), ("was", String(stored.0!)), ("now", String(client.uidValidity))])
            }
            let base = client.uidNext > 0 ? client.uidNext - 1 : 0
            let todo: [UInt32]
            switch mode {
            case .new: todo = []
            case .all: todo = try client.uids(after: 0).filter { $0 <= base }
            case .unseen: todo = try client.uidsWithout(flag: "\\Seen").filter { $0 <= base }
            }
            for uid in todo {
                if isStopped { return }
                if try process(client, uid) == .retryLater { throw IMAPWatcherError.notCommitted }
            }
            // The initial pass is over: only now is the state stored, so a crash in the middle repeats it.
            let validity = client.uidValidity
            guard onLoop({ (c: EmailConnector, done: @escaping (Bool) -> Void) in
                done(c.host.kvPut(vKey, Array(String(validity).utf8)) && c.host.kvPut(uKey, Array(String(base).utf8)))
            }) == true else { throw IMAPWatcherError.stateNotWritten }
            lastUID = base
        }

        while !isStopped {
            var retryLater = false
            for uid in try client.uids(after: lastUID) {
                if isStopped { return }
                if try process(client, uid) == .retryLater { retryLater = true; break }
                lastUID = uid
                let u = uid
                guard onLoop({ (c: EmailConnector, done: @escaping (Bool) -> Void) in done(c.host.kvPut(uKey, Array(String(u).utf8))) }) == true else {
                    retryLater = true
                    break
                }
            }
            if isStopped { return }
            if retryLater {
                _ = wake.wait(timeout: .now() + .seconds(5))
                continue
            }
            let k = currentKnobs
            if k.idle && client.capabilities.contains("IDLE") {
                if try client.idle(timeoutSeconds: IMAPWatcher.idleRenewSeconds) == .interrupted { return }
            } else {
                _ = wake.wait(timeout: .now() + .seconds(k.pollSeconds))
                if isStopped { return }
                try client.noop()
            }
        }
    }

    private enum Step { case done, retryLater }

    /// Reads one message and hands it over; marks it once it is committed.
    private func process(_ client: IMAPClient, _ uid: UInt32) throws -> Step {
        let knobs = currentKnobs
        guard let size = try client.size(uid: uid) else { return .done }   // expunged meanwhile
        if size > knobs.maxMessageBytes {
            count("inbound_too_big")
            log(.warning, "mail over max_message_bytes left in the mailbox", [("uid", String(uid)), ("size", String(size)),
                                                                               ("max_message_bytes", String(knobs.maxMessageBytes))])
            try setAside(client, uid, keyword: IMAPWatcher.tooBigKeyword, knobs)
            return .done
        }
        guard let raw = try client.fetch(uid: uid) else { return .done }
        let outcome = onLoop { (c: EmailConnector, done: @escaping (EmailConnector.IngestOutcome) -> Void) in
            c.ingest(raw, transport: "imap", envelope: nil, completion: done)
        } ?? .unavailable("instance stopped")
        switch outcome {
        case .stored:
            switch knobs.processed {
            case .flag: try client.addFlags(uid: uid, ["\\Seen", IMAPWatcher.processedKeyword])
            case .move: try client.move(uid: uid, to: knobs.processedFolder)
            case .none: break
            }
            return .done
        case .malformed(let why):
            log(.warning, "mail that cannot be read left in the mailbox", [("uid", String(uid)), ("error", why)])
            try setAside(client, uid, keyword: IMAPWatcher.errorKeyword, knobs)
            return .done
        case .tooBig:
            try setAside(client, uid, keyword: IMAPWatcher.tooBigKeyword, knobs)
            return .done
        case .unavailable:
            return .retryLater
        }
    }

    /// Marks a message that will not become an event, and moves it to `imap_error_folder` when one is set.
    private func setAside(_ client: IMAPClient, _ uid: UInt32, keyword: String, _ knobs: Knobs) throws {
        try client.addFlags(uid: uid, [keyword])
        if let folder = knobs.errorFolder { try client.move(uid: uid, to: folder) }
    }

    // MARK: Hand-over to the loop thread

    /// An access token from the connector's token source (cached, or fetched through the host's HTTP client);
    /// nil when the connector is gone.
    private func accessToken() -> Result<String, OAuth2Failure>? {
        onLoop { (c: EmailConnector, done: @escaping (Result<String, OAuth2Failure>) -> Void) in
            guard let source = c.oauth2 else {
                done(.failure(OAuth2Failure(code: "not_configured", message: "no oauth2 settings", permanent: true)))
                return
            }
            source.token(done)
        }
    }

    /// Runs `body` on the loop thread and waits for the value it passes to its callback; nil when the connector is gone.
    private func onLoop<T>(_ body: @escaping (EmailConnector, @escaping (T) -> Void) -> Void) -> T? {
        let sem = DispatchSemaphore(value: 0)
        let slot = Slot<T>()
        let work = LoopBox(body)
        let connector = self.connector
        host.post {
            guard let c = connector.value else { sem.signal(); return }
            work.value(c) { v in
                slot.value = v
                sem.signal()
            }
        }
        sem.wait()
        return slot.value
    }

    private func log(_ level: LogLevel, _ message: String, _ fields: [(String, String)] = []) {
        let host = self.host
        let f = FieldsBox(fields)
        host.post { host.log(level, message, f.fields) }
    }

    private func count(_ name: String) {
        let host = self.host
        host.post { host.count(name) }
    }
}

enum IMAPWatcherError: Error, CustomStringConvertible {
    case notCommitted
    case stateNotWritten
    var description: String {
        switch self {
        case .notCommitted: return "a message could not be committed; trying again"
        case .stateNotWritten: return "the mailbox state could not be stored; trying again"
        }
    }
}

/// A value set on the loop thread and read by the waiting worker after the semaphore.
final class Slot<T>: @unchecked Sendable {
    var value: T?
}

final class FieldsBox: @unchecked Sendable {
    let fields: [(String, String)]
    init(_ fields: [(String, String)]) { self.fields = fields }
}
