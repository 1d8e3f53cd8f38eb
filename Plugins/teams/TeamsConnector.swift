import CChorusPlugin
import ChorusConnectorSDK
import ChorusJSON

/// The Microsoft Teams connector (Azure Bot Framework).
///
/// Route (mounted at `/webhooks/<instance>`): `POST /messages`, the bot's messaging endpoint. Every request
/// must carry `Authorization: Bearer <JWT>` signed (RS256) by a key of the JWKS announced in the OpenID
/// metadata (`openid_metadata_url`), issued by `issuer`, for the audience `app_id`, within its lifetime
/// (5 minutes of skew) and with a `serviceurl` claim equal to the activity's `serviceUrl`; otherwise it is
/// answered 403 and nothing is stored. Keys are cached and refetched on an unknown `kid` at most once a
/// minute (and daily); a request that needs a fetch is answered once the keys arrived.
///
/// Activities: `message` (text, attachments, Adaptive Card `Action.Submit` values), `conversationUpdate`,
/// `messageReaction`, `messageUpdate`, `messageDelete`, `invoke` (answered `{"status":200}`); others are
/// stored as `unsupported`. The serviceUrl of each conversation is kept in the instance's key-value store.
///
/// Outbound: the Connector API on the conversation's serviceUrl with a client-credentials token (cached
/// until it expires): POST activities (or a reply to `replyToId`), PUT to update, DELETE to delete.
/// Interactive parts and payment links become one Adaptive Card. See docs/connectors/teams.md.
public final class TeamsConnector: Connector {
    public static let descriptor = ConnectorDescriptor(
        name: "teams", version: "1.0.0", channel: "teams",
        summary: "Microsoft Teams (Bot Framework activities in, Connector API out)",
        capabilities: .init(
            flags: UInt64(CHORUS_CAP_EDIT | CHORUS_CAP_DELETE | CHORUS_CAP_THREADS | CHORUS_CAP_TYPING | CHORUS_CAP_PAYMENTS),
            receiveParts: ["text", "media", "interactive_reply", "unsupported"],
            sendParts: ["text", "media", "interactive", "payment_request"],
            maxTextLength: UInt32(TeamsOutbound.maxTextLength), ratePerSecond: 0, ratePerChatPerMinute: 60, maxMediaBytes: 0))

    /// Keys are refetched at most this often for an unknown `kid` (ms).
    static let keyRefetchIntervalMs: UInt64 = 60_000
    /// Known keys are refreshed after this long (ms).
    static let keyMaxAgeMs: UInt64 = 24 * 3_600_000
    /// The wait used when the Connector API rate-limits without a Retry-After.
    static let defaultRetryAfterMs: UInt32 = 1000

    public let host: ConnectorHost
    private var config: TeamsConfig
    private var keys: [String: TeamsJWK] = [:]
    private var keysFetchedAtMs: UInt64?
    /// Whether the last attempt to fetch the keys failed (requests needing a key are then answered 503).
    private var keyFetchFailed = false
    private var keyWaiters: [() -> Void] = []
    private var fetchingKeys = false
    private var token: (value: String, expiresAtMs: UInt64)?
    private var tokenWaiters: [(Result<String, TeamsTokenFailure>) -> Void] = []
    private var fetchingToken = false
    private var pending: Set<SendID> = []
    private var stopping = false

    /// Why no access token could be had.
    struct TeamsTokenFailure: Error { let outcome: SendOutcome }

    public init(host: ConnectorHost, settings: ConnectorSettings) throws {
        self.host = host
        config = try TeamsConfig(settings)
    }

    public func start() throws {
        try host.route("POST", "/messages") { [unowned self] req, res in self.messages(req, res) }
        host.log(.info, "teams connector ready", [("openid_metadata_url", config.openIDMetadataURL), ("token_url", config.tokenURL)])
    }

    public func reload(settings: ConnectorSettings) throws {
        let next = try TeamsConfig(settings)
        if next.appId != config.appId || next.appPassword != config.appPassword || next.tokenURL != config.tokenURL || next.scope != config.scope {
            token = nil
        }
        if next.openIDMetadataURL != config.openIDMetadataURL { keys = [:]; keysFetchedAtMs = nil }
        config = next
    }

    public func stop() {
        stopping = true
        if pending.isEmpty { host.stopped() }
    }

    // MARK: Inbound

    private func refuse(_ res: Responder, _ why: String, _ req: IncomingRequest) {
        host.count("auth_refused")
        host.log(.warning, "refused an unauthenticated activity", [("reason", why), ("remote", req.remoteAddress)])
        res.respond(status: 403, json: ["error": .string(why)])
    }

    private func messages(_ req: IncomingRequest, _ res: Responder) {
        guard let auth = req.header("authorization"), auth.count > 7, auth.prefix(7).lowercased() == "bearer " else {
            return refuse(res, "missing Authorization: Bearer token", req)
        }
        let jwt: TeamsJWT
        do { jwt = try TeamsJWT(String(auth.dropFirst(7))) } catch { return refuse(res, error.description, req) }
        let activity: TeamsActivity
        do { activity = try TeamsActivity(req.body) } catch {
            host.count("malformed")
            host.log(.warning, "refused a malformed activity", [("reason", error.description)])
            return res.respond(status: 400, json: ["error": .string(error.description)])
        }
        guard let kid = jwt.keyId, !kid.isEmpty else { return refuse(res, "the token has no kid", req) }
        withKey(kid) { [weak self] key in
            guard let self else { return res.respond(status: 503) }
            guard let key else {
                if self.keyFetchFailed {
                    self.host.log(.warning, "signing keys unavailable; asking Bot Framework to retry", [("kid", kid)])
                    return res.respond(status: 503, headers: [("Retry-After", "60")])
                }
                return self.refuse(res, "unknown signing key \(kid)", req)
            }
            do {
                try jwt.verify(key: key, issuers: [self.config.issuer], audience: self.config.appId, now: TeamsClock.nowSeconds(),
                               serviceURL: activity.serviceURL)
            } catch { return self.refuse(res, "\(error)", req) }
            if !key.endorsements.isEmpty, let ch = activity.json["channelId"]?.stringValue, !key.endorsements.contains(ch) {
                return self.refuse(res, "the signing key is not endorsed for channel \(ch)", req)
            }
            self.accept(activity, res)
        }
    }

    private func accept(_ activity: TeamsActivity, _ res: Responder) {
        let key = "service_url:" + activity.conversationId
        if host.kvGetString(key) != activity.serviceURL { _ = host.kvPut(key, Array(activity.serviceURL.utf8)) }
        let (event, kind) = TeamsInbound.map(activity, account: config.account)
        let answer: (Int) -> Void = { status in
            if status == 200 && activity.type == "invoke" { res.respond(status: 200, json: ["status": 200]) } else { res.respond(status: status) }
        }
        emit(withDedup(event, TeamsInbound.dedupKey(activity)), kind: kind, activity: activity, answer: answer, fallback: true)
    }

    private func withDedup(_ event: JSONValue, _ key: String?) -> JSONValue {
        guard let key, case .object(var o) = event else { return event }
        o["dedup_key"] = .string(String(key.prefix(512)))
        return .object(o)
    }

    /// Emits and answers only once the event is durable; a refused event is stored as unsupported instead.
    private func emit(_ ev: JSONValue, kind: String, activity: TeamsActivity, answer: @escaping (Int) -> Void, fallback: Bool) {
        host.emit(ev) { [weak self] result in
            guard let self else { return answer(503) }
            switch result {
            case .committed, .duplicate:
                self.host.count(result == .duplicate ? "duplicates" : "received")
                answer(200)
            case .unavailable(let why):
                self.host.log(.warning, "activity not stored, Bot Framework will retry", [("reason", why)])
                answer(503)
            case .invalid(let why):
                guard fallback else {
                    self.host.log(.error, "fallback event refused too", [("reason", why)])
                    return answer(500)
                }
                self.host.log(.error, "event refused by the daemon; storing it as unsupported", [("kind", kind), ("reason", why)])
                var u = TeamsInbound.unsupported(activity, account: self.config.account ?? activity.json["recipient"]?["id"]?.stringValue ?? "teams",
                                                 context: ["refused": .string(why)])
                if case .object(var o) = u { o["dedup_key"] = ev["dedup_key"]; u = .object(o) }
                self.emit(u, kind: kind, activity: activity, answer: answer, fallback: false)
            }
        }
    }

    /// Calls `done` with the key `kid`, fetching the OpenID metadata and JWKS when it is unknown (at most once
    /// a minute) or the keys are older than a day.
    private func withKey(_ kid: String, _ done: @escaping (TeamsJWK?) -> Void) {
        let now = TeamsClock.monotonicMs()
        let fresh = keysFetchedAtMs.map { now - $0 < TeamsConnector.keyMaxAgeMs } ?? false
        if let k = keys[kid], fresh { return done(k) }
        if let at = keysFetchedAtMs, now - at < TeamsConnector.keyRefetchIntervalMs { return done(keys[kid]) }
        keyWaiters.append { [weak self] in done(self?.keys[kid]) }
        guard !fetchingKeys else { return }
        fetchingKeys = true
        fetchKeys()
    }

    private func fetchKeys() {
        let finish: (String?) -> Void = { [weak self] failure in
            guard let self else { return }
            self.fetchingKeys = false
            self.keysFetchedAtMs = TeamsClock.monotonicMs()
            self.keyFetchFailed = failure != nil
            if let failure {
                self.host.count("jwks_fetch_failed")
                self.host.log(.error, "could not fetch the Bot Framework signing keys", [("reason", failure)])
            }
            let waiters = self.keyWaiters
            self.keyWaiters = []
            for w in waiters { w() }
        }
        host.request(method: "GET", url: config.openIDMetadataURL, timeoutMs: config.requestTimeoutMs) { [weak self] meta in
            guard let self else { return }
            guard meta.status == 200, let doc = try? JSONParser.parse(meta.body), let jwks = doc["jwks_uri"]?.stringValue else {
                return finish("OpenID metadata: \(meta.status == 0 ? meta.error ?? "no response" : "HTTP \(meta.status) or no jwks_uri")")
            }
            self.host.request(method: "GET", url: jwks, timeoutMs: self.config.requestTimeoutMs) { [weak self] r in
                guard let self else { return }
                guard r.status == 200, let set = TeamsJWK.parseSet(r.body) else {
                    return finish("JWKS: \(r.status == 0 ? r.error ?? "no response" : "HTTP \(r.status) or not a key set")")
                }
                self.keys = set
                self.host.log(.info, "fetched the Bot Framework signing keys", [("keys", String(set.count))])
                finish(nil)
            }
        }
    }

    // MARK: Outbound

    public func send(_ message: OutboundMessage) throws {
        if stopping {
            return host.sendResult(message.id, .retryable(code: "stopping", message: "instance is stopping"))
        }
        let conversation = message.json["channel_ids"]?["chat"]?.stringValue ?? message.to
        guard !conversation.isEmpty else {
            return host.sendResult(message.id, .permanent(code: "missing_conversation", message: "no conversation id to send to"))
        }
        guard let serviceURL = host.kvGetString("service_url:" + conversation) ?? config.defaultServiceURL else {
            return host.sendResult(message.id, .permanent(code: "unknown_conversation",
                                                          message: "no serviceUrl is known for this conversation (it has not written to the bot) and no service_url is set"))
        }
        let call: TeamsCall
        do { call = try TeamsOutbound.plan(message.json, conversation: conversation) } catch {
            return host.sendResult(message.id, .permanent(code: error.code, message: error.message))
        }
        pending.insert(message.id)
        withToken { [weak self] result in
            guard let self else { return }
            switch result {
            case .failure(let f): self.finish(message.id, f.outcome)
            case .success(let bearer): self.perform(message.id, call, serviceURL: serviceURL, bearer: bearer)
            }
        }
    }

    private func perform(_ id: SendID, _ call: TeamsCall, serviceURL: String, bearer: String) {
        var headers = [("Authorization", "Bearer \(bearer)")]
        if call.body != nil { headers.append(("Content-Type", "application/json; charset=utf-8")) }
        host.request(method: call.method, url: serviceURL + call.path, headers: headers, body: call.body.map { JSONWriter.encode($0) } ?? [],
                     timeoutMs: config.requestTimeoutMs) { [weak self] r in
            guard let self else { return }
            self.finish(id, self.classify(call, r))
        }
    }

    private func retryAfterMs(_ r: HTTPResult) -> UInt32? {
        guard let v = r.header("retry-after"), let secs = UInt32(v.filter { $0 != " " }) else { return nil }
        return min(secs, 3600) * 1000
    }

    private func classify(_ call: TeamsCall, _ r: HTTPResult) -> SendOutcome {
        let what = "\(call.method) activity"
        switch r.status {
        case 0:
            return .retryable(code: "transport", message: "\(what): \(r.error ?? "no response")")
        case 200...299:
            let id = (try? JSONParser.parse(r.body))?["id"]?.stringValue
            return .sent(channelMessageId: id.flatMap { $0.isEmpty ? nil : $0 } ?? call.knownMessageId)
        case 401:
            token = nil
            return .retryable(code: "unauthorized", message: "\(what): the Connector API refused the token (HTTP 401)")
        case 429:
            host.count("rate_limited")
            return .retryable(code: "throttled", message: "\(what): HTTP 429", retryAfterMs: retryAfterMs(r) ?? TeamsConnector.defaultRetryAfterMs)
        case 500...599:
            return .retryable(code: "http_\(r.status)", message: "\(what): HTTP \(r.status)", retryAfterMs: retryAfterMs(r) ?? 0)
        default:
            let err = (try? JSONParser.parse(r.body))?["error"]
            let code = err?["code"]?.stringValue ?? "http_\(r.status)"
            return .permanent(code: code, message: "\(what): HTTP \(r.status)" + (err?["message"]?.stringValue.map { ": \($0)" } ?? ""))
        }
    }

    private func finish(_ id: SendID, _ outcome: SendOutcome) {
        guard pending.remove(id) != nil else { return }
        switch outcome {
        case .sent: host.count("sent")
        case .retryable: host.count("send_retryable")
        case .permanent: host.count("send_failed")
        }
        host.sendResult(id, outcome)
        if stopping && pending.isEmpty { host.stopped() }
    }

    /// A client-credentials access token, cached until a minute before it expires; concurrent sends share one fetch.
    private func withToken(_ done: @escaping (Result<String, TeamsTokenFailure>) -> Void) {
        if let t = token, TeamsClock.monotonicMs() + 60_000 < t.expiresAtMs { return done(.success(t.value)) }
        tokenWaiters.append(done)
        guard !fetchingToken else { return }
        fetchingToken = true
        let body = TeamsText.formEncode([("grant_type", "client_credentials"), ("client_id", config.appId),
                                         ("client_secret", config.appPassword), ("scope", config.scope)])
        host.request(method: "POST", url: config.tokenURL, headers: [("Content-Type", "application/x-www-form-urlencoded")], body: body,
                     timeoutMs: config.requestTimeoutMs) { [weak self] r in
            guard let self else { return }
            self.fetchingToken = false
            let result: Result<String, TeamsTokenFailure>
            if r.status == 200, let doc = try? JSONParser.parse(r.body), let access = doc["access_token"]?.stringValue, !access.isEmpty {
                let secs = doc["expires_in"]?.intValue ?? Int64(doc["expires_in"]?.stringValue ?? "") ?? 3600
                self.token = (access, TeamsClock.monotonicMs() + UInt64(max(secs, 0)) * 1000)
                self.host.count("token_fetched")
                result = .success(access)
            } else {
                let err = (try? JSONParser.parse(r.body))?["error"]?.stringValue
                let msg = "token endpoint: " + (r.status == 0 ? r.error ?? "no response" : "HTTP \(r.status)") + (err.map { " \($0)" } ?? "")
                self.host.log(.error, "could not get a Bot Framework access token", [("reason", msg)])
                let retry = r.status == 0 || r.status == 429 || r.status >= 500
                result = .failure(TeamsTokenFailure(outcome: retry ? .retryable(code: "token_unavailable", message: msg, retryAfterMs: self.retryAfterMs(r) ?? 0)
                                                          : .permanent(code: err ?? "token_refused", message: msg)))
            }
            let waiters = self.tokenWaiters
            self.tokenWaiters = []
            for w in waiters { w(result) }
        }
    }
}

/// The plugin's one exported symbol.
@_cdecl("chorus_plugin_entry")
public func chorus_plugin_entry(_ offer: UnsafePointer<chorus_host_offer>?,
                                _ out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?) -> chorus_status
{
    ConnectorExport.entry(offer: offer, out: out, descriptor: TeamsConnector.descriptor) { host, settings in
        try TeamsConnector(host: host, settings: settings)
    }
}
