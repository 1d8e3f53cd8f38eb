import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// End to end through the real chorusd: signed Messenger webhooks in (Meta's documented payloads), normalized events out on the socket.
final class MessengerInboundTests: XCTestCase {
    func testVerificationHandshake() throws {
        let fb = try MessengerDaemon(extraSettings: "media_prefetch = false")
        defer { fb.stop() }
        let ok = try fb.daemon.get("/webhooks/fb?hub.mode=subscribe&hub.verify_token=\(MessengerFixtures.verifyToken)&hub.challenge=1158201444")
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(ok.body, "1158201444")
        XCTAssertEqual(try fb.daemon.get("/webhooks/fb?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1").status, 403)
        XCTAssertEqual(try fb.daemon.get("/webhooks/fb?hub.mode=subscribe").status, 400)
    }

    func testDocumentedEventsBecomeNormalizedEvents() throws {
        let fb = try MessengerDaemon(extraSettings: "media_prefetch = false")
        defer { fb.stop() }
        func one(_ fixture: String) throws -> JSONValue {
            XCTAssertEqual(try fb.post(fixture: fixture), 200, fixture)
            return try fb.events(1)[0]
        }
        let page = MessengerFixtures.pageId, psid = MessengerFixtures.psid

        let qr = try one("text_quick_reply")
        XCTAssertEqual(qr["type"]?.stringValue, "message")
        XCTAssertEqual(qr["direction"]?.stringValue, "inbound")
        XCTAssertEqual(qr["channel"]?.stringValue, "messenger")
        XCTAssertEqual(qr["channel_ids"]?["message"]?.stringValue, "mid.1457764197618:41d102a3e1ae206a38")
        XCTAssertEqual(qr["channel_ids"]?["chat"]?.stringValue, psid)
        XCTAssertEqual(qr["channel_ids"]?["account"]?.stringValue, page)
        XCTAssertEqual(qr["sender"]?["id"]?.stringValue, psid)
        XCTAssertEqual(qr["sender"]?["role"]?.stringValue, "customer")
        XCTAssertEqual(qr["timestamp"]?.stringValue, "2016-03-23T00:25:52.478Z")
        let reply = try XCTUnwrap(qr["parts"]?.arrayValue?.first)
        XCTAssertEqual(reply["type"]?.stringValue, "interactive_reply")
        XCTAssertEqual(reply["kind"]?.stringValue, "quick_reply")
        XCTAssertEqual(reply["choice_id"]?.stringValue, "DEVELOPER_DEFINED_PAYLOAD")
        XCTAssertEqual(reply["payload"]?.stringValue, "DEVELOPER_DEFINED_PAYLOAD")
        XCTAssertEqual(reply["title"]?.stringValue, "hello, world!")

        let text = try one("text_reply")
        XCTAssertEqual(text["parts"]?.arrayValue?.first?["text"]?.stringValue, "hello, world!")
        XCTAssertEqual(text["reply_to"]?["channel_message_id"]?.stringValue, "m_1fTq8oLumEyIp3Q2MR-aY7IfLZDamVrALniheU")
        XCTAssertEqual(text["conversation_id"]?.stringValue, qr["conversation_id"]?.stringValue, "one chat, one conversation")

        let image = try XCTUnwrap(try one("attachment")["parts"]?.arrayValue?.first)
        XCTAssertEqual(image["type"]?.stringValue, "media")
        XCTAssertEqual(image["kind"]?.stringValue, "image")
        XCTAssertEqual(image["url"]?.stringValue, "https://scontent.xx.fbcdn.net/v/t1.15752-9/attachment.jpg")
        XCTAssertNil(image["ref"], "media_prefetch = false: no stored copy")

        let postback = try one("postback")
        XCTAssertEqual(postback["type"]?.stringValue, "message")
        XCTAssertEqual(postback["channel_ids"]?["message"]?.stringValue, "m_MESSAGE-ID")
        XCTAssertEqual(postback["timestamp"]?.stringValue, "2018-05-27T22:23:44.000Z", "second timestamps (the changes form) are read as seconds")
        let pb = try XCTUnwrap(postback["parts"]?.arrayValue?.first)
        XCTAssertEqual(pb["kind"]?.stringValue, "postback")
        XCTAssertEqual(pb["choice_id"]?.stringValue, "USER-DEFINED-PAYLOAD")
        XCTAssertEqual(pb["title"]?.stringValue, "TITLE-FOR-THE-CTA")
        XCTAssertEqual(postback["context"]?["referral"]?["type"]?.stringValue, "OPEN_THREAD")

        let reaction = try one("reaction")
        XCTAssertEqual(reaction["type"]?.stringValue, "reaction")
        XCTAssertEqual(reaction["reaction"]?["emoji"]?.stringValue, "❤️")
        XCTAssertEqual(reaction["target"]?["channel_message_id"]?.stringValue, "m_REACTED-TO-MESSAGE")
        let unreaction = try one("unreaction")
        XCTAssertEqual(unreaction["reaction"]?["action"]?.stringValue, "remove")
        XCTAssertEqual(unreaction["reaction"]?["emoji"]?.stringValue, "❤️", "the reaction name gives the emoji when Meta omits it")

        let edit = try one("edit")
        XCTAssertEqual(edit["type"]?.stringValue, "edit")
        XCTAssertEqual(edit["target"]?["channel_message_id"]?.stringValue, "m_EDITED-MESSAGE")
        XCTAssertEqual(edit["parts"]?.arrayValue?.first?["text"]?.stringValue, "hello, edited world!")

        let optin = try one("optin")
        let unsupported = try XCTUnwrap(optin["parts"]?.arrayValue?.first)
        XCTAssertEqual(unsupported["type"]?.stringValue, "unsupported")
        XCTAssertEqual(unsupported["channel_type"]?.stringValue, "optin")
        XCTAssertEqual(optin["context"]?["optin"]?["ref"]?.stringValue, "PASS_THROUGH_PARAM")

        // A read watermark covering nothing this instance sent is kept as a read event.
        let read = try one("read")
        XCTAssertEqual(read["type"]?.stringValue, "read")
        XCTAssertEqual(read["read"]?["watermark"]?.stringValue, "2016-03-22T17:47:36.253Z")
        // A delivery of a message the daemon never sent is still stored, in the customer's chat.
        let delivered = try one("delivery")
        XCTAssertEqual(delivered["type"]?.stringValue, "status")
        XCTAssertEqual(delivered["status"]?["state"]?.stringValue, "delivered")
        XCTAssertEqual(delivered["status"]?["channel_message_id"]?.stringValue, "mid.1458668856218:ed81099e15d3f4f233")
        // An echo of a message sent from the Page inbox: an outbound message in the customer's conversation.
        let echo = try one("echo")
        XCTAssertEqual(echo["type"]?.stringValue, "message")
        XCTAssertEqual(echo["direction"]?.stringValue, "outbound")
        XCTAssertEqual(echo["channel_ids"]?["chat"]?.stringValue, psid, "an echo belongs to the customer's chat")
        XCTAssertEqual(echo["sender"]?["id"]?.stringValue, page)
        XCTAssertEqual(echo["sender"]?["role"]?.stringValue, "business")
        XCTAssertEqual(echo["context"]?["echo"]?.boolValue, true)
        XCTAssertEqual(echo["context"]?["metadata"]?.stringValue, "DEVELOPER_DEFINED_METADATA_STRING")
        XCTAssertEqual(echo["conversation_id"]?.stringValue, qr["conversation_id"]?.stringValue)

        fb.assertSchemaValid()
    }

    func testBadSignaturesAndMalformedBodiesStoreNothing() throws {
        let fb = try MessengerDaemon(extraSettings: "media_prefetch = false")
        defer { fb.stop() }
        let body = try MessengerFixtures.raw("messenger", "text_reply")
        XCTAssertEqual(try fb.webhook(body, signature: .some(nil)).status, 401, "missing signature")
        XCTAssertEqual(try fb.webhook(body, signature: "sha256=" + String(repeating: "0", count: 64)).status, 401, "wrong signature")
        XCTAssertEqual(try fb.webhook(body, signature: try MessengerFixtures.signature(body, secret: "another-secret")).status, 401)
        XCTAssertEqual(try fb.webhook(body, signature: "sha1=abc").status, 401, "malformed header")
        var tampered = body
        tampered[tampered.count - 3] = UInt8(ascii: " ")
        XCTAssertEqual(try fb.webhook(tampered, signature: try MessengerFixtures.signature(body)).status, 401, "body changed after signing")
        XCTAssertEqual(try fb.webhook(Array("{\"object\": \"page\", \"entry\": [".utf8)).status, 400, "malformed JSON (signed)")
        XCTAssertEqual(try fb.webhook(try MessengerFixtures.raw("instagram", "text")).status, 400, "an Instagram webhook on a Messenger instance")
        // A webhook for another page of the same app is acknowledged and not taken.
        let otherPage: JSONValue = ["object": "page", "entry": [["id": "999000111222333", "time": 1458692752478, "messaging": [
            ["sender": ["id": .string(MessengerFixtures.psid)], "recipient": ["id": "999000111222333"], "timestamp": 1458692752478,
             "message": ["mid": "m_OTHER-PAGE", "text": "not for this instance"]]]]]]
        let other = try fb.webhook(JSONWriter.encode(otherPage))
        XCTAssertEqual(other.status, 200)
        XCTAssertTrue(other.body.contains("\"accepted\":0"), other.body)
        XCTAssertTrue(fb.quiet(forMs: 500), "nothing was stored: \(fb.received)")
        // The same body, signed right, goes through.
        XCTAssertEqual(try fb.webhook(body).status, 200)
        XCTAssertEqual(try fb.events(1)[0]["channel_ids"]?["message"]?.stringValue, "m_1457764197618:41d102a3e1ae206a38")
    }

    func testOneWebhookManyEntriesAndRedeliveriesProduceNoDuplicates() throws {
        let fb = try MessengerDaemon(extraSettings: "media_prefetch = false")
        defer { fb.stop() }
        let r = try fb.webhook(try MessengerFixtures.raw("messenger", "batch"))
        XCTAssertEqual(r.status, 200)
        XCTAssertTrue(r.body.contains("\"accepted\":3"), r.body)
        let events = try fb.events(3)
        XCTAssertEqual(events.compactMap { $0["channel_ids"]?["message"]?.stringValue }, ["m_BATCH-1", "m_BATCH-2", "m_BATCH-3"])
        XCTAssertEqual(Set(events.compactMap { $0["conversation_id"]?.stringValue }).count, 2, "two people, two conversations")
        // Meta retries the same webhook (for days): answered 200, nothing new stored.
        for _ in 0..<2 { XCTAssertEqual(try fb.webhook(try MessengerFixtures.raw("messenger", "batch")).status, 200) }
        for fixture in ["reaction", "edit", "postback"] {
            XCTAssertEqual(try fb.post(fixture: fixture), 200)
            XCTAssertEqual(try fb.post(fixture: fixture), 200)
        }
        XCTAssertEqual(try fb.events(3).compactMap { $0["type"]?.stringValue }, ["reaction", "edit", "message"])
        XCTAssertTrue(fb.quiet(forMs: 500), "a redelivered webhook was stored twice: \(fb.received.suffix(2))")
        fb.assertSchemaValid()
    }

    func testAttachmentsAreFetchedAfterTheCommitAndServedFromTheStore() throws {
        let fb = try MessengerDaemon()
        defer { fb.stop() }
        try fb.graph.admin("media", ["name": "cat.jpg", "mime_type": "image/jpeg", "data": "JPEG bytes of a lucky cat"])
        let item: JSONValue = ["sender": ["id": .string(MessengerFixtures.psid)], "recipient": ["id": .string(MessengerFixtures.pageId)],
                               "timestamp": .int(MessengerFixtures.nowMs),
                               "message": ["mid": "m_WITH-IMAGE", "attachments": [["type": "image", "payload": ["url": .string(fb.graph.baseURL + "/cdn/cat.jpg")]]]]]
        XCTAssertEqual(try fb.webhook(MessengerFixtures.webhook("messenger", item: item)).status, 200)
        let part = try XCTUnwrap(try fb.events(1)[0]["parts"]?.arrayValue?.first)
        XCTAssertEqual(part["url"]?.stringValue, fb.graph.baseURL + "/cdn/cat.jpg")
        let ref = try XCTUnwrap(part["ref"]?.stringValue)
        XCTAssertEqual(ref, "/webhooks/fb/media/m_WITH-IMAGE-0")
        // The prefetch stored the bytes: the reference still answers after the CDN forgot the file.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, try fb.graph.requests().filter({ $0["path"]?.stringValue == "/cdn/cat.jpg" }).isEmpty { usleep(20_000) }
        usleep(300_000)
        try fb.graph.admin("reset")
        let served = try fb.daemon.get(ref)
        XCTAssertEqual(served.status, 200)
        XCTAssertEqual(served.body, "JPEG bytes of a lucky cat")
        XCTAssertEqual(try fb.daemon.get("/webhooks/fb/media/unknown-key").status, 404)
    }
}
