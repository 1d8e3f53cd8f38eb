import EmailMIME
import XCTest

/// Every fixture in Tests/Fixtures/email, parsed, with the fields that matter checked exactly.
final class ParseFixtureTests: XCTestCase {
    func testPlainASCII() throws {
        let m = try EmailFixtures.parse("plain-ascii.eml")
        XCTAssertEqual(m.messageID, "5678.21-Nov-1997@example.com")
        XCTAssertEqual(m.subject, "Order #1042 shipping question")
        XCTAssertEqual(m.from, MailAddress(name: "Joe Q. Public", address: "john.q.public@example.com"))
        XCTAssertEqual(m.to, [MailAddress(name: "Mary Smith", address: "mary@x.test"),
                              MailAddress(address: "jdoe@example.org"),
                              MailAddress(name: "Who?", address: "one@y.test")])
        XCTAssertEqual(m.cc, [MailAddress(address: "boss@nil.test"),
                              MailAddress(name: "Giant; \"Big\" Box", address: "sysservices@example.net")])
        XCTAssertEqual(m.replyTo, [])
        XCTAssertEqual(m.date, 1_057_049_557) // Tue, 1 Jul 2003 10:52:37 +0200
        XCTAssertEqual(m.text, "Hi,\n\nis my order #1042 shipped yet? I ordered it last week.\n\nThanks,\nJoe\n")
        XCTAssertNil(m.html)
        XCTAssertEqual(m.newText, "Hi,\n\nis my order #1042 shipped yet? I ordered it last week.\n\nThanks,\nJoe")
        XCTAssertNil(m.quotedText)
        XCTAssertEqual(m.attachments, [])
        XCTAssertFalse(m.autoSubmitted)
        XCTAssertNil(m.deliveryReport)
        XCTAssertEqual(m.inReplyTo, [])
        XCTAssertEqual(m.references, [])
        XCTAssertEqual(m.headers.map(\.name), ["Return-Path", "Received", "From", "To", "Cc", "Date", "Message-ID", "Subject",
                                               "MIME-Version", "Content-Type", "Content-Transfer-Encoding"])
        XCTAssertEqual(m.header("received"), "from mail.example.com (mail.example.com [192.0.2.10])\tby mx.example.net (Postfix) with ESMTPS id 4Y2kQZ1Kc9z9vBt\tfor <mary@example.net>; Fri, 21 Nov 1997 09:55:08 -0600 (CST)")
        XCTAssertEqual(m.header("Content-Type"), "text/plain; charset=us-ascii")
    }

    func testAlternativeWithFormatFlowed() throws {
        let m = try EmailFixtures.parse("alternative.eml")
        XCTAssertEqual(m.messageID, "a1b2c3d4-0001@example.se")
        XCTAssertEqual(m.date, 1_714_996_991)
        // format=flowed: the soft break after "too " is joined.
        XCTAssertEqual(m.text, "Hello,\n\ncould you send me a return label for order 2211? The shoes are too small.\n\nAnna\n")
        XCTAssertTrue(m.html?.hasPrefix("<!DOCTYPE html>\n<html>") == true)
        XCTAssertFalse(m.html?.contains("\r") == true, "html line ends are normalised")
        XCTAssertEqual(m.newText, "Hello,\n\ncould you send me a return label for order 2211? The shoes are too small.\n\nAnna")
        XCTAssertEqual(m.attachments, [])
    }

    func testNestedMixedAlternativeRelated() throws {
        let m = try EmailFixtures.parse("nested-related.eml")
        XCTAssertEqual(m.messageID, "CAFx9=nested-0001@mail.example.es")
        XCTAssertEqual(m.to, [MailAddress(name: "Shop Support", address: "support@shop.example")])
        XCTAssertEqual(m.text, "The parcel arrived damaged, see the photo.\n[image: box.png]\nInvoice attached.\n")
        XCTAssertEqual(m.html, "<div dir=\"ltr\">The parcel arrived damaged, see the photo.<div><img src=\"cid:ii_box001\" alt=\"box.png\" width=\"1\" height=\"1\"><br></div><div>Invoice attached.</div></div>\n")
        XCTAssertEqual(m.attachments.count, 2)
        let image = m.attachments[0]
        XCTAssertEqual(image.filename, "box.png")
        XCTAssertEqual(image.contentType, "image/png")
        XCTAssertEqual(image.contentID, "ii_box001")
        XCTAssertTrue(image.inline)
        XCTAssertEqual(image.data.count, 70)
        XCTAssertEqual(sha256Hex(image.data), "4271a16aa869b7f47815ea026e61e1244599bb405e55975d19affd68022349c9")
        let pdf = m.attachments[1]
        XCTAssertEqual(pdf.filename, "invoice-2211.pdf")
        XCTAssertEqual(pdf.contentType, "application/pdf")
        XCTAssertEqual(pdf.contentID, "f_invoice01")
        XCTAssertFalse(pdf.inline)
        XCTAssertEqual(pdf.data.count, 77)
        XCTAssertEqual(sha256Hex(pdf.data), "56c2ac043c28d3543275a6f50b593a6beb0b6888ed8159ac02e3e7f4a32ccb26")
    }

    func testLatin1QuotedPrintable() throws {
        let m = try EmailFixtures.parse("latin1-qp.eml")
        XCTAssertEqual(m.subject, "Rückerstattung")
        XCTAssertEqual(m.from, MailAddress(name: "Jürgen Weiß", address: "juergen@example.de"))
        XCTAssertEqual(m.text, "Grüß Gott,\n\nich hätte gern eine Rückerstattung für die Bestellung Nr. 77 - äh, 78.\nDer Betrag war 49,90 EUR? Nein: 49,90 DM.\n\nMit freundlichen Grüßen\nJürgen Weiß\n")
    }

    func testWindows1252() throws {
        let m = try EmailFixtures.parse("windows-1252.eml")
        XCTAssertEqual(m.subject, "Plan “deluxe”")
        XCTAssertEqual(m.from, MailAddress(name: "Zoë Adams", address: "zoe@example.co.uk"))
        XCTAssertEqual(m.text, "Hello,\n\nthe “deluxe” plan costs €19 – that’s fine…\n\nRegards\nZoë\n")
        XCTAssertEqual(m.header("X-MS-Has-Attach"), "")
    }

    func testKOI8R() throws {
        let m = try EmailFixtures.parse("koi8-r.eml")
        XCTAssertEqual(m.subject, "Вопрос о заказе")
        XCTAssertEqual(m.from?.name, "Иван Петров")
        XCTAssertEqual(m.text, "Здравствуйте!\n\nКогда придёт мой заказ?\n\nСпасибо,\nИван\n")
    }

    func testISO2022JP() throws {
        let m = try EmailFixtures.parse("iso-2022-jp.eml")
        XCTAssertEqual(m.subject, "注文について")
        XCTAssertEqual(m.from, MailAddress(name: "山田太郎", address: "taro@example.jp"))
        XCTAssertEqual(m.text, "お世話になっております。\n注文番号１２３の件です。\n\n山田太郎\n")
    }

    func testShiftJISBase64() throws {
        let m = try EmailFixtures.parse("shift-jis.eml")
        XCTAssertEqual(m.subject, "返品")
        XCTAssertEqual(m.text, "こんにちは。\n返品したいです。\n")
    }

    func testGB2312() throws {
        let m = try EmailFixtures.parse("gb2312.eml")
        XCTAssertEqual(m.subject, "订单")
        XCTAssertEqual(m.from?.name, "王伟")
        XCTAssertEqual(m.text, "你好，我的订单还没有到。\n")
    }

    func testUTF8Base64AndUTF16() throws {
        let m = try EmailFixtures.parse("utf8-base64.eml")
        XCTAssertEqual(m.text, "Hi 👋\n\nDanke für die schnelle Lieferung! 🚚 ✓\nΚαλημέρα — שלום — مرحبا\n")
        XCTAssertEqual(m.date, 1_715_553_900)
        let u16 = try EmailFixtures.parse("utf-16.eml")
        XCTAssertEqual(u16.text, "Bonjour, où est mon colis ?\n")
    }

    func testEncodedWords() throws {
        let m = try EmailFixtures.parse("encoded-words.eml")
        // B and Q words, split across a folded line, UTF-8 + ISO-8859-1 + KOI8-R.
        XCTAssertEqual(m.subject, "Re: Your order – nº 42 est expédiée спасибо")
        XCTAssertEqual(m.from, MailAddress(name: "Anélie François", address: "anelie@example.fr"))
        XCTAssertEqual(m.replyTo, [MailAddress(name: "André Pirard", address: "PIRARD@vm1.ulg.ac.be")])
        XCTAssertEqual(m.to, [MailAddress(name: "Keith Moore", address: "moore@cs.utk.edu"), MailAddress(address: "support@shop.example")])
        // A group is expanded to its members.
        XCTAssertEqual(m.cc, [MailAddress(name: "Jörg", address: "joerg@example.de"), MailAddress(address: "lise@example.dk")])
        // RFC 2047 §8: whitespace between adjacent encoded words is dropped, elsewhere kept.
        XCTAssertEqual(m.header("X-Comment"), "ab (ab) and a  b")
    }

    func testAttachmentFilenames() throws {
        let m = try EmailFixtures.parse("filenames.eml")
        XCTAssertEqual(m.text, "Siehe Anhang.\n")
        XCTAssertEqual(m.attachments.map(\.filename), ["Rechnung März 2024 – Kopie.txt", "Übersicht.pdf", "写真.jpg"])
        XCTAssertEqual(m.attachments.map(\.contentType), ["text/plain", "application/pdf", "image/jpeg"])
        // A text/plain part with Content-Disposition: attachment is an attachment, not body.
        XCTAssertEqual(m.attachments[0].data, Array("Rechnung\n".utf8))
        XCTAssertEqual(m.attachments[1].data, Array("%PDF-1.4 fake\n".utf8))
        XCTAssertEqual(m.attachments[2].data, (0...255).map { UInt8($0) })
        XCTAssertEqual(m.attachments.map(\.inline), [false, false, false])
    }

    func testGmailReply() throws {
        let m = try EmailFixtures.parse("gmail-reply.eml")
        XCTAssertEqual(m.messageID, "CAGmail0003+abc=def@mail.gmail.com")
        XCTAssertEqual(m.inReplyTo, ["reply-0002@shop.example"])
        XCTAssertEqual(m.references, ["orig-0001@shop.example", "reply-0002@shop.example"])
        XCTAssertEqual(m.newText, "Great, thanks! Tuesday works for me.\n\nTom")
        XCTAssertEqual(m.quotedText, "On Wed, May 15, 2024 at 5:03\u{202F}PM Shop Support <support@shop.example> wrote:\n\n> Hi Tom,\n>\n> we can deliver on Tuesday or Wednesday.\n>\n> --\n> Shop Support\n>")
        XCTAssertNotNil(m.html)
    }

    func testOutlookReply() throws {
        let m = try EmailFixtures.parse("outlook-reply.eml")
        XCTAssertEqual(m.newText, "Hi,\n\nPlease send the invoice to accounts@contoso.example instead.\n\nBest regards,\nPriya Shah\nContoso Ltd.")
        XCTAssertTrue(m.quotedText?.hasPrefix("________________________________\nFrom: Shop Support <support@shop.example>\nSent: Friday, May 17, 2024 2:30 PM\n") == true)
        XCTAssertTrue(m.quotedText?.hasSuffix("-----Original Message-----\nFrom: Priya Shah\nSent: Thursday, May 16, 2024 9:00 AM\nSubject: Invoice?") == true)
        XCTAssertEqual(m.inReplyTo, ["inv-88@shop.example"])
    }

    func testHTMLOnlyReply() throws {
        let m = try EmailFixtures.parse("html-only-reply.eml")
        XCTAssertNil(m.text)
        XCTAssertTrue(m.html?.contains("<blockquote type=\"cite\">") == true)
        XCTAssertEqual(m.newText, "Friday afternoon is best & I’ll be home after 3 pm.\n\nSee the tracking page (https://track.example/abc).\nHanna")
        XCTAssertEqual(m.quotedText, "On 18 May 2024, at 10:00, Shop <support@shop.example> wrote:\n\nWhich slot suits you?\n- Friday\n- Saturday")
        XCTAssertEqual(m.messageID, "7F3A2C1B-0000-4000-8000-APPLEMAIL01@example.se")
        // Headers in written order, the Content-* ones (kept by GMime on the MIME part) included.
        XCTAssertEqual(m.headers.prefix(3).map(\.name), ["Content-Type", "Content-Transfer-Encoding", "Mime-Version"])
    }

    func testGermanFlowedReplyWithSignature() throws {
        let m = try EmailFixtures.parse("german-flowed-reply.eml")
        // delsp=yes: the space before the soft break is deleted.
        XCTAssertTrue(m.text?.hasPrefix("Vielen Dank, die Lieferung ist heute angekommen. Alles bestens.\n\n-- \nMax") == true)
        XCTAssertEqual(m.newText, "Vielen Dank, die Lieferung ist heute angekommen. Alles bestens.")
        XCTAssertEqual(m.quotedText, "-- \nMax Mustermann\nMusterstraße 1\n\nAm 26.05.2024 um 18:00 schrieb Shop Support <support@shop.example>:\n> Ihre Lieferung ist unterwegs.")
    }

    func testRFC3464DeliveryStatus() throws {
        let m = try EmailFixtures.parse("dsn-rfc3464.eml")
        XCTAssertTrue(m.autoSubmitted)
        let report = try XCTUnwrap(m.deliveryReport)
        XCTAssertEqual(report.originalMessageID, "sent-0042@shop.example")
        XCTAssertEqual(report.originalEnvelopeID, "env-7f3a9c")
        XCTAssertEqual(report.recipients, [
            DeliveryReport.Recipient(address: "louisl@larry.slip.umd.edu", action: "failed", status: "5.1.1",
                                     diagnostic: "550 5.1.1 <louisl@larry.slip.umd.edu>... User unknown",
                                     originalRecipient: "louis@example.org"),
            DeliveryReport.Recipient(address: "nobody@cs.utk.edu", action: "delayed", status: "4.4.1"),
        ])
        XCTAssertTrue(report.isFailure)
        XCTAssertTrue(m.text?.hasPrefix("The original message was received at") == true)
        XCTAssertEqual(m.attachments.map(\.contentType), ["message/delivery-status", "text/rfc822-headers"])
    }

    func testPostfixBounce() throws {
        let m = try EmailFixtures.parse("postfix-bounce.eml")
        XCTAssertEqual(m.from, MailAddress(name: "Mail Delivery System", address: "MAILER-DAEMON@mx.shop.example"))
        XCTAssertTrue(m.autoSubmitted)
        let report = try XCTUnwrap(m.deliveryReport)
        XCTAssertEqual(report.originalMessageID, "sent-0099@shop.example")
        XCTAssertNil(report.originalEnvelopeID)
        XCTAssertEqual(report.recipients, [
            DeliveryReport.Recipient(address: "no.such.user@gmail.example", action: "failed", status: "5.1.1",
                                     diagnostic: "550-5.1.1 The email account that you tried to reach does not exist.",
                                     originalRecipient: "no.such.user@gmail.example"),
        ])
        XCTAssertTrue(report.isFailure)
        // The returned message is an attachment named after its subject, not body text.
        XCTAssertEqual(m.attachments.map(\.contentType), ["message/delivery-status", "message/rfc822"])
        XCTAssertEqual(m.attachments[1].filename, "Your receipt.eml")
        XCTAssertFalse(m.newText.contains("Thank you for your order"))
        let returned = try MailParser.parse(m.attachments[1].data)
        XCTAssertEqual(returned.messageID, "sent-0099@shop.example")
        XCTAssertEqual(returned.text, "Thank you for your order.\n")
    }

    func testQmailBounce() throws {
        let m = try EmailFixtures.parse("qmail-bounce.eml")
        XCTAssertNil(m.messageID)
        XCTAssertTrue(m.autoSubmitted)
        let report = try XCTUnwrap(m.deliveryReport)
        XCTAssertEqual(report.originalMessageID, "sent-0123@shop.example")
        XCTAssertEqual(report.recipients, [
            DeliveryReport.Recipient(address: "gone@customer.example", action: "failed", status: "5.1.1",
                                     diagnostic: "Sorry, no mailbox here by that name. (#5.1.1)"),
            DeliveryReport.Recipient(address: "full@customer.example", action: "failed", status: "5.2.2",
                                     diagnostic: "192.0.2.44 does not like recipient. Remote host said: 552 5.2.2 Mailbox full Giving up on 192.0.2.44."),
        ])
    }

    func testEximBounce() throws {
        let m = try EmailFixtures.parse("exim-bounce.eml")
        let report = try XCTUnwrap(m.deliveryReport)
        XCTAssertEqual(report.originalMessageID, "sent-0200@shop.example")
        XCTAssertEqual(report.recipients.map(\.address), ["nobody@partner.example"])
        XCTAssertEqual(report.recipients.first?.status, "5.1.1")
        XCTAssertEqual(report.recipients.first?.diagnostic, "host mx.partner.example [192.0.2.10] SMTP error from remote mail server after RCPT TO:<nobody@partner.example>: 550 5.1.1 <nobody@partner.example>: Recipient address rejected: User unknown")
        XCTAssertTrue(report.isFailure)
    }

    func testMailerDaemonTextWithoutCopyIsNoReport() throws {
        // A MAILER-DAEMON notice that lists no copy of the original: not reliable, so no report.
        let mail = "From: MAILER-DAEMON@mx.example\r\nTo: a@b.example\r\nSubject: Warning\r\nMessage-ID: <w1@mx.example>\r\n\r\nYour mail is delayed.\r\n"
        let m = try MailParser.parse(Array(mail.utf8))
        XCTAssertNil(m.deliveryReport)
        XCTAssertTrue(m.autoSubmitted, "mail from MAILER-DAEMON is machine-sent")
    }

    func testForwardedMessageIsAnAttachment() throws {
        let m = try EmailFixtures.parse("forward-rfc822.eml")
        XCTAssertEqual(m.text, "See the mail from my bank below.\n")
        XCTAssertEqual(m.newText, "See the mail from my bank below.")
        XCTAssertEqual(m.attachments.count, 1)
        let forwarded = m.attachments[0]
        XCTAssertEqual(forwarded.contentType, "message/rfc822")
        XCTAssertEqual(forwarded.filename, "Strange charge on my card.eml")
        XCTAssertFalse(forwarded.inline)
        let inner = try MailParser.parse(forwarded.data)
        XCTAssertEqual(inner.messageID, "bank-alert-777@bank.example")
        XCTAssertEqual(inner.from, MailAddress(name: "Bank", address: "alerts@bank.example"))
        XCTAssertEqual(inner.text, "A charge of 99.00 EUR from SHOP.EXAMPLE was made.\n")
    }

    func testAutoReply() throws {
        let m = try EmailFixtures.parse("auto-reply.eml")
        XCTAssertTrue(m.autoSubmitted)
        XCTAssertNil(m.deliveryReport)
        XCTAssertEqual(m.inReplyTo, ["sent-0300@shop.example"])
        XCTAssertEqual(m.date, 1_716_732_000)
    }

    func testAutoSubmittedHeaders() throws {
        func parse(_ extra: String) throws -> ParsedMail {
            try MailParser.parse(Array("From: a@b.example\r\n\(extra)\r\nSubject: x\r\n\r\nhi\r\n".utf8))
        }
        XCTAssertFalse(try parse("Auto-Submitted: no").autoSubmitted)
        XCTAssertTrue(try parse("Auto-Submitted: auto-generated").autoSubmitted)
        XCTAssertTrue(try parse("Precedence: list").autoSubmitted)
        XCTAssertTrue(try parse("Precedence: Junk").autoSubmitted)
        XCTAssertFalse(try parse("Precedence: first-class").autoSubmitted)
        XCTAssertTrue(try parse("X-Autoreply: yes").autoSubmitted)
        XCTAssertTrue(try parse("Return-Path: <>").autoSubmitted)
        XCTAssertFalse(try parse("Return-Path: <a@b.example>").autoSubmitted)
    }

    func testRaw8BitHeaders() throws {
        let m = try EmailFixtures.parse("raw-8bit-header.eml")
        // Raw UTF-8 is taken as UTF-8; raw Latin-1 falls back to windows-1252.
        XCTAssertEqual(m.from, MailAddress(name: "André Faure", address: "andre@example.fr"))
        XCTAssertEqual(m.subject, "Café crème order")
        XCTAssertEqual(m.header("X-Note"), "naïve")
        // An undeclared body that is valid UTF-8 is UTF-8.
        XCTAssertEqual(m.text, "Bonjour, je voudrais un café.\n")
    }
}
