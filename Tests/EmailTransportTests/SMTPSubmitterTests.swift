import ChorusTestKit
import Foundation
import XCTest
@testable import EmailTransport

/// SMTP submission with libcurl against the real Postfix of the test harness (STARTTLS + AUTH, smtps),
/// plus the input checks that need no server.
final class SMTPSubmitterTests: MailServerTestCase {

    private func settings(_ servers: MailServers, port: Int? = nil, security: MailSecurity = .starttls,
                          user: String? = "support@example.test", password: String? = MailServers.password) -> SMTPSettings
    {
        SMTPSettings(host: "127.0.0.1", port: port ?? servers.submissionPort, security: security, username: user,
                     password: password, caFile: servers.caFile, heloName: "chorus.example.test", timeoutSeconds: 20)
    }

    private func message(to: String, marker: String, extraBody: String = "") -> [UInt8] {
        Array(("From: Support <support@example.test>\r\nTo: <\(to)>\r\nSubject: Test \(marker)\r\n"
            + "Message-ID: <\(marker)@chorus.test>\r\n\r\nHello, this is \(marker).\r\n\(extraBody)").utf8)
    }

    /// A loopback port nobody listens on.
    private func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        XCTAssertTrue(bound)
        return Int(UInt16(bigEndian: address.sin_port))
    }

    func testSubmitOverSTARTTLSWithAuthArrivesInTheMailbox() throws {
        let servers = try mail()
        let marker = "starttls-\(UUID().uuidString)"
        // A line starting with "." must survive (curl dot-stuffs, Postfix unstuffs); bare LF becomes CRLF.
        let body = message(to: "customer@example.test", marker: marker, extraBody: ".leading dot\r\nbare\nend\r\n")
        let result = SMTPSubmitter.submit(settings(servers), from: "support@example.test",
                                          recipients: ["customer@example.test"], message: body)
        guard case .accepted(let response) = result else { return XCTFail("not accepted: \(result)\n\(servers.logTail())") }
        XCTAssertTrue(response.hasPrefix("250"), response)
        let messages = try servers.waitForMessages(user: "customer@example.test", count: 1)
        let arrived = try XCTUnwrap(messages.first { String(decoding: $0.raw, as: UTF8.self).contains(marker) })
        let text = String(decoding: arrived.raw, as: UTF8.self)
        XCTAssertTrue(text.hasSuffix("Hello, this is \(marker).\r\n.leading dot\r\nbare\r\nend\r\n"), text)
        XCTAssertTrue(text.contains("Subject: Test \(marker)\r\n"))
    }

    func testSeveralRecipientsAndTheNullSender() throws {
        let servers = try mail()
        let marker = "multi-\(UUID().uuidString)"
        let result = SMTPSubmitter.submit(settings(servers), from: "", recipients: ["other@example.test", "support@example.test"],
                                          message: message(to: "other@example.test", marker: marker))
        guard case .accepted = result else { return XCTFail("not accepted: \(result)") }
        for user in ["other@example.test", "support@example.test"] {
            let deadline = Date().addingTimeInterval(20)
            var found = false
            while !found && Date() < deadline {
                found = try servers.messages(user: user).contains { String(decoding: $0.raw, as: UTF8.self).contains(marker) }
                if !found { usleep(200_000) }
            }
            XCTAssertTrue(found, "\(user) did not get the message\n\(servers.logTail())")
        }
    }

    func testImplicitTLS() throws {
        let servers = try mail()
        guard let smtps = servers.smtpsPort else { throw XCTSkip("the harness offers no smtps port") }
        let marker = "smtps-\(UUID().uuidString)"
        let result = SMTPSubmitter.submit(settings(servers, port: smtps, security: .tls), from: "support@example.test",
                                          recipients: ["customer@example.test"],
                                          message: message(to: "customer@example.test", marker: marker))
        guard case .accepted(let response) = result else { return XCTFail("not accepted: \(result)") }
        XCTAssertTrue(response.hasPrefix("250"), response)
        let deadline = Date().addingTimeInterval(20)
        var found = false
        while !found && Date() < deadline {
            found = try servers.messages(user: "customer@example.test").contains {
                String(decoding: $0.raw, as: UTF8.self).contains(marker)
            }
            if !found { usleep(200_000) }
        }
        XCTAssertTrue(found, servers.logTail())
    }

    func testWrongPasswordIsAPermanent535() throws {
        let servers = try mail()
        let result = SMTPSubmitter.submit(settings(servers, password: "wrong"), from: "support@example.test",
                                          recipients: ["customer@example.test"],
                                          message: message(to: "customer@example.test", marker: "badpass"))
        guard case .failed(let code, let text, let retryable) = result else { return XCTFail("accepted with a wrong password") }
        XCTAssertEqual(code, 535, text)
        XCTAssertFalse(retryable)
        XCTAssertTrue(text.hasPrefix("535"), text)
    }

    /// An access token for a server that offers no AUTH XOAUTH2 (the harness without --oauth): permanent, and no
    /// fallback to another mechanism.
    func testAccessTokenForAServerWithoutXOAUTH2FailsPermanently() throws {
        let servers = try mail()
        var withToken = settings(servers, password: nil)
        withToken.oauth2AccessToken = "at-some-token"
        let result = SMTPSubmitter.submit(withToken, from: "support@example.test", recipients: ["customer@example.test"],
                                          message: message(to: "customer@example.test", marker: "no-xoauth2"))
        guard case .failed(let code, let text, let retryable) = result else { return XCTFail("accepted without XOAUTH2") }
        XCTAssertEqual(code, 0, text)
        XCTAssertFalse(retryable, text)
        XCTAssertTrue(text.contains("does not offer AUTH XOAUTH2 (it offers PLAIN LOGIN)"), text)
        XCTAssertFalse(text.contains("at-some-token"), text)
    }

    func testRecipientRefusedAtRCPTIsPermanent() throws {
        let servers = try mail()
        let result = SMTPSubmitter.submit(settings(servers), from: "support@example.test",
                                          recipients: ["customer@example.test", "nobody@example.test"],
                                          message: message(to: "nobody@example.test", marker: "refused"))
        guard case .failed(let code, let text, let retryable) = result else { return XCTFail("accepted: \(result)") }
        XCTAssertEqual(code / 100, 5, text)
        XCTAssertEqual(code, 550, text)
        XCTAssertFalse(retryable)
        XCTAssertTrue(text.contains("nobody@example.test") || text.contains("5.1.1"), text)
    }

    func testServerDownIsRetryableWithCodeZero() throws {
        let port = try closedPort()
        let settings = SMTPSettings(host: "127.0.0.1", port: port, security: .starttls, username: "u", password: "p",
                                    timeoutSeconds: 5)
        let result = SMTPSubmitter.submit(settings, from: "a@example.test", recipients: ["b@example.test"],
                                          message: Array("Subject: x\r\n\r\nx\r\n".utf8))
        guard case .failed(let code, let text, let retryable) = result else { return XCTFail("accepted by nobody") }
        XCTAssertEqual(code, 0)
        XCTAssertTrue(retryable)
        XCTAssertTrue(text.contains("127.0.0.1:\(port)"), text)
    }

    func testUntrustedCertificateFailsPermanently() throws {
        let servers = try mail()
        // A CA bundle that did not sign the server's certificate: the system store.
        var wrongCA = settings(servers)
        wrongCA.caFile = "/etc/ssl/certs/ca-certificates.crt"
        let result = SMTPSubmitter.submit(wrongCA, from: "support@example.test", recipients: ["customer@example.test"],
                                          message: message(to: "customer@example.test", marker: "untrusted"))
        guard case .failed(let code, let text, let retryable) = result else { return XCTFail("accepted an untrusted certificate") }
        XCTAssertEqual(code, 0)
        XCTAssertFalse(retryable)
        XCTAssertTrue(text.lowercased().contains("certificate") || text.lowercased().contains("ssl"), text)
    }

    func testBadInputFailsWithoutConnecting() {
        // Port 9 (discard) on a documentation address: never contacted because validation fails first.
        let base = SMTPSettings(host: "192.0.2.1", port: 9, security: .starttls)
        let body = Array("Subject: x\r\n\r\nx\r\n".utf8)
        let cases: [(SMTPSettings, String, [String], [UInt8], String)] = [
            (base, "a@example.test", [], body, "no recipients"),
            (base, "a@example.test", ["b@example.test\r\nRCPT TO:<c@example.test>"], body, "invalid recipient"),
            (base, "a b@example.test", ["b@example.test"], body, "invalid envelope sender"),
            (base, "a@example.test", ["<b@example.test>"], body, "invalid recipient"),
            (base, "a@example.test", ["b@example.test"], [], "empty message"),
            (SMTPSettings(host: "bad/host", port: 25, security: .tls), "a@x.test", ["b@x.test"], body, "invalid SMTP host"),
            (SMTPSettings(host: "h.test", port: 0, security: .tls), "a@x.test", ["b@x.test"], body, "invalid SMTP port"),
            (SMTPSettings(host: "h.test", port: 25, security: .tls, heloName: "a b"), "a@x.test", ["b@x.test"], body,
             "invalid EHLO name"),
        ]
        for (settings, from, recipients, message, expected) in cases {
            let result = SMTPSubmitter.submit(settings, from: from, recipients: recipients, message: message)
            guard case .failed(0, let text, false) = result else { XCTFail("\(expected): \(result)"); continue }
            XCTAssertTrue(text.hasPrefix(expected), "\(text) should start with \(expected)")
        }
    }

    func testLineEndNormalization() {
        XCTAssertEqual(SMTPSubmitter.normalizeLineEnds(Array("a\nb\r\nc\n\n".utf8)), Array("a\r\nb\r\nc\r\n\r\n".utf8))
        XCTAssertEqual(SMTPSubmitter.normalizeLineEnds(Array("no line end".utf8)), Array("no line end".utf8))
        XCTAssertEqual(SMTPSubmitter.normalizeLineEnds(Array("\n".utf8)), Array("\r\n".utf8))
    }
}
