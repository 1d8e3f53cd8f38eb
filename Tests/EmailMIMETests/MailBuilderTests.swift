import EmailMIME
import XCTest

/// MailBuilder output: wire format (CRLF, line length, 7-bit headers) and build → parse round trips.
final class MailBuilderTests: XCTestCase {
    static let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + (0..<200).map { UInt8($0) }

    func richMail() -> OutgoingMail {
        var mail = OutgoingMail(from: MailAddress(name: "Jürgen Müller – Shop", address: "support@shop.example"),
                                to: [MailAddress(name: "Zoë Adams", address: "zoe@example.co.uk"), MailAddress(address: "plain@example.com")],
                                subject: "Ihre Bestellung Nr. 1042 – Grüße aus Köln 🎉 and a long tail of words to force folding of the subject header",
                                messageID: "out-0001@shop.example", date: 1_716_000_000)
        mail.cc = [MailAddress(name: "Ops, Team", address: "ops@shop.example")]
        mail.replyTo = [MailAddress(name: "Support", address: "reply+t42@shop.example")]
        mail.text = "Hallo Zoë,\n\nanbei die Rechnung. Das Paket ist unterwegs 🚚.\n\n" + String(repeating: "Lang ", count: 400) + "\n"
        mail.html = "<p>Hallo Zoë,</p><p>anbei die Rechnung.</p><img src=\"cid:logo-1@shop.example\">"
        mail.inReplyTo = "in-0009@example.co.uk"
        mail.references = ["first-0001@shop.example", "in-0009@example.co.uk"]
        mail.attachments = [
            MailAttachment(filename: "Rechnung März – 1042.pdf", contentType: "application/pdf", data: Array("%PDF-1.4 1042\n".utf8)),
            MailAttachment(filename: "logo.png", contentType: "image/png", contentID: "logo-1@shop.example", inline: true, data: MailBuilderTests.png),
            MailAttachment(filename: "写真.jpg", contentType: "image/jpeg", data: (0...255).map { UInt8($0) }),
        ]
        mail.extraHeaders = [("X-Chorus-Event", "evt_01HXYZ"), ("X-Note", "naïve")]
        return mail
    }

    func testWireFormat() throws {
        let bytes = try MailBuilder.build(richMail())
        // Every line ends in CRLF, no bare CR or LF, no line over 998 octets.
        var lineStart = 0
        var i = 0
        while i < bytes.count {
            if bytes[i] == 10 {
                XCTAssertTrue(i > 0 && bytes[i - 1] == 13, "bare LF at \(i)")
                XCTAssertLessThanOrEqual(i - 1 - lineStart, 998)
                lineStart = i + 1
            } else if bytes[i] == 13 {
                XCTAssertTrue(i + 1 < bytes.count && bytes[i + 1] == 10, "bare CR at \(i)")
            }
            i += 1
        }
        // The header section is 7-bit ASCII.
        let headerEnd = try XCTUnwrap(firstBlankLine(bytes))
        XCTAssertTrue(bytes[..<headerEnd].allSatisfy { $0 < 128 }, "non-ASCII byte in the header section")
        // And so is the whole message (non-ASCII text is QP/base64, filenames RFC 2231).
        XCTAssertTrue(bytes.allSatisfy { $0 < 128 })

        let head = String(decoding: bytes[..<headerEnd], as: UTF8.self)
        XCTAssertTrue(head.contains("Date: Sat, 18 May 2024 02:40:00 +0000\r\n"), head)
        XCTAssertTrue(head.contains("Message-Id: <out-0001@shop.example>\r\n") || head.contains("Message-ID: <out-0001@shop.example>\r\n"), head)
        XCTAssertTrue(head.contains("In-Reply-To: <in-0009@example.co.uk>\r\n"), head)
        XCTAssertTrue(head.contains("References: <first-0001@shop.example> <in-0009@example.co.uk>\r\n"), head)
        XCTAssertTrue(head.contains("MIME-Version: 1.0\r\n"), head)
        XCTAssertTrue(head.contains("Subject: Ihre Bestellung Nr. 1042\r\n =?UTF-8?B?"), head)
        XCTAssertTrue(head.contains("From: =?UTF-8?b?SsO8cmdlbiBNw7xsbGVyIOKAkw==?= Shop <support@shop.example>\r\n"), head)
        XCTAssertTrue(head.contains("Cc: \"Ops, Team\" <ops@shop.example>\r\n"), head)
        XCTAssertTrue(head.contains("X-Chorus-Event: evt_01HXYZ\r\n"), head)
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.contains("filename*=UTF-8''Rechnung%20M%C3%A4rz%20%E2%80%93%201042.pdf"), "RFC 2231 filename")
        XCTAssertTrue(text.contains("Content-Type: multipart/mixed;"))
        XCTAssertTrue(text.contains("Content-Type: multipart/alternative;"))
        XCTAssertTrue(text.contains("Content-Type: multipart/related;"))
        XCTAssertTrue(text.contains("Content-Id: <logo-1@shop.example>") || text.contains("Content-ID: <logo-1@shop.example>"))
    }

    func testRoundTrip() throws {
        let mail = richMail()
        let parsed = try MailParser.parse(MailBuilder.build(mail))
        XCTAssertEqual(parsed.messageID, "out-0001@shop.example")
        XCTAssertEqual(parsed.subject, mail.subject)
        XCTAssertEqual(parsed.from, mail.from)
        XCTAssertEqual(parsed.to, mail.to)
        XCTAssertEqual(parsed.cc, mail.cc)
        XCTAssertEqual(parsed.replyTo, mail.replyTo)
        XCTAssertEqual(parsed.date, 1_716_000_000)
        XCTAssertEqual(parsed.inReplyTo, ["in-0009@example.co.uk"])
        XCTAssertEqual(parsed.references, ["first-0001@shop.example", "in-0009@example.co.uk"])
        XCTAssertEqual(parsed.text, mail.text)
        XCTAssertEqual(parsed.html, mail.html! + "\n")
        XCTAssertEqual(parsed.header("X-Note"), "naïve")
        XCTAssertFalse(parsed.autoSubmitted)
        XCTAssertEqual(parsed.attachments.count, 3)
        // Inline image first (it sits in the related part inside the alternative), then the files in order.
        XCTAssertEqual(parsed.attachments[0], MailAttachment(filename: "logo.png", contentType: "image/png", contentID: "logo-1@shop.example", inline: true, data: MailBuilderTests.png))
        XCTAssertEqual(parsed.attachments[1], MailAttachment(filename: "Rechnung März – 1042.pdf", contentType: "application/pdf", data: Array("%PDF-1.4 1042\n".utf8)))
        XCTAssertEqual(parsed.attachments[2], MailAttachment(filename: "写真.jpg", contentType: "image/jpeg", data: (0...255).map { UInt8($0) }))
    }

    func testTextOnlyIsASinglePart() throws {
        var mail = OutgoingMail(from: MailAddress(address: "a@shop.example"), to: [MailAddress(address: "b@example.com")],
                                subject: "Hello", messageID: "t-1@shop.example", date: 0)
        mail.text = "Just text.\nTwo lines."
        let bytes = try MailBuilder.build(mail)
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.contains("Content-Type: text/plain; charset=utf-8\r\n"))
        XCTAssertFalse(text.contains("multipart"))
        XCTAssertTrue(text.contains("\r\n\r\nJust text.\r\nTwo lines."))
        XCTAssertTrue(text.contains("Subject: Hello\r\n"))
        XCTAssertTrue(text.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n") || text.contains("Date: Thu, 1 Jan 1970 00:00:00 +0000\r\n"), text)
        let parsed = try MailParser.parse(bytes)
        // The builder ends a body with a line break.
        XCTAssertEqual(parsed.text, "Just text.\nTwo lines.\n")
        XCTAssertEqual(parsed.attachments, [])
        XCTAssertNil(parsed.html)
    }

    func testHTMLOnlyAndNoBody() throws {
        var mail = OutgoingMail(from: MailAddress(address: "a@shop.example"), to: [MailAddress(address: "b@example.com")],
                                subject: "H", messageID: "h-1@shop.example", date: 0)
        mail.html = "<b>bold</b>"
        // An inline attachment without html beside it is a plain attachment in multipart/mixed.
        let parsedHTML = try MailParser.parse(MailBuilder.build(mail))
        XCTAssertNil(parsedHTML.text)
        XCTAssertEqual(parsedHTML.html, "<b>bold</b>\n")
        XCTAssertEqual(parsedHTML.newText, "bold")

        var empty = OutgoingMail(from: MailAddress(address: "a@shop.example"), to: [], subject: "", messageID: "e-1@shop.example", date: 0)
        empty.attachments = [MailAttachment(filename: "a.txt", contentType: "text/plain", contentID: "c1@x", inline: true, data: Array("file".utf8))]
        let parsedEmpty = try MailParser.parse(MailBuilder.build(empty))
        XCTAssertEqual(parsedEmpty.text, "\n")
        XCTAssertEqual(parsedEmpty.attachments, [MailAttachment(filename: "a.txt", contentType: "text/plain", contentID: "c1@x", inline: true, data: Array("file".utf8))])
    }

    func testSubjectLineBreaksBecomeSpaces() throws {
        let mail = OutgoingMail(from: MailAddress(address: "a@shop.example"), to: [MailAddress(address: "b@example.com")],
                                subject: "Line one\r\nLine two", messageID: "s-1@shop.example", date: 0)
        XCTAssertEqual(try MailParser.parse(MailBuilder.build(mail)).subject, "Line one  Line two")
    }

    func testLongASCIILinesAreEncoded() throws {
        var mail = OutgoingMail(from: MailAddress(address: "a@shop.example"), to: [MailAddress(address: "b@example.com")],
                                subject: "long", messageID: "l-1@shop.example", date: 0)
        mail.text = String(repeating: "x", count: 5000)
        let bytes = try MailBuilder.build(mail)
        XCTAssertTrue(String(decoding: bytes, as: UTF8.self).contains("Content-Transfer-Encoding: quoted-printable"))
        XCTAssertEqual(try MailParser.parse(bytes).text, mail.text! + "\n")
    }

    func testInvalidInputThrows() {
        func build(_ change: (inout OutgoingMail) -> Void) -> String? {
            var mail = OutgoingMail(from: MailAddress(address: "a@shop.example"), to: [MailAddress(address: "b@example.com")],
                                    subject: "x", messageID: "v-1@shop.example", date: 0)
            change(&mail)
            do {
                _ = try MailBuilder.build(mail)
                return nil
            } catch {
                return error.description
            }
        }
        XCTAssertEqual(build { $0.from = MailAddress(address: "") }, "From address is empty")
        XCTAssertEqual(build { $0.to = [MailAddress(address: "no-at-sign")] }, "To address \"no-at-sign\" is not local@domain")
        XCTAssertEqual(build { $0.cc = [MailAddress(address: "jörg@example.de")] }, "Cc address \"jörg@example.de\" is not printable ASCII (internationalized addresses are not supported)")
        XCTAssertEqual(build { $0.to = [MailAddress(name: "Evil\r\nBcc: x@y", address: "b@example.com")] }, "To display name holds a line break")
        XCTAssertEqual(build { $0.messageID = "<v-1@shop.example>" }, "Message-ID \"<v-1@shop.example>\" is not an id of the form left@right (without <>)")
        XCTAssertEqual(build { $0.references = ["no id"] }, "References \"no id\" is not an id of the form left@right (without <>)")
        XCTAssertEqual(build { $0.extraHeaders = [("X-Bad Name", "v")] }, "extra header name \"X-Bad Name\" is not a valid field name")
        XCTAssertEqual(build { $0.extraHeaders = [("Subject", "v")] }, "extra header Subject would duplicate a header the builder writes")
        XCTAssertEqual(build { $0.extraHeaders = [("X-Inject", "a\r\nBcc: x@y")] }, "extra header X-Inject holds a line break")
        XCTAssertEqual(build { $0.attachments = [MailAttachment(filename: "a", contentType: "pdf", data: [])] }, "attachment content type \"pdf\" is not type/subtype")
        XCTAssertNil(build { $0.to = [] })
        XCTAssertNil(build { $0.attachments = [MailAttachment(filename: "a.txt", contentType: "Text/Plain; charset=utf-8", data: [65])] })
    }

    func testNewMessageID() {
        let a = MailBuilder.newMessageID(domain: "shop.example")
        let b = MailBuilder.newMessageID(domain: "shop.example")
        XCTAssertNotEqual(a, b)
        XCTAssertTrue(a.hasSuffix("@shop.example"))
        let random = a.split(separator: "@")[0]
        XCTAssertEqual(random.count, 32)
        XCTAssertTrue(random.allSatisfy { $0.isHexDigit && !$0.isUppercase })
        var ids = Set<String>()
        for _ in 0..<1000 { ids.insert(MailBuilder.newMessageID(domain: "x.example")) }
        XCTAssertEqual(ids.count, 1000)
    }

    private func firstBlankLine(_ bytes: [UInt8]) -> Int? {
        var i = 0
        while i + 3 < bytes.count {
            if bytes[i] == 13, bytes[i + 1] == 10, bytes[i + 2] == 13, bytes[i + 3] == 10 { return i }
            i += 1
        }
        return nil
    }
}
