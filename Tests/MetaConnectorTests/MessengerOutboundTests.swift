import ChorusClient
import ChorusConformance
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// End to end: sends on the socket → Send API calls checked by the fake Graph server → outcomes, and delivery/read webhooks back as statuses.
final class MessengerOutboundTests: XCTestCase {
    func testSendThenDeliveryAndReadWatermarksBecomeStatusesOfEveryCoveredMessage() throws {
        let fb = try MessengerDaemon(extraSettings: "media_prefetch = false")
        defer { fb.stop() }
        let conv = try fb.openWindow(mid: "m_INBOUND-1")
        let first = try fb.send(["conversation_id": .string(conv), "parts": [["type": "text", "text": "Your order ships today."]],
                                 "reply_to": ["channel_message_id": "m_INBOUND-1"]])
        let sent1 = try fb.outcome(of: first)
        XCTAssertEqual(sent1["status"]?["state"]?.stringValue, "sent", "\(sent1)")
        let mid1 = try XCTUnwrap(sent1["status"]?["channel_message_id"]?.stringValue)
        XCTAssertTrue(mid1.hasPrefix("m_FAKE"))
        let second = try fb.send(["conversation_id": .string(conv), "parts": [["type": "text", "text": "Tracking: https://track.example/1"]]])
        let mid2 = try XCTUnwrap(try fb.outcome(of: second)["status"]?["channel_message_id"]?.stringValue)

        let calls = try fb.graph.waitForSends(2)
        XCTAssertEqual(calls[0]["path"]?.stringValue, "/v21.0/\(MessengerFixtures.pageId)/messages")
        XCTAssertEqual(calls[0]["headers"]?["authorization"]?.stringValue, "Bearer \(fb.graph.token)")
        XCTAssertEqual(calls[0]["errors"]?.arrayValue?.count, 0, "\(calls[0])")
        let body = try XCTUnwrap(calls[0]["json"])
        XCTAssertEqual(body["recipient"]?["id"]?.stringValue, MessengerFixtures.psid)
        XCTAssertEqual(body["messaging_type"]?.stringValue, "RESPONSE")
        XCTAssertEqual(body["message"]?["text"]?.stringValue, "Your order ships today.")
        XCTAssertEqual(body["reply_to"]?["mid"]?.stringValue, "m_INBOUND-1")

        // Meta echoes the page's sends: the echo of a send made through Chorus is not stored a second time.
        let echo: JSONValue = ["sender": ["id": .string(MessengerFixtures.pageId)], "recipient": ["id": .string(MessengerFixtures.psid)],
                               "timestamp": .int(MessengerFixtures.nowMs),
                               "message": ["is_echo": true, "app_id": 1517776481860111, "mid": .string(mid1), "text": "Your order ships today."]]
        XCTAssertEqual(try fb.webhook(MessengerFixtures.webhook("messenger", item: echo)).status, 200)
        XCTAssertTrue(fb.quiet(forMs: 400), "the echo of our own send was stored: \(fb.received.last.map { JSONWriter.encodeString($0) } ?? "")")

        // A delivery naming the first mid: delivered, attributed to the send.
        let delivery: JSONValue = ["sender": ["id": .string(MessengerFixtures.psid)], "recipient": ["id": .string(MessengerFixtures.pageId)],
                                   "delivery": ["mids": [.string(mid1)], "watermark": .int(MessengerFixtures.nowMs)]]
        XCTAssertEqual(try fb.webhook(MessengerFixtures.webhook("messenger", item: delivery)).status, 200)
        let delivered = try fb.event(where: { $0["type"]?.stringValue == "status" && $0["status"]?["state"]?.stringValue == "delivered" })
        XCTAssertEqual(delivered["status"]?["channel_message_id"]?.stringValue, mid1)
        XCTAssertEqual(delivered["status"]?["message_id"]?.stringValue, first)
        XCTAssertEqual(delivered["conversation_id"]?.stringValue, conv)

        // One read watermark covers both messages: one read status per message.
        let read: JSONValue = ["sender": ["id": .string(MessengerFixtures.psid)], "recipient": ["id": .string(MessengerFixtures.pageId)],
                               "timestamp": .int(MessengerFixtures.nowMs), "read": ["watermark": .int(MessengerFixtures.nowMs)]]
        XCTAssertEqual(try fb.webhook(MessengerFixtures.webhook("messenger", item: read)).status, 200)
        let reads = try fb.events(2)
        XCTAssertEqual(reads.map { $0["status"]?["state"]?.stringValue ?? "" }, ["read", "read"])
        XCTAssertEqual(Set(reads.compactMap { $0["status"]?["channel_message_id"]?.stringValue }), [mid1, mid2])
        XCTAssertEqual(Set(reads.compactMap { $0["status"]?["message_id"]?.stringValue }), [first, second])
        // The same watermark again covers nothing new: it is kept as a read event, no duplicate statuses.
        XCTAssertEqual(try fb.webhook(MessengerFixtures.webhook("messenger", item: read)).status, 200)
        XCTAssertEqual(try fb.events(1)[0]["type"]?.stringValue, "read")
        fb.assertSchemaValid()
    }

    func testTheSentLedgerSurvivesARestartSoAWatermarkStillCoversEarlierSends() throws {
        let fb = try MessengerDaemon(extraSettings: "media_prefetch = false")
        defer { fb.stop() }
        let conv = try fb.openWindow()
        let id = try fb.send(["conversation_id": .string(conv), "parts": [["type": "text", "text": "before the restart"]]])
        let mid = try XCTUnwrap(try fb.outcome(of: id)["status"]?["channel_message_id"]?.stringValue)
        fb.connection.close()
        XCTAssertEqual(fb.daemon.stop(), 0)
        try fb.daemon.start()
        let connection = try ChorusConnection(path: fb.daemon.socketPath, timeoutMilliseconds: 10_000)
        defer { connection.close() }
        _ = try connection.request(.subscribe(name: nil, filter: nil, from: .now))
        let read: JSONValue = ["sender": ["id": .string(MessengerFixtures.psid)], "recipient": ["id": .string(MessengerFixtures.pageId)],
                               "timestamp": .int(MessengerFixtures.nowMs), "read": ["watermark": .int(MessengerFixtures.nowMs)]]
        XCTAssertEqual(try fb.webhook(MessengerFixtures.webhook("messenger", item: read)).status, 200)
        guard case .event(_, _, let ev) = try connection.nextMessage(timeoutMilliseconds: 10_000) else { return XCTFail("no event") }
        XCTAssertEqual(ev["type"]?.stringValue, "status")
        XCTAssertEqual(ev["status"]?["state"]?.stringValue, "read")
        XCTAssertEqual(ev["status"]?["channel_message_id"]?.stringValue, mid)
        XCTAssertEqual(ev["status"]?["message_id"]?.stringValue, id)
    }

    func testSendShapesQuickRepliesTemplatesPaymentsMediaReactionsAndSenderActions() throws {
        let fb = try MessengerDaemon(extraSettings: "media_prefetch = false")
        defer { fb.stop() }
        let conv = try fb.openWindow(mid: "m_CUSTOMER-MSG")
        func sendOK(_ message: JSONValue) throws -> JSONValue {
            var m = message.objectValue ?? JSONObject()
            m["conversation_id"] = .string(conv)
            let id = try fb.send(.object(m))
            let out = try fb.outcome(of: id)
            XCTAssertEqual(out["status"]?["state"]?.stringValue, "sent", "\(out)")
            let calls = try fb.graph.sends()
            let last = try XCTUnwrap(calls.last)
            XCTAssertEqual(last["errors"]?.arrayValue?.count, 0, "\(last)")
            return last["json"] ?? .null
        }
        let qr = try sendOK(["parts": [["type": "text", "text": "Which size?"],
                                       ["type": "interactive", "style": "quick_replies", "buttons": [["id": "S", "title": "Small"], ["id": "M", "title": "Medium", "payload": "SIZE_M"]]]]])
        XCTAssertEqual(qr["message"]?["text"]?.stringValue, "Which size?")
        XCTAssertEqual(qr["message"]?["quick_replies"]?.arrayValue?.map { $0["payload"]?.stringValue ?? "" }, ["S", "SIZE_M"])

        let buttons = try sendOK(["parts": [["type": "interactive", "style": "buttons", "body": "Need help?",
                                             "buttons": [["id": "AGENT", "title": "Talk to us"], ["id": "WEB", "title": "Website", "url": "https://shop.example"]]]]])
        let payload = buttons["message"]?["attachment"]?["payload"]
        XCTAssertEqual(payload?["template_type"]?.stringValue, "button")
        XCTAssertEqual(payload?["buttons"]?.arrayValue?.map { $0["type"]?.stringValue ?? "" }, ["postback", "web_url"])

        let generic = try sendOK(["parts": [["type": "template", "name": "generic", "language": "en",
                                             "components": [["title": "Trail shoe", "subtitle": "EUR 89.99", "image_url": "https://img.example/shoe.jpg",
                                                             "buttons": [["type": "web_url", "url": "https://shop.example/shoe", "title": "View"]]]]]]])
        XCTAssertEqual(generic["message"]?["attachment"]?["payload"]?["template_type"]?.stringValue, "generic")
        XCTAssertEqual(generic["message"]?["attachment"]?["payload"]?["elements"]?.arrayValue?.first?["title"]?.stringValue, "Trail shoe")

        let pay = try sendOK(["parts": [["type": "payment_request", "amount": 11499, "currency": "EUR", "description": "Order 1042",
                                         "link": "https://pay.example.com/p/1042"]]])
        let payButtons = pay["message"]?["attachment"]?["payload"]?["buttons"]?.arrayValue
        XCTAssertEqual(payButtons?.first?["type"]?.stringValue, "web_url", "a payment request is a URL button")
        XCTAssertEqual(payButtons?.first?["url"]?.stringValue, "https://pay.example.com/p/1042")
        XCTAssertEqual(payButtons?.first?["title"]?.stringValue, "Pay 114.99 EUR")
        XCTAssertTrue(pay["message"]?["attachment"]?["payload"]?["text"]?.stringValue?.contains("Order 1042") ?? false)

        let image = try sendOK(["parts": [["type": "media", "kind": "image", "url": "https://img.example/a.jpg"]]])
        XCTAssertEqual(image["message"]?["attachment"]?["type"]?.stringValue, "image")
        XCTAssertEqual(image["message"]?["attachment"]?["payload"]?["url"]?.stringValue, "https://img.example/a.jpg")

        let react = try sendOK(["type": "reaction", "target": ["channel_message_id": "m_CUSTOMER-MSG"], "reaction": ["emoji": "❤️"]])
        XCTAssertEqual(react["sender_action"]?.stringValue, "react")
        XCTAssertEqual(react["payload"]?["reaction"]?.stringValue, "love")
        XCTAssertEqual(try sendOK(["type": "read", "target": ["channel_message_id": "m_CUSTOMER-MSG"]])["sender_action"]?.stringValue, "mark_seen")
        XCTAssertEqual(try sendOK(["type": "typing", "typing": ["state": "on"]])["sender_action"]?.stringValue, "typing_on")
        XCTAssertEqual(try sendOK(["type": "typing", "typing": ["state": "off"]])["sender_action"]?.stringValue, "typing_off")

        // Refused before any call: four buttons, a list, an unsupported reaction.
        let before = try fb.graph.sends().count
        for (message, code) in [
            (["parts": [["type": "interactive", "style": "buttons", "body": "Pick", "buttons": [["id": "1", "title": "1"], ["id": "2", "title": "2"], ["id": "3", "title": "3"], ["id": "4", "title": "4"]]]]] as JSONValue, "too_many_buttons"),
            (["parts": [["type": "interactive", "style": "list", "body": "Pick", "buttons": [["id": "menu", "title": "Menu"]],
                        "sections": [["title": "Sizes", "rows": [["id": "S", "title": "Small"]]]]]]] as JSONValue, "unsupported_part"),
            (["type": "reaction", "target": ["channel_message_id": "m_CUSTOMER-MSG"], "reaction": ["emoji": "🦄"]] as JSONValue, "unsupported_reaction"),
        ] {
            var m = message.objectValue!
            m["conversation_id"] = .string(conv)
            let out = try fb.outcome(of: try fb.send(.object(m)))
            XCTAssertEqual(out["status"]?["state"]?.stringValue, "failed")
            XCTAssertEqual(out["status"]?["error"]?["code"]?.stringValue, code)
        }
        XCTAssertEqual(try fb.graph.sends().count, before)
        fb.assertSchemaValid()
    }

    func testFreeFormOutsideTheWindowIsRefusedBeforeAnyCallButATagGoes() throws {
        let fb = try MessengerDaemon(extraSettings: "media_prefetch = false")
        defer { fb.stop() }
        let stranger = "7099887766554433"
        let refused = try fb.outcome(of: try fb.send(["instance": "fb", "to": .string(stranger), "parts": [["type": "text", "text": "Hello out of the blue"]]]))
        XCTAssertEqual(refused["status"]?["state"]?.stringValue, "failed")
        XCTAssertEqual(refused["status"]?["error"]?["code"]?.stringValue, "outside_customer_service_window")
        XCTAssertTrue(refused["status"]?["error"]?["message"]?.stringValue?.contains("message tag") ?? false, "\(refused)")
        XCTAssertEqual(refused["status"]?["retryable"]?.boolValue, false)
        XCTAssertEqual(try fb.graph.sends().count, 0, "no API call outside the window")

        // An old message (the documented fixture, from 2016) does not open the window either.
        XCTAssertEqual(try fb.post(fixture: "text_reply"), 200)
        _ = try fb.events(1)
        let stillRefused = try fb.outcome(of: try fb.send(["instance": "fb", "to": .string(MessengerFixtures.psid), "parts": [["type": "text", "text": "Hi again"]]]))
        XCTAssertEqual(stillRefused["status"]?["error"]?["code"]?.stringValue, "outside_customer_service_window")

        // With a message tag the update goes out.
        let tagged = try fb.outcome(of: try fb.send(["instance": "fb", "to": .string(stranger), "parts": [["type": "text", "text": "Your order 1042 has shipped"]],
                                                     "options": ["tag": "ACCOUNT_UPDATE"]]))
        XCTAssertEqual(tagged["status"]?["state"]?.stringValue, "sent", "\(tagged)")
        let call = try XCTUnwrap(try fb.graph.sends().last?["json"])
        XCTAssertEqual(call["messaging_type"]?.stringValue, "MESSAGE_TAG")
        XCTAssertEqual(call["tag"]?.stringValue, "ACCOUNT_UPDATE")
        // HUMAN_AGENT needs a message from the person within 7 days.
        let agent = try fb.outcome(of: try fb.send(["instance": "fb", "to": .string(stranger), "parts": [["type": "text", "text": "An agent here"]],
                                                    "options": ["tag": "HUMAN_AGENT"]]))
        XCTAssertEqual(agent["status"]?["error"]?["code"]?.stringValue, "outside_customer_service_window")
        XCTAssertEqual(try fb.graph.sends().count, 1)
        fb.assertSchemaValid()
    }

    func testThrottlingIsRetriedHonouringRetryAfterAndPermanentErrorsCarryTheCode() throws {
        let fb = try MessengerDaemon(extraSettings: "media_prefetch = false")
        defer { fb.stop() }
        let conv = try fb.openWindow()
        // Page-level throttling (613, with Retry-After), then a 5xx, then success.
        try fb.graph.admin("errors", ["count": 1, "status": 400, "headers": ["Retry-After": "1"], "error": [
            "message": "(#613) Calls to this api have exceeded the rate limit.", "type": "OAuthException", "code": 613, "fbtrace_id": "T1"]])
        try fb.graph.admin("errors", ["count": 1, "status": 500, "error": ["message": "An unexpected error has occurred.", "type": "OAuthException", "code": 2, "fbtrace_id": "T2"]])
        let start = Date()
        let id = try fb.send(["conversation_id": .string(conv), "parts": [["type": "text", "text": "after the storm"]]])
        let out = try fb.outcome(of: id, timeoutMs: 90_000)
        XCTAssertEqual(out["status"]?["state"]?.stringValue, "sent", "\(out)")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 1.0, "Retry-After was not honoured")
        let calls = try fb.graph.sends()
        XCTAssertEqual(calls.count, 3)
        XCTAssertEqual(Set(calls.map { $0["json"]?["message"]?["text"]?.stringValue ?? "" }), ["after the storm"])

        // A permanent error: one failed status with the Graph code, no retries.
        try fb.graph.admin("errors", ["count": 1, "status": 400, "error": [
            "message": "(#100) No matching user found", "type": "OAuthException", "code": 100, "error_subcode": 2018001, "fbtrace_id": "T3"]])
        let failed = try fb.outcome(of: try fb.send(["conversation_id": .string(conv), "parts": [["type": "text", "text": "will not arrive"]]]))
        XCTAssertEqual(failed["status"]?["state"]?.stringValue, "failed")
        XCTAssertEqual(failed["status"]?["error"]?["code"]?.stringValue, "100")
        XCTAssertEqual(failed["status"]?["retryable"]?.boolValue, false)
        XCTAssertEqual(try fb.graph.sends().count, 4)
    }

    func testAFileIsUploadedWithTheAttachmentUploadAPIThenSentById() throws {
        let fb = try MessengerDaemon(extraSettings: "media_prefetch = false")
        defer { fb.stop() }
        let conv = try fb.openWindow()
        let file = TestPaths.temporaryDirectory("msgr-upload") + "/receipt.pdf"
        try "%PDF-1.4 a receipt".write(toFile: file, atomically: true, encoding: .utf8)
        let id = try fb.send(["conversation_id": .string(conv), "parts": [["type": "media", "kind": "file", "ref": .string(file), "mime_type": "application/pdf"]]])
        XCTAssertEqual(try fb.outcome(of: id)["status"]?["state"]?.stringValue, "sent")
        let requests = try fb.graph.requests().filter { $0["method"]?.stringValue == "POST" }
        let upload = try XCTUnwrap(requests.first { ($0["path"]?.stringValue ?? "").hasSuffix("/message_attachments") })
        XCTAssertEqual(upload["errors"]?.arrayValue?.count, 0, "\(upload)")
        XCTAssertEqual(upload["json"]?["filename"]?.stringValue, "receipt.pdf")
        XCTAssertEqual(upload["json"]?["file_type"]?.stringValue, "application/pdf")
        let send = try XCTUnwrap(try fb.graph.sends().last?["json"])
        XCTAssertEqual(send["message"]?["attachment"]?["type"]?.stringValue, "file")
        XCTAssertTrue(send["message"]?["attachment"]?["payload"]?["attachment_id"]?.stringValue?.hasPrefix("18577777") ?? false, "\(send)")
        // A file that does not exist fails for good, without a call.
        let missing = try fb.outcome(of: try fb.send(["conversation_id": .string(conv), "parts": [["type": "media", "kind": "image", "ref": "/nonexistent/x.jpg"]]]))
        XCTAssertEqual(missing["status"]?["error"]?["code"]?.stringValue, "media_unavailable")
    }

    func testConformanceAndSettings() throws {
        let plugin = try XCTUnwrap(ConformanceKit.builtPlugin(product: "chorus-messenger"), "build libchorus-messenger.so first")
        let base: [(String, String)] = [("app_secret", "s"), ("verify_token", "v"), ("access_token", "t"), ("page_id", MessengerFixtures.pageId),
                                        ("api_base_url", "http://127.0.0.1:9")]
        let results = ConformanceKit.run(pluginPath: plugin, settings: base)
        XCTAssertFalse(results.isEmpty)
        for r in results { XCTAssertTrue(r.passed, r.description) }
        func createFails(_ settings: [(String, String)]) -> Bool {
            ConformanceKit.run(pluginPath: plugin, settings: settings).contains { $0.check == ConformanceKit.Check.create && !$0.passed }
        }
        XCTAssertTrue(createFails(base + [("colour", "red")]), "unknown settings are refused")
        XCTAssertTrue(createFails(base.filter { $0.0 != "app_secret" }), "app_secret is required")
        XCTAssertTrue(createFails(base.filter { $0.0 != "page_id" }), "page_id is required")
        XCTAssertTrue(createFails(base + [("page_id", "my-page")]), "page_id is numeric")
        XCTAssertTrue(createFails(base + [("instagram_account_id", "1")]), "instagram_account_id is an Instagram setting")
        XCTAssertTrue(createFails(base + [("api_version", "21")]))
        XCTAssertFalse(createFails(base + [("access_token_file", "/run/secret"), ("app_secret_credential", "fb-secret")]))
    }
}
