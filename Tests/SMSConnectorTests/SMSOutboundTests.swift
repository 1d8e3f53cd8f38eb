import ChorusClient
import ChorusConformance
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Outbound SMS through the real daemon against the fake Messages API: opt-out, segments, errors and retries.
final class SMSOutboundTests: SMSTestCase {
    func testSendGoesToTheMessagesAPIWithStatusCallback() throws {
        try startDaemon()
        let text = "Hello Zoë! Your code is {1234} — reply if needed"
        let sent = try sendAndWait(textMessage(text))
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "sent", "\(sent)")
        let messages = try fake.messages()
        XCTAssertEqual(messages.count, 1)
        let m = messages[0]
        XCTAssertEqual(m["http_status"]?.intValue, 201)
        XCTAssertEqual(m["params"]?["To"]?.first?.stringValue, SMSTestSupport.customer)
        XCTAssertEqual(m["params"]?["From"]?.first?.stringValue, SMSTestSupport.businessNumber)
        XCTAssertEqual(m["params"]?["Body"]?.first?.stringValue, text)
        XCTAssertEqual(m["params"]?["StatusCallback"]?.first?.stringValue, publicBaseURL + "/webhooks/sms/status")
        XCTAssertEqual(sent["status"]?["channel_message_id"]?.stringValue, m["sid"]?.stringValue)
        // "—" is not in GSM-7: UCS-2, 48 units, one segment; the connector's count agrees with the fake's.
        XCTAssertEqual(m["encoding"]?.stringValue, "UCS-2")
        XCTAssertEqual(m["num_segments"]?.intValue, 1)
        try waitFor(timeout: 5, "the send log line") { self.daemon.logText.contains("sms sent") }
        let line = try XCTUnwrap(daemon.logText.split(separator: "\n").last { $0.contains("sms sent") })
        XCTAssertTrue(line.contains("UCS-2") && line.contains("segments=1"), String(line))
        let violations = try fake.violations()
        XCTAssertEqual(violations.count, 0, "\(violations)")
    }

    func testMediaInteractiveAndPaymentAreRendered() throws {
        try startDaemon()
        let message: JSONValue = [
            "instance": .string(instanceName), "to": .string(SMSTestSupport.customer),
            "parts": [
                ["type": "media", "kind": "image", "url": "https://cdn.example.com/receipt.png", "caption": "Your receipt"],
                ["type": "interactive", "style": "buttons", "body": "Was this helpful?",
                 "buttons": [["id": "y", "title": "Yes"], ["id": "n", "title": "No"]]],
                ["type": "payment_request", "amount": 11499, "currency": "EUR", "link": "https://pay.example.com/i/42", "description": "Invoice 42"],
            ],
        ]
        let sent = try sendAndWait(message)
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "sent", "\(sent)")
        let m = try XCTUnwrap(try fake.messages().first)
        XCTAssertEqual(m["params"]?["MediaUrl"]?.arrayValue?.compactMap { $0.stringValue }, ["https://cdn.example.com/receipt.png"])
        XCTAssertEqual(m["params"]?["Body"]?.first?.stringValue,
                       "Your receipt\nWas this helpful?\n1) Yes\n2) No\nReply with the number.\nInvoice 42\nAmount: 114.99 EUR\nPay here: https://pay.example.com/i/42")

        // Media the channel cannot fetch (no url) is refused clearly, with no API call.
        let refused = try sendAndWait([
            "instance": .string(instanceName), "to": .string(SMSTestSupport.customer),
            "parts": [["type": "media", "kind": "image", "ref": "blob-1"]],
        ])
        XCTAssertEqual(refused["status"]?["state"]?.stringValue, "failed")
        XCTAssertEqual(refused["status"]?["error"]?["code"]?.stringValue, "unsupported_media")
        XCTAssertEqual(try fake.messages().count, 1)
    }

    func testStopRefusesSendsUntilStart() throws {
        try startDaemon()
        XCTAssertEqual(try postWebhook("inbound", try SMSTestSupport.fixture("inbound_stop")).status, 200)
        let stop = try event { $0["type"]?.stringValue == "message" }
        XCTAssertEqual(stop["parts"]?.first?["text"]?.stringValue, " stop ", "the STOP message itself is stored as received")
        let optOut = try event { $0["type"]?.stringValue == "conversation" }
        XCTAssertEqual(optOut["conversation"]?["action"]?.stringValue, "opt_out")
        XCTAssertEqual(optOut["conversation"]?["keyword"]?.stringValue, "STOP")
        XCTAssertEqual(optOut["conversation_id"]?.stringValue, stop["conversation_id"]?.stringValue)

        let refused = try sendAndWait(textMessage("We miss you! 20% off today"))
        XCTAssertEqual(refused["status"]?["state"]?.stringValue, "failed")
        XCTAssertEqual(refused["status"]?["error"]?["code"]?.stringValue, "opted_out")
        XCTAssertTrue(refused["status"]?["error"]?["message"]?.stringValue?.contains("START") ?? false, "\(refused)")
        XCTAssertEqual(try fake.messages().count, 0, "no API call for an opted-out number")

        // The opt-out is durable: it survives a restart of the daemon.
        daemon.stop()
        try daemon.start()
        connection = try subscribe(daemon)
        let again = try sendAndWait(textMessage("Still there?"))
        XCTAssertEqual(again["status"]?["error"]?["code"]?.stringValue, "opted_out")
        XCTAssertEqual(try fake.messages().count, 0)

        XCTAssertEqual(try postWebhook("inbound", try SMSTestSupport.fixture("inbound_start")).status, 200)
        let optIn = try event { $0["type"]?.stringValue == "conversation" }
        XCTAssertEqual(optIn["conversation"]?["action"]?.stringValue, "opt_in")
        XCTAssertEqual(optIn["conversation"]?["keyword"]?.stringValue, "START")

        let ok = try sendAndWait(textMessage("Welcome back"))
        XCTAssertEqual(ok["status"]?["state"]?.stringValue, "sent", "\(ok)")
        XCTAssertEqual(try fake.messages().count, 1)

        // Other STOP variants, case-insensitive and trimmed.
        for (i, word) in ["Unsubscribe", "QUIT\n", "stopall", "Cancel", "end"].enumerated() {
            var p = try SMSTestSupport.fixture("inbound_stop")
            let sid = "SM\(String(repeating: "7", count: 31))\(i)"
            for key in ["MessageSid", "SmsSid", "SmsMessageSid"] { p[p.firstIndex { $0.0 == key }!].1 = sid }
            p[p.firstIndex { $0.0 == "Body" }!].1 = word
            XCTAssertEqual(try postWebhook("inbound", p).status, 200)
            let ev = try event { $0["type"]?.stringValue == "conversation" }
            XCTAssertEqual(ev["conversation"]?["action"]?.stringValue, "opt_out", word)
        }
        // "Stop it please" is a message, not a keyword; "YES" opts back in.
        for (sid, body) in [("SM" + String(repeating: "8", count: 32), "Stop it please"), ("SM" + String(repeating: "9", count: 32), "YES")] {
            var p = try SMSTestSupport.fixture("inbound_start")
            for key in ["MessageSid", "SmsSid", "SmsMessageSid"] { p[p.firstIndex { $0.0 == key }!].1 = sid }
            p[p.firstIndex { $0.0 == "Body" }!].1 = body
            XCTAssertEqual(try postWebhook("inbound", p).status, 200)
        }
        _ = try event { $0["channel_ids"]?["message"]?.stringValue == "SM" + String(repeating: "8", count: 32) }
        let next = try event { $0["type"]?.stringValue == "conversation" }
        XCTAssertEqual(next["conversation"]?["action"]?.stringValue, "opt_in", "\(next)")
        XCTAssertEqual(next["conversation"]?["channel_message_id"]?.stringValue, "SM" + String(repeating: "9", count: 32))
    }

    func testOversizedMessagesAreRefusedClearly() throws {
        try startDaemon(settings: ["max_segments": "10"])
        // 700 Cyrillic letters: UCS-2, 700 units, 11 parts of 67.
        let long = String(repeating: "Привет ", count: 100)
        let refused = try sendAndWait(textMessage(long))
        XCTAssertEqual(refused["status"]?["state"]?.stringValue, "failed")
        XCTAssertEqual(refused["status"]?["error"]?["code"]?.stringValue, "too_many_segments")
        let why = refused["status"]?["error"]?["message"]?.stringValue ?? ""
        XCTAssertTrue(why.contains("11 segments of UCS-2") && why.contains("max_segments = 10"), why)
        XCTAssertEqual(try fake.messages().count, 0)

        // Ten GSM-7 parts are fine: 1530 septets.
        let tenParts = String(repeating: "a", count: 1530)
        XCTAssertEqual(try sendAndWait(textMessage(tenParts))["status"]?["state"]?.stringValue, "sent")
        XCTAssertEqual(try fake.messages().last?["num_segments"]?.intValue, 10)

        // Over Twilio's 1600-character limit: refused by the daemon up front (the declared max_text_length).
        let r = try connection.request(.send(idempotencyKey: nil, message: textMessage(String(repeating: "b", count: 1601))))
        guard case .error(let e) = r else { return XCTFail("expected a refusal, got \(r)") }
        XCTAssertEqual(e.code, .invalid)
        XCTAssertEqual(e.field, "message.parts[0].text")
        XCTAssertTrue(e.message.contains("1600"), e.message)
        XCTAssertEqual(try fake.messages().count, 1)
    }

    func testThrottlingIsRetriedAfterRetryAfterThenSucceeds() throws {
        try startDaemon()
        try fake.scriptError(status: 429, code: 20429, message: "Too Many Requests", retryAfter: 1)
        let started = Date()
        let sent = try sendAndWait(textMessage("Eventually"))
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "sent", "\(sent)")
        let attempts = try fake.messages()
        XCTAssertEqual(attempts.map { $0["http_status"]?.intValue ?? 0 }, [429, 201])
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.9, "Retry-After: 1 is honoured")

        // A server error is retryable too.
        try fake.scriptError(status: 503, code: 20500, message: "Service unavailable")
        XCTAssertEqual(try sendAndWait(textMessage("Again"))["status"]?["state"]?.stringValue, "sent")
        XCTAssertEqual(try fake.messages().suffix(2).map { $0["http_status"]?.intValue ?? 0 }, [503, 201])
    }

    func testTwilioErrorsArePermanentWithTheirCode() throws {
        try startDaemon()
        let invalid = try sendAndWait(textMessage("hi", to: "5551234"))
        XCTAssertEqual(invalid["status"]?["state"]?.stringValue, "failed")
        XCTAssertEqual(invalid["status"]?["error"]?["code"]?.stringValue, "21211")
        XCTAssertTrue(invalid["status"]?["error"]?["message"]?.stringValue?.contains("not a valid phone number") ?? false)
        XCTAssertEqual(try fake.messages().count, 1, "a permanent error is not retried")

        // Twilio says the recipient unsubscribed (STOP sent to the carrier): remembered, no more API calls.
        let blocked = "+14155550100"
        try fake.optOut(blocked)
        let first = try sendAndWait(textMessage("hi", to: blocked))
        XCTAssertEqual(first["status"]?["error"]?["code"]?.stringValue, "21610")
        let second = try sendAndWait(textMessage("hi again", to: blocked))
        XCTAssertEqual(second["status"]?["error"]?["code"]?.stringValue, "opted_out")
        XCTAssertEqual(try fake.messages().count, 2)
    }

    func testConformance() throws {
        let path = try XCTUnwrap(ConformanceKit.builtPlugin(product: "chorus-sms"),
                                 "libchorus-sms.so is not in \(ConformanceKit.productsDirectory ?? "?"): run `swift build` first")
        let settings: [(String, String)] = [
            ("account_sid", FakeTwilio.accountSid), ("auth_token", "conformance"), ("from_number", "+15017122661"),
            ("public_base_url", "https://chorus.example.com"), ("api_base_url", "http://127.0.0.1:9"),
        ]
        let report = ConformanceKit.run(pluginPath: path, settings: settings, options: ConformanceOptions())
        XCTAssertFalse(report.results.isEmpty)
        for result in report.results where !result.passed { XCTFail(result.description) }
        XCTAssertEqual(report.results.first { $0.check == ConformanceKit.Check.routes }?.detail,
                       "POST /webhooks/conformance/inbound, POST /webhooks/conformance/status")
        if !report.allPassed { for entry in report.log { print("plugin log: \(entry)") } }
    }
}

/// The segment and encoding computation of the built plugin (`chorus_sms_segments`, i.e. `SMSSegments.compute`).
final class SMSSegmentsTests: XCTestCase {
    typealias SegmentsFn = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int32>?) -> Int32
    nonisolated(unsafe) static var handle: UnsafeMutableRawPointer?

    func segments(_ text: String) throws -> (encoding: String, segments: Int, units: Int) {
        if SMSSegmentsTests.handle == nil {
            let path = try XCTUnwrap(ConformanceKit.builtPlugin(product: "chorus-sms"), "libchorus-sms.so is not built")
            SMSSegmentsTests.handle = try XCTUnwrap(dlopen(path, RTLD_NOW), String(cString: dlerror()))
        }
        let sym = try XCTUnwrap(dlsym(SMSSegmentsTests.handle, "chorus_sms_segments"), "chorus_sms_segments is not exported")
        let fn = unsafeBitCast(sym, to: SegmentsFn.self)
        var encoding: Int32 = -1, units: Int32 = -1
        let n = fn(text, &encoding, &units)
        return (encoding == 0 ? "GSM-7" : "UCS-2", Int(n), Int(units))
    }

    func assertSegments(_ text: String, _ encoding: String, _ segments: Int, _ units: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try self.segments(text)
        XCTAssertEqual(r.encoding, encoding, "encoding of \(text.prefix(20))…", file: file, line: line)
        XCTAssertEqual(r.segments, segments, "segments of \(text.prefix(20))…", file: file, line: line)
        XCTAssertEqual(r.units, units, "units of \(text.prefix(20))…", file: file, line: line)
    }

    func testGSM7Basic() throws {
        try assertSegments("", "GSM-7", 1, 0)
        try assertSegments("Hello, world!", "GSM-7", 1, 13)
        // Accented letters of the GSM alphabet (é, Ç, Ñ, ü, à, Greek capitals) stay GSM-7 …
        try assertSegments("Ça vous dit? 5£ à Zoé, ¡Si! Ñandü @home_ΔΩ", "GSM-7", 1, 42)
        // … others (û, ë, í, ú) do not: the whole message becomes UCS-2.
        try assertSegments("Ça coûte", "UCS-2", 1, 8)
        try assertSegments("Ça vous dit? 5£ à Zoë, ¡Sí! Ñandú @home_ΔΩ", "UCS-2", 1, 42)
        try assertSegments(String(repeating: "a", count: 160), "GSM-7", 1, 160)
        try assertSegments(String(repeating: "a", count: 161), "GSM-7", 2, 161)
        try assertSegments(String(repeating: "a", count: 306), "GSM-7", 2, 306)
        try assertSegments(String(repeating: "a", count: 307), "GSM-7", 3, 307)
        try assertSegments("line one\r\nline two", "GSM-7", 1, 18)
    }

    func testGSM7ExtensionCharactersCountTwoAndAreNotSplit() throws {
        try assertSegments("{[€]}", "GSM-7", 1, 10)
        try assertSegments(String(repeating: "€", count: 80), "GSM-7", 1, 160)
        try assertSegments(String(repeating: "€", count: 81), "GSM-7", 2, 162)
        // 152 septets then an escape pair: the pair moves to the second part instead of straddling it.
        try assertSegments(String(repeating: "a", count: 152) + "^" + String(repeating: "a", count: 7), "GSM-7", 2, 161)
        // 153 escape pairs are 306 septets, which 2 × 153 would hold only by splitting a pair: 76 pairs per part, 3 parts.
        try assertSegments(String(repeating: "|", count: 153), "GSM-7", 3, 306)
    }

    func testEmojiAndUCS2() throws {
        try assertSegments("😀", "UCS-2", 1, 2)
        try assertSegments(String(repeating: "😀", count: 35), "UCS-2", 1, 70)
        try assertSegments(String(repeating: "😀", count: 36), "UCS-2", 2, 72)
        try assertSegments(String(repeating: "ж", count: 70), "UCS-2", 1, 70)
        try assertSegments(String(repeating: "ж", count: 71), "UCS-2", 2, 71)
        try assertSegments(String(repeating: "ж", count: 134), "UCS-2", 2, 134)
        try assertSegments(String(repeating: "ж", count: 135), "UCS-2", 3, 135)
        // 66 units then an emoji (a surrogate pair): the pair is not split across parts.
        try assertSegments(String(repeating: "ж", count: 66) + "😀" + String(repeating: "ж", count: 10), "UCS-2", 2, 78)
        // A family emoji is several scalars joined by ZWJ: 👨‍👩‍👧 = 3 × 2 + 2 ZWJ = 8 units.
        try assertSegments("👨‍👩‍👧", "UCS-2", 1, 8)
    }

    func testLongMessages() throws {
        try assertSegments(String(repeating: "a", count: 1530), "GSM-7", 10, 1530)
        try assertSegments(String(repeating: "a", count: 1531), "GSM-7", 11, 1531)
        try assertSegments(String(repeating: "Привет ", count: 100), "UCS-2", 11, 700)
        // One emoji turns a long GSM-7 text into UCS-2: 200 characters become 3 parts of 67 units, not 2 of 153 septets.
        try assertSegments(String(repeating: "a", count: 199) + "😀", "UCS-2", 3, 201)
    }

    func testInvalidInputIsRefused() throws {
        if SMSSegmentsTests.handle == nil { _ = try segments("") }
        let fn = unsafeBitCast(try XCTUnwrap(dlsym(SMSSegmentsTests.handle, "chorus_sms_segments")), to: SegmentsFn.self)
        XCTAssertEqual(fn(nil, nil, nil), -1)
        let invalid: [CChar] = [CChar(bitPattern: 0xC3), CChar(bitPattern: 0x28), 0]
        XCTAssertEqual(invalid.withUnsafeBufferPointer { fn($0.baseAddress, nil, nil) }, -1)
    }
}
