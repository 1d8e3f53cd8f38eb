import ChorusClient
import ChorusConformance
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// End to end: sends on the socket → Cloud API calls checked by the fake Graph server → outcomes and status webhooks back.
final class WhatsAppOutboundTests: XCTestCase {
    /// Opens the customer-service window with an inbound message and returns its conversation id.
    func openWindow(_ wa: WhatsAppDaemon, from: String = MetaFixtures.user, wamid: String = "wamid.IN\(Int.random(in: 0..<1_000_000))") throws -> String {
        XCTAssertEqual(try wa.webhook(MetaFixtures.textWebhook(from: from, wamid: wamid, text: "Hi, is my order on its way?")).status, 200)
        let ev = try wa.event(where: { $0["type"]?.stringValue == "message" && $0["direction"]?.stringValue == "inbound" })
        return try XCTUnwrap(ev["conversation_id"]?.stringValue)
    }

    func testTextReplyGoesOutAndStatusWebhooksComeBack() throws {
        let wa = try WhatsAppDaemon()
        defer { wa.stop() }
        let conv = try openWindow(wa, wamid: "wamid.INBOUND1")
        let mid = try wa.send(["conversation_id": .string(conv), "parts": [["type": "text", "text": "Yes, it ships today: https://track.example/1"]],
                               "reply_to": ["channel_message_id": "wamid.INBOUND1"], "options": ["preview_url": true]])
        let sent = try wa.outcome(of: mid)
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "sent")
        let wamid = try XCTUnwrap(sent["status"]?["channel_message_id"]?.stringValue)
        XCTAssertTrue(wamid.hasPrefix("wamid.FAKE"))

        let call = try wa.graph.waitForSends(1)[0]
        XCTAssertEqual(call["path"]?.stringValue, "/v21.0/\(MetaFixtures.phoneNumberId)/messages")
        XCTAssertEqual(call["headers"]?["authorization"]?.stringValue, "Bearer \(wa.graph.token)")
        XCTAssertEqual(call["errors"]?.arrayValue?.count, 0, "\(call)")
        let body = call["json"]!
        XCTAssertEqual(body["messaging_product"]?.stringValue, "whatsapp")
        XCTAssertEqual(body["to"]?.stringValue, MetaFixtures.user)
        XCTAssertEqual(body["type"]?.stringValue, "text")
        XCTAssertEqual(body["text"]?["body"]?.stringValue, "Yes, it ships today: https://track.example/1")
        XCTAssertEqual(body["text"]?["preview_url"]?.boolValue, true)
        XCTAssertEqual(body["context"]?["message_id"]?.stringValue, "wamid.INBOUND1")

        // Delivery and read webhooks come back as status events on the send.
        for state in ["delivered", "read"] {
            XCTAssertEqual(try wa.webhook(MetaFixtures.statusWebhook(wamid: wamid, status: state)).status, 200)
            let ev = try wa.event(where: { $0["type"]?.stringValue == "status" && $0["status"]?["state"]?.stringValue == state })
            XCTAssertEqual(ev["status"]?["message_id"]?.stringValue, mid)
            XCTAssertEqual(ev["conversation_id"]?.stringValue, conv)
            XCTAssertEqual(ev["context"]?["pricing"]?["category"]?.stringValue, "service")
        }
        // A failure reported later carries the code.
        XCTAssertEqual(try wa.webhook(MetaFixtures.statusWebhook(wamid: wamid, status: "failed", errorCode: 131026)).status, 200)
        let failed = try wa.event(where: { $0["type"]?.stringValue == "status" && $0["status"]?["state"]?.stringValue == "failed" })
        XCTAssertEqual(failed["status"]?["message_id"]?.stringValue, mid)
        XCTAssertEqual(failed["status"]?["error"]?["code"]?.stringValue, "131026")
        wa.assertSchemaValid()
    }

    func testFreeFormOutsideTheWindowIsRefusedBeforeAnyCallButTemplatesGo() throws {
        let wa = try WhatsAppDaemon()
        defer { wa.stop() }
        let mid = try wa.send(["instance": "wa", "to": "16505559876", "parts": [["type": "text", "text": "Hello out of the blue"]]])
        let failed = try wa.outcome(of: mid)
        XCTAssertEqual(failed["status"]?["state"]?.stringValue, "failed")
        XCTAssertEqual(failed["status"]?["error"]?["code"]?.stringValue, "outside_customer_service_window")
        XCTAssertTrue(failed["status"]?["error"]?["message"]?.stringValue?.contains("template") ?? false)
        XCTAssertEqual(try wa.graph.sends().count, 0, "no API call for a refused send")

        let tmid = try wa.send(["instance": "wa", "to": "16505559876", "parts": [[
            "type": "template", "name": "order_update", "language": "en_US",
            "parameters": ["header": ["Order 1042"], "body": ["Ana", "1042", "shipped"], "buttons": ["TRACK_1042"]],
        ]]])
        XCTAssertEqual(try wa.outcome(of: tmid)["status"]?["state"]?.stringValue, "sent")
        let t = try wa.graph.waitForSends(1)[0]
        XCTAssertEqual(t["errors"]?.arrayValue?.count, 0, "\(t)")
        let template = t["json"]!["template"]!
        XCTAssertEqual(template["name"]?.stringValue, "order_update")
        XCTAssertEqual(template["language"]?["code"]?.stringValue, "en_US")
        let components = template["components"]!.arrayValue!
        XCTAssertEqual(components.map { $0["type"]?.stringValue ?? "" }, ["header", "body", "button"])
        XCTAssertEqual(components[1]["parameters"]?.arrayValue?.map { $0["text"]?.stringValue ?? "" }, ["Ana", "1042", "shipped"])
        XCTAssertEqual(components[2]["sub_type"]?.stringValue, "quick_reply")
        XCTAssertEqual(components[2]["parameters"]?.arrayValue?[0]["payload"]?.stringValue, "TRACK_1042")
        wa.assertSchemaValid()
    }

    func testInteractiveMediaLocationContactsReactionAndPaymentShapes() throws {
        let wa = try WhatsAppDaemon(extraSettings: "catalog_id = \"194836987003835\"")
        defer { wa.stop() }
        let conv = try openWindow(wa, wamid: "wamid.INBOUND2")
        let sends: [JSONValue] = [
            ["conversation_id": .string(conv), "parts": [["type": "interactive", "style": "buttons", "body": "Confirm the delivery slot?",
                                                          "buttons": [["id": "yes", "title": "Yes"], ["id": "no", "title": "No"]]]]],
            ["conversation_id": .string(conv), "parts": [["type": "interactive", "style": "list", "body": "Pick a shipping option", "buttons": [["id": "open", "title": "Options"]],
                                                          "sections": [["title": "Fast", "rows": [["id": "express", "title": "Express", "description": "Next day"]]]]]]],
            ["conversation_id": .string(conv), "parts": [["type": "interactive", "style": "cta_url", "body": "See the catalogue",
                                                          "buttons": [["title": "Open", "url": "https://shop.example"]]]]],
            ["conversation_id": .string(conv), "parts": [["type": "text", "text": "Here is the receipt"], ["type": "media", "kind": "file", "url": "https://files.example/r.pdf", "file_name": "r.pdf"]]],
            ["conversation_id": .string(conv), "parts": [["type": "location", "latitude": 52.52, "longitude": 13.405, "name": "Store"]]],
            ["conversation_id": .string(conv), "parts": [["type": "contact", "name": ["formatted": "Support Desk"], "phones": [["number": "+4930123456", "type": "WORK"]]]]],
            ["type": "reaction", "conversation_id": .string(conv), "target": ["channel_message_id": "wamid.INBOUND2"], "reaction": ["emoji": "❤️"]],
            ["conversation_id": .string(conv), "parts": [["type": "text", "text": "Your total is ready."],
                                                          ["type": "payment_request", "amount": 11499, "currency": "EUR", "link": "https://pay.example/1042", "order_id": "1042"]]],
            ["conversation_id": .string(conv), "parts": [["type": "interactive", "style": "product_list", "header": "Our picks", "body": "Summer range", "catalog_id": "194836987003835",
                                                          "sections": [["title": "Shoes", "product_ids": ["sku-1", "sku-2"]]]]]],
            ["conversation_id": .string(conv), "parts": [["type": "product", "product_id": "sku-1"]]],
            ["type": "read", "conversation_id": .string(conv), "target": ["channel_message_id": "wamid.INBOUND2"]],
            ["type": "typing", "conversation_id": .string(conv)],
        ]
        for s in sends {
            let mid = try wa.send(s)
            let out = try wa.outcome(of: mid)
            XCTAssertEqual(out["status"]?["state"]?.stringValue, "sent", "\(s) → \(out)")
        }
        let calls = try wa.graph.waitForSends(sends.count)
        for c in calls { XCTAssertEqual(c["errors"]?.arrayValue?.count, 0, "fake Graph refused \(c)") }
        let bodies = calls.map { $0["json"]! }
        XCTAssertEqual(bodies[0]["interactive"]?["type"]?.stringValue, "button")
        XCTAssertEqual(bodies[0]["interactive"]?["action"]?["buttons"]?.arrayValue?.count, 2)
        XCTAssertEqual(bodies[1]["interactive"]?["action"]?["button"]?.stringValue, "Options")
        XCTAssertEqual(bodies[2]["interactive"]?["action"]?["parameters"]?["url"]?.stringValue, "https://shop.example")
        XCTAssertEqual(bodies[3]["type"]?.stringValue, "document")
        XCTAssertEqual(bodies[3]["document"]?["caption"]?.stringValue, "Here is the receipt")
        XCTAssertEqual(bodies[3]["document"]?["link"]?.stringValue, "https://files.example/r.pdf")
        XCTAssertEqual(bodies[4]["location"]?["name"]?.stringValue, "Store")
        XCTAssertEqual(bodies[5]["contacts"]?.arrayValue?[0]["phones"]?.arrayValue?[0]["phone"]?.stringValue, "+4930123456")
        XCTAssertEqual(bodies[6]["reaction"]?["message_id"]?.stringValue, "wamid.INBOUND2")
        // The payment request became a call-to-action button to the payment link, with the text as its body.
        XCTAssertEqual(bodies[7]["interactive"]?["type"]?.stringValue, "cta_url")
        XCTAssertEqual(bodies[7]["interactive"]?["action"]?["parameters"]?["url"]?.stringValue, "https://pay.example/1042")
        XCTAssertEqual(bodies[7]["interactive"]?["body"]?["text"]?.stringValue, "Your total is ready.")
        XCTAssertEqual(bodies[8]["interactive"]?["type"]?.stringValue, "product_list")
        XCTAssertEqual(bodies[8]["interactive"]?["action"]?["catalog_id"]?.stringValue, "194836987003835")
        XCTAssertEqual(bodies[9]["interactive"]?["action"]?["product_retailer_id"]?.stringValue, "sku-1")
        XCTAssertEqual(bodies[10]["status"]?.stringValue, "read")
        XCTAssertEqual(bodies[10]["message_id"]?.stringValue, "wamid.INBOUND2")
        XCTAssertEqual(bodies[11]["typing_indicator"]?["type"]?.stringValue, "text")
        XCTAssertEqual(bodies[11]["message_id"]?.stringValue, "wamid.INBOUND2", "typing answers the last inbound message")
        wa.assertSchemaValid()
    }

    func testOrderDetailsWhenAPaymentConfigurationExists() throws {
        let wa = try WhatsAppDaemon(extraSettings: "payment_configuration = \"razorpay-main\"")
        defer { wa.stop() }
        let conv = try openWindow(wa)
        let mid = try wa.send(["conversation_id": .string(conv), "parts": [
            ["type": "payment_request", "amount": 49900, "currency": "INR", "link": "https://rzp.io/l/1042", "order_id": "1042", "description": "Order 1042"]]])
        XCTAssertEqual(try wa.outcome(of: mid)["status"]?["state"]?.stringValue, "sent")
        let call = try wa.graph.waitForSends(1)[0]
        XCTAssertEqual(call["errors"]?.arrayValue?.count, 0, "\(call)")
        let i = call["json"]!["interactive"]!
        XCTAssertEqual(i["type"]?.stringValue, "order_details")
        XCTAssertEqual(i["action"]?["parameters"]?["payment_configuration"]?.stringValue, "razorpay-main")
        XCTAssertEqual(i["action"]?["parameters"]?["total_amount"]?["value"]?.intValue, 49900)
        XCTAssertEqual(i["action"]?["parameters"]?["total_amount"]?["offset"]?.intValue, 100)
        XCTAssertEqual(i["action"]?["parameters"]?["reference_id"]?.stringValue, "1042")
    }

    func testThrottlingIsRetriedAndPermanentErrorsCarryTheCode() throws {
        let wa = try WhatsAppDaemon()
        defer { wa.stop() }
        let conv = try openWindow(wa)
        // Two throttling answers (130429 with Retry-After, then HTTP 429), then success.
        _ = try wa.graph.admin("errors", ["count": 1, "status": 400, "headers": ["Retry-After": "1"], "error": [
            "message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429,
            "error_data": ["messaging_product": "whatsapp", "details": "Cloud API message throughput has been reached."], "fbtrace_id": "A1"]])
        _ = try wa.graph.admin("errors", ["count": 1, "status": 429, "headers": ["Retry-After": "1"],
                                          "error": ["message": "(#4) Application request limit reached", "type": "OAuthException", "code": 4, "fbtrace_id": "A2"]])
        let start = Date()
        let mid = try wa.send(["conversation_id": .string(conv), "parts": [["type": "text", "text": "after the storm"]]])
        let out = try wa.outcome(of: mid, timeoutMs: 90_000)
        XCTAssertEqual(out["status"]?["state"]?.stringValue, "sent", "\(out)")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 2.0, "Retry-After was not honoured")
        let calls = try wa.graph.sends()
        XCTAssertEqual(calls.count, 3)
        XCTAssertEqual(Set(calls.map { $0["json"]?["text"]?["body"]?.stringValue ?? "" }), ["after the storm"])

        // A permanent error: one failed status with the Graph code, no retries.
        _ = try wa.graph.admin("errors", ["count": 1, "status": 400, "error": [
            "message": "(#131026) Message undeliverable", "type": "OAuthException", "code": 131026,
            "error_data": ["messaging_product": "whatsapp", "details": "Message Undeliverable."], "fbtrace_id": "A3"]])
        let mid2 = try wa.send(["conversation_id": .string(conv), "parts": [["type": "text", "text": "will not arrive"]]])
        let failed = try wa.outcome(of: mid2)
        XCTAssertEqual(failed["status"]?["state"]?.stringValue, "failed")
        XCTAssertEqual(failed["status"]?["error"]?["code"]?.stringValue, "131026")
        XCTAssertEqual(failed["status"]?["retryable"]?.boolValue, false)
        XCTAssertEqual(try wa.graph.sends().count, 4)
        // Refused before any call: too many buttons for WhatsApp.
        let mid3 = try wa.send(["conversation_id": .string(conv), "parts": [["type": "interactive", "style": "buttons", "body": "Pick",
            "buttons": [["id": "1", "title": "1"], ["id": "2", "title": "2"], ["id": "3", "title": "3"], ["id": "4", "title": "4"]]]]])
        XCTAssertEqual(try wa.outcome(of: mid3)["status"]?["error"]?["code"]?.stringValue, "too_many_buttons")
        XCTAssertEqual(try wa.graph.sends().count, 4)
        wa.assertSchemaValid()
    }

    func testMultiPartSendResumesAfterARetryWithoutResending() throws {
        let wa = try WhatsAppDaemon()
        defer { wa.stop() }
        let conv = try openWindow(wa)
        // The first call succeeds, the second is throttled once, then succeeds.
        let mid = try wa.send(["conversation_id": .string(conv), "parts": [
            ["type": "location", "latitude": 1.0, "longitude": 2.0], ["type": "media", "kind": "image", "url": "https://img.example/a.jpg"]]])
        // Queue the throttle before the second call by racing is unreliable; instead check the plan splits into two calls.
        XCTAssertEqual(try wa.outcome(of: mid)["status"]?["state"]?.stringValue, "sent")
        let calls = try wa.graph.waitForSends(2)
        XCTAssertEqual(calls.map { $0["json"]?["type"]?.stringValue ?? "" }, ["location", "image"])
        _ = try wa.graph.admin("reset")
        _ = try wa.graph.admin("errors", ["count": 1, "status": 503, "error": ["message": "Service temporarily unavailable", "type": "OAuthException", "code": 2, "fbtrace_id": "B"]])
        // Text first (absorbed into nothing: two texts and a location make three calls); the 503 hits the first and is retried.
        let mid2 = try wa.send(["conversation_id": .string(conv), "parts": [["type": "text", "text": "one"], ["type": "text", "text": "two"]]])
        XCTAssertEqual(try wa.outcome(of: mid2, timeoutMs: 60_000)["status"]?["state"]?.stringValue, "sent")
        let bodies = try wa.graph.sends().map { $0["json"]?["text"]?["body"]?.stringValue ?? "" }
        XCTAssertEqual(bodies, ["one", "one", "two"], "the retry resends only what did not go out")
    }

    func testServiceWindowSurvivesARestart() throws {
        let first = try WhatsAppDaemon()
        _ = try openWindow(first, from: "16505554321", wamid: "wamid.BEFORE-RESTART")
        first.stop(keepGraph: true)
        let second = try WhatsAppDaemon(directory: first.directory, graph: first.graph)
        defer { second.stop() }
        // No new inbound message: the window is known from the persisted state.
        let mid = try second.send(["instance": "wa", "to": "16505554321", "parts": [["type": "text", "text": "Thanks for waiting"]]])
        XCTAssertEqual(try second.outcome(of: mid)["status"]?["state"]?.stringValue, "sent")
        // And the typing indicator still knows the last inbound message.
        let typing = try second.send(["type": "typing", "instance": "wa", "to": "16505554321"])
        XCTAssertEqual(try second.outcome(of: typing)["status"]?["state"]?.stringValue, "sent")
        let calls = try second.graph.waitForSends(2)
        XCTAssertEqual(calls[1]["json"]?["message_id"]?.stringValue, "wamid.BEFORE-RESTART")
    }

    func testConformance() throws {
        let plugin = try XCTUnwrap(ConformanceKit.builtPlugin(product: "chorus-whatsapp"), "build libchorus-whatsapp.so first")
        let results = ConformanceKit.run(pluginPath: plugin, settings: [
            ("app_secret", "s"), ("verify_token", "v"), ("access_token", "t"), ("phone_number_id", "106540352242922"),
            ("api_base_url", "http://127.0.0.1:9"),
        ])
        XCTAssertFalse(results.isEmpty)
        for r in results { XCTAssertTrue(r.passed, r.description) }
    }

    func testSettingsAreValidated() throws {
        let plugin = try XCTUnwrap(ConformanceKit.builtPlugin(product: "chorus-whatsapp"))
        let base: [(String, String)] = [("app_secret", "s"), ("verify_token", "v"), ("access_token", "t"), ("phone_number_id", "106540352242922")]
        func createFails(_ settings: [(String, String)]) -> Bool {
            ConformanceKit.run(pluginPath: plugin, settings: settings).contains { $0.check == ConformanceKit.Check.create && !$0.passed }
        }
        XCTAssertFalse(createFails(base))
        XCTAssertTrue(createFails(base + [("colour", "red")]), "unknown settings are refused")
        XCTAssertTrue(createFails(base.filter { $0.0 != "access_token" }), "access_token is required")
        XCTAssertTrue(createFails(base + [("api_base_url", "ftp://x")]))
        XCTAssertTrue(createFails(base + [("api_version", "21")]))
        XCTAssertFalse(createFails(base + [("access_token_file", "/run/secret"), ("app_secret_credential", "wa-secret")]))
    }
}

/// Media sends by upload and by forwarding received media.
final class WhatsAppMediaSendTests: XCTestCase {
    func testMediaIsUploadedFromAFileOrAURLAndReceivedMediaIsForwardedById() throws {
        let wa = try WhatsAppDaemon(extraSettings: "media_prefetch = false")
        defer { wa.stop() }
        // An inbound image opens the window and gives a media ref to forward.
        XCTAssertEqual(try wa.webhook(try MetaFixtures.fresh("image")).status, 200)
        let inbound = try wa.events(1)[0]
        let conv = try XCTUnwrap(inbound["conversation_id"]?.stringValue)
        let ref = try XCTUnwrap(inbound["parts"]?.arrayValue?[0]["ref"]?.stringValue)

        let file = TestPaths.temporaryDirectory("wa-upload") + "/invoice.pdf"
        try "%PDF-1.4 fake invoice".write(toFile: file, atomically: true, encoding: .utf8)
        _ = try wa.graph.admin("media", ["id": "777", "mime_type": "image/png", "data": "PNG-FROM-A-PRIVATE-URL"])
        let sends: [JSONValue] = [
            ["conversation_id": .string(conv), "parts": [["type": "media", "kind": "file", "ref": .string("file://" + file), "caption": "Your invoice"]]],
            ["conversation_id": .string(conv), "parts": [["type": "media", "kind": "image", "url": .string(wa.graph.baseURL + "/public-files/777"), "mime_type": "image/png"]],
             "options": ["upload_media": true]],
            ["conversation_id": .string(conv), "parts": [["type": "media", "kind": "image", "ref": .string(ref)]]],
        ]
        for s in sends {
            let out = try wa.outcome(of: try wa.send(s))
            XCTAssertEqual(out["status"]?["state"]?.stringValue, "sent", "\(out)")
        }
        let posts = try wa.graph.requests().filter { $0["method"]?.stringValue == "POST" }
        for p in posts { XCTAssertEqual(p["errors"]?.arrayValue?.count, 0, "fake Graph refused \(p)") }
        let uploads = posts.filter { $0["path"]?.stringValue?.hasSuffix("/media") ?? false }
        guard uploads.count == 2 else { return XCTFail("expected 2 uploads, got \(uploads)") }
        XCTAssertEqual(uploads[0]["json"]?["fields"]?["type"]?.stringValue, "application/pdf")
        XCTAssertEqual(uploads[0]["json"]?["filename"]?.stringValue, "invoice.pdf")
        XCTAssertEqual(uploads[1]["json"]?["fields"]?["type"]?.stringValue, "image/png")
        let messages = posts.filter { $0["path"]?.stringValue?.hasSuffix("/messages") ?? false }.map { $0["json"]! }
        guard messages.count == 3 else { return XCTFail("expected 3 message calls, got \(messages)") }
        XCTAssertNotNil(messages[0]["document"]?["id"]?.stringValue)
        XCTAssertNil(messages[0]["document"]?["link"])
        XCTAssertEqual(messages[0]["document"]?["caption"]?.stringValue, "Your invoice")
        XCTAssertNotNil(messages[1]["image"]?["id"]?.stringValue)
        XCTAssertEqual(messages[2]["image"]?["id"]?.stringValue, "1003383421387256", "received media is forwarded by its id")
        // The uploaded bytes are what the file held.
        let uploadedId = try XCTUnwrap(messages[0]["document"]?["id"]?.stringValue)
        let fetched = try HTTPTestClient.request(port: wa.graph.port, method: "GET", path: "/media-download/\(uploadedId)",
                                                 headers: [("Authorization", "Bearer \(wa.graph.token)")], body: [])
        XCTAssertEqual(fetched.body, "%PDF-1.4 fake invoice")
        // A missing file fails permanently, without a message call.
        let bad = try wa.outcome(of: try wa.send(["conversation_id": .string(conv), "parts": [["type": "media", "kind": "file", "ref": "file:///nonexistent/x.pdf"]]]))
        XCTAssertEqual(bad["status"]?["error"]?["code"]?.stringValue, "media_unavailable")
        wa.assertSchemaValid()
    }
}
