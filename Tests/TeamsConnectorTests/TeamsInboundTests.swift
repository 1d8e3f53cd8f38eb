import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// Inbound: Microsoft's documented activities, authenticated with JWTs minted by PyJWT against the fake's
/// OpenID metadata and JWKS, through the real chorusd with the Teams plugin.
final class TeamsInboundTests: TeamsTestCase {
    func part(_ ev: JSONValue, _ i: Int = 0) -> JSONValue { ev["parts"]?.arrayValue?[ok: i] ?? .null }

    func testDocumentedActivitiesBecomeNormalizedEvents() throws {
        let fake = try FakeBotFramework()
        let d = try startDaemon(fake, prefix: "teams-in")
        defer { d.stop() }
        let c = try subscribe(d)
        let token = try fake.mint()

        let names = ["message", "message_reply", "conversation_update_members_added", "message_reaction_added", "message_reaction_removed",
                     "message_update", "message_delete", "submit_action", "invoke_adaptive_card_action", "installation_update"]
        for name in names {
            let r = try post(d, try TeamsTestSupport.fixture(name, serviceURL: fake.serviceURL), token: token)
            XCTAssertEqual(r.status, 200, "\(name): \(r.body)")
            if name.hasPrefix("invoke") { XCTAssertEqual(try JSONParser.parse(r.body), ["status": 200], "an invoke is answered with its status") }
        }
        let evs = try events(c, count: names.count)
        var by: [String: JSONValue] = [:]
        for (i, name) in names.enumerated() { by[name] = evs[i] }

        let chan = "19:253b1f341670408fb6fe51050b6e5ceb@thread.skype;messageid=1493234571416"
        let msg = try XCTUnwrap(by["message"])
        XCTAssertEqual(msg["type"], "message")
        XCTAssertEqual(msg["channel"], "teams")
        XCTAssertEqual(msg["channel_ids"]?["chat"]?.stringValue, chan)
        XCTAssertEqual(msg["channel_ids"]?["message"], "1493234571416")
        XCTAssertEqual(msg["channel_ids"]?["account"], "28:9ad6b1a6-4d5b-4f0e-9b1b-6b3a5a8f1f70")
        XCTAssertEqual(msg["sender"]?["name"], "Megan Bowen")
        XCTAssertEqual(msg["timestamp"], "2017-04-26T19:22:51.445Z")
        XCTAssertEqual(part(msg), ["type": "text", "text": "<at>Bot</at> Hello from Teams", "format": "plain"])
        XCTAssertEqual(msg["parts"]?.arrayValue?.count, 1, "the text/html copy of the text is not a second part")
        XCTAssertEqual(msg["context"]?["tenant"], "72f988bf-86f1-41af-91ab-2d7cd011db47")
        XCTAssertEqual(msg["context"]?["service_url"]?.stringValue, String(fake.serviceURL.dropLast()))

        let reply = try XCTUnwrap(by["message_reply"])
        XCTAssertEqual(reply["reply_to"]?["channel_message_id"], "1493234571416")
        XCTAssertEqual(reply["conversation_id"], msg["conversation_id"])
        XCTAssertEqual(part(reply, 1), ["type": "media", "kind": "image", "url": "https://us-api.asm.skype.com/v1/objects/0-wus-d1-1/views/imgo",
                                        "mime_type": "image/png", "file_name": "screenshot.png"])

        let joined = try XCTUnwrap(by["conversation_update_members_added"])
        XCTAssertEqual(joined["type"], "conversation")
        XCTAssertEqual(joined["conversation"]?["action"], "member_joined")
        XCTAssertEqual(joined["conversation"]?["event_type"], "teamMemberAdded")
        XCTAssertEqual(joined["conversation"]?["members"]?.arrayValue?.first?["id"]?.stringValue?.hasPrefix("29:1I9Is_Sx0OIy2rQ7Xz1lca"), true)
        XCTAssertNil(joined["parts"])

        let liked = try XCTUnwrap(by["message_reaction_added"])
        XCTAssertEqual(liked["type"], "reaction")
        XCTAssertEqual(liked["reaction"], ["emoji": "👍"])
        XCTAssertEqual(liked["target"]?["channel_message_id"], "1:19uJ8TZA1EZvkFUJWR1FvPdM3lIzr3sxnwZJ-4TAJ3xF")
        XCTAssertEqual(liked["context"]?["reaction_type"], "like")
        XCTAssertEqual(try XCTUnwrap(by["message_reaction_removed"])["reaction"], ["action": "remove", "emoji": "👍"])

        let edit = try XCTUnwrap(by["message_update"])
        XCTAssertEqual(edit["type"], "edit")
        XCTAssertEqual(edit["target"]?["channel_message_id"], "1610009437283")
        XCTAssertEqual(part(edit)["text"], "Edited message")
        let del = try XCTUnwrap(by["message_delete"])
        XCTAssertEqual(del["type"], "delete")
        XCTAssertEqual(del["target"]?["channel_message_id"], "1610009437999")
        XCTAssertNil(del["parts"])

        let submit = try XCTUnwrap(by["submit_action"])
        XCTAssertEqual(part(submit)["type"], "interactive_reply")
        XCTAssertEqual(part(submit)["choice_id"], "yes")
        XCTAssertEqual(part(submit)["title"], "Yes")
        XCTAssertEqual(part(submit)["kind"], "card_action")
        XCTAssertEqual(submit["reply_to"]?["channel_message_id"], "1610011000000")

        let invoke = try XCTUnwrap(by["invoke_adaptive_card_action"])
        XCTAssertEqual(part(invoke)["type"], "interactive_reply")
        XCTAssertEqual(part(invoke)["choice_id"], "approve")
        XCTAssertEqual(part(invoke)["kind"], "callback")
        XCTAssertEqual(invoke["context"]?["invoke_name"], "adaptiveCard/action")

        let unknown = try XCTUnwrap(by["installation_update"])
        XCTAssertEqual(unknown["type"], "message")
        XCTAssertEqual(part(unknown)["type"], "unsupported")
        XCTAssertEqual(part(unknown)["channel_type"], "installationUpdate")

        // A redelivery (same activity id) is stored once.
        XCTAssertEqual(try post(d, try TeamsTestSupport.fixture("message", serviceURL: fake.serviceURL), token: token).status, 200)
        let stored = try EventWait.replayAll(c, types: ["message"]).filter { $0["channel_ids"]?["message"]?.stringValue == "1493234571416" }
        XCTAssertEqual(stored.count, 1, "the redelivered message was not stored again")
        XCTAssertEqual(try fake.stats()["jwks_fetches"], 1, "the keys are cached")
    }

    func testUnauthenticatedOrMalformedActivitiesAreRefusedAndNothingStored() throws {
        let fake = try FakeBotFramework()
        let d = try startDaemon(fake, prefix: "teams-auth")
        defer { d.stop() }
        let c = try subscribe(d)
        let body = try TeamsTestSupport.fixture("message", serviceURL: fake.serviceURL)
        let now = Int64(Date().timeIntervalSince1970)

        let refused: [(String, String?)] = [
            ("missing header", nil),
            ("not a JWT", "not-a-jwt"),
            ("wrong audience", try fake.mint(["aud": "00000000-0000-0000-0000-000000000000"])),
            ("wrong issuer", try fake.mint(["iss": "https://sts.windows.net/evil/"])),
            ("expired beyond the skew", try fake.mint(["exp": .int(now - 400), "nbf": .int(now - 4000)])),
            ("not yet valid", try fake.mint(["nbf": .int(now + 600)])),
            ("no expiry", try fake.mint(["exp": .null])),
            ("bad signature", try fake.mint(key: "rogue")),
            ("unknown kid", try fake.mint(kid: "no-such-key")),
            ("serviceUrl mismatch", try fake.mint(["serviceurl": "https://smba.evil.example/amer/"])),
            ("no serviceUrl claim", try fake.mint(["serviceurl": .null])),
        ]
        for (why, token) in refused {
            let r = try post(d, body, token: token)
            XCTAssertEqual(r.status, 403, "\(why): \(r.body)")
        }
        // A token that is fine but a body that is not an activity: 400.
        let good = try fake.mint()
        XCTAssertEqual(try post(d, "{\"type\": \"message\", ", token: good).status, 400)
        XCTAssertEqual(try post(d, "[1,2]", token: good).status, 400)
        XCTAssertEqual(try post(d, "{\"type\":\"message\",\"text\":\"hi\"}", token: good).status, 400, "no serviceUrl or conversation")
        // Expired within the 5-minute skew: accepted.
        let late = try post(d, body, token: try fake.mint(["exp": .int(now - 120)]))
        XCTAssertEqual(late.status, 200, late.body)
        let evs = try events(c, count: 1)
        XCTAssertEqual(evs[0]["channel_ids"]?["message"], "1493234571416", "the first event stored is the accepted one")
        let all = try EventWait.replayAll(c, types: nil)
        XCTAssertEqual(all.filter { $0["direction"]?.stringValue == "inbound" }.count, 1, "nothing refused was stored")
        XCTAssertFalse(d.logText.contains(FakeBotFramework.appPassword), "the app password is never logged")
    }

    func testUnreachableSigningKeysAskForARetry() throws {
        let fake = try FakeBotFramework()
        let d = try startDaemon(fake, prefix: "teams-nokeys", extra: [("openid_metadata_url", "\"\(fake.base)/no-such-metadata\"")])
        defer { d.stop() }
        let c = try subscribe(d)
        let r = try post(d, try TeamsTestSupport.fixture("message", serviceURL: fake.serviceURL), token: try fake.mint())
        XCTAssertEqual(r.status, 503, "without keys the activity cannot be checked: Bot Framework should retry")
        XCTAssertEqual(r.headers.first { $0.0.lowercased() == "retry-after" }?.1, "60")
        XCTAssertEqual(try EventWait.replayAll(c, types: nil).filter { $0["direction"]?.stringValue == "inbound" }.count, 0)
        XCTAssertEqual(try fake.stats()["jwks_fetches"], 0)
    }
}
