import ChorusJSON
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Real mail servers for the email tests: a private Dovecot (IMAP, IMAPS, LMTP, SASL auth) and a private
/// Postfix (MX-style SMTP, submission, smtps) on free loopback ports, run from a fresh temporary directory by
/// tools/test-servers/mailservers.py (see tools/test-servers/README.md). Nothing is configured system-wide.
///
/// Users `support@example.test`, `customer@example.test` and `other@example.test` exist with the password
/// ``MailServers/password``; mail for `@example.test` lands in Dovecot, mail for `@chorus.test` is relayed by
/// Postfix over LMTP to `127.0.0.1:<lmtpRelayPort>` when one is given. TLS certificates are issued by a private
/// CA: verify against ``caFile``.
///
/// With `oauth: true`, a test OAuth2 server runs too (``OAuth``): a token endpoint for the refresh_token grant and
/// the introspection endpoint Dovecot's oauth2 passdb asks, so Dovecot IMAP and Postfix submission (SASL through
/// Dovecot) accept XOAUTH2 and OAUTHBEARER next to PLAIN and LOGIN.
///
/// The servers are stopped by ``stop()``, by `deinit`, when the test process exits (atexit), and by the
/// script's watchdog when the test process dies without exiting.
public final class MailServers: @unchecked Sendable {
    /// The temporary directory holding the configs, certificates, mail, queues and logs.
    public let directory: String
    /// Dovecot IMAP with STARTTLS (plaintext login refused before STARTTLS).
    public let imapPort: Int
    /// Dovecot IMAP over implicit TLS.
    public let imapsPort: Int
    /// Postfix submission: STARTTLS required, SASL AUTH (PLAIN/LOGIN) through Dovecot.
    public let submissionPort: Int
    /// Postfix submission over implicit TLS with SASL AUTH, when available.
    public let smtpsPort: Int?
    /// Postfix MX-style inbound SMTP (no AUTH; accepts mail for example.test and chorus.test).
    public let smtpPort: Int
    /// Dovecot's LMTP listener (what Postfix delivers example.test mail to); unknown users get 550 5.1.1.
    public let lmtpPort: Int
    /// Dovecot's SASL auth listener (the one Postfix uses).
    public let authPort: Int
    /// The PEM file of the private CA that issued the servers' certificate (for `localhost` and `127.0.0.1`).
    public let caFile: String
    /// Where Postfix relays mail for `@chorus.test` (LMTP), if anywhere.
    public let lmtpRelayPort: Int?
    /// The password of every predefined user.
    public static let password = "secret"
    /// The predefined users.
    public static let users = ["support@example.test", "customer@example.test", "other@example.test"]

    /// The test OAuth2 server of a set started with `oauth: true`.
    public struct OAuth: Sendable {
        /// The token endpoint (`POST`, `application/x-www-form-urlencoded`, grant_type=refresh_token).
        public let tokenURL: String
        /// The RFC 7662 introspection endpoint Dovecot asks.
        public let introspectionURL: String
        /// The one client the server knows.
        public let clientID: String
        /// Its secret (client_secret in the form, or HTTP Basic).
        public let clientSecret: String
        /// A refresh token per predefined user (the user the issued access tokens are for).
        public let refreshTokens: [String: String]
        /// `expires_in` of the access tokens it issues, in seconds.
        public let tokenLifetime: Int

        /// The refresh token of `user` (one of ``MailServers/users``).
        public func refreshToken(for user: String) -> String? { refreshTokens[user.lowercased()] }
    }

    /// The counters of the test OAuth2 server.
    public struct OAuthStats: Sendable, Equatable {
        /// Requests to the token endpoint, answered or refused.
        public let tokenRequests: Int
        /// Refused token requests (invalid_client, invalid_grant, …).
        public let tokenErrors: Int
        /// Access tokens issued (by the token endpoint and by ``MailServers/oauthAccessToken(user:)``).
        public let tokensIssued: Int
        /// Introspection requests (each XOAUTH2 login through Dovecot makes one).
        public let introspections: Int
        /// Introspections that found an active token.
        public let activeIntrospections: Int
        /// Refresh tokens replaced while rotation is on.
        public let refreshTokensRotated: Int
    }

    /// The OAuth2 server, when started with `oauth: true`.
    public let oauth: OAuth?

    private let lock = NSLock()
    private var stopped = false
    private var counter = 0

    /// Starts Dovecot and Postfix (and whatever else) in a fresh temp dir; `lmtpRelayPort`: Postfix relays mail for
    /// @chorus.test to 127.0.0.1:<port> over LMTP. Returns once every server accepts connections; throws with the
    /// servers' log tails when something cannot start.
    ///
    /// `oauth`: also run the test OAuth2 server (``oauth``) and accept XOAUTH2/OAUTHBEARER; `oauthTokenLifetime` is
    /// the `expires_in` of its access tokens.
    public static func start(lmtpRelayPort: Int? = nil, oauth: Bool = false, oauthTokenLifetime: Int = 3600) throws -> MailServers {
        let dir = TestPaths.temporaryDirectory("chorus-mail")
        var args = ["start", dir, "--parent-pid", String(getpid())]
        if let p = lmtpRelayPort { args += ["--lmtp-relay", String(p)] }
        if oauth { args += ["--oauth", "--oauth-token-lifetime", String(oauthTokenLifetime)] }
        let r = try MailServers.runScript(args, scratch: dir, timeout: 120)
        guard r.status == 0 else {
            _ = try? MailServers.runScript(["stop", dir], scratch: dir, timeout: 60)
            throw TestKitError("mail servers did not start (exit \(r.status)):\n\(r.stderr)\(r.stdout)")
        }
        let info: JSONValue
        do {
            info = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/servers.json"))))
        } catch {
            _ = try? MailServers.runScript(["stop", dir], scratch: dir, timeout: 60)
            throw TestKitError("mail servers started but \(dir)/servers.json is unreadable: \(error)")
        }
        func port(_ name: String) -> Int? { info["ports"]?[name]?.intValue.map { Int($0) } }
        guard let imap = port("imap"), let imaps = port("imaps"), let submission = port("submission"),
              let smtp = port("smtp"), let lmtp = port("lmtp"), let auth = port("auth"),
              let ca = info["ca_file"]?.stringValue
        else {
            _ = try? MailServers.runScript(["stop", dir], scratch: dir, timeout: 60)
            throw TestKitError("\(dir)/servers.json lacks a port or the CA file: \(JSONWriter.encodeString(info))")
        }
        var oauthInfo: OAuth?
        if oauth {
            let o = info["oauth"]
            guard let tokenURL = o?["token_url"]?.stringValue, let introspection = o?["introspection_url"]?.stringValue,
                  let clientID = o?["client_id"]?.stringValue, let secret = o?["client_secret"]?.stringValue,
                  let tokens = o?["refresh_tokens"]?.objectValue
            else {
                _ = try? MailServers.runScript(["stop", dir], scratch: dir, timeout: 60)
                throw TestKitError("\(dir)/servers.json lacks the OAuth2 server: \(JSONWriter.encodeString(info))")
            }
            var refresh: [String: String] = [:]
            for (user, token) in tokens { if let t = token.stringValue { refresh[user] = t } }
            oauthInfo = OAuth(tokenURL: tokenURL, introspectionURL: introspection, clientID: clientID, clientSecret: secret,
                              refreshTokens: refresh, tokenLifetime: o?["token_lifetime"]?.intValue.map { Int($0) } ?? oauthTokenLifetime)
        }
        let servers = MailServers(directory: dir, imapPort: imap, imapsPort: imaps, submissionPort: submission,
                                  smtpsPort: port("smtps"), smtpPort: smtp, lmtpPort: lmtp, authPort: auth,
                                  caFile: ca, lmtpRelayPort: lmtpRelayPort, oauth: oauthInfo)
        MailServersRegistry.add(dir)
        return servers
    }

    private init(directory: String, imapPort: Int, imapsPort: Int, submissionPort: Int, smtpsPort: Int?, smtpPort: Int,
                 lmtpPort: Int, authPort: Int, caFile: String, lmtpRelayPort: Int?, oauth: OAuth?)
    {
        self.oauth = oauth
        self.directory = directory
        self.imapPort = imapPort
        self.imapsPort = imapsPort
        self.submissionPort = submissionPort
        self.smtpsPort = smtpsPort
        self.smtpPort = smtpPort
        self.lmtpPort = lmtpPort
        self.authPort = authPort
        self.caFile = caFile
        self.lmtpRelayPort = lmtpRelayPort
    }

    deinit { stop() }

    /// Puts a raw message into the user's INBOX through Dovecot's LMTP (as an MTA would). Throws with the LMTP
    /// reply when Dovecot refuses it (e.g. 550 5.1.1 for an unknown user).
    public func deliver(to user: String, raw: [UInt8]) throws {
        let file = try scratchFile("msg", raw)
        defer { unlink(file) }
        try run(["deliver", directory, user, file])
    }

    /// Sends a raw message to Postfix's MX-style ``smtpPort`` (as an MTA from outside would), envelope `from`/`to`.
    /// Returns once Postfix accepted it (250 after DATA); delivery happens in the background.
    public func sendSMTP(from: String, to: [String], raw: [UInt8]) throws {
        let file = try scratchFile("msg", raw)
        defer { unlink(file) }
        try run(["send", directory, "--from", from, file] + to)
    }

    /// The messages of a user's mailbox, in UID order, with their flags and exact raw bytes.
    public func messages(user: String, mailbox: String = "INBOX") throws -> [(uid: Int, flags: [String], raw: [UInt8])] {
        let out = try run(["list", directory, user, mailbox])
        let json: JSONValue
        do { json = try JSONParser.parse(out) } catch { throw TestKitError("list printed bad JSON (\(error)): \(out.prefix(500))") }
        guard let items = json.arrayValue else { throw TestKitError("list printed \(out.prefix(500)), not an array") }
        return try items.map { item in
            guard let uid = item["uid"]?.intValue, let b64 = item["raw"]?.stringValue,
                  let data = Data(base64Encoded: b64)
            else { throw TestKitError("list printed a bad message entry: \(JSONWriter.encodeString(item).prefix(300))") }
            let flags = item["flags"]?.arrayValue?.compactMap { $0.stringValue } ?? []
            return (uid: Int(uid), flags: flags, raw: Array(data))
        }
    }

    /// Polls the mailbox until it holds at least `count` messages; throws after `timeout` seconds with the logs' tails.
    public func waitForMessages(user: String, mailbox: String = "INBOX", count: Int,
                                timeout: Double = 20) throws -> [(uid: Int, flags: [String], raw: [UInt8])]
    {
        let deadline = Date().addingTimeInterval(timeout)
        var last: [(uid: Int, flags: [String], raw: [UInt8])] = []
        while true {
            last = try messages(user: user, mailbox: mailbox)
            if last.count >= count { return last }
            if Date() >= deadline { break }
            usleep(200_000)
        }
        throw TestKitError("\(user)'s \(mailbox) has \(last.count) of \(count) messages after \(timeout) s\n\(logTail())")
    }

    /// Creates a mailbox (folder) for a user; succeeds if it exists already.
    public func createMailbox(user: String, _ name: String) throws {
        try run(["mkmailbox", directory, user, name])
    }

    /// Adds a user (any domain Dovecot is asked about; Postfix accepts example.test recipients) with a password.
    public func addUser(_ user: String, password: String = MailServers.password) throws {
        try run(["adduser", directory, user, password])
    }

    /// Disconnects every IMAP session of `user` (`doveadm kick`); clients have to log in again.
    public func kick(user: String) throws {
        try run(["kick", directory, user])
    }

    // MARK: OAuth2 server (oauth: true)

    /// A fresh access token for `user` (any user Dovecot knows), valid for the server's token lifetime.
    public func oauthAccessToken(user: String) throws -> String {
        try requireOAuth()
        return try run(["oauth", directory, "token", user]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Expires every access token issued so far (logins with them fail from now on, as after their real expiry);
    /// returns how many were still valid. Refresh tokens stay valid.
    @discardableResult
    public func oauthExpireAccessTokens() throws -> Int {
        try requireOAuth()
        let answer = try oauthAdmin(["expire"])
        guard let n = answer["expired"]?.intValue else { throw TestKitError("oauth expire answered \(JSONWriter.encodeString(answer))") }
        return Int(n)
    }

    /// Turns refresh-token rotation on or off: while on, each refresh answer carries a new refresh token and the
    /// one used stops working (as some providers do).
    public func oauthSetRotation(_ on: Bool) throws {
        try requireOAuth()
        _ = try oauthAdmin(["rotate", on ? "on" : "off"])
    }

    /// The OAuth2 server's counters.
    public func oauthStats() throws -> OAuthStats {
        try requireOAuth()
        let a = try oauthAdmin(["stats"])
        func n(_ key: String) throws -> Int {
            guard let v = a[key]?.intValue else { throw TestKitError("oauth stats lacks \(key): \(JSONWriter.encodeString(a))") }
            return Int(v)
        }
        return OAuthStats(tokenRequests: try n("token_requests"), tokenErrors: try n("token_errors"), tokensIssued: try n("tokens_issued"),
                          introspections: try n("introspections"), activeIntrospections: try n("introspections_active"),
                          refreshTokensRotated: try n("refresh_tokens_rotated"))
    }

    private func requireOAuth() throws {
        guard oauth != nil else { throw TestKitError("these mail servers were started without oauth: true") }
    }

    private func oauthAdmin(_ args: [String]) throws -> JSONValue {
        let out = try run(["oauth", directory] + args)
        do { return try JSONParser.parse(out) } catch { throw TestKitError("oauth \(args[0]) printed bad JSON (\(error)): \(out.prefix(300))") }
    }

    /// The last lines of the Dovecot and Postfix logs (and the OAuth2 server's) for failure messages.
    public func logTail(lines: Int = 40) -> String {
        var out = ""
        for name in ["dovecot.log", "postfix.log"] + (oauth != nil ? ["oauth.log"] : []) {
            let text = (try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? ""
            out += "--- \(name) ---\n" + text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n") + "\n"
        }
        return out
    }

    /// Stops every server and removes the directory (kept when CHORUS_KEEP_MAIL_DIR is set). Idempotent.
    public func stop() {
        lock.lock()
        let already = stopped
        stopped = true
        lock.unlock()
        if already { return }
        MailServersRegistry.remove(directory)
        MailServers.stopDirectory(directory)
    }

    // MARK: Running the script

    /// Stops the servers of `dir` with the script, then removes `dir` unless CHORUS_KEEP_MAIL_DIR is set.
    static func stopDirectory(_ dir: String) {
        _ = try? runScript(["stop", dir], scratch: nil, timeout: 60)
        if ProcessInfo.processInfo.environment["CHORUS_KEEP_MAIL_DIR"] == nil {
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @discardableResult
    private func run(_ args: [String], timeout: Double = 60) throws -> String {
        let r = try MailServers.runScript(args, scratch: directory, timeout: timeout)
        guard r.status == 0 else {
            throw TestKitError("mailservers.py \(args.first ?? "") failed (exit \(r.status)): \(r.stderr)\(r.stdout.prefix(2000))")
        }
        return r.stdout
    }

    private func scratchFile(_ prefix: String, _ bytes: [UInt8]) throws -> String {
        lock.lock()
        counter += 1
        let n = counter
        lock.unlock()
        let path = directory + "/tmp/\(prefix)-\(getpid())-\(n)-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: directory + "/tmp", withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            throw TestKitError("cannot write \(path)")
        }
        return path
    }

    /// The script, run with Debian's python3 (which has aiosmtpd); stdout and stderr go to files so that big outputs
    /// cannot block the pipe.
    static func runScript(_ args: [String], scratch: String?, timeout: Double) throws -> (status: Int32, stdout: String, stderr: String) {
        let script = TestPaths.repoRoot() + "/tools/test-servers/mailservers.py"
        let base = (scratch.map { $0 + "/tmp" } ?? NSTemporaryDirectory())
        try? FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let tag = "\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let outPath = base + "/cmd-\(tag).out", errPath = base + "/cmd-\(tag).err"
        guard FileManager.default.createFile(atPath: outPath, contents: nil),
              FileManager.default.createFile(atPath: errPath, contents: nil)
        else { throw TestKitError("cannot create the output files of mailservers.py in \(base)") }
        defer { unlink(outPath); unlink(errPath) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [script] + args
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            throw TestKitError("mailservers.py \(args.first ?? "") did not finish within \(timeout) s: \(err)")
        }
        p.waitUntilExit()
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return (p.terminationStatus, out, err)
    }
}

/// The directories of running server sets, stopped by an atexit handler when the test process exits normally.
enum MailServersRegistry {
    nonisolated(unsafe) private static var directories: Set<String> = []
    private static let lock = NSLock()
    nonisolated(unsafe) private static var installed = false

    static func add(_ dir: String) {
        lock.lock()
        defer { lock.unlock() }
        directories.insert(dir)
        if !installed {
            installed = true
            atexit { MailServersRegistry.stopAll() }
        }
    }

    static func remove(_ dir: String) {
        lock.lock()
        directories.remove(dir)
        lock.unlock()
    }

    static func stopAll() {
        lock.lock()
        let dirs = directories
        directories.removeAll()
        lock.unlock()
        for d in dirs { MailServers.stopDirectory(d) }
    }
}
