import EmailMIME
import XCTest

/// Which parts become text, html and attachments, on small hand-written trees.
final class PartSelectionTests: XCTestCase {
    func parse(_ lines: [String]) throws -> ParsedMail {
        try MailParser.parse(Array(lines.joined(separator: "\r\n").utf8))
    }

    func testMixedTextPartsAreJoinedAndFooterKept() throws {
        // Apple Mail's text-image-text, then a mailing-list footer.
        let m = try parse([
            "From: a@b.example", "Subject: parts", "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=\"m\"", "",
            "--m", "Content-Type: text/plain; charset=us-ascii", "", "Before the picture.",
            "--m", "Content-Type: image/gif", "Content-Disposition: inline", "Content-Transfer-Encoding: base64", "", "R0lGODlhAQABAAAAACw=",
            "--m", "Content-Type: text/plain; charset=us-ascii", "", "After the picture.",
            "--m", "Content-Type: text/plain; charset=us-ascii", "Content-Disposition: inline", "", "_______________", "list footer",
            "--m--", ""])
        XCTAssertEqual(m.text, "Before the picture.\nAfter the picture.\n_______________\nlist footer")
        XCTAssertEqual(m.attachments.count, 1)
        XCTAssertEqual(m.attachments[0].contentType, "image/gif")
        XCTAssertNil(m.attachments[0].filename)
        XCTAssertTrue(m.attachments[0].inline)
        XCTAssertEqual(m.attachments[0].data, [0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2C])
    }

    func testAlternativeKeepsCalendarAndExtraPartsAsAttachments() throws {
        let m = try parse([
            "From: a@b.example", "Subject: invite", "MIME-Version: 1.0",
            "Content-Type: multipart/alternative; boundary=\"a\"", "",
            "--a", "Content-Type: text/plain; charset=utf-8", "", "Meeting at 10.",
            "--a", "Content-Type: text/html; charset=utf-8", "", "<p>Meeting at 10.</p>",
            "--a", "Content-Type: text/calendar; charset=utf-8; method=REQUEST", "", "BEGIN:VCALENDAR", "END:VCALENDAR",
            "--a", "Content-Type: text/plain; charset=utf-8", "", "second plain",
            "--a--", ""])
        XCTAssertEqual(m.text, "Meeting at 10.")
        XCTAssertEqual(m.html, "<p>Meeting at 10.</p>")
        XCTAssertEqual(m.attachments.map(\.contentType), ["text/calendar", "text/plain"])
        XCTAssertEqual(m.attachments[0].data, Array("BEGIN:VCALENDAR\r\nEND:VCALENDAR".utf8))
        XCTAssertEqual(m.attachments[1].data, Array("second plain".utf8))
    }

    func testRelatedStartParameterPicksTheRoot() throws {
        let m = try parse([
            "From: a@b.example", "Subject: related", "MIME-Version: 1.0",
            "Content-Type: multipart/related; boundary=\"r\"; start=\"<root@x>\"; type=\"text/html\"", "",
            "--r", "Content-Type: image/png", "Content-ID: <img@x>", "Content-Transfer-Encoding: base64", "", "iVBORw0K",
            "--r", "Content-Type: text/html; charset=utf-8", "Content-ID: <root@x>", "", "<img src=\"cid:img@x\">Hi",
            "--r--", ""])
        XCTAssertEqual(m.html, "<img src=\"cid:img@x\">Hi")
        XCTAssertEqual(m.newText, "Hi")
        XCTAssertEqual(m.attachments, [MailAttachment(filename: nil, contentType: "image/png", contentID: "img@x", inline: true, data: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A])])
    }

    func testUuencodedPart() throws {
        let m = try parse([
            "From: a@b.example", "Subject: uu", "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=\"u\"", "",
            "--u", "Content-Type: text/plain", "", "see file",
            "--u", "Content-Type: application/octet-stream; name=\"hi.txt\"", "Content-Transfer-Encoding: x-uuencode", "",
            "begin 644 hi.txt", "#:&DA", "`", "end",
            "--u--", ""])
        XCTAssertEqual(m.attachments.first?.filename, "hi.txt")
        XCTAssertEqual(m.attachments.first?.data, Array("hi!".utf8))
    }

    func testUnknownAndMislabelledCharsets() throws {
        func body(_ charset: String, _ bytes: [UInt8]) throws -> String? {
            let head = Array("From: a@b.example\r\nSubject: c\r\nContent-Type: text/plain; charset=\(charset)\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".utf8)
            return try MailParser.parse(head + bytes).text
        }
        XCTAssertEqual(try body("x-no-such-charset", Array("plain ü".utf8)), "plain ü")
        XCTAssertEqual(try body("x-no-such-charset", [0x63, 0x61, 0x66, 0xE9]), "café")
        XCTAssertEqual(try body("utf-8", [0x63, 0x61, 0x66, 0xE9]), "café", "invalid UTF-8 falls back to windows-1252")
        XCTAssertEqual(try body("iso-8859-1", [0x93, 0x71, 0x94, 0x20, 0x80]), "“q” €", "ISO-8859-1 read as windows-1252")
        XCTAssertEqual(try body("iso-8859-15", [0xA4]), "€")
        XCTAssertEqual(try body("windows-1251", [0xCF, 0xF0, 0xE8, 0xE2, 0xE5, 0xF2]), "Привет")
        XCTAssertEqual(try body("big5", [0xA4, 0xA4, 0xA4, 0xE5]), "中文")
        XCTAssertEqual(try body("euc-kr", [0xC7, 0xD1, 0xB1, 0xDB]), "한글")
    }
}
