import ChorusClient
import ChorusConformance
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// The Instagram plugin end to end: the same messaging code as Messenger, on the `instagram` webhook object and channel.
final class InstagramConnectorTests: XCTestCase {
    func testDocumentedInstagramEventsBecomeNormalizedEvents() throws {
        let ig = try MessengerDaemon(channel: "instagram", extraSettings: "media_prefetch = false")
        defer { ig.stop() }
        func one(_ fixture: String) throws -> JSONValue {
            XCTAssertEqual(try ig.post(fixture: fixture), 200, fixture)
            return try ig.events(1)[0]
        }
        let igsid = MessengerFixtures.igsid, account = MessengerFixtures.instagramId

        let text = try one("text")
        XCTAssertEqual(text["channel"]?.stringValue, "instagram")
        XCTAssertEqual(text["type"]?.stringValue, "message")
        XCTAssertEqual(text["channel_ids"]?["chat"]?.stringValue, igsid)
        XCTAssertEqual(text["channel_ids"]?["account"]?.stringValue, account)
        XCTAssertTrue(text["channel_ids"]?["message"]?.stringValue?.hasPrefix("aWdfZAG1") ?? false)
        XCTAssertEqual(text["sender"]?["id"]?.stringValue, igsid)
        XCTAssertEqual(text["timestamp"]?.stringValue, "2019-09-23T18:14:45.349Z")
        XCTAssertEqual(text["parts"]?.arrayValue?.first?["text"]?.stringValue, "Do you ship to Lisbon?")

        let media = try XCTUnwrap(try one("attachments")["parts"]?.arrayValue)
        XCTAssertEqual(media.map { $0["kind"]?.stringValue ?? "" }, ["image", "video"])
        XCTAssertTrue(media[0]["url"]?.stringValue?.hasPrefix("https://lookaside.fbsbx.com/ig_messaging_cdn/") ?? false)

        let qr = try XCTUnwrap(try one("quick_reply")["parts"]?.arrayValue?.first)
        XCTAssertEqual(qr["kind"]?.stringValue, "quick_reply")
        XCTAssertEqual(qr["choice_id"]?.stringValue, "CONFIRM_ORDER")
        XCTAssertEqual(try one("reply_to")["reply_to"]?["channel_message_id"]?.stringValue, "aWdfIG-ORIGINAL")
        XCTAssertEqual(try one("story_reply")["context"]?["reply_to_story"]?["id"]?.stringValue, "17920000000000000")

        let deleted = try one("deleted")
        XCTAssertEqual(deleted["type"]?.stringValue, "delete")
        XCTAssertEqual(deleted["target"]?["channel_message_id"]?.stringValue, "aWdfIG-DELETED")

        let unsupported = try XCTUnwrap(try one("unsupported")["parts"]?.arrayValue?.first)
        XCTAssertEqual(unsupported["type"]?.stringValue, "unsupported")

        let reaction = try one("reaction")
        XCTAssertEqual(reaction["type"]?.stringValue, "reaction")
        XCTAssertEqual(reaction["reaction"]?["emoji"]?.stringValue, "❤️")
        XCTAssertEqual(try one("unreaction")["reaction"]?["action"]?.stringValue, "remove")

        let postback = try XCTUnwrap(try one("postback")["parts"]?.arrayValue?.first)
        XCTAssertEqual(postback["kind"]?.stringValue, "postback")
        XCTAssertEqual(postback["choice_id"]?.stringValue, "TRACK_ORDER")
        XCTAssertEqual(postback["title"]?.stringValue, "Track my order")

        let referral = try one("referral")
        XCTAssertEqual(referral["parts"]?.arrayValue?.first?["channel_type"]?.stringValue, "referral")
        XCTAssertEqual(referral["context"]?["referral"]?["ref"]?.stringValue, "spring_sale")

        // messaging_seen of a message this instance did not send: a read event naming it.
        let seen = try one("seen")
        XCTAssertEqual(seen["type"]?.stringValue, "read")
        XCTAssertEqual(seen["read"]?["up_to_channel_message_id"]?.stringValue, "aWdfIG-SEEN")

        let echo = try one("echo")
        XCTAssertEqual(echo["direction"]?.stringValue, "outbound")
        XCTAssertEqual(echo["channel_ids"]?["chat"]?.stringValue, igsid)
        XCTAssertEqual(echo["sender"]?["id"]?.stringValue, account)
        XCTAssertEqual(echo["conversation_id"]?.stringValue, text["conversation_id"]?.stringValue)

        // A Messenger webhook on an Instagram instance, and a bad signature, store nothing.
        XCTAssertEqual(try ig.webhook(try MessengerFixtures.raw("messenger", "text_reply")).status, 400)
        XCTAssertEqual(try ig.webhook(try MessengerFixtures.raw("instagram", "text"), signature: "sha256=" + String(repeating: "a", count: 64)).status, 401)
        XCTAssertTrue(ig.quiet(forMs: 400))
        ig.assertSchemaValid()
    }

    func testSendThenSeenMarksEveryMessageUpToTheOneSeenAsRead() throws {
        let ig = try MessengerDaemon(channel: "instagram", extraSettings: "media_prefetch = false")
        defer { ig.stop() }
        let conv = try ig.openWindow(mid: "aWdfIG-HELLO")
        let first = try ig.send(["conversation_id": .string(conv), "parts": [["type": "text", "text": "Yes, we ship to Lisbon."]]])
        let mid1 = try XCTUnwrap(try ig.outcome(of: first)["status"]?["channel_message_id"]?.stringValue)
        let second = try ig.send(["conversation_id": .string(conv), "parts": [
            ["type": "text", "text": "Pick a delivery option"],
            ["type": "interactive", "style": "quick_replies", "buttons": [["id": "STD", "title": "Standard"], ["id": "EXP", "title": "Express"]]]]])
        let mid2 = try XCTUnwrap(try ig.outcome(of: second)["status"]?["channel_message_id"]?.stringValue)
        let calls = try ig.graph.waitForSends(2)
        XCTAssertEqual(calls[0]["path"]?.stringValue, "/v21.0/\(MessengerFixtures.instagramId)/messages")
        XCTAssertEqual(calls[0]["json"]?["recipient"]?["id"]?.stringValue, MessengerFixtures.igsid)
        XCTAssertEqual(calls[1]["json"]?["message"]?["quick_replies"]?.arrayValue?.count, 2)
        for c in calls { XCTAssertEqual(c["errors"]?.arrayValue?.count, 0, "\(c)") }

        // Instagram's messaging_seen names the last message seen: it and everything sent before it are read.
        let seen: JSONValue = ["sender": ["id": .string(MessengerFixtures.igsid)], "recipient": ["id": .string(MessengerFixtures.instagramId)],
                               "timestamp": .int(MessengerFixtures.nowMs), "read": ["mid": .string(mid2)]]
        XCTAssertEqual(try ig.webhook(MessengerFixtures.webhook("instagram", item: seen)).status, 200)
        let reads = try ig.events(2)
        XCTAssertEqual(reads.map { $0["status"]?["state"]?.stringValue ?? "" }, ["read", "read"])
        XCTAssertEqual(Set(reads.compactMap { $0["status"]?["channel_message_id"]?.stringValue }), [mid1, mid2])
        XCTAssertEqual(Set(reads.compactMap { $0["status"]?["message_id"]?.stringValue }), [first, second])
        XCTAssertEqual(Set(reads.compactMap { $0["channel"]?.stringValue }), ["instagram"])

        // What Instagram cannot show is refused before any call: files, other templates, other tags than HUMAN_AGENT.
        for (message, code) in [
            (["parts": [["type": "media", "kind": "file", "url": "https://files.example/a.pdf"]]] as JSONValue, "unsupported_media"),
            (["parts": [["type": "template", "name": "receipt", "language": "en"]]] as JSONValue, "unsupported_template"),
            (["parts": [["type": "text", "text": "update"]], "options": ["tag": "ACCOUNT_UPDATE"]] as JSONValue, "invalid_tag"),
        ] {
            var m = message.objectValue!
            m["conversation_id"] = .string(conv)
            let out = try ig.outcome(of: try ig.send(.object(m)))
            XCTAssertEqual(out["status"]?["error"]?["code"]?.stringValue, code, "\(out)")
        }
        XCTAssertEqual(try ig.graph.sends().count, 2)
        ig.assertSchemaValid()
    }

    func testMessengerAndInstagramPluginsRunSideBySideInOneDaemon() throws {
        try requireInstagramPlugin()
        let graph = try FakeMessengerGraph(ids: [MessengerFixtures.pageId, MessengerFixtures.instagramId])
        defer { graph.stop() }
        let common = """
        app_secret = "\(MessengerFixtures.appSecret)"
        verify_token = "\(MessengerFixtures.verifyToken)"
        access_token = "\(graph.token)"
        api_base_url = "\(graph.baseURL)"
        media_prefetch = false
        """
        let daemon = try TestDaemon(instancesTOML: """
        [[instance]]
        name = "fb"
        plugin = "messenger"
        [instance.settings]
        page_id = "\(MessengerFixtures.pageId)"
        \(common)

        [[instance]]
        name = "ig"
        plugin = "instagram"
        [instance.settings]
        instagram_account_id = "\(MessengerFixtures.instagramId)"
        \(common)
        """)
        try daemon.start()
        defer { daemon.stop() }
        let connection = try ChorusConnection(path: daemon.socketPath, timeoutMilliseconds: 10_000)
        defer { connection.close() }
        _ = try connection.request(.subscribe(name: nil, filter: nil, from: .now))
        for (instance, body) in [("fb", MessengerFixtures.messengerText(mid: "m_SIDE-BY-SIDE", text: "from Messenger")),
                                 ("ig", MessengerFixtures.instagramText(mid: "aWdfSIDE-BY-SIDE", text: "from Instagram"))] {
            let r = try HTTPTestClient.request(port: daemon.httpPort, method: "POST", path: "/webhooks/\(instance)",
                                               headers: [("Content-Type", "application/json"), ("X-Hub-Signature-256", try MessengerFixtures.signature(body))], body: body)
            XCTAssertEqual(r.status, 200, r.body)
        }
        var channels: [String: String] = [:]
        while channels.count < 2 {
            guard case .event(_, _, let ev) = try connection.nextMessage(timeoutMilliseconds: 10_000) else { continue }
            channels[ev["instance"]?.stringValue ?? "?"] = ev["channel"]?.stringValue
        }
        XCTAssertEqual(channels, ["fb": "messenger", "ig": "instagram"], "each library answers for its own channel")
    }

    func testConformanceAndSettings() throws {
        try requireInstagramPlugin()
        let plugin = try XCTUnwrap(ConformanceKit.builtPlugin(product: "chorus-instagram"), "build libchorus-instagram.so first")
        let base: [(String, String)] = [("app_secret", "s"), ("verify_token", "v"), ("access_token", "t"),
                                        ("instagram_account_id", MessengerFixtures.instagramId), ("api_base_url", "http://127.0.0.1:9")]
        let results = ConformanceKit.run(pluginPath: plugin, settings: base)
        XCTAssertFalse(results.isEmpty)
        for r in results { XCTAssertTrue(r.passed, r.description) }
        func createFails(_ settings: [(String, String)]) -> Bool {
            ConformanceKit.run(pluginPath: plugin, settings: settings).contains { $0.check == ConformanceKit.Check.create && !$0.passed }
        }
        XCTAssertTrue(createFails(base.filter { $0.0 != "instagram_account_id" }), "instagram_account_id is required")
        XCTAssertFalse(createFails(base + [("page_id", MessengerFixtures.pageId)]), "a page id (Facebook Login) is accepted")
        XCTAssertTrue(createFails(base + [("colour", "red")]))
    }
}
