import ChorusJSON
import ChorusTestKit
import Foundation
import XCTest

/// The email connector with `auth = "oauth2"` (XOAUTH2 for IMAP and SMTP, as Gmail and Microsoft 365 require)
/// against real Dovecot and Postfix whose logins are checked by the harness's OAuth2 token server.
final class EmailOAuth2Tests: EmailTestCase {
    /// Mail in through IMAP and a reply out through submission, both with XOAUTH2; access tokens expired behind the
    /// connector's back are refreshed (SMTP: submitted again; IMAP: reconnected), and a refresh token the server
    /// rotates is stored and used — also after a restart, when the configured one no longer works.
    func testMailInAndOutWithXOAUTH2RefreshingExpiredTokensAndKeepingARotatedRefreshToken() throws {
        try startAll(lmtp: false, oauth: true)
        XCTAssertTrue(daemon.logText.contains("oauth2 (token endpoint"), "the ready line names the auth")
        try servers.deliver(to: EmailTestCase.support, raw: EmailTestCase.mail(subject: "Token order", body: "Where is it?",
                                                                             messageID: "oauth-1@customer.example.test"))
        let inbound = try message(subject: "Token order")
        let conversation = try XCTUnwrap(inbound["conversation_id"]?.stringValue)
        let sent = try sendAndWait(["conversation_id": .string(conversation), "parts": [["type": "text", "text": "On its way."]]])
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "sent", "\(sent)")
        let delivered = try servers.waitForMessages(user: EmailTestCase.customer, count: 1, timeout: 30)
        XCTAssertEqual(EmailTestCase.header("In-Reply-To", in: delivered[0].raw), "<oauth-1@customer.example.test>")
        XCTAssertTrue(servers.logTail(lines: 400).contains("method=XOAUTH2"), "Dovecot logged the XOAUTH2 login")
        XCTAssertTrue(servers.logTail(lines: 400).contains("sasl_method=XOAUTH2"), "Postfix logged AUTH XOAUTH2")
        XCTAssertEqual(try servers.oauthStats().tokenRequests, 1, "one cached token serves IMAP and SMTP")

        // SMTP: the cached token was expired by the server; the refusal makes the connector refresh and submit again.
        XCTAssertGreaterThan(try servers.oauthExpireAccessTokens(), 0)
        let second = try sendAndWait(["conversation_id": .string(conversation), "parts": [["type": "text", "text": "Tracking: 42."]]])
        XCTAssertEqual(second["status"]?["state"]?.stringValue, "sent", "\(second)")
        XCTAssertTrue(daemon.logText.contains("submitting again with a fresh one"), daemon.logText)
        XCTAssertEqual(try servers.oauthStats().tokenRequests, 2)
        _ = try servers.waitForMessages(user: EmailTestCase.customer, count: 2, timeout: 30)

        // IMAP: expired again, and the session dropped: the reconnect is refused once, then made with a fresh token.
        // Rotation is on from here: the refresh answer carries a new refresh token and the configured one dies.
        try servers.oauthSetRotation(true)
        try servers.oauthExpireAccessTokens()
        let connectedBefore = daemon.logText.components(separatedBy: "imap connected").count
        try servers.kick(user: EmailTestCase.support)
        try waitFor(timeout: 20, "the IMAP reconnection with a fresh token") {
            self.daemon.logText.components(separatedBy: "imap connected").count > connectedBefore
        }
        XCTAssertTrue(daemon.logText.contains("refused the OAuth2 access token; getting a fresh one"), daemon.logText)
        XCTAssertEqual(try servers.oauthStats().refreshTokensRotated, 1)
        XCTAssertTrue(daemon.logText.contains("rotated the refresh token; the new one is stored"), daemon.logText)
        try servers.deliver(to: EmailTestCase.support, raw: EmailTestCase.mail(subject: "After the refresh", body: "Still there?",
                                                                             messageID: "oauth-2@customer.example.test"))
        _ = try message(subject: "After the refresh")

        // Restart: the settings still name the original refresh token, which the server no longer accepts; the
        // stored rotated one is used, so IMAP connects and a send goes out.
        try servers.oauthSetRotation(false)
        try restartDaemon(lmtp: false)
        let third = try sendAndWait(["conversation_id": .string(conversation), "parts": [["type": "text", "text": "Delivered?"]]])
        XCTAssertEqual(third["status"]?["state"]?.stringValue, "sent", "\(third)")
        XCTAssertFalse(daemon.logText.contains("invalid_grant"), daemon.logText)
        XCTAssertEqual(try servers.oauthStats().tokenErrors, 0, "the dead configured refresh token was never sent")
    }

    /// A refresh token the token endpoint refuses: one clear log line with the endpoint's error and description
    /// (no secret), IMAP waiting, and sends failing permanently with the endpoint's error code.
    func testWrongRefreshTokenIsLoggedClearlyWithoutSecretsAndFailsSends() throws {
        let wrong = "rt-this-one-was-revoked-0123456789"
        try startAll(lmtp: false, settings: ["oauth2_refresh_token": "\"\(wrong)\"", "oauth2_refresh_token_file": ""],
                     waitForIMAP: false, oauth: true)
        try waitFor(timeout: 20, "the token endpoint's refusal in the log") { self.daemon.logText.contains("no access token from the token endpoint") }
        let line = String(daemon.logText.split(separator: "\n").first { $0.contains("no access token from the token endpoint") } ?? "")
        for needle in ["invalid_grant", "the refresh token is invalid, expired or revoked", try XCTUnwrap(servers.oauth?.tokenURL), "400"] {
            XCTAssertTrue(line.contains(needle), "\(needle) missing in: \(line)")
        }
        let sent = try sendAndWait(["instance": .string(instanceName), "to": .string(EmailTestCase.customer),
                                    "options": ["subject": "Hello"], "parts": [["type": "text", "text": "hi"]]])
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "failed", "\(sent)")
        XCTAssertEqual(sent["status"]?["error"]?["code"]?.stringValue, "oauth2_invalid_grant", "\(sent)")
        XCTAssertEqual(sent["status"]?["retryable"]?.boolValue, false)
        XCTAssertTrue(daemon.logText.contains("imap: no OAuth2 access token (invalid_grant)"), daemon.logText)
        XCTAssertFalse(daemon.logText.contains(wrong), "the refresh token is never logged")
        XCTAssertFalse(daemon.logText.contains("imap connected"))
        // The refusal is remembered with a backoff: the send did not ask the endpoint again.
        XCTAssertEqual(try servers.oauthStats().tokenRequests, 1)
    }

    func testOAuth2SettingsAreValidatedWithClearMessages() throws {
        func instance(_ name: String, _ settings: String) -> String {
            "[[instance]]\nname = \"\(name)\"\nplugin = \"email\"\n[instance.settings]\naddress = \"a@example.test\"\nimap_host = \"127.0.0.1\"\n"
                + settings + "\n"
        }
        let oauth = "auth = \"oauth2\"\noauth2_client_id = \"c\"\noauth2_refresh_token = \"r\"\n"
        let toml = [
            instance("badauth", "auth = \"xoauth\"\nimap_password = \"p\""),
            instance("nourl", "auth = \"oauth2\"\noauth2_client_id = \"c\"\noauth2_refresh_token = \"r\""),
            instance("plainhttp", oauth + "oauth2_token_url = \"http://auth.example.test/token\""),
            instance("noclient", "auth = \"oauth2\"\noauth2_token_url = \"https://oauth2.googleapis.com/token\"\noauth2_refresh_token = \"r\""),
            instance("norefresh", "auth = \"oauth2\"\noauth2_token_url = \"https://oauth2.googleapis.com/token\"\noauth2_client_id = \"c\""),
            instance("withpassword", oauth + "oauth2_token_url = \"https://oauth2.googleapis.com/token\"\nimap_password = \"p\""),
            instance("withoutauth", "imap_password = \"p\"\noauth2_token_url = \"https://oauth2.googleapis.com/token\""),
        ].joined(separator: "\n")
        let d = try TestDaemon(instancesTOML: toml)
        try d.start()
        defer { d.stop() }
        let expected: [(String, String)] = [
            ("badauth", "setting \"auth\": expected password or oauth2, found \"xoauth\""),
            ("nourl", "setting \"oauth2_token_url\" is required with auth = \"oauth2\""),
            ("plainhttp", "setting \"oauth2_token_url\": expected an https URL (http only for a loopback host)"),
            ("noclient", "setting \"oauth2_client_id\" is required with auth = \"oauth2\""),
            ("norefresh", "setting \"oauth2_refresh_token\" is required with auth = \"oauth2\""),
            ("withpassword", "setting \"imap_password\" is not used with auth = \"oauth2\""),
            ("withoutauth", "setting \"oauth2_token_url\" needs auth = \"oauth2\""),
        ]
        for (name, message) in expected {
            let line = d.logText.split(separator: "\n").first { $0.contains("instance \(name) failed") }
            XCTAssertNotNil(line, "no failure logged for \(name):\n\(d.logText)")
            XCTAssertTrue(line?.contains(message) ?? false, "\(name): \(line ?? "")")
        }
    }
}
