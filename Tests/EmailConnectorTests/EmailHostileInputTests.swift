import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// Bad input gets a clear error and loses nothing: malformed and oversized mail over LMTP and
/// IMAP, invalid settings, a wrong IMAP password.
final class EmailHostileInputTests: EmailTestCase {
    private func transaction(_ c: LineClient, rcpt: String = "support@chorus.test") throws {
        XCTAssertTrue(try c.reply().hasPrefix("220"))
        try c.send("LHLO client.test\r\n")
        XCTAssertTrue(try c.reply().hasPrefix("250"))
        try c.send("MAIL FROM:<sender@outside.example>\r\nRCPT TO:<\(rcpt)>\r\nDATA\r\n")
        XCTAssertTrue(try c.reply().hasPrefix("250"))
        XCTAssertTrue(try c.reply().hasPrefix("250"))
        XCTAssertTrue(try c.reply().hasPrefix("354"))
    }

    func testMalformedAndOversizedMailOverLMTPAreRefusedClearly() throws {
        try startAll(imap: false, settings: ["max_message_bytes": "4096"])
        let c = try LineClient(port: lmtpPort)
        // Not a mail at all: refused permanently (the MTA bounces it to its sender), nothing stored.
        try transaction(c)
        try c.sendBytes([0x00, 0x01, 0x02, 0xFF, 0xFE] + Array("\r\n.\r\n".utf8))
        let garbage = try c.reply()
        XCTAssertTrue(garbage.hasPrefix("5"), garbage)
        XCTAssertTrue(garbage.contains("5.6.0"), garbage)

        // Too big: 552 for the recipient; the connection carries on.
        try c.send("MAIL FROM:<sender@outside.example>\r\nRCPT TO:<support@chorus.test>\r\nDATA\r\n")
        for _ in 0..<2 { XCTAssertTrue(try c.reply().hasPrefix("250")) }
        XCTAssertTrue(try c.reply().hasPrefix("354"))
        let big = EmailTestCase.mail(to: "support@chorus.test", subject: "big", body: String(repeating: "0123456789abcdef\n", count: 600),
                                     messageID: "big@outside.example")
        try c.sendBytes(big + Array(".\r\n".utf8))
        let tooBig = try c.reply()
        XCTAssertTrue(tooBig.hasPrefix("552"), tooBig)

        // An unknown command and a bad sequence get their codes; then a good mail still goes through.
        try c.send("HELLO\r\n")
        XCTAssertTrue(try c.reply().hasPrefix("500"))
        try c.send("DATA\r\n")
        XCTAssertTrue(try c.reply().hasPrefix("503"))
        try c.send("MAIL FROM:<sender@outside.example>\r\nRCPT TO:<support@chorus.test>\r\nDATA\r\n")
        for _ in 0..<2 { XCTAssertTrue(try c.reply().hasPrefix("250")) }
        XCTAssertTrue(try c.reply().hasPrefix("354"))
        try c.sendBytes(EmailTestCase.mail(to: "support@chorus.test", subject: "fine", body: "..leading dot\nok", messageID: "fine@outside.example")
                    + Array(".\r\n".utf8))
        let ok = try c.reply()
        XCTAssertTrue(ok.hasPrefix("250"), ok)
        let ev = try message(subject: "fine")
        XCTAssertEqual(ev["parts"]?.arrayValue?.first?["text"]?.stringValue, ".leading dot\nok", "dot-unstuffed")
        try c.send("QUIT\r\n")
        XCTAssertTrue(try c.reply().hasPrefix("221"))
        let subjects = try storedEvents(types: ["message"]).compactMap { $0["context"]?["subject"]?.stringValue }
        XCTAssertEqual(subjects, ["fine"], "only the good mail is stored")
    }

    func testOversizedMailInTheMailboxIsSetAsideAndTheRestIsRead() throws {
        try startAll(lmtp: false, settings: ["max_message_bytes": "4096"])
        try servers.deliver(to: EmailTestCase.support, raw: EmailTestCase.mail(
            subject: "huge", body: String(repeating: "0123456789abcdef\n", count: 600), messageID: "huge@c.test"))
        try servers.deliver(to: EmailTestCase.support, raw: EmailTestCase.mail(subject: "small", body: "ok", messageID: "small@c.test"))
        _ = try message(subject: "small")
        try waitFor(timeout: 15, "the big mail to be flagged") {
            try self.servers.messages(user: EmailTestCase.support).contains { $0.flags.contains("$ChorusTooBig") }
        }
        let subjects = try storedEvents(types: ["message"]).compactMap { $0["context"]?["subject"]?.stringValue }
        XCTAssertEqual(subjects, ["small"])
        XCTAssertTrue(daemon.logText.contains("mail over max_message_bytes left in the mailbox"), daemon.logText)
    }

    func testWrongIMAPPasswordIsReportedAndRetriedWhileSendingStillWorks() throws {
        try startAll(lmtp: false, settings: ["imap_password": "\"wrong\""], waitForIMAP: false)
        try waitFor(timeout: 20, "the login failure in the log") { self.daemon.logText.contains("reconnecting in") }
        let line = daemon.logText.split(separator: "\n").first { $0.contains("reconnecting in") } ?? ""
        XCTAssertTrue(line.lowercased().contains("auth") || line.lowercased().contains("login"), String(line))
        XCTAssertFalse(daemon.logText.contains("wrong\""), "the password is not logged")
        let sent = try sendAndWait(["instance": .string(instanceName), "to": .string(EmailTestCase.customer),
                                    "options": ["subject": "Still here"], "parts": [["type": "text", "text": "hello"]]])
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "sent", "\(sent)")
    }

    func testBadSettingsAreRefusedWithClearMessages() throws {
        func instance(_ name: String, _ settings: String) -> String {
            "[[instance]]\nname = \"\(name)\"\nplugin = \"email\"\n[instance.settings]\n" + settings + "\n"
        }
        let toml = [
            instance("noaddress", "smtp_host = \"127.0.0.1\""),
            instance("badaddress", "address = \"support\"\nsmtp_host = \"127.0.0.1\""),
            instance("nothing", "address = \"a@example.test\""),
            instance("nopassword", "address = \"a@example.test\"\nimap_host = \"127.0.0.1\""),
            instance("badsecurity", "address = \"a@example.test\"\nsmtp_host = \"127.0.0.1\"\nsmtp_security = \"ssl\""),
            instance("badlisten", "address = \"a@example.test\"\nlmtp_listen = \"2424\""),
            instance("badprocessed", "address = \"a@example.test\"\nimap_host = \"h\"\nimap_password = \"p\"\nimap_processed = \"delete\""),
            instance("unknown", "address = \"a@example.test\"\nsmtp_host = \"h\"\nsmtp_pasword = \"x\""),
        ].joined(separator: "\n")
        let d = try TestDaemon(instancesTOML: toml)
        try d.start()
        defer { d.stop() }
        let expected: [(String, String)] = [
            ("noaddress", "setting \"address\" is required"),
            ("badaddress", "setting \"address\": expected the mailbox's email address"),
            ("nothing", "configure at least one of imap_host"),
            ("nopassword", "setting \"imap_password\" is required with imap_host"),
            ("badsecurity", "setting \"smtp_security\": expected tls, starttls or none, found \"ssl\""),
            ("badlisten", "setting \"lmtp_listen\": expected host:port"),
            ("badprocessed", "setting \"imap_processed\": expected flag, move or none"),
            ("unknown", "unknown setting \"smtp_pasword\""),
        ]
        for (name, message) in expected {
            let line = d.logText.split(separator: "\n").first { $0.contains("instance \(name) failed") }
            XCTAssertNotNil(line, "no failure logged for \(name):\n\(d.logText)")
            XCTAssertTrue(line?.contains(message) ?? false, "\(name): \(line ?? "")")
        }
    }
}
