import XCTest
@testable import EmailTransport

/// The LMTP server state machine, driven byte by byte: RFC 2033 / 5321 replies, pipelining, DATA, limits.
final class LMTPSessionTests: XCTestCase {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// Everything written by `actions`, as text.
    private func written(_ actions: [LMTPSession.Action]) -> String {
        var out: [UInt8] = []
        for case .write(let chunk) in actions { out += chunk }
        return String(decoding: out, as: UTF8.self)
    }

    /// The reply lines written by `actions`.
    private func replies(_ actions: [LMTPSession.Action]) -> [String] {
        written(actions).components(separatedBy: "\r\n").filter { !$0.isEmpty }
    }

    private func deliveries(_ actions: [LMTPSession.Action]) -> [LMTPSession.Envelope] {
        actions.compactMap { if case .deliver(let envelope) = $0 { return envelope } else { return nil } }
    }

    private func session(max: Int = 1_000_000, accept: @escaping (String) -> Bool = { _ in true }) -> LMTPSession {
        LMTPSession(hostname: "lmtp.chorus.test", maxMessageBytes: max, acceptRecipient: accept)
    }

    private let transaction =
        "LHLO mx.example.test\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<support@chorus.test>\r\n"
        + "RCPT TO:<sales@chorus.test>\r\nDATA\r\nSubject: hi\r\n\r\nHello\r\n..dot line\r\n.\r\n"

    func testGreetingAndLHLOAdvertisesExtensions() {
        let lmtp = session(max: 5000)
        XCTAssertEqual(String(decoding: lmtp.greeting(), as: UTF8.self), "220 lmtp.chorus.test LMTP Chorus ready\r\n")
        let lines = replies(lmtp.feed(bytes("LHLO mx.example.test\r\n")))
        XCTAssertEqual(lines, ["250-lmtp.chorus.test", "250-PIPELINING", "250-ENHANCEDSTATUSCODES",
                               "250-8BITMIME", "250-SMTPUTF8", "250 SIZE 5000"])
    }

    func testEHLOAndHELOAreRefused() {
        let lmtp = session()
        XCTAssertEqual(replies(lmtp.feed(bytes("EHLO x\r\nHELO x\r\n"))).map { String($0.prefix(9)) },
                       ["500 5.5.1", "500 5.5.1"])
        // And no transaction may start without LHLO.
        XCTAssertEqual(replies(lmtp.feed(bytes("MAIL FROM:<a@b>\r\n"))), ["503 5.5.1 Bad sequence of commands: LHLO first"])
        XCTAssertEqual(replies(lmtp.feed(bytes("LHLO\r\n"))), ["501 5.5.4 Syntax: LHLO hostname"])
    }

    func testFullTransactionPipelinedInOneFeed() {
        let lmtp = session()
        let actions = lmtp.feed(bytes(transaction))
        XCTAssertEqual(replies(actions), [
            "250-lmtp.chorus.test", "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-8BITMIME", "250-SMTPUTF8",
            "250 SIZE 1000000",
            "250 2.1.0 Sender <alice@example.test> OK",
            "250 2.1.5 Recipient <support@chorus.test> OK",
            "250 2.1.5 Recipient <sales@chorus.test> OK",
            "354 Start mail input; end with <CRLF>.<CRLF>",
        ])
        // Replies come joined in one write, followed by the delivery.
        XCTAssertEqual(actions.count, 2)
        let envelope = deliveries(actions)
        XCTAssertEqual(envelope, [LMTPSession.Envelope(from: "alice@example.test",
                                                        recipients: ["support@chorus.test", "sales@chorus.test"],
                                                        data: bytes("Subject: hi\r\n\r\nHello\r\n.dot line\r\n"))])
        XCTAssertEqual(envelope.first?.size, envelope.first?.data.count)
        XCTAssertTrue(lmtp.isWaitingForDelivery)

        let done = lmtp.complete([(recipient: "support@chorus.test", accepted: true, message: ""),
                                  (recipient: "sales@chorus.test", accepted: false, message: "store unavailable")])
        XCTAssertEqual(replies(done), ["250 2.0.0 <support@chorus.test> committed", "451 4.3.0 store unavailable"])
        XCTAssertFalse(lmtp.isWaitingForDelivery)
    }

    func testEveryByteSplitGivesTheSameResult() {
        let whole = bytes(transaction + "QUIT\r\n")
        let reference = session()
        var referenceOut = reference.feed(whole)
        referenceOut += reference.complete([(recipient: "support@chorus.test", accepted: true, message: ""),
                                            (recipient: "sales@chorus.test", accepted: true, message: "")])
        // Split the stream in two at every position, and also feed it one byte at a time.
        for cut in 0...whole.count {
            let lmtp = session()
            var out = lmtp.feed(Array(whole[..<cut]))
            out += lmtp.feed(Array(whole[cut...]))
            XCTAssertEqual(deliveries(out), deliveries(referenceOut), "cut at \(cut)")
            out += lmtp.complete([(recipient: "support@chorus.test", accepted: true, message: ""),
                                  (recipient: "sales@chorus.test", accepted: true, message: "")])
            XCTAssertEqual(written(out), written(referenceOut), "cut at \(cut)")
            XCTAssertEqual(out.last, .close, "cut at \(cut)")
        }
        let lmtp = session()
        var out: [LMTPSession.Action] = []
        for byte in whole { out += lmtp.feed([byte]) }
        out += lmtp.complete([(recipient: "support@chorus.test", accepted: true, message: ""),
                              (recipient: "sales@chorus.test", accepted: true, message: "")])
        XCTAssertEqual(written(out), written(referenceOut))
        XCTAssertEqual(deliveries(out), deliveries(referenceOut))
    }

    func testInputWhileWaitingIsBufferedUntilComplete() {
        let lmtp = session()
        let first = lmtp.feed(bytes(transaction + "MAIL FROM:<bob@example.test>\r\nRCPT TO:<support@chorus.test>\r\n"))
        XCTAssertEqual(deliveries(first).count, 1)
        XCTAssertFalse(written(first).contains("bob"), "commands after DATA wait for complete()")
        // More input while waiting: nothing happens.
        XCTAssertEqual(lmtp.feed(bytes("DATA\r\nsecond\r\n.\r\nQUIT\r\n")), [])
        let second = lmtp.complete([(recipient: "sales@chorus.test", accepted: true, message: ""),
                                    (recipient: "support@chorus.test", accepted: true, message: "")])
        // Results are matched by address, replies follow RCPT order.
        XCTAssertEqual(replies(second), [
            "250 2.0.0 <support@chorus.test> committed", "250 2.0.0 <sales@chorus.test> committed",
            "250 2.1.0 Sender <bob@example.test> OK", "250 2.1.5 Recipient <support@chorus.test> OK",
            "354 Start mail input; end with <CRLF>.<CRLF>",
        ])
        XCTAssertEqual(deliveries(second), [LMTPSession.Envelope(from: "bob@example.test", recipients: ["support@chorus.test"],
                                                                 data: bytes("second\r\n"))])
        let third = lmtp.complete([(recipient: "support@chorus.test", accepted: false, message: "550 5.7.1 Refused by policy")])
        XCTAssertEqual(replies(third), ["550 5.7.1 Refused by policy", "221 2.0.0 lmtp.chorus.test closing connection"])
        XCTAssertEqual(third.last, .close)
        XCTAssertTrue(lmtp.isClosed)
        XCTAssertEqual(lmtp.feed(bytes("NOOP\r\n")), [], "nothing after QUIT")
    }

    func testCompleteWithMissingOrDuplicateRecipients() {
        let lmtp = session()
        _ = lmtp.feed(bytes("LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@c.test>\r\nRCPT TO:<a@c.test>\r\nRCPT TO:<b@c.test>\r\nDATA\r\nx\r\n.\r\n"))
        let out = lmtp.complete([(recipient: "A@C.TEST", accepted: true, message: ""),
                                 (recipient: "a@c.test", accepted: false, message: "quota\r\nexceeded")])
        XCTAssertEqual(replies(out), ["250 2.0.0 <a@c.test> committed", "451 4.3.0 quota  exceeded",
                                      "451 4.3.0 <b@c.test> no delivery result, try again later"])
        XCTAssertEqual(lmtp.complete([]), [], "complete() without a pending delivery does nothing")
    }

    func testNullSenderAndParameters() {
        let lmtp = session(max: 100)
        let out = lmtp.feed(bytes("LHLO x\r\nMAIL FROM:<> SIZE=100 BODY=8BITMIME SMTPUTF8\r\nRSET\r\n"
            + "MAIL FROM: <a@b.test> size=101\r\nMAIL FROM:<a@b.test> FOO=1\r\nMAIL FROM:<a@b.test> BODY=BINARYMIME\r\n"
            + "MAIL FROM:<a@b.test> SIZE=abc\r\nMAIL FROM:a@b.test\r\nMAIL TO:<a@b.test>\r\nMAIL FROM:<a b@c>\r\n"
            + "MAIL FROM:<\"a b\"@c.test>\r\n"))
        XCTAssertEqual(replies(out).dropFirst(6), [
            "250 2.1.0 Sender <> OK",
            "250 2.0.0 OK",
            "552 5.3.4 Message size exceeds fixed limit of 100 bytes",
            "555 5.5.4 Unsupported MAIL parameter FOO",
            "501 5.5.4 Syntax: BODY=7BIT or BODY=8BITMIME",
            "501 5.5.4 Syntax: SIZE=<number>",
            "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]",
            "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]",
            "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]",
            "250 2.1.0 Sender <\"a b\"@c.test> OK",
        ])
    }

    func testSequenceErrors() {
        let lmtp = session()
        let out = lmtp.feed(bytes("LHLO x\r\nRCPT TO:<a@b.test>\r\nDATA\r\nMAIL FROM:<s@b.test>\r\nMAIL FROM:<s@b.test>\r\n"
            + "DATA\r\nRCPT TO:<>\r\nRCPT TO:<a@b.test> NOTIFY=NEVER\r\nDATA now\r\nRSET x\r\nRSET\r\nDATA\r\n"))
        XCTAssertEqual(replies(out).dropFirst(6), [
            "503 5.5.1 Bad sequence of commands: MAIL first",
            "503 5.5.1 Bad sequence of commands: MAIL first",
            "250 2.1.0 Sender <s@b.test> OK",
            "503 5.5.1 Bad sequence of commands: nested MAIL command",
            "503 5.5.1 Bad sequence of commands: no valid recipients",
            "501 5.5.4 Syntax: RCPT TO:<address>",
            "555 5.5.4 Unsupported RCPT parameter NOTIFY",
            "501 5.5.4 Syntax: DATA takes no arguments",
            "501 5.5.4 Syntax: RSET takes no arguments",
            "250 2.0.0 OK",
            "503 5.5.1 Bad sequence of commands: MAIL first",
        ])
    }

    func testOtherCommands() {
        let lmtp = session()
        let out = lmtp.feed(bytes("NOOP\r\nnoop anything\r\nVRFY someone\r\nVRFY\r\nEXPN list\r\nSTARTTLS\r\nFROB\r\n\r\nQUIT\r\nNOOP\r\n"))
        XCTAssertEqual(replies(out), [
            "250 2.0.0 OK", "250 2.0.0 OK",
            "252 2.5.0 Cannot VRFY user, but will accept the message and attempt delivery",
            "501 5.5.4 Syntax: VRFY address",
            "502 5.5.1 Command not implemented", "502 5.5.1 Command not implemented",
            "500 5.5.2 Command unrecognized", "500 5.5.2 Command unrecognized",
            "221 2.0.0 lmtp.chorus.test closing connection",
        ])
        XCTAssertEqual(out.last, .close)
    }

    func testRecipientRefusedByCallbackAndDataWithoutAcceptedRecipients() {
        var asked: [String] = []
        let lmtp = session { address in
            asked.append(address)
            return address.hasSuffix("@chorus.test")
        }
        let out = lmtp.feed(bytes("LHLO x\r\nMAIL FROM:<s@b.test>\r\nRCPT TO:<x@other.test>\r\nDATA\r\n"
            + "RCPT TO:<@relay.test,@r2.test:support@chorus.test>\r\nDATA\r\nbody\r\n.\r\n"))
        XCTAssertEqual(asked, ["x@other.test", "support@chorus.test"])
        XCTAssertEqual(replies(out).dropFirst(7), [
            "550 5.1.1 <x@other.test>: Recipient address rejected: unknown user",
            "503 5.5.1 Bad sequence of commands: no valid recipients",
            "250 2.1.5 Recipient <support@chorus.test> OK",
            "354 Start mail input; end with <CRLF>.<CRLF>",
        ])
        XCTAssertEqual(deliveries(out).first?.recipients, ["support@chorus.test"])
    }

    func testBareLineFeedsAreToleratedAndStoredAsCRLF() {
        let lmtp = session()
        let out = lmtp.feed(bytes("LHLO x\nMAIL FROM:<s@b.test>\nRCPT TO:<a@chorus.test>\nDATA\nA: b\n\nline1\r\n..\nlast\n.\nNOOP\n"))
        XCTAssertEqual(replies(out).count, 9)
        XCTAssertEqual(deliveries(out).first?.data, bytes("A: b\r\n\r\nline1\r\n.\r\nlast\r\n"))
        // A bare-LF "." line ends the data too; the NOOP after it waits for complete().
        XCTAssertEqual(replies(lmtp.complete([(recipient: "a@chorus.test", accepted: true, message: "")])),
                       ["250 2.0.0 <a@chorus.test> committed", "250 2.0.0 OK"])
    }

    func testDotUnstuffingOnlyAtLineStart() {
        let lmtp = session()
        let body = "..\r\n...\r\n.x\r\na.b\r\n. \r\n.\r\n"
        let out = lmtp.feed(bytes("LHLO x\r\nMAIL FROM:<s@b.test>\r\nRCPT TO:<a@chorus.test>\r\nDATA\r\n" + body))
        XCTAssertEqual(deliveries(out).first?.data, bytes(".\r\n..\r\nx\r\na.b\r\n \r\n"))
    }

    func testEmptyMessage() {
        let lmtp = session()
        let out = lmtp.feed(bytes("LHLO x\r\nMAIL FROM:<s@b.test>\r\nRCPT TO:<a@chorus.test>\r\nDATA\r\n.\r\n"))
        XCTAssertEqual(deliveries(out), [LMTPSession.Envelope(from: "s@b.test", recipients: ["a@chorus.test"], data: [])])
    }

    func testSizeLimitDuringData() {
        let lmtp = session(max: 20)
        // 18 bytes fit, 20 exactly fit.
        var out = lmtp.feed(bytes("LHLO x\r\nMAIL FROM:<s@b.test>\r\nRCPT TO:<a@chorus.test>\r\nDATA\r\n123456789012345678\r\n.\r\n"))
        XCTAssertEqual(deliveries(out).first?.size, 20)
        _ = lmtp.complete([(recipient: "a@chorus.test", accepted: true, message: "")])
        // 21 bytes: read to the end, one 552 per recipient, no delivery, and the session goes on.
        out = lmtp.feed(bytes("MAIL FROM:<s@b.test>\r\nRCPT TO:<a@chorus.test>\r\nRCPT TO:<b@chorus.test>\r\nDATA\r\n"
            + "1234567890123456789\r\nmore lines\r\n.\r\nMAIL FROM:<t@b.test>\r\n"))
        XCTAssertTrue(deliveries(out).isEmpty)
        XCTAssertEqual(replies(out).suffix(3), [
            "552 5.3.4 Message too big for this system (limit 20 bytes)",
            "552 5.3.4 Message too big for this system (limit 20 bytes)",
            "250 2.1.0 Sender <t@b.test> OK",
        ])
    }

    func testLongDataLinesAreAcceptedWithinTheSizeLimit() {
        let lmtp = session(max: 200_000)
        let long = String(repeating: "x", count: 100_000)
        var out = lmtp.feed(bytes("LHLO x\r\nMAIL FROM:<s@b.test>\r\nRCPT TO:<a@chorus.test>\r\nDATA\r\n." + long))
        XCTAssertTrue(deliveries(out).isEmpty)
        out += lmtp.feed(bytes("\r"))
        out += lmtp.feed(bytes("\n.\r\n"))
        XCTAssertEqual(deliveries(out).first?.data, bytes(long + "\r\n"))
    }

    func testCommandLineTooLong() {
        let lmtp = session()
        lmtp.maxLineBytes = 64
        let long = "NOOP " + String(repeating: "y", count: 100)
        var out = lmtp.feed(bytes("LHLO x\r\n" + long))
        XCTAssertEqual(replies(out).count, 6, "no reply before the long line ends")
        out = lmtp.feed(bytes(String(repeating: "z", count: 1000)))
        XCTAssertEqual(out, [])
        out = lmtp.feed(bytes("\r\nNOOP\r\n" + String(repeating: "w", count: 70) + "\r\nNOOP\r\n"))
        XCTAssertEqual(replies(out), ["500 5.5.2 Line too long", "250 2.0.0 OK", "500 5.5.2 Line too long", "250 2.0.0 OK"])
    }

    func testInvalidUTF8Command() {
        let lmtp = session()
        let out = lmtp.feed(bytes("LHLO x\r\n") + [0x4D, 0x41, 0x49, 0x4C, 0x20, 0xFF, 0xFE, 13, 10])
        XCTAssertEqual(replies(out).last, "500 5.5.2 Syntax error: invalid UTF-8 in command")
    }

    func testBinaryAndEightBitDataPassThrough() {
        let lmtp = session()
        let body: [UInt8] = [0xC3, 0xA9, 0x00, 0x80, 0xFF, 13, 10]
        let out = lmtp.feed(bytes("LHLO x\r\nMAIL FROM:<s@b.test> BODY=8BITMIME\r\nRCPT TO:<a@chorus.test>\r\nDATA\r\n")
            + body + bytes(".\r\n"))
        XCTAssertEqual(deliveries(out).first?.data, body)
    }

    func testTooManyRecipients() {
        let lmtp = session()
        lmtp.maxRecipients = 2
        let out = lmtp.feed(bytes("LHLO x\r\nMAIL FROM:<s@b.test>\r\nRCPT TO:<a@c.test>\r\nRCPT TO:<b@c.test>\r\nRCPT TO:<d@c.test>\r\n"))
        XCTAssertEqual(replies(out).last, "452 4.5.3 Too many recipients")
    }

    func testLHLOResetsTheTransaction() {
        let lmtp = session()
        let out = lmtp.feed(bytes("LHLO x\r\nMAIL FROM:<s@b.test>\r\nRCPT TO:<a@c.test>\r\nLHLO y\r\nDATA\r\n"))
        XCTAssertEqual(replies(out).last, "503 5.5.1 Bad sequence of commands: MAIL first")
    }
}
