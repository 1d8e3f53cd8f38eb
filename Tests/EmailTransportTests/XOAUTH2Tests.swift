import ChorusTestKit
import Foundation
import XCTest
@testable import EmailTransport

/// SASL XOAUTH2 for IMAP (libetpan) and SMTP submission (libcurl) against the real Dovecot and Postfix of the
/// test harness in OAuth2 mode: Dovecot checks each token with the harness's token server (introspection),
/// Postfix through Dovecot.
final class XOAUTH2Tests: XCTestCase {
    nonisolated(unsafe) private static var servers: MailServers?
    nonisolated(unsafe) private static var startError: Error?

    override class func setUp() {
        super.setUp()
        startError = nil
        do { servers = try MailServers.start(oauth: true) } catch { startError = error }
    }

    override class func tearDown() {
        servers?.stop()
        servers = nil
        super.tearDown()
    }

    private func mail() throws -> MailServers {
        if let error = XOAUTH2Tests.startError { throw error }
        return try XCTUnwrap(XOAUTH2Tests.servers)
    }

    private func imapSettings(_ servers: MailServers, user: String, token: String?, security: MailSecurity = .tls) -> IMAPSettings {
        IMAPSettings(host: "127.0.0.1", port: security == .tls ? servers.imapsPort : servers.imapPort, security: security,
                     username: user, password: "", caFile: servers.caFile, timeoutSeconds: 10, oauth2AccessToken: token)
    }

    private func smtpSettings(_ servers: MailServers, user: String?, token: String) -> SMTPSettings {
        SMTPSettings(host: "127.0.0.1", port: servers.submissionPort, security: .starttls, username: user,
                     caFile: servers.caFile, heloName: "chorus.example.test", timeoutSeconds: 20, oauth2AccessToken: token)
    }

    private func connectError(_ settings: IMAPSettings) -> IMAPError? {
        let client = IMAPClient(settings)
        do {
            try client.connect()
            client.logout()
            return nil
        } catch {
            return error
        }
    }

    func testIMAPLogsInWithAValidTokenAndRefusesABadOneAsAuth() throws {
        let servers = try mail()
        let user = "support@example.test"
        let token = try servers.oauthAccessToken(user: user)
        for security in [MailSecurity.tls, .starttls] {
            let client = IMAPClient(imapSettings(servers, user: user, token: token, security: security))
            do { try client.connect() } catch { return XCTFail("XOAUTH2 login over \(security) failed: \(error)\n\(servers.logTail())") }
            XCTAssertGreaterThan(client.uidValidity, 0)
            XCTAssertTrue(client.capabilities.contains("IDLE"), "capabilities after login: \(client.capabilities)")
            client.logout()
        }
        let introspected = try servers.oauthStats().activeIntrospections
        XCTAssertGreaterThanOrEqual(introspected, 2, "Dovecot asked the token server about the token")

        // A token nobody issued, a token of another user, and an expired token: .auth, naming XOAUTH2, never the token.
        let other = try servers.oauthAccessToken(user: "customer@example.test")
        for (bad, why) in [("at-not-issued-by-anyone", "unknown"), (other, "another user's")] {
            let error = try XCTUnwrap(connectError(imapSettings(servers, user: user, token: bad)), "\(why) token accepted")
            XCTAssertEqual(error.kind, .auth, error.description)
            XCTAssertTrue(error.description.contains("XOAUTH2"), error.description)
            XCTAssertFalse(error.description.contains(bad), "the token is not in the message: \(error.description)")
        }
        XCTAssertGreaterThanOrEqual(try servers.oauthExpireAccessTokens(), 2)
        XCTAssertEqual(connectError(imapSettings(servers, user: user, token: token))?.kind, .auth, "an expired token is refused")

        // The passwd-file passdb keeps LOGIN working next to the oauth2 one.
        let password = IMAPSettings(host: "127.0.0.1", port: servers.imapsPort, security: .tls, username: user,
                                    password: MailServers.password, caFile: servers.caFile, timeoutSeconds: 10)
        XCTAssertNil(connectError(password), "LOGIN with the password still works")
        // A token that is not printable ASCII is refused before anything is sent.
        XCTAssertEqual(connectError(imapSettings(servers, user: user, token: "bad token\r\n"))?.kind, .auth)
    }

    func testSMTPSubmitsWithXOAUTH2AndARefusedTokenIsARetryable535() throws {
        let servers = try mail()
        let marker = "xoauth2-\(UUID().uuidString)"
        let raw = Array(("From: Support <support@example.test>\r\nTo: <other@example.test>\r\nSubject: \(marker)\r\n"
            + "Message-ID: <\(marker)@chorus.test>\r\n\r\nSent with an OAuth2 token.\r\n").utf8)
        let token = try servers.oauthAccessToken(user: "support@example.test")
        let result = SMTPSubmitter.submit(smtpSettings(servers, user: "support@example.test", token: token),
                                          from: "support@example.test", recipients: ["other@example.test"], message: raw)
        guard case .accepted(let response) = result else { return XCTFail("not accepted: \(result)\n\(servers.logTail())") }
        XCTAssertTrue(response.hasPrefix("250"), response)
        let arrived = try servers.waitForMessages(user: "other@example.test", count: 1)
        XCTAssertTrue(arrived.contains { String(decoding: $0.raw, as: UTF8.self).contains("Subject: \(marker)") })
        XCTAssertTrue(servers.logTail(lines: 200).contains("sasl_method=XOAUTH2"), "Postfix saw AUTH XOAUTH2\n\(servers.logTail())")

        // Expired: 535, retryable (a fresh token may work), and the message says it was the token.
        try servers.oauthExpireAccessTokens()
        let expired = SMTPSubmitter.submit(smtpSettings(servers, user: "support@example.test", token: token),
                                           from: "support@example.test", recipients: ["other@example.test"], message: raw)
        guard case .failed(let code, let message, let retryable) = expired else { return XCTFail("an expired token was accepted") }
        XCTAssertEqual(code, 535, message)
        XCTAssertTrue(retryable, "a refused token is retryable after a refresh")
        XCTAssertTrue(message.contains("XOAUTH2"), message)
        XCTAssertFalse(message.contains(token), "the token is not in the message")

        // With a password, 535 stays permanent.
        let wrongPassword = SMTPSubmitter.submit(
            SMTPSettings(host: "127.0.0.1", port: servers.submissionPort, security: .starttls, username: "support@example.test",
                         password: "wrong", caFile: servers.caFile, timeoutSeconds: 20),
            from: "support@example.test", recipients: ["other@example.test"], message: raw)
        guard case .failed(535, _, false) = wrongPassword else { return XCTFail("a wrong password: \(wrongPassword)") }

        // XOAUTH2 needs the user name; a token with a line break is refused before connecting.
        guard case .failed(0, let noUser, false) = SMTPSubmitter.submit(smtpSettings(servers, user: nil, token: token), from: "support@example.test",
                                                                       recipients: ["other@example.test"], message: raw)
        else { return XCTFail("XOAUTH2 without a user name was not refused") }
        XCTAssertTrue(noUser.contains("user name"), noUser)
        guard case .failed(0, _, false) = SMTPSubmitter.submit(smtpSettings(servers, user: "support@example.test", token: "a\r\nQUIT"),
                                                               from: "support@example.test", recipients: ["other@example.test"], message: raw)
        else { return XCTFail("a token with CRLF was not refused") }
    }
}
