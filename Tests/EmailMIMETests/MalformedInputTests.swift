import EmailMIME
import XCTest

/// Broken MIME is read as far as it goes; input that is not a mail throws a clear error.
final class MalformedInputTests: XCTestCase {
    func testTruncatedMultipartKeepsWhatArrived() throws {
        let m = try EmailFixtures.parse("malformed-truncated.eml")
        XCTAssertEqual(m.text, "The first part is complete.\n")
        XCTAssertEqual(m.attachments.count, 1)
        XCTAssertEqual(m.attachments[0].filename, "data.bin")
        XCTAssertEqual(m.attachments[0].data, (0...32).map { UInt8($0) })
    }

    func testMultipartWithoutBoundaryIsRecovered() throws {
        let m = try EmailFixtures.parse("malformed-no-boundary.eml")
        XCTAssertEqual(m.text, "Hello from a broken client.")
        XCTAssertEqual(m.newText, "Hello from a broken client.")
        XCTAssertEqual(m.attachments, [])
    }

    func testMultipartWithoutBoundaryCRLF() throws {
        let bytes = try EmailFixtures.bytes("malformed-no-boundary.eml")
        var crlf: [UInt8] = []
        for b in bytes { if b == 10 { crlf.append(13) }; crlf.append(b) }
        let m = try MailParser.parse(crlf)
        XCTAssertEqual(m.text, "Hello from a broken client.")
    }

    func testMultipartWithoutAnyBoundaryLineKeepsTheText() throws {
        let mail = "From: a@b.example\r\nSubject: x\r\nContent-Type: multipart/mixed\r\n\r\nJust some text.\r\n"
        let m = try MailParser.parse(Array(mail.utf8))
        XCTAssertEqual(m.text, "Just some text.\n")
    }

    func testBadBase64DecodesWhatItCan() throws {
        let m = try EmailFixtures.parse("malformed-bad-base64.eml")
        XCTAssertEqual(m.text, "Hello world!")
    }

    func testNoBody() throws {
        let m = try EmailFixtures.parse("no-body.eml")
        XCTAssertEqual(m.subject, "(no body)")
        XCTAssertEqual(m.messageID, "nobody.0001@example.net")
        XCTAssertEqual(m.text, "")
        XCTAssertEqual(m.newText, "")
        XCTAssertNil(m.quotedText)
        XCTAssertEqual(m.attachments, [])
    }

    func testInvalidDateIsNil() throws {
        let m = try MailParser.parse(Array("From: a@b.example\nDate: the day after tomorrow\nSubject: x\n\nhi\n".utf8))
        XCTAssertNil(m.date)
        XCTAssertEqual(m.header("Date"), "the day after tomorrow")
        let noDate = try MailParser.parse(Array("From: a@b.example\nSubject: x\n\nhi\n".utf8))
        XCTAssertNil(noDate.date)
        XCTAssertEqual(noDate.subject, "x")
        XCTAssertNil(noDate.messageID)
    }

    func testMboxFromLineIsSkipped() throws {
        let m = try MailParser.parse(Array("From someone@example.com Sat Jan  3 01:05:34 1996\nFrom: a@b.example\nSubject: mbox\n\nhi\n".utf8))
        XCTAssertEqual(m.subject, "mbox")
        XCTAssertEqual(m.from?.address, "a@b.example")
        // "From :" (obsolete space before the colon) is a header field, not an mbox line.
        let obs = try MailParser.parse(Array("From : c@d.example\nSubject: obs\n\nhi\n".utf8))
        XCTAssertEqual(obs.subject, "obs")
        XCTAssertEqual(obs.from?.address, "c@d.example")
    }

    func testNotAMailThrows() throws {
        XCTAssertThrowsError(try MailParser.parse(EmailFixtures.bytes("not-a-mail-empty.eml"))) { error in
            XCTAssertEqual((error as? MailParseError)?.description, "not a mail: the input is empty")
        }
        XCTAssertThrowsError(try MailParser.parse(EmailFixtures.bytes("not-a-mail-binary.eml"))) { error in
            XCTAssertEqual((error as? MailParseError)?.description, "not a mail: the input does not start with a header field (\"Name: value\")")
        }
        XCTAssertThrowsError(try MailParser.parse(Array(" \r\n\r\n".utf8))) { error in
            XCTAssertEqual((error as? MailParseError)?.description, "not a mail: the input is empty")
        }
        XCTAssertThrowsError(try MailParser.parse(Array("Hello there, this is just text.\n".utf8))) { error in
            XCTAssertTrue((error as? MailParseError)?.description.hasPrefix("not a mail:") == true)
        }
        XCTAssertThrowsError(try MailParser.parse(Array("Subject: x\n".utf8) + [0, 1, 2] + Array("\n\nbody".utf8))) { error in
            XCTAssertEqual((error as? MailParseError)?.description, "not a mail: the header section holds a NUL byte at offset 11")
        }
        XCTAssertThrowsError(try MailParser.parse(Array("From nobody\n".utf8))) { error in
            XCTAssertTrue((error as? MailParseError)?.description.hasPrefix("not a mail:") == true)
        }
    }

    func testDeepNestingIsBounded() throws {
        // 3,000 nested multiparts, parsed on a thread with a small (512 KiB) stack.
        var s = "From: a@b.example\r\nSubject: deep\r\n"
        for i in 0..<3000 { s += "Content-Type: multipart/mixed; boundary=\"b\(i)\"\r\n\r\n--b\(i)\r\n" }
        s += "Content-Type: text/plain\r\n\r\ndeep text\r\n"
        for i in (0..<3000).reversed() { s += "--b\(i)--\r\n" }
        let bytes = Array(s.utf8)
        final class Box: @unchecked Sendable { var mail: ParsedMail? }
        let box = Box()
        let done = expectation(description: "parsed")
        let thread = Thread {
            box.mail = try? MailParser.parse(bytes)
            done.fulfill()
        }
        thread.stackSize = 512 << 10
        thread.start()
        wait(for: [done], timeout: 60)
        let m = try XCTUnwrap(box.mail)
        XCTAssertEqual(m.subject, "deep")
        XCTAssertNil(m.text, "the text sits below the depth limit")
        XCTAssertEqual(m.attachments.count, 1)
        XCTAssertEqual(m.attachments[0].contentType, "multipart/mixed")
        XCTAssertTrue(String(decoding: m.attachments[0].data, as: UTF8.self).contains("--b64\n") || String(decoding: m.attachments[0].data, as: UTF8.self).contains("--b64\r\n"))
    }

    func testMaxBytesRefusesBiggerInput() throws {
        let mail = Array("From: a@b.example\r\nSubject: x\r\n\r\n".utf8) + [UInt8](repeating: 65, count: 2000)
        XCTAssertThrowsError(try MailParser.parse(mail, maxBytes: 1000)) { error in
            XCTAssertEqual((error as? MailParseError)?.description, "mail is \(mail.count) bytes, over the limit of 1000 bytes")
        }
        XCTAssertNoThrow(try MailParser.parse(mail, maxBytes: mail.count))
    }

    func testTwentyMebibyteAttachment() throws {
        var payload = [UInt8](repeating: 0, count: 20 << 20)
        var x: UInt32 = 2_463_534_242
        for i in payload.indices {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5
            payload[i] = UInt8(truncatingIfNeeded: x)
        }
        var out = OutgoingMail(from: MailAddress(address: "a@shop.example"), to: [MailAddress(address: "b@example.com")],
                               subject: "Big", messageID: "big-1@shop.example", date: 1_700_000_000)
        out.text = "The file."
        out.attachments = [MailAttachment(filename: "big.bin", contentType: "application/octet-stream", data: payload)]
        let bytes = try MailBuilder.build(out)
        XCTAssertGreaterThan(bytes.count, 27_000_000)

        let started = Date()
        let m = try MailParser.parse(bytes)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
        XCTAssertEqual(m.text, "The file.\n")
        XCTAssertEqual(m.attachments.count, 1)
        XCTAssertEqual(m.attachments[0].data.count, payload.count)
        XCTAssertTrue(m.attachments[0].data == payload)

        XCTAssertThrowsError(try MailParser.parse(bytes, maxBytes: 20 << 20)) { error in
            XCTAssertEqual((error as? MailParseError)?.description, "mail is \(bytes.count) bytes, over the limit of 20971520 bytes")
        }
    }
}
