import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// End to end through the real chorusd: signed webhooks in (Meta's documented payloads), normalized events out on the socket.
final class WhatsAppInboundTests: XCTestCase {
    func testVerificationHandshake() throws {
        let wa = try WhatsAppDaemon()
        defer { wa.stop() }
        let ok = try wa.daemon.get("/webhooks/wa?hub.mode=subscribe&hub.verify_token=\(MetaFixtures.verifyToken)&hub.challenge=1158201444")
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(ok.body, "1158201444")
        XCTAssertEqual(try wa.daemon.get("/webhooks/wa?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1").status, 403)
        XCTAssertEqual(try wa.daemon.get("/webhooks/wa?hub.mode=unsubscribe&hub.verify_token=\(MetaFixtures.verifyToken)&hub.challenge=1").status, 403)
        XCTAssertEqual(try wa.daemon.get("/webhooks/wa?hub.mode=subscribe").status, 400)
    }

    func testDocumentedMessageTypesBecomeNormalizedEvents() throws {
        let wa = try WhatsAppDaemon(extraSettings: "media_prefetch = false")
        defer { wa.stop() }

        func one(_ fixture: String) throws -> JSONValue {
            let r = try wa.webhook(try MetaFixtures.raw(fixture))
            XCTAssertEqual(r.status, 200, "\(fixture): \(r.body)")
            return try wa.events(1)[0]
        }

        let text = try one("text")
        XCTAssertEqual(text["type"]?.stringValue, "message")
        XCTAssertEqual(text["channel"]?.stringValue, "whatsapp")
        XCTAssertEqual(text["channel_ids"]?["message"]?.stringValue, "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=")
        XCTAssertEqual(text["channel_ids"]?["chat"]?.stringValue, "16505551234")
        XCTAssertEqual(text["channel_ids"]?["account"]?.stringValue, MetaFixtures.phoneNumberId)
        XCTAssertEqual(text["sender"]?["id"]?.stringValue, "16505551234")
        XCTAssertEqual(text["sender"]?["name"]?.stringValue, "Sheena Nelson")
        XCTAssertEqual(text["sender"]?["phone"]?.stringValue, "+16505551234")
        XCTAssertEqual(text["timestamp"]?.stringValue, "2025-02-12T00:43:44.000Z")
        XCTAssertEqual(text["parts"]?.arrayValue?.first?["text"]?.stringValue, "Does it come in another color?")
        XCTAssertEqual(text["context"]?["identity"]?["wa_id"]?.stringValue, "16505551234")

        let referral = try one("text_referral")
        XCTAssertEqual(referral["context"]?["referral"]?["source_type"]?.stringValue, "ad")
        XCTAssertEqual(referral["context"]?["referral"]?["source_id"]?.stringValue, "120226305854810726")
        XCTAssertTrue(referral["context"]?["referral"]?["ctwa_clid"]?.stringValue?.hasPrefix("Aff-") ?? false)

        let product = try one("text_reply_product")
        XCTAssertEqual(product["reply_to"]?["channel_message_id"]?.stringValue, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA")
        XCTAssertEqual(product["context"]?["referred_product"]?["product_retailer_id"]?.stringValue, "di9ozbzfi4")

        let image = try one("image")["parts"]!.arrayValue![0]
        XCTAssertEqual(image["type"]?.stringValue, "media")
        XCTAssertEqual(image["kind"]?.stringValue, "image")
        XCTAssertEqual(image["channel_media_id"]?.stringValue, "1003383421387256")
        XCTAssertEqual(image["ref"]?.stringValue, "/webhooks/wa/media/1003383421387256")
        XCTAssertEqual(image["mime_type"]?.stringValue, "image/jpeg")
        XCTAssertEqual(image["caption"]?.stringValue, "Lucky cat")
        XCTAssertEqual(try one("audio_voice")["parts"]?.arrayValue?[0]["kind"]?.stringValue, "voice")
        XCTAssertEqual(try one("video")["parts"]?.arrayValue?[0]["kind"]?.stringValue, "video")
        let doc = try one("document")["parts"]!.arrayValue![0]
        XCTAssertEqual(doc["kind"]?.stringValue, "file")
        XCTAssertEqual(doc["file_name"]?.stringValue, "receipt.pdf")
        XCTAssertEqual(try one("sticker")["parts"]?.arrayValue?[0]["kind"]?.stringValue, "sticker")

        let loc = try one("location")["parts"]!.arrayValue![0]
        XCTAssertEqual(loc["type"]?.stringValue, "location")
        XCTAssertEqual(loc["latitude"]?.doubleValue, 37.483307)
        XCTAssertEqual(loc["name"]?.stringValue, "Main Office")

        let card = try one("contacts")["parts"]!.arrayValue![0]
        XCTAssertEqual(card["type"]?.stringValue, "contact")
        XCTAssertEqual(card["name"]?["formatted"]?.stringValue, "Barbara J. Johnson")
        XCTAssertEqual(card["phones"]?.arrayValue?.first?["channel_id"]?.stringValue, "16505551234")
        XCTAssertEqual(card["emails"]?.arrayValue?.first?["address"]?.stringValue, "bjohnson@example.com")

        let button = try one("interactive_button_reply")
        XCTAssertEqual(button["parts"]?.arrayValue?[0]["choice_id"]?.stringValue, "cancel-button")
        XCTAssertEqual(button["parts"]?.arrayValue?[0]["kind"]?.stringValue, "button")
        XCTAssertNotNil(button["reply_to"]?["channel_message_id"])
        let list = try one("interactive_list_reply")["parts"]!.arrayValue![0]
        XCTAssertEqual(list["choice_id"]?.stringValue, "priority_express")
        XCTAssertEqual(list["description"]?.stringValue, "Next Day to 2 Days")
        let quick = try one("button")["parts"]!.arrayValue![0]
        XCTAssertEqual(quick["kind"]?.stringValue, "template_button")
        XCTAssertEqual(quick["payload"]?.stringValue, "Unsubscribe")

        let reaction = try one("reaction")
        XCTAssertEqual(reaction["type"]?.stringValue, "reaction")
        XCTAssertEqual(reaction["reaction"]?["emoji"]?.stringValue, "👍")
        XCTAssertEqual(reaction["target"]?["channel_message_id"]?.stringValue, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0NjM0RjNBNzBCOTBEQTEzQkIA")

        let order = try one("order")["parts"]!.arrayValue![0]
        XCTAssertEqual(order["type"]?.stringValue, "order")
        XCTAssertEqual(order["catalog_id"]?.stringValue, "194836987003835")
        XCTAssertEqual(order["items"]?.arrayValue?[0]["product_id"]?.stringValue, "di9ozbzfi4")
        XCTAssertEqual(order["items"]?.arrayValue?[0]["quantity"]?.intValue, 2)
        XCTAssertEqual(order["items"]?.arrayValue?[0]["price"]?["amount"]?.intValue, 799)
        XCTAssertEqual(order["total"]?["amount"]?.intValue, 1598)
        XCTAssertEqual(order["note"]?.stringValue, "Love these!")

        let system = try one("system")
        XCTAssertEqual(system["type"]?.stringValue, "conversation")
        XCTAssertEqual(system["conversation"]?["action"]?.stringValue, "user_changed_number")
        XCTAssertEqual(system["conversation"]?["wa_id"]?.stringValue, "12195555358")

        let unsupported = try one("unsupported")["parts"]!.arrayValue![0]
        XCTAssertEqual(unsupported["type"]?.stringValue, "unsupported")
        XCTAssertEqual(unsupported["channel_type"]?.stringValue, "edit")
        XCTAssertEqual(unsupported["description"]?.stringValue, "Message type unknown")

        // A business-scoped user id and no phone number: identity rests on the BSUID.
        let bsuid = try one("bsuid_text")
        XCTAssertEqual(bsuid["sender"]?["id"]?.stringValue, "US.13491208655302741918")
        XCTAssertNil(bsuid["sender"]?["phone"])
        XCTAssertEqual(bsuid["sender"]?["username"]?.stringValue, "@analima")
        XCTAssertEqual(bsuid["channel_ids"]?["chat"]?.stringValue, "US.13491208655302741918")
        XCTAssertEqual(bsuid["context"]?["identity"]?["user_id"]?.stringValue, "US.13491208655302741918")

        // Change-level errors stay visible.
        let errors = try one("errors")
        XCTAssertEqual(errors["type"]?.stringValue, "conversation")
        XCTAssertEqual(errors["conversation"]?["error"]?["code"]?.intValue, 130429)

        wa.assertSchemaValid()
    }

    func testUnknownMessageTypeIsKeptAsUnsupported() throws {
        let wa = try WhatsAppDaemon()
        defer { wa.stop() }
        let body = Array("""
        {"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messaging_product":"whatsapp",\
        "metadata":{"display_phone_number":"15550783881","phone_number_id":"\(MetaFixtures.phoneNumberId)"},\
        "contacts":[{"profile":{"name":"Kai"},"wa_id":"16505550000"}],\
        "messages":[{"from":"16505550000","id":"wamid.POLL1","timestamp":"1739321024","type":"poll","poll":{"question":"Lunch?"}}]},"field":"messages"}]}]}
        """.utf8)
        XCTAssertEqual(try wa.webhook(body).status, 200)
        let ev = try wa.events(1)[0]
        XCTAssertEqual(ev["parts"]?.arrayValue?[0]["type"]?.stringValue, "unsupported")
        XCTAssertEqual(ev["parts"]?.arrayValue?[0]["channel_type"]?.stringValue, "poll")
        XCTAssertEqual(ev["channel_ids"]?["message"]?.stringValue, "wamid.POLL1")
        wa.assertSchemaValid()
    }

    func testRedeliveredChangeErrorsAndTargetlessReactionsAreKeptOnce() throws {
        let wa = try WhatsAppDaemon()
        defer { wa.stop() }
        let errors = try MetaFixtures.raw("errors")
        XCTAssertEqual(try wa.webhook(errors).status, 200)
        XCTAssertEqual(try wa.events(1)[0]["conversation"]?["action"]?.stringValue, "channel_error")
        XCTAssertEqual(try wa.webhook(errors).status, 200)
        XCTAssertTrue(wa.quiet(forMs: 400), "a redelivered change-level error was stored twice")
        // A reaction without the id of the message it reacts to is kept, as unsupported.
        let body = Array("""
        {"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messaging_product":"whatsapp",\
        "metadata":{"display_phone_number":"15550783881","phone_number_id":"\(MetaFixtures.phoneNumberId)"},\
        "contacts":[{"profile":{"name":"Kai"},"wa_id":"16505550000"}],\
        "messages":[{"from":"16505550000","id":"wamid.REACT-NO-TARGET","timestamp":"1739321024","type":"reaction","reaction":{"emoji":"👍"}}]},"field":"messages"}]}]}
        """.utf8)
        XCTAssertEqual(try wa.webhook(body).status, 200)
        let ev = try wa.events(1)[0]
        XCTAssertEqual(ev["type"]?.stringValue, "message")
        XCTAssertEqual(ev["parts"]?.arrayValue?[0]["channel_type"]?.stringValue, "reaction")
        wa.assertSchemaValid()
    }

    func testStatusesBecomeStatusEvents() throws {
        let wa = try WhatsAppDaemon()
        defer { wa.stop() }
        for name in ["status_sent", "status_delivered", "status_read", "status_failed"] {
            XCTAssertEqual(try wa.webhook(try MetaFixtures.raw(name)).status, 200, name)
        }
        let evs = try wa.events(4)
        XCTAssertEqual(evs.map { $0["status"]?["state"]?.stringValue ?? "" }, ["sent", "delivered", "read", "failed"])
        for ev in evs {
            XCTAssertEqual(ev["type"]?.stringValue, "status")
            XCTAssertEqual(ev["direction"]?.stringValue, "outbound")
            XCTAssertEqual(ev["status"]?["channel_message_id"]?.stringValue, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MUY4Nzk4NzlCMjA2RkU2MDEA")
        }
        XCTAssertEqual(evs[0]["context"]?["pricing"]?["category"]?.stringValue, "marketing")
        XCTAssertEqual(evs[0]["status"]?["pricing"]?["category"]?.stringValue, "marketing")
        XCTAssertEqual(evs[3]["status"]?["error"]?["code"]?.stringValue, "131050")
        XCTAssertTrue(evs[3]["status"]?["error"]?["title"]?.stringValue?.hasPrefix("Unable to deliver") ?? false)
        XCTAssertEqual(evs[3]["status"]?["retryable"]?.boolValue, false)
        wa.assertSchemaValid()
    }

    func testBatchWebhookCommitsEveryEventAndRedeliveryAddsNothing() throws {
        let wa = try WhatsAppDaemon()
        defer { wa.stop() }
        let body = try MetaFixtures.raw("batch")
        let r = try wa.webhook(body)
        XCTAssertEqual(r.status, 200, r.body)
        XCTAssertTrue(r.body.contains(#""accepted":3"#), r.body)
        let evs = try wa.events(3)
        XCTAssertEqual(Set(evs.compactMap { $0["channel_ids"]?["message"]?.stringValue ?? $0["status"]?["state"]?.stringValue }),
                       ["wamid.BATCH0001", "wamid.BATCH0002", "delivered"])
        // Meta retries the same webhook (for days): answered 200, stored once.
        XCTAssertEqual(try wa.webhook(body).status, 200)
        XCTAssertEqual(try wa.webhook(body).status, 200)
        XCTAssertTrue(wa.quiet(forMs: 500), "a redelivered webhook produced new events")
        guard case .reply("stats", _, let stats) = try wa.connection.request(.stats) else { return XCTFail("no stats") }
        XCTAssertEqual(stats["events"]?["accepted"]?.intValue, 3)
        wa.assertSchemaValid()
    }

    func testBadSignaturesAndMalformedBodiesStoreNothing() throws {
        let wa = try WhatsAppDaemon()
        defer { wa.stop() }
        let body = try MetaFixtures.raw("text")
        XCTAssertEqual(try wa.webhook(body, signature: .some(nil)).status, 401, "missing signature")
        XCTAssertEqual(try wa.webhook(body, signature: try MetaFixtures.signature(body, secret: "wrong-secret")).status, 401)
        XCTAssertEqual(try wa.webhook(body, signature: "sha256=abc").status, 401)
        var tampered = body
        tampered[40] = UInt8(ascii: "X")
        XCTAssertEqual(try wa.webhook(tampered, signature: try MetaFixtures.signature(body)).status, 401)
        // Correctly signed but not JSON, or not a WhatsApp payload.
        XCTAssertEqual(try wa.webhook(Array("{\"object\": ".utf8)).status, 400)
        XCTAssertEqual(try wa.webhook(Array(#"{"object":"page","entry":[]}"#.utf8)).status, 400)
        XCTAssertTrue(wa.quiet(forMs: 300))
        guard case .reply("stats", _, let stats) = try wa.connection.request(.stats) else { return XCTFail("no stats") }
        XCTAssertEqual(stats["events"]?["accepted"]?.intValue, 0)
        // The same body with the right signature goes through.
        XCTAssertEqual(try wa.webhook(body).status, 200)
        XCTAssertEqual(try wa.events(1)[0]["parts"]?.arrayValue?[0]["text"]?.stringValue, "Does it come in another color?")
    }

    func testInboundMediaIsFetchedThroughTheGraphMediaEndpoint() throws {
        let wa = try WhatsAppDaemon()
        defer { wa.stop() }
        _ = try wa.graph.admin("media", ["id": "1003383421387256", "mime_type": "image/jpeg", "data": "JPEG-BYTES-OF-A-LUCKY-CAT"])
        XCTAssertEqual(try wa.webhook(try MetaFixtures.raw("image")).status, 200)
        let part = try wa.events(1)[0]["parts"]!.arrayValue![0]
        let ref = try XCTUnwrap(part["ref"]?.stringValue)
        let got = try wa.daemon.get(ref)
        XCTAssertEqual(got.status, 200)
        XCTAssertEqual(got.body, "JPEG-BYTES-OF-A-LUCKY-CAT")
        // The plugin asked the media endpoint first, then the download URL, both with the token.
        let reqs = try wa.graph.requests().filter { $0["method"]?.stringValue == "GET" }
        XCTAssertTrue(reqs.contains { $0["path"]?.stringValue == "/v21.0/1003383421387256" })
        XCTAssertTrue(reqs.contains { $0["path"]?.stringValue == "/media-download/1003383421387256" })
        XCTAssertTrue(reqs.allSatisfy { $0["headers"]?["authorization"]?.stringValue == "Bearer \(wa.graph.token)" })
        // Media the Graph API does not know: 404, not a hang.
        XCTAssertEqual(try wa.daemon.get("/webhooks/wa/media/999999").status, 404)
        // The access token never reaches the log.
        XCTAssertFalse(wa.daemon.logText.contains(wa.graph.token))
        XCTAssertFalse(wa.daemon.logText.contains(MetaFixtures.appSecret))
    }
}
