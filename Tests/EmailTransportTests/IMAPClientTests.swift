import ChorusTestKit
import Foundation
import XCTest
@testable import EmailTransport

/// The libetpan IMAP client against the real Dovecot of the test harness: TLS with CA verification, login,
/// search, fetch, flags, move, IDLE and interrupt.
final class IMAPClientTests: MailServerTestCase {

    /// A user of its own for one test, so tests never see each other's mail.
    private func freshUser(_ servers: MailServers) throws -> String {
        let user = "imap-\(UUID().uuidString.prefix(8).lowercased())@example.test"
        try servers.addUser(user)
        return user
    }

    private func settings(_ servers: MailServers, user: String, security: MailSecurity = .starttls,
                          password: String = MailServers.password, mailbox: String = "INBOX") -> IMAPSettings
    {
        IMAPSettings(host: "127.0.0.1", port: security == .tls ? servers.imapsPort : servers.imapPort, security: security,
                     username: user, password: password, mailbox: mailbox, caFile: servers.caFile, timeoutSeconds: 10)
    }

    private func rawMessage(_ n: Int, _ tag: String) -> [UInt8] {
        Array(("From: Customer <customer@example.test>\r\nTo: support@example.test\r\nSubject: Message \(n) \(tag)\r\n"
            + "Message-ID: <\(tag)-\(n)@example.test>\r\n\r\nBody \(n)\r\n.dot line\r\n\u{00E9}t\u{00E9}\r\n").utf8)
    }

    private func expectError(_ kind: IMAPError.Kind, _ body: () throws(IMAPError) -> Void,
                             file: StaticString = #filePath, line: UInt = #line) -> IMAPError?
    {
        do {
            try body()
            XCTFail("no error, expected \(kind)", file: file, line: line)
            return nil
        } catch {
            XCTAssertEqual(error.kind, kind, error.description, file: file, line: line)
            return error
        }
    }

    private func loopbackListener() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        XCTAssertTrue(ok)
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    // MARK: - Connecting

    func testConnectOverSTARTTLSAndImplicitTLSWithCAVerification() throws {
        let servers = try mail()
        for security in [MailSecurity.starttls, .tls] {
            let client = IMAPClient(settings(servers, user: "support@example.test", security: security))
            try client.connect()
            XCTAssertTrue(client.capabilities.contains("IDLE"), "\(client.capabilities)")
            XCTAssertTrue(client.capabilities.contains("UIDPLUS"), "\(client.capabilities)")
            XCTAssertNotEqual(client.uidValidity, 0)
            XCTAssertGreaterThanOrEqual(client.uidNext, 1)
            try client.noop()
            client.logout()
            _ = expectError(.connect) { () throws(IMAPError) in _ = try client.uids(after: 0) }
        }
        // "localhost" is a DNS name on the certificate too (checked with SNI sent).
        var named = settings(servers, user: "support@example.test", security: .tls)
        named.host = "localhost"
        let client = IMAPClient(named)
        try client.connect()
        client.logout()
    }

    func testCertificateFromAnotherCAIsRefused() throws {
        let servers = try mail()
        for security in [MailSecurity.starttls, .tls] {
            var wrong = settings(servers, user: "support@example.test", security: security)
            wrong.caFile = "/etc/ssl/certs/ca-certificates.crt"  // the system store did not sign the test CA's certificate
            let error = expectError(.tls) { () throws(IMAPError) in try IMAPClient(wrong).connect() }
            XCTAssertTrue(error?.description.contains("does not verify") ?? false, error?.description ?? "")
            // Without verification (never the default) the same connection works.
            wrong.verifyPeer = false
            let client = IMAPClient(wrong)
            try client.connect()
            client.logout()
        }
        var missing = settings(servers, user: "support@example.test", security: .tls)
        missing.caFile = "/nonexistent/ca.pem"
        let error = expectError(.tls) { () throws(IMAPError) in try IMAPClient(missing).connect() }
        XCTAssertTrue(error?.description.contains("/nonexistent/ca.pem") ?? false, error?.description ?? "")
    }

    func testWrongPasswordIsAnAuthErrorWithTheServersText() throws {
        let servers = try mail()
        let client = IMAPClient(settings(servers, user: "support@example.test", password: "not-the-password"))
        let error = expectError(.auth) { () throws(IMAPError) in try client.connect() }
        let text = error?.description ?? ""
        XCTAssertTrue(text.contains("support@example.test") && text.contains("127.0.0.1:\(servers.imapPort)"), text)
        XCTAssertTrue(text.lowercased().contains("authentication failed"), text)
    }

    /// An access token for a server without AUTH=XOAUTH2 (the harness without --oauth): `.auth`, naming what it offers.
    func testAccessTokenForAServerWithoutXOAUTH2IsAnAuthError() throws {
        let servers = try mail()
        var withToken = settings(servers, user: "support@example.test")
        withToken.oauth2AccessToken = "at-some-token"
        let error = expectError(.auth) { () throws(IMAPError) in try IMAPClient(withToken).connect() }
        let text = error?.description ?? ""
        XCTAssertTrue(text.contains("does not offer AUTH=XOAUTH2") && text.contains("AUTH=PLAIN"), text)
        XCTAssertFalse(text.contains("at-some-token"), text)
    }

    func testMissingMailbox() throws {
        let servers = try mail()
        let client = IMAPClient(settings(servers, user: "support@example.test", mailbox: "NoSuchFolder"))
        let error = expectError(.mailboxMissing) { () throws(IMAPError) in try client.connect() }
        XCTAssertTrue(error?.description.contains("NoSuchFolder") ?? false, error?.description ?? "")
    }

    func testServerDownAndServerSilent() throws {
        // Nobody listening: .connect.
        let (fd, port) = try loopbackListener()
        close(fd)
        let down = IMAPSettings(host: "127.0.0.1", port: port, security: .tls, username: "u", password: "p", timeoutSeconds: 2)
        let error = expectError(.connect) { () throws(IMAPError) in try IMAPClient(down).connect() }
        XCTAssertTrue(error?.description.contains("127.0.0.1:\(port)") ?? false, error?.description ?? "")

        // A socket that accepts (in the backlog) but never greets: .timeout after the timeout, plain or TLS.
        let (silent, silentPort) = try loopbackListener()
        defer { close(silent) }
        for security in [MailSecurity.none, .tls] {
            let started = Date()
            let mute = IMAPSettings(host: "127.0.0.1", port: silentPort, security: security, username: "u", password: "p",
                                    timeoutSeconds: 1)
            let error = expectError(.timeout) { () throws(IMAPError) in try IMAPClient(mute).connect() }
            XCTAssertTrue(error?.description.contains("within 1 s") ?? false, error?.description ?? "")
            XCTAssertLessThan(Date().timeIntervalSince(started), 5, "\(security) waited too long")
        }
    }

    func testUIDValidityIsStableAcrossReconnects() throws {
        let servers = try mail()
        let user = try freshUser(servers)
        try servers.deliver(to: user, raw: rawMessage(1, "validity"))
        let first = IMAPClient(settings(servers, user: user))
        try first.connect()
        let validity = first.uidValidity
        let next = first.uidNext
        first.logout()
        try first.connect()
        XCTAssertEqual(first.uidValidity, validity)
        XCTAssertEqual(first.uidNext, next)
        first.logout()
        let second = IMAPClient(settings(servers, user: user, security: .tls))
        try second.connect()
        XCTAssertEqual(second.uidValidity, validity)
        second.logout()
    }

    // MARK: - Messages

    func testSearchFetchFlagsAndMove() throws {
        let servers = try mail()
        let user = try freshUser(servers)
        let tag = UUID().uuidString
        let sent = (1...3).map { rawMessage($0, tag) }
        for message in sent { try servers.deliver(to: user, raw: message) }

        let client = IMAPClient(settings(servers, user: user))
        try client.connect()
        defer { client.logout() }
        let uids = try client.uids(after: 0)
        XCTAssertEqual(uids.count, 3)
        XCTAssertEqual(uids, uids.sorted())
        XCTAssertEqual(try client.uids(after: uids[0]), Array(uids.dropFirst()))
        // "n:*" matches the last message even when n is beyond it: filtered out.
        XCTAssertEqual(try client.uids(after: uids[2]), [])
        XCTAssertEqual(try client.uids(after: uids[2] + 100), [])
        XCTAssertGreaterThan(client.uidNext, uids[2])

        // BODY.PEEK[] gives exactly the stored bytes: what we sent, below the headers Dovecot adds.
        let stored = try servers.messages(user: user)
        XCTAssertEqual(stored.map { UInt32($0.uid) }, uids)
        for (index, uid) in uids.enumerated() {
            let raw = try XCTUnwrap(try client.fetch(uid: uid))
            XCTAssertEqual(raw, stored[index].raw)
            XCTAssertTrue(raw.count >= sent[index].count && Array(raw.suffix(sent[index].count)) == sent[index],
                          String(decoding: raw, as: UTF8.self))
            XCTAssertEqual(try client.size(uid: uid), raw.count)
        }
        XCTAssertNil(try client.fetch(uid: uids[2] + 50))
        XCTAssertNil(try client.size(uid: uids[2] + 50))
        XCTAssertFalse(try servers.messages(user: user).contains { $0.flags.contains("\\Seen") }, "PEEK must not set \\Seen")

        // Flags and keywords.
        try client.addFlags(uid: uids[1], ["$Chorus", "\\Flagged"])
        let flags = try servers.messages(user: user)[1].flags
        XCTAssertTrue(flags.contains("$Chorus") && flags.contains("\\Flagged"), "\(flags)")
        XCTAssertEqual(try client.uidsWithout(flag: "$Chorus"), [uids[0], uids[2]])
        XCTAssertEqual(try client.uidsWithout(flag: "\\Seen"), uids)
        try client.addFlags(uid: uids[0], ["\\Seen"])
        XCTAssertEqual(try client.uidsWithout(flag: "\\Seen"), [uids[1], uids[2]])
        _ = expectError(.protocolError) { () throws(IMAPError) in try client.addFlags(uid: uids[0], ["bad flag"]) }
        _ = expectError(.protocolError) { () throws(IMAPError) in _ = try client.uidsWithout(flag: "(x)") }

        // Move to a folder created on demand.
        try client.ensureMailbox("Processed")
        try client.ensureMailbox("Processed")  // exists: no error
        try client.move(uid: uids[0], to: "Processed")
        XCTAssertEqual(try client.uids(after: 0), [uids[1], uids[2]])
        XCTAssertEqual(try servers.messages(user: user).count, 2)
        let processed = try servers.messages(user: user, mailbox: "Processed")
        XCTAssertEqual(processed.map(\.raw), [stored[0].raw])
        _ = expectError(.mailboxMissing) { () throws(IMAPError) in try client.move(uid: uids[1], to: "Nowhere") }
        XCTAssertEqual(try client.uids(after: 0), [uids[1], uids[2]], "a failed move loses nothing")

        // A folder with a non-ASCII name (modified UTF-7 on the wire).
        try client.ensureMailbox("Traité")
        try client.move(uid: uids[1], to: "Traité")
        XCTAssertEqual(try client.uids(after: 0), [uids[2]])
        let accented = IMAPClient(settings(servers, user: user, mailbox: "Traité"))
        try accented.connect()
        XCTAssertEqual(try accented.uids(after: 0).count, 1)
        accented.logout()
    }

    func testNoopRefreshesUIDNext() throws {
        let servers = try mail()
        let user = try freshUser(servers)
        let client = IMAPClient(settings(servers, user: user))
        try client.connect()
        defer { client.logout() }
        let before = client.uidNext
        try servers.deliver(to: user, raw: rawMessage(1, "noop"))
        try client.noop()
        XCTAssertEqual(client.uidNext, before + 1)
        XCTAssertEqual(try client.uids(after: before - 1), [before])
    }

    // MARK: - IDLE

    func testIdleTimesOutWhenNothingHappens() throws {
        let servers = try mail()
        let client = IMAPClient(settings(servers, user: try freshUser(servers)))
        try client.connect()
        defer { client.logout() }
        let started = Date()
        XCTAssertEqual(try client.idle(timeoutSeconds: 1), .timeout)
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(elapsed, 0.9)
        XCTAssertLessThan(elapsed, 4)
        // The session is still usable after DONE.
        XCTAssertEqual(try client.uids(after: 0), [])
    }

    func testIdleWakesOnDelivery() throws {
        let servers = try mail()
        let user = try freshUser(servers)
        let client = IMAPClient(settings(servers, user: user, security: .tls))
        try client.connect()
        defer { client.logout() }
        let before = client.uidNext
        let message = rawMessage(1, "idle")
        let delivered = expectation(description: "delivered")
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) {
            do { try servers.deliver(to: user, raw: message) } catch { XCTFail("delivery failed: \(error)") }
            delivered.fulfill()
        }
        let started = Date()
        XCTAssertEqual(try client.idle(timeoutSeconds: 15), .changed)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        wait(for: [delivered], timeout: 10)
        XCTAssertEqual(client.uidNext, before + 1, "uidNext is fresh after IDLE")
        XCTAssertEqual(try client.uids(after: 0).count, 1)
    }

    func testInterruptWakesIdleAndBlocksLaterCallsUntilConnect() throws {
        let servers = try mail()
        let client = IMAPClient(settings(servers, user: try freshUser(servers)))
        try client.connect()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { client.interrupt() }
        let started = Date()
        XCTAssertEqual(try client.idle(timeoutSeconds: 30), .interrupted)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        _ = expectError(.interrupted) { () throws(IMAPError) in _ = try client.uids(after: 0) }
        _ = expectError(.interrupted) { () throws(IMAPError) in _ = try client.idle(timeoutSeconds: 1) }
        // connect() clears the interrupt.
        try client.connect()
        XCTAssertEqual(try client.uids(after: 0), [])
        XCTAssertEqual(try client.idle(timeoutSeconds: 1), .timeout)
        // An interrupt before idle() starts is not lost.
        client.interrupt()
        _ = expectError(.interrupted) { () throws(IMAPError) in _ = try client.idle(timeoutSeconds: 10) }
        client.logout()
    }

    // MARK: - Pure helpers

    func testModifiedUTF7MailboxNames() {
        XCTAssertEqual(IMAPMailboxName.encode("INBOX"), "INBOX")
        XCTAssertEqual(IMAPMailboxName.encode("Traité"), "Trait&AOk-")
        XCTAssertEqual(IMAPMailboxName.encode("A&B"), "A&-B")
        // RFC 3501 section 5.1.3's example.
        XCTAssertEqual(IMAPMailboxName.encode("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-")
        XCTAssertEqual(IMAPMailboxName.encode("😀"), "&2D3eAA-")
    }

    func testKeywordValidation() {
        XCTAssertTrue(IMAPMailboxName.isValidKeyword("$Chorus"))
        XCTAssertTrue(IMAPMailboxName.isValidKeyword("NonJunk"))
        for bad in ["", "a b", "(x", "a*", "\"q\"", "back\\slash", "é", "a]"] {
            XCTAssertFalse(IMAPMailboxName.isValidKeyword(bad), bad)
        }
    }
}
