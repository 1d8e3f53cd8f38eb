import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// Inbound SMS/MMS and status callbacks through the real daemon, with webhooks signed by Twilio's own library.
final class SMSInboundTests: SMSTestCase {
    func testInboundSMSFromTheDocsIsStoredOnceAndAnsweredWithTwiML() throws {
        try startDaemon()
        let params = try SMSTestSupport.fixture("inbound_sms")
        let r = try postWebhook("inbound", params)
        XCTAssertEqual(r.status, 200, r.body)
        XCTAssertEqual(r.headers.first { $0.0 == "content-type" }?.1, "text/xml")
        XCTAssertTrue(r.body.contains("<Response/>"), r.body)

        let ev = try event { $0["type"]?.stringValue == "message" }
        XCTAssertEqual(ev["channel"]?.stringValue, "sms")
        XCTAssertEqual(ev["instance"]?.stringValue, instanceName)
        XCTAssertEqual(ev["direction"]?.stringValue, "inbound")
        XCTAssertEqual(ev["sender"]?["id"]?.stringValue, "+14155552671")
        XCTAssertEqual(ev["sender"]?["phone"]?.stringValue, "+14155552671")
        XCTAssertEqual(ev["channel_ids"]?["chat"]?.stringValue, "+14155552671")
        XCTAssertEqual(ev["channel_ids"]?["account"]?.stringValue, "+15017122661")
        XCTAssertEqual(ev["channel_ids"]?["message"]?.stringValue, "SM1f0e8ae6ade43cb3c0ce4525424e404f")
        let parts = try XCTUnwrap(ev["parts"]?.arrayValue)
        XCTAssertEqual(parts.count, 1)
        XCTAssertEqual(parts[0]["type"]?.stringValue, "text")
        XCTAssertEqual(parts[0]["text"]?.stringValue, "Ahoy! Where's my order #1234? Can you check for Zoë & me?")
        XCTAssertEqual(ev["context"]?["from_city"]?.stringValue, "NASHUA")
        XCTAssertEqual(ev["context"]?["from_country"]?.stringValue, "US")

        // Twilio retries a webhook it got no answer for: acknowledged again, stored once.
        XCTAssertEqual(try postWebhook("inbound", params).status, 200)
        let stored = try storedEvents(types: ["message"])
        XCTAssertEqual(stored.filter { $0["direction"]?.stringValue == "inbound" }.count, 1)
    }

    func testInboundMMSBecomesMediaParts() throws {
        try startDaemon()
        XCTAssertEqual(try postWebhook("inbound", try SMSTestSupport.fixture("inbound_mms")).status, 200)
        let ev = try event { $0["channel_ids"]?["message"]?.stringValue == "MM5f4a2b1c0d9e8f7a6b5c4d3e2f1a0b9c" }
        let parts = try XCTUnwrap(ev["parts"]?.arrayValue)
        XCTAssertEqual(parts.map { $0["type"]?.stringValue ?? "" }, ["text", "media", "media"])
        XCTAssertEqual(parts[0]["text"]?.stringValue, "Photos of the damaged parcel")
        XCTAssertEqual(parts[1]["kind"]?.stringValue, "image")
        XCTAssertEqual(parts[1]["mime_type"]?.stringValue, "image/jpeg")
        XCTAssertEqual(parts[1]["url"]?.stringValue,
                       "https://api.twilio.com/2010-04-01/Accounts/ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX/Messages/MM5f4a2b1c0d9e8f7a6b5c4d3e2f1a0b9c/Media/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9")
        XCTAssertEqual(parts[2]["kind"]?.stringValue, "video")
        XCTAssertEqual(parts[2]["mime_type"]?.stringValue, "video/mp4")

        XCTAssertEqual(try postWebhook("inbound", try SMSTestSupport.fixture("inbound_mms_image_only")).status, 200)
        let pic = try event { $0["channel_ids"]?["message"]?.stringValue == "MM9e8d7c6b5a49382716a5b4c3d2e1f0a9" }
        let picParts = try XCTUnwrap(pic["parts"]?.arrayValue)
        XCTAssertEqual(picParts.count, 1)
        XCTAssertEqual(picParts[0]["kind"]?.stringValue, "image")
        XCTAssertEqual(picParts[0]["mime_type"]?.stringValue, "image/png")
        XCTAssertNil(picParts[0]["caption"], "an MMS without text has no caption")
    }

    func testBadOrMissingSignaturesAreRefusedAndNothingIsStored() throws {
        try startDaemon()
        let params = try SMSTestSupport.fixture("inbound_sms")

        let missing = try postWebhook("inbound", params, sign: false)
        XCTAssertEqual(missing.status, 403)
        XCTAssertTrue(missing.body.contains("missing X-Twilio-Signature"), missing.body)

        let garbage = try postWebhook("inbound", params, signature: "bm90IGEgc2lnbmF0dXJlIGF0IGFsbA==")
        XCTAssertEqual(garbage.status, 403)
        XCTAssertTrue(garbage.body.contains("does not match"), garbage.body)

        // Signed by Twilio for another URL (a different public host): refused.
        XCTAssertEqual(try postWebhook("inbound", params, signedURL: "https://chorus.example.com/webhooks/sms/inbound").status, 403)

        // Signed correctly, then tampered with on the way: refused.
        let goodSignature = try fake.sign(url: publicBaseURL + "/webhooks/sms/inbound", params: params)
        var tampered = params
        tampered[tampered.firstIndex { $0.0 == "Body" }!].1 = "Please refund me $500"
        XCTAssertEqual(try postWebhook("inbound", tampered, signature: goodSignature).status, 403)

        // Signed with another account's token: refused.
        let other = FakeTwilio.authToken.replacingOccurrences(of: "d", with: "e")
        var paramsJSON = JSONObject()
        for (k, v) in params { paramsJSON[k] = .string(v) }
        let (status, forged, _) = try TestProcess.run("/usr/bin/env", ["python3", "-c",
            "import sys; from twilio.request_validator import RequestValidator as V; import json; "
            + "print(V(sys.argv[1]).compute_signature(sys.argv[2], json.loads(sys.argv[3])), end='')",
            other, publicBaseURL + "/webhooks/sms/inbound", JSONWriter.encodeString(.object(paramsJSON))])
        XCTAssertEqual(status, 0)
        XCTAssertEqual(try postWebhook("inbound", params, signature: forged).status, 403)

        // A status callback needs a signature too.
        XCTAssertEqual(try postWebhook("status", [("MessageSid", "SM00000000000000000000000000000000"), ("MessageStatus", "delivered")],
                                       signature: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=").status, 403)

        XCTAssertEqual(try storedEvents().count, 0, "nothing may be stored from an unsigned or forged webhook")
        XCTAssertTrue(daemon.logText.contains("X-Twilio-Signature"), "refusals are logged")

        // A query string is part of the signed URL: signed without it, refused; signed with it, accepted.
        let query = "tenant=acme&note=a%20b"
        XCTAssertEqual(try postWebhook("inbound", params, query: query, signedURL: publicBaseURL + "/webhooks/sms/inbound").status, 403)
        XCTAssertEqual(try storedEvents().count, 0)
        XCTAssertEqual(try postWebhook("inbound", params, query: query).status, 200)
        _ = try event { $0["type"]?.stringValue == "message" }

        // The genuine webhook is a duplicate of that one now: acknowledged, stored once.
        XCTAssertEqual(try postWebhook("inbound", params).status, 200)
        XCTAssertEqual(try storedEvents(types: ["message"]).count, 1)
    }

    func testMalformedWebhooksGetClearErrorsAndLoseNothing() throws {
        try startDaemon()
        // Not form-encoded.
        let json = try postWebhook("inbound", [], sign: false, body: Array("{\"From\":\"+1\"}".utf8), contentType: "application/json")
        XCTAssertEqual(json.status, 415)
        XCTAssertTrue(json.body.contains("application/x-www-form-urlencoded"), json.body)

        // A broken percent-escape.
        let broken = try postWebhook("inbound", [], sign: false, body: Array("From=%2B1415&Body=100%ZZ".utf8))
        XCTAssertEqual(broken.status, 400)
        XCTAssertTrue(broken.body.contains("percent-escape"), broken.body)

        // Correctly signed, but missing From.
        var noFrom = try SMSTestSupport.fixture("inbound_sms")
        noFrom.removeAll { $0.0 == "From" }
        let missing = try postWebhook("inbound", noFrom)
        XCTAssertEqual(missing.status, 400)
        XCTAssertTrue(missing.body.contains("From is required"), missing.body)

        // NumMedia promising media that is not there.
        var badMedia = try SMSTestSupport.fixture("inbound_sms")
        badMedia[badMedia.firstIndex { $0.0 == "NumMedia" }!].1 = "2"
        let media = try postWebhook("inbound", badMedia)
        XCTAssertEqual(media.status, 400)
        XCTAssertTrue(media.body.contains("MediaUrl0 is missing"), media.body)

        // A status callback without MessageStatus.
        let noStatus = try postWebhook("status", [("MessageSid", "SM00000000000000000000000000000000")])
        XCTAssertEqual(noStatus.status, 400)
        XCTAssertTrue(noStatus.body.contains("MessageStatus is required"), noStatus.body)

        XCTAssertEqual(try storedEvents().count, 0)

        // Nothing lost: the well-formed webhook is accepted, with '+' and %-escapes decoded.
        var params = try SMSTestSupport.fixture("inbound_sms")
        params[params.firstIndex { $0.0 == "Body" }!].1 = "1+1 = 2 & 100% sure 😀"
        XCTAssertEqual(try postWebhook("inbound", params).status, 200)
        let ev = try event { $0["type"]?.stringValue == "message" }
        XCTAssertEqual(ev["parts"]?.first?["text"]?.stringValue, "1+1 = 2 & 100% sure 😀")
    }

    func testStatusCallbacksBecomeStatusEvents() throws {
        try startDaemon()
        let sent = try sendAndWait(textMessage("Your order has shipped"))
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "sent", "\(sent)")
        let sid = try XCTUnwrap(sent["status"]?["channel_message_id"]?.stringValue)
        XCTAssertTrue(sid.hasPrefix("SM"))
        let messageId = try XCTUnwrap(sent["status"]?["message_id"]?.stringValue)

        XCTAssertEqual(try fake.deliverStatuses(sid: sid, ["queued", "sent", "delivered"]), [200, 200, 200])
        let delivered = try event { $0["status"]?["state"]?.stringValue == "delivered" }
        XCTAssertEqual(delivered["status"]?["channel_message_id"]?.stringValue, sid)
        XCTAssertEqual(delivered["status"]?["message_id"]?.stringValue, messageId, "the daemon links the status to the send")
        XCTAssertEqual(delivered["conversation_id"]?.stringValue, sent["conversation_id"]?.stringValue)

        // A repeated callback is acknowledged and stored once.
        XCTAssertEqual(try fake.deliverStatuses(sid: sid, ["delivered"]), [200])

        // Undelivered with Twilio's error code.
        let second = try sendAndWait(textMessage("Are you there?"))
        let sid2 = try XCTUnwrap(second["status"]?["channel_message_id"]?.stringValue)
        XCTAssertEqual(try fake.deliverStatuses(sid: sid2, ["sent", ["status": "undelivered", "error_code": "30003"]]), [200, 200])
        let failed = try event { $0["status"]?["channel_message_id"]?.stringValue == sid2 && $0["status"]?["state"]?.stringValue == "failed" }
        XCTAssertEqual(failed["status"]?["error"]?["code"]?.stringValue, "30003")
        XCTAssertEqual(failed["status"]?["error"]?["message"]?.stringValue, "Unreachable destination handset")
        XCTAssertEqual(failed["status"]?["error"]?["title"]?.stringValue, "undelivered")

        // Failed with a code.
        let third = try sendAndWait(textMessage("Last try"))
        let sid3 = try XCTUnwrap(third["status"]?["channel_message_id"]?.stringValue)
        XCTAssertEqual(try fake.deliverStatuses(sid: sid3, [["status": "failed", "error_code": "30008"]]), [200])
        let failed3 = try event { $0["status"]?["channel_message_id"]?.stringValue == sid3 && $0["status"]?["state"]?.stringValue == "failed" }
        XCTAssertEqual(failed3["status"]?["error"]?["code"]?.stringValue, "30008")

        let stored = try storedEvents(types: ["status"]).filter { $0["status"]?["channel_message_id"]?.stringValue == sid }
        XCTAssertEqual(stored.filter { $0["status"]?["state"]?.stringValue == "delivered" }.count, 1, "the repeated delivered callback is stored once")
        // The carrier's "sent" callback repeats what chorusd recorded when Twilio accepted the message: one "sent" per message.
        XCTAssertEqual(stored.filter { $0["status"]?["state"]?.stringValue == "sent" }.count, 1, "one sent status per message")
    }
}
