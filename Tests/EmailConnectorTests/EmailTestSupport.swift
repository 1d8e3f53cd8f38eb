import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A daemon with one email instance wired to real Dovecot + Postfix (ChorusTestKit.MailServers),
/// and the helpers the email test cases share.
class EmailTestCase: XCTestCase {
    var received: [JSONValue] = []
    var servers: MailServers!
    var daemon: TestDaemon!
    var connection: ChorusConnection!
    /// The port of the instance's LMTP listener (Postfix relays @chorus.test mail to it).
    var lmtpPort = 0
    let instanceName = "mail"
    static let support = "support@example.test"
    static let customer = "customer@example.test"

    override func tearDown() {
        if !received.isEmpty, let problems = SchemaCheck.problems(received) { XCTFail(problems) }
        received = []
        connection = nil
        if let d = daemon {
            if (testRun?.failureCount ?? 0) + (testRun?.unexpectedExceptionCount ?? 0) > 0 {
                print("chorusd log (\(d.logPath)):\n" + d.logText.split(separator: "\n").suffix(80).joined(separator: "\n"))
                if let s = servers { print("mail server logs:\n" + s.logTail()) }
            }
            XCTAssertFalse(d.logText.contains("password = \"\(MailServers.password)\""), "passwords are never logged")
            if let o = servers?.oauth {
                for secret in [o.clientSecret] + Array(o.refreshTokens.values) {
                    XCTAssertFalse(d.logText.contains(secret), "OAuth2 secrets are never logged")
                }
                XCTAssertNil(d.logText.range(of: "at-[A-Za-z0-9_-]{32}", options: .regularExpression), "access tokens are never logged")
            }
            d.stop()
        }
        daemon = nil
        servers?.stop()
        servers = nil
        super.tearDown()
    }

    /// Starts the mail servers (Postfix relaying @chorus.test to a port chosen here) and a daemon
    /// whose email instance reads support@example.test over IMAP (STARTTLS), listens for LMTP on
    /// that port, and sends through Postfix's submission port with AUTH.
    ///
    /// `oauth`: the servers run their OAuth2 token server and the instance uses `auth = "oauth2"` (XOAUTH2 for IMAP
    /// and SMTP) with the client secret and refresh token given as `_file` settings.
    func startAll(imap: Bool = true, lmtp: Bool = true, settings extra: [String: String] = [:], waitForIMAP: Bool = true,
                  oauth: Bool = false) throws {
        lmtpPort = try freeLoopbackPort()
        servers = try MailServers.start(lmtpRelayPort: lmtpPort, oauth: oauth)
        try startDaemon(imap: imap, lmtp: lmtp, settings: extra, waitForIMAP: waitForIMAP)
    }

    /// The instance's settings as TOML lines.
    func settingsTOML(imap: Bool, lmtp: Bool, extra: [String: String]) -> String {
        var s: [(String, String)] = [
            ("address", "\"\(EmailTestCase.support)\""), ("display_name", "\"Example Support\""),
            ("account", "\"\(EmailTestCase.support)\""),
            ("smtp_host", "\"127.0.0.1\""), ("smtp_port", String(servers.submissionPort)), ("smtp_security", "\"starttls\""),
            ("smtp_username", "\"\(EmailTestCase.support)\""), ("smtp_password", "\"\(MailServers.password)\""),
            ("smtp_ca_bundle", "\"\(servers.caFile)\""),
        ]
        if imap {
            s += [("imap_host", "\"127.0.0.1\""), ("imap_port", String(servers.imapPort)), ("imap_security", "\"starttls\""),
                  ("imap_password", "\"\(MailServers.password)\""), ("imap_ca_bundle", "\"\(servers.caFile)\""),
                  ("imap_initial", "\"all\"")]
        }
        if lmtp { s.append(("lmtp_listen", "\"127.0.0.1:\(lmtpPort)\"")) }
        if let o = servers.oauth {
            s.removeAll { $0.0 == "imap_password" || $0.0 == "smtp_password" }
            let secret = servers.directory + "/chorus-oauth-client-secret", refresh = servers.directory + "/chorus-oauth-refresh-token"
            FileManager.default.createFile(atPath: secret, contents: Data((o.clientSecret + "\n").utf8))
            FileManager.default.createFile(atPath: refresh, contents: Data((o.refreshToken(for: EmailTestCase.support) ?? "") .utf8))
            s += [("auth", "\"oauth2\""), ("oauth2_token_url", "\"\(o.tokenURL)\""), ("oauth2_client_id", "\"\(o.clientID)\""),
                  ("oauth2_client_secret_file", "\"\(secret)\""), ("oauth2_refresh_token_file", "\"\(refresh)\""),
                  ("oauth2_scope", "\"https://mail.google.com/\"")]
        }
        for (k, v) in extra.sorted(by: { $0.key < $1.key }) {
            s.removeAll { $0.0 == k }
            if !v.isEmpty { s.append((k, v)) }   // "" removes the key
        }
        return "[[instance]]\nname = \"\(instanceName)\"\nplugin = \"email\"\n[instance.settings]\n"
            + s.map { "\($0.0) = \($0.1)" }.joined(separator: "\n") + "\n"
    }

    func startDaemon(imap: Bool = true, lmtp: Bool = true, settings extra: [String: String] = [:], directory: String? = nil,
                     waitForIMAP: Bool = true) throws {
        let d = try TestDaemon(instancesTOML: settingsTOML(imap: imap, lmtp: lmtp, extra: extra),
                               directory: directory ?? TestPaths.temporaryDirectory("email-test"))
        try d.start()
        daemon = d
        connection = try subscribe()
        try waitFor(timeout: 20, "the email instance to be ready") { d.logText.contains("email channel ready") }
        if imap && waitForIMAP {
            try waitFor(timeout: 20, "the IMAP connection") { d.logText.contains("imap connected") }
        }
    }

    /// Restarts chorusd on the same state directory (the servers keep running).
    func restartDaemon(imap: Bool = true, lmtp: Bool = true, settings extra: [String: String] = [:]) throws {
        let dir = daemon.directory
        connection = nil
        XCTAssertEqual(daemon.stop(), 0, "chorusd exits 0 on SIGTERM")
        daemon = nil
        try startDaemon(imap: imap, lmtp: lmtp, settings: extra, directory: dir)
    }

    func subscribe() throws -> ChorusConnection {
        let c = try ChorusConnection(path: daemon.socketPath, timeoutMilliseconds: 10_000)
        let r = try c.request(.subscribe(name: nil, filter: nil, from: .earliest))
        guard case .reply = r else { throw TestKitError("subscribe refused: \(r)") }
        return c
    }

    /// Reads events until one matches.
    func event(timeoutMs: Int = 30_000, where match: (JSONValue) -> Bool) throws -> JSONValue {
        try EventWait.event(connection, timeoutMs: timeoutMs, seen: { received.append($0) }, where: match)
    }

    /// The next inbound message event whose subject is `subject`.
    func message(subject: String, timeoutMs: Int = 30_000) throws -> JSONValue {
        try event(timeoutMs: timeoutMs) {
            $0["type"]?.stringValue == "message" && $0["direction"]?.stringValue == "inbound"
                && $0["context"]?["subject"]?.stringValue == subject
        }
    }

    /// Every stored event (optionally of some types), by replay on a second connection.
    func storedEvents(types: Set<String>? = nil) throws -> [JSONValue] {
        try EventWait.stored(socketPath: daemon.socketPath, types: types)
    }

    /// Sends and waits for the final send status (`sent` or `failed`).
    func sendAndWait(_ message: JSONValue, timeoutMs: Int = 60_000) throws -> JSONValue {
        try EventWait.sendAndWait(connection, message, timeoutMs: timeoutMs, seen: { received.append($0) })
    }

    func waitFor(timeout: TimeInterval = 10, _ what: String = "condition", _ condition: () throws -> Bool) throws {
        try waitUntil(timeout: timeout, what) { (try? condition()) == true }
    }

    // MARK: Mail

    /// A simple RFC 5322 message with CRLF line ends.
    static func mail(from: String = customer, to: String = support, subject: String, body: String, messageID: String,
                     inReplyTo: String? = nil, references: [String] = [], extraHeaders: [String] = []) -> [UInt8] {
        var h = [
            "From: Ana Customer <\(from)>", "To: <\(to)>", "Subject: \(subject)", "Date: Mon, 23 Nov 2026 10:00:00 +0000",
            "Message-ID: <\(messageID)>", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
        ]
        if let p = inReplyTo { h.append("In-Reply-To: <\(p)>") }
        if !references.isEmpty { h.append("References: " + references.map { "<\($0)>" }.joined(separator: " ")) }
        h += extraHeaders
        return Array((h.joined(separator: "\r\n") + "\r\n\r\n" + body.replacingOccurrences(of: "\n", with: "\r\n") + "\r\n").utf8)
    }

    /// A fixture from Tests/Fixtures/email.
    static func fixture(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: TestPaths.repoRoot() + "/Tests/Fixtures/email/" + name)))
    }

    /// The value of a header in a raw message (first occurrence, unfolded), nil when absent.
    static func header(_ name: String, in raw: [UInt8]) -> String? {
        let text = String(decoding: raw, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
        let head = text.components(separatedBy: "\n\n").first ?? ""
        var unfolded: [String] = []
        for line in head.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix(" ") || line.hasPrefix("\t"), !unfolded.isEmpty { unfolded[unfolded.count - 1] += " " + line.trimmingCharacters(in: .whitespaces) }
            else { unfolded.append(String(line)) }
        }
        let prefix = name.lowercased() + ":"
        return unfolded.first { $0.lowercased().hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces) }
    }
}
