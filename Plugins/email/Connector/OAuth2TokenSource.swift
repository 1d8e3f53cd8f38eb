import ChorusConnectorSDK
import ChorusJSON
#if canImport(Glibc)
import Glibc
#endif

/// The OAuth2 settings of an instance with `auth = "oauth2"` (validated by `EmailConfig`).
struct OAuth2Settings: Equatable, Sendable {
    /// The token endpoint: Google `https://oauth2.googleapis.com/token`, Microsoft
    /// `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`.
    var tokenURL: String
    /// The OAuth2 client (application) id.
    var clientID: String
    /// The client secret; nil for a public client (Microsoft allows that).
    var clientSecret: String?
    /// The refresh token from the mailbox owner's consent (a stored rotated one is preferred, see `OAuth2TokenSource`).
    var refreshToken: String
    /// The scope to ask for; nil = what the refresh token was granted.
    var scope: String?
}

/// Why no access token can be had.
struct OAuth2Failure: Error, Sendable, CustomStringConvertible {
    /// The token endpoint's `error` (`invalid_grant`, `invalid_client`, …), or `unavailable` when it could not
    /// be asked or answered something else.
    let code: String
    /// What happened, naming the endpoint, the HTTP status, `error` and `error_description`; never a secret.
    let message: String
    /// Errors that need the operator (a revoked or wrong refresh token, a wrong client): retrying cannot help.
    let permanent: Bool

    var description: String { message }
}

/// Access tokens for XOAUTH2 from the refresh_token grant (RFC 6749 §6), fetched through the host's HTTP
/// client and cached until 60 s before `expires_in` runs out. Loop thread only.
///
/// * Concurrent callers share one request.
/// * A refresh token the server rotates (returns a new `refresh_token`) is stored durably in the instance's
///   key-value store and used from then on — also after a restart — as long as the configured refresh token
///   and client stay the same (a new one in the settings, from a new consent, wins).
/// * A failure is logged (endpoint, HTTP status, `error`, `error_description`; never the secrets) and
///   remembered: callers get it at once until a backoff has passed (1 s doubling to 60 s for transient
///   failures, 30 s doubling to 15 min for permanent ones), so a broken setup does not hammer the endpoint.
final class OAuth2TokenSource {
    /// The token endpoint's errors that retrying cannot fix (RFC 6749 §5.2).
    static let permanentErrors: Set<String> = ["invalid_grant", "invalid_client", "unauthorized_client",
                                               "unsupported_grant_type", "invalid_scope", "invalid_request"]
    /// The key of the rotated refresh token in the instance's key-value store.
    static let storeKey = "oauth2:refresh_token"

    private let host: ConnectorHost
    let settings: OAuth2Settings
    private let requestTimeoutMs: UInt32
    /// The refresh token in use: the configured one, or the rotated one stored for it.
    private var refreshToken: String
    private var loadedStored = false
    private var cached: (token: String, validUntilMs: UInt64)?
    private var waiters: [(Result<String, OAuth2Failure>) -> Void] = []
    private var fetching = false
    private var lastFailure: OAuth2Failure?
    private var retryAtMs: UInt64 = 0
    private var failures = 0

    init(host: ConnectorHost, settings: OAuth2Settings, requestTimeoutMs: UInt32 = 30_000) {
        self.host = host
        self.settings = settings
        self.requestTimeoutMs = requestTimeoutMs
        refreshToken = settings.refreshToken
    }

    /// The id the stored rotated refresh token is kept under: a digest of the configured client and refresh token.
    private var storeOwner: String {
        String(MediaFiles.sha256Hex(Array((settings.tokenURL + "\n" + settings.clientID + "\n" + settings.refreshToken).utf8)).prefix(32))
    }

    /// A valid access token, from the cache or fetched; `done` runs on the loop thread (at once when cached).
    func token(_ done: @escaping (Result<String, OAuth2Failure>) -> Void) {
        let now = OAuth2TokenSource.monotonicMs()
        if let c = cached, now < c.validUntilMs { return done(.success(c.token)) }
        if let failure = lastFailure, now < retryAtMs { return done(.failure(failure)) }
        waiters.append(done)
        guard !fetching else { return }
        fetching = true
        fetch()
    }

    /// A server refused `token` (expired early, revoked): the next `token` call fetches a new one. A token
    /// already replaced is ignored, so two refusals of the same token cause one refresh.
    func invalidate(_ token: String) {
        if cached?.token == token { cached = nil }
    }

    private func fetch() {
        if !loadedStored {
            loadedStored = true
            if let raw = host.kvGet(OAuth2TokenSource.storeKey), let doc = try? JSONParser.parse(raw),
               doc["for"]?.stringValue == storeOwner, let stored = doc["refresh_token"]?.stringValue, !stored.isEmpty {
                refreshToken = stored
            }
        }
        var form: [(String, String)] = [("grant_type", "refresh_token"), ("refresh_token", refreshToken), ("client_id", settings.clientID)]
        if let secret = settings.clientSecret { form.append(("client_secret", secret)) }
        if let scope = settings.scope { form.append(("scope", scope)) }
        let body = Array(form.map { "\(OAuth2TokenSource.formEncode($0.0))=\(OAuth2TokenSource.formEncode($0.1))" }.joined(separator: "&").utf8)
        host.request(method: "POST", url: settings.tokenURL,
                     headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
                     body: body, timeoutMs: requestTimeoutMs) { [weak self] response in
            self?.finish(response)
        }
    }

    private func finish(_ r: HTTPResult) {
        fetching = false
        let result: Result<String, OAuth2Failure>
        let doc = try? JSONParser.parse(r.body)
        if r.status == 200, let access = doc?["access_token"]?.stringValue, !access.isEmpty {
            let seconds = doc?["expires_in"]?.intValue ?? Int64(doc?["expires_in"]?.stringValue ?? "") ?? 3600
            let lifetime = seconds > 120 ? seconds - 60 : max(seconds / 2, 1)
            cached = (access, OAuth2TokenSource.monotonicMs() + UInt64(lifetime) * 1000)
            lastFailure = nil
            failures = 0
            host.count("oauth2_tokens")
            if let rotated = doc?["refresh_token"]?.stringValue, !rotated.isEmpty, rotated != refreshToken {
                storeRotated(rotated)
            }
            result = .success(access)
        } else {
            let failure = describe(r, doc)
            failures += 1
            let base: UInt64 = failure.permanent ? 30_000 : 1_000
            let cap: UInt64 = failure.permanent ? 900_000 : 60_000
            let backoff = min(base << UInt64(min(failures - 1, 20)), cap)
            retryAtMs = OAuth2TokenSource.monotonicMs() + backoff
            lastFailure = failure
            host.count("oauth2_errors")
            var fields: [(String, String)] = [("token_url", settings.tokenURL), ("http_status", String(r.status)), ("error", failure.code)]
            if let d = doc?["error_description"]?.stringValue { fields.append(("error_description", redact(d))) }
            if r.status == 0 { fields.append(("transport_error", redact(r.error ?? "no response"))) }
            fields.append(("retry_in_s", String(backoff / 1000)))
            host.log(.error, "oauth2: no access token from the token endpoint: \(failure.code)"
                + (failure.permanent ? " (fix the oauth2 settings or give a new refresh token; sends fail until then)" : ""), fields)
            result = .failure(failure)
        }
        let list = waiters
        waiters = []
        for w in list { w(result) }
    }

    private func describe(_ r: HTTPResult, _ doc: JSONValue?) -> OAuth2Failure {
        let endpoint = "token endpoint \(settings.tokenURL)"
        if r.status == 0 {
            return OAuth2Failure(code: "unavailable", message: "\(endpoint): \(redact(r.error ?? "no response"))", permanent: false)
        }
        let error = doc?["error"]?.stringValue
        let description = doc?["error_description"]?.stringValue.map { ": " + redact($0) } ?? ""
        guard let error, !error.isEmpty else {
            let what = r.status == 200 ? "an answer without access_token" : "HTTP \(r.status)"
            return OAuth2Failure(code: "unavailable", message: "\(endpoint): \(what)", permanent: false)
        }
        let safe = String(error.unicodeScalars.filter { $0.value > 0x20 && $0.value < 0x7F }.prefix(64).map(Character.init))
        let permanent = OAuth2TokenSource.permanentErrors.contains(safe) && r.status < 500
        return OAuth2Failure(code: safe, message: "\(endpoint): HTTP \(r.status) \(safe)\(description)", permanent: permanent)
    }

    private func storeRotated(_ rotated: String) {
        refreshToken = rotated
        let value: JSONValue = ["for": .string(storeOwner), "refresh_token": .string(rotated)]
        if host.kvPut(OAuth2TokenSource.storeKey, Array(JSONWriter.encodeString(value).utf8)) {
            host.log(.info, "oauth2: the token endpoint rotated the refresh token; the new one is stored", [("token_url", settings.tokenURL)])
        } else {
            host.log(.error, "oauth2: the token endpoint rotated the refresh token but it could not be stored; "
                + "after a restart the configured one is used again and may no longer work", [("token_url", settings.tokenURL)])
        }
    }

    /// Text from the token endpoint or the HTTP client with every secret this source knows cut out.
    private func redact(_ text: String) -> String {
        var out = String(text.prefix(500))
        var secrets = [settings.refreshToken, refreshToken] + (settings.clientSecret.map { [$0] } ?? [])
        if let c = cached { secrets.append(c.token) }
        for s in secrets where s.count >= 4 { out = out.replacingAll(s, with: "[redacted]") }
        return out
    }

    /// application/x-www-form-urlencoded: unreserved characters as they are, everything else %XX.
    static func formEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(hex[Int(b >> 4)])
                out.unicodeScalars.append(hex[Int(b & 15)])
            }
        }
        return out
    }

    static func monotonicMs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }
}

extension String {
    /// Every occurrence of `target` replaced (no Foundation in the plugin).
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let range = rest.firstRange(of: target) {
            out += rest[..<range.lowerBound]
            out += replacement
            rest = rest[range.upperBound...]
        }
        return out + rest
    }
}
