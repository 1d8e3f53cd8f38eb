import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// The email connector in the real chorusd against real Dovecot (IMAP) and Postfix (SMTP
/// submission, MX, LMTP relay into Chorus), all on loopback.
final class EmailConnectorTests: EmailTestCase {
    /// Mail in through IMAP (IDLE), flagged after the commit; a reply out through Postfix with the
    /// right threading headers, found in the customer's mailbox; the customer's answer to that
    /// reply lands in the same conversation.
    func testIMAPInboundReplyThroughSMTPAndThreading() throws {
        try startAll(lmtp: false)
        let first = EmailTestCase.mail(subject: "Order 1042 has not arrived", body: "Hello,\nwhere is my parcel?\n\nAna",
                                       messageID: "first-1042@customer.example.test")
        try servers.deliver(to: EmailTestCase.support, raw: first)
        let inbound = try message(subject: "Order 1042 has not arrived")
        XCTAssertEqual(inbound["channel"]?.stringValue, "email")
        XCTAssertEqual(inbound["channel_ids"]?["message"]?.stringValue, "first-1042@customer.example.test")
        XCTAssertEqual(inbound["channel_ids"]?["chat"]?.stringValue, "<first-1042@customer.example.test>")
        XCTAssertEqual(inbound["channel_ids"]?["account"]?.stringValue, EmailTestCase.support)
        XCTAssertEqual(inbound["sender"]?["email"]?.stringValue, EmailTestCase.customer)
        XCTAssertEqual(inbound["sender"]?["name"]?.stringValue, "Ana Customer")
        XCTAssertEqual(inbound["parts"]?.arrayValue?.first?["text"]?.stringValue, "Hello,\nwhere is my parcel?\n\nAna")
        XCTAssertEqual(inbound["context"]?["transport"]?.stringValue, "imap")
        XCTAssertEqual(inbound["timestamp"]?.stringValue, "2026-11-23T10:00:00.000Z")
        let conversation = try XCTUnwrap(inbound["conversation_id"]?.stringValue)

        // Marked processed only after the commit: \Seen and $Chorus.
        try waitFor(timeout: 15, "the mail to be flagged") {
            try self.servers.messages(user: EmailTestCase.support).first?.flags.contains("$Chorus") == true
        }
        XCTAssertTrue(try servers.messages(user: EmailTestCase.support)[0].flags.contains("\\Seen"))

        // Reply through Chorus: SMTP submission (STARTTLS + AUTH) to Postfix, delivered to the customer's mailbox.
        let sent = try sendAndWait(["conversation_id": .string(conversation),
                                    "parts": [["type": "text", "text": "Hi Ana,\nit ships today. Grüße, Support"]]])
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "sent", "\(sent)")
        let ourID = try XCTUnwrap(sent["status"]?["channel_message_id"]?.stringValue)
        XCTAssertTrue(ourID.hasPrefix("msg_") && ourID.hasSuffix("@example.test"), ourID)
        let delivered = try servers.waitForMessages(user: EmailTestCase.customer, count: 1, timeout: 30)
        let raw = delivered[0].raw
        XCTAssertEqual(EmailTestCase.header("Message-ID", in: raw), "<\(ourID)>")
        XCTAssertEqual(EmailTestCase.header("In-Reply-To", in: raw), "<first-1042@customer.example.test>")
        XCTAssertEqual(EmailTestCase.header("References", in: raw), "<first-1042@customer.example.test>")
        XCTAssertEqual(EmailTestCase.header("Subject", in: raw), "Re: Order 1042 has not arrived")
        XCTAssertTrue(EmailTestCase.header("From", in: raw)?.contains("<support@example.test>") ?? false)
        XCTAssertNotNil(EmailTestCase.header("Date", in: raw))
        XCTAssertTrue(EmailTestCase.header("To", in: raw)?.contains(EmailTestCase.customer) ?? false)

        // The customer answers our reply (their MUA quotes it): same conversation, quote separated.
        let answer = EmailTestCase.mail(subject: "Re: Order 1042 has not arrived",
                                        body: "Great, thanks!\n\nOn Mon, 23 Nov 2026, Example Support wrote:\n> Hi Ana,\n> it ships today.",
                                        messageID: "answer-1042@customer.example.test", inReplyTo: ourID,
                                        references: ["first-1042@customer.example.test", ourID])
        try servers.deliver(to: EmailTestCase.support, raw: answer)
        let reply = try message(subject: "Re: Order 1042 has not arrived")
        XCTAssertEqual(reply["conversation_id"]?.stringValue, conversation, "a reply to our reply stays in the conversation")
        XCTAssertEqual(reply["reply_to"]?["channel_message_id"]?.stringValue, ourID)
        XCTAssertEqual(reply["parts"]?.arrayValue?.first?["text"]?.stringValue, "Great, thanks!")
        XCTAssertTrue(reply["context"]?["quoted_text"]?.stringValue?.contains("it ships today") ?? false, "\(reply)")

        // A second reply from Chorus answers the newest message and carries the whole chain in References.
        let second = try sendAndWait(["conversation_id": .string(conversation), "parts": [["type": "text", "text": "You're welcome."]]])
        XCTAssertEqual(second["status"]?["state"]?.stringValue, "sent")
        let both = try servers.waitForMessages(user: EmailTestCase.customer, count: 2, timeout: 30)
        let raw2 = try XCTUnwrap(both.first { EmailTestCase.header("Message-ID", in: $0.raw) != "<\(ourID)>" }?.raw)
        XCTAssertEqual(EmailTestCase.header("In-Reply-To", in: raw2), "<answer-1042@customer.example.test>")
        XCTAssertEqual(EmailTestCase.header("References", in: raw2),
                       "<first-1042@customer.example.test> <\(ourID)> <answer-1042@customer.example.test>")
    }

    /// Mail from the outside world to Postfix (MX-style) for @chorus.test is relayed over LMTP
    /// into the connector, answered after the commit; attachments become media parts served by chorusd.
    func testLMTPDeliveryFromPostfixWithAttachment() throws {
        try startAll(imap: false)
        let pdf = Array("%PDF-1.4 invoice ünïcode".utf8)
        let boundary = "b-7f3a"
        let body = [
            "From: =?UTF-8?Q?Jos=C3=A9_Cliente?= <jose@outside.example>", "To: <support@chorus.test>",
            "Subject: =?UTF-8?B?RmFjdHVyYSBuwrogNDI=?=", "Date: Mon, 23 Nov 2026 11:00:00 +0100",
            "Message-ID: <lmtp-1@outside.example>", "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=\"\(boundary)\"", "",
            "--\(boundary)", "Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: quoted-printable", "",
            "Adjunto la factura, =E1nimo.", "--\(boundary)",
            "Content-Type: application/pdf", "Content-Transfer-Encoding: base64",
            "Content-Disposition: attachment; filename*=UTF-8''factura%20n%C2%BA42.pdf", "",
            Data(pdf).base64EncodedString(), "--\(boundary)--", "",
        ].joined(separator: "\r\n")
        try servers.sendSMTP(from: "jose@outside.example", to: ["support@chorus.test"], raw: Array(body.utf8))
        let ev = try message(subject: "Factura nº 42")
        XCTAssertEqual(ev["context"]?["transport"]?.stringValue, "lmtp")
        XCTAssertEqual(ev["sender"]?["name"]?.stringValue, "José Cliente")
        XCTAssertEqual(ev["sender"]?["id"]?.stringValue, "jose@outside.example")
        let parts = try XCTUnwrap(ev["parts"]?.arrayValue)
        XCTAssertEqual(parts.first?["text"]?.stringValue, "Adjunto la factura, ánimo.")
        let media = try XCTUnwrap(parts.first { $0["type"]?.stringValue == "media" })
        XCTAssertEqual(media["file_name"]?.stringValue, "factura nº42.pdf")
        XCTAssertEqual(media["mime_type"]?.stringValue, "application/pdf")
        XCTAssertEqual(media["size"]?.intValue, Int64(pdf.count))
        let ref = try XCTUnwrap(media["ref"]?.stringValue)
        let fetched = try daemon.get(ref)
        XCTAssertEqual(fetched.status, 200)
        XCTAssertEqual(Array(fetched.body.utf8), pdf, "the attachment is served back byte for byte")
        XCTAssertEqual(try daemon.get("/webhooks/\(instanceName)/media/" + String(repeating: "0", count: 64)).status, 404)
        let envelope = ev["context"]?["envelope"]
        XCTAssertEqual(envelope?["from"]?.stringValue, "jose@outside.example")
        XCTAssertEqual(envelope?["recipients"]?.arrayValue?.first?.stringValue, "support@chorus.test")
    }

    /// The daemon is stopped while mail keeps arriving: nothing is lost, nothing is stored twice,
    /// through IMAP (last UID kept durably) and through LMTP (Postfix keeps the mail queued while
    /// Chorus is down and delivers it when it is back).
    func testRestartWithoutLossOrRepetition() throws {
        try startAll()
        for i in 1...3 {
            try servers.deliver(to: EmailTestCase.support, raw: EmailTestCase.mail(subject: "imap \(i)", body: "n\(i)", messageID: "imap-\(i)@c.test"))
        }
        for i in 1...3 { _ = try message(subject: "imap \(i)") }
        try servers.sendSMTP(from: EmailTestCase.customer, to: ["support@chorus.test"],
                             raw: EmailTestCase.mail(to: "support@chorus.test", subject: "lmtp 1", body: "l1", messageID: "lmtp-1@c.test"))
        _ = try message(subject: "lmtp 1")

        // Down: two more in the mailbox, one more queued in Postfix.
        let dir = daemon.directory
        connection = nil
        XCTAssertEqual(daemon.stop(), 0)
        daemon = nil
        for i in 4...5 {
            try servers.deliver(to: EmailTestCase.support, raw: EmailTestCase.mail(subject: "imap \(i)", body: "n\(i)", messageID: "imap-\(i)@c.test"))
        }
        try servers.sendSMTP(from: EmailTestCase.customer, to: ["support@chorus.test"],
                             raw: EmailTestCase.mail(to: "support@chorus.test", subject: "lmtp 2", body: "l2", messageID: "lmtp-2@c.test"))
        sleep(2)   // Postfix tries the relay, finds nobody listening, and defers the mail
        try startDaemon(directory: dir)
        _ = try message(subject: "imap 4")
        _ = try message(subject: "imap 5")
        _ = try message(subject: "lmtp 2", timeoutMs: 90_000)
        // And again, with nothing new: no message is read twice.
        try restartDaemon()
        sleep(3)
        let subjects = try storedEvents(types: ["message"]).compactMap { $0["context"]?["subject"]?.stringValue }
        XCTAssertEqual(subjects.sorted(), ["imap 1", "imap 2", "imap 3", "imap 4", "imap 5", "lmtp 1", "lmtp 2"], "each mail stored exactly once")
    }

    /// A recipient refused at submission fails the send at once (permanent, with the SMTP code);
    /// a recipient refused later, by the next hop, bounces: Postfix's real DSN comes back into the
    /// mailbox and becomes a `failed` status on the message it concerns.
    func testRefusedRecipientAndBounceBecomeFailedStatuses() throws {
        // The LMTP listener accepts only support@chorus.test: Postfix accepts mail for other
        // chorus.test addresses at submission, then bounces it when the LMTP hop refuses it.
        try startAll(settings: ["lmtp_recipients": "[\"support@chorus.test\"]"])
        let refused = try sendAndWait(["instance": .string(instanceName), "to": "nobody@example.test",
                                       "options": ["subject": "Hello"], "parts": [["type": "text", "text": "hi"]]])
        XCTAssertEqual(refused["status"]?["state"]?.stringValue, "failed", "\(refused)")
        XCTAssertEqual(refused["status"]?["error"]?["code"]?.stringValue, "smtp_550")
        XCTAssertEqual(refused["status"]?["retryable"]?.boolValue, false)

        let sent = try sendAndWait(["instance": .string(instanceName), "to": "nobody@chorus.test",
                                    "options": ["subject": "Your invoice"],
                                    "parts": [["type": "text", "text": "Please find your invoice."]]])
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "sent", "\(sent)")
        let ourID = try XCTUnwrap(sent["status"]?["channel_message_id"]?.stringValue)
        let failed = try event(timeoutMs: 90_000) {
            $0["type"]?.stringValue == "status" && $0["status"]?["state"]?.stringValue == "failed"
                && $0["status"]?["channel_message_id"]?.stringValue == ourID
        }
        XCTAssertEqual(failed["status"]?["message_id"]?.stringValue, sent["status"]?["message_id"]?.stringValue)
        XCTAssertEqual(failed["status"]?["recipient"]?.stringValue, "nobody@chorus.test")
        XCTAssertEqual(failed["status"]?["error"]?["code"]?.stringValue, "5.1.1", "\(failed)")
        XCTAssertEqual(failed["conversation_id"]?.stringValue, sent["conversation_id"]?.stringValue)
        XCTAssertFalse(try storedEvents(types: ["message"]).contains { $0["direction"]?.stringValue == "inbound" },
                       "the bounce is a status, not a customer message")
    }

    /// Payment requests and interactive parts become links and a plain list of choices.
    func testPaymentAndChoicesRenderAsLinksAndList() throws {
        try startAll(imap: false, lmtp: false)
        let sent = try sendAndWait([
            "instance": .string(instanceName), "to": .string(EmailTestCase.customer), "options": ["subject": "Your order"],
            "parts": [
                ["type": "text", "text": "Thanks for your order!"],
                ["type": "payment_request", "amount": 11499, "currency": "EUR", "link": "https://pay.example.com/i/42", "description": "Invoice 42"],
                ["type": "interactive", "style": "buttons", "body": "Delivery or pickup?",
                 "buttons": [["id": "d", "title": "Delivery"], ["id": "p", "title": "Pickup"]]],
            ],
        ])
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "sent", "\(sent)")
        let raw = try servers.waitForMessages(user: EmailTestCase.customer, count: 1, timeout: 30)[0].raw
        let text = String(decoding: raw, as: UTF8.self).replacingOccurrences(of: "=\r\n", with: "")
        XCTAssertEqual(EmailTestCase.header("Subject", in: raw), "Your order")
        XCTAssertNil(EmailTestCase.header("In-Reply-To", in: raw), "a first mail answers nothing")
        for needle in ["Thanks for your order!", "Amount: 114.99 EUR", "Pay here: https://pay.example.com/i/42", "1) Delivery", "2) Pickup"] {
            XCTAssertTrue(text.contains(needle), "\(needle) missing in:\n\(text)")
        }
        // A first mail without a subject is refused clearly; a part email cannot carry too.
        let noSubject = try sendAndWait(["instance": .string(instanceName), "to": "someone@example.test",
                                         "parts": [["type": "text", "text": "hi"]]])
        XCTAssertEqual(noSubject["status"]?["error"]?["code"]?.stringValue, "subject_required")
        let r = try connection.request(.send(idempotencyKey: nil, message: [
            "instance": .string(instanceName), "to": .string(EmailTestCase.customer), "options": ["subject": "x"],
            "parts": [["type": "template", "name": "hello", "language": "en_US"]]]))
        guard case .error(let e) = r else { return XCTFail("a template part is refused up front, got \(r)") }
        XCTAssertEqual(e.field, "message.parts[0].type")
    }
}
