import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// Inbound: Slack's documented Events API and interactivity payloads, signed with slack_sdk, through the
/// real chorusd with the Slack plugin.
final class SlackInboundTests: SlackTestCase {
    func part(_ ev: JSONValue, _ i: Int = 0) -> JSONValue { ev["parts"]?.arrayValue?[safe: i] ?? .null }

    func testEveryDocumentedPayloadBecomesTheNormalizedEvent() throws {
        let fake = try FakeSlack()
        let d = try startDaemon(fake)
        defer { d.stop() }
        let c = try subscribe(d)

        // url_verification: answered with the challenge, nothing stored.
        let challenge = try postEvent(d, try SlackTestSupport.fixtureText("docs_url_verification"))
        XCTAssertEqual(challenge.status, 200)
        XCTAssertEqual(challenge.body, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")

        let names = ["docs_message_channels", "docs_message_im", "table_message_thread_reply", "docs_message_changed",
                     "docs_message_deleted", "docs_message_file_share", "docs_message_bot_message", "docs_message_channel_join",
                     "docs_reaction_added", "table_reaction_removed", "docs_channel_created"]
        for name in names {
            let r = try postEvent(d, try SlackTestSupport.fixtureText(name))
            XCTAssertEqual(r.status, 200, "\(name): \(r.body)")
        }
        let interaction = try postInteraction(d, payload: try SlackTestSupport.fixtureText("docs_block_actions"))
        XCTAssertEqual(interaction.status, 200, interaction.body)
        let evs = try events(c, count: names.count + 1)
        var by: [String: JSONValue] = [:]
        for (i, name) in (names + ["docs_block_actions"]).enumerated() { by[name] = evs[i] }

        // A channel message.
        let chan = try XCTUnwrap(by["docs_message_channels"])
        XCTAssertEqual(chan["type"], "message")
        XCTAssertEqual(chan["channel"], "slack")
        XCTAssertEqual(chan["channel_ids"]?["chat"], "C123ABC456")
        XCTAssertEqual(chan["channel_ids"]?["message"], "C123ABC456:1355517523.000005")
        XCTAssertEqual(chan["channel_ids"]?["account"], "slack")
        XCTAssertEqual(chan["sender"]?["id"], "U123ABC456")
        XCTAssertEqual(chan["sender"]?["role"], "customer")
        XCTAssertEqual(chan["timestamp"], "2012-12-14T20:38:43.000Z")
        XCTAssertEqual(part(chan), ["type": "text", "text": "Hello world", "format": "markdown"])
        XCTAssertEqual(chan["context"]?["team"], "T123ABC456")
        XCTAssertEqual(chan["context"]?["event_id"], "Ev0CHANNELS1")
        XCTAssertEqual(chan["context"]?["channel_type"], "channel")

        // A DM: its chat is the D… channel id.
        let im = try XCTUnwrap(by["docs_message_im"])
        XCTAssertEqual(im["channel_ids"]?["chat"], "D123ABC456")
        XCTAssertEqual(im["context"]?["channel_type"], "im")
        XCTAssertEqual(part(im)["text"], "Hello hello can you hear me?")
        XCTAssertNotEqual(im["conversation_id"], chan["conversation_id"])

        // A thread reply: thread_id and reply_to name the parent; same conversation as the channel.
        let reply = try XCTUnwrap(by["table_message_thread_reply"])
        XCTAssertEqual(reply["thread_id"], "1355517523.000005")
        XCTAssertEqual(reply["reply_to"]?["channel_message_id"], "C123ABC456:1355517523.000005")
        XCTAssertEqual(reply["channel_ids"]?["thread"], "1355517523.000005")
        XCTAssertEqual(reply["conversation_id"], chan["conversation_id"])

        // Edited and deleted messages.
        let edit = try XCTUnwrap(by["docs_message_changed"])
        XCTAssertEqual(edit["type"], "edit")
        XCTAssertEqual(edit["target"]?["channel_message_id"], "C123ABC456:1355517523.000005")
        XCTAssertEqual(part(edit)["text"], "Hello, world!")
        XCTAssertEqual(edit["sender"]?["id"], "U123ABC456")
        XCTAssertEqual(edit["timestamp"], "2013-01-22T18:19:15.000Z")
        let del = try XCTUnwrap(by["docs_message_deleted"])
        XCTAssertEqual(del["type"], "delete")
        XCTAssertEqual(del["target"]?["channel_message_id"], "C123ABC456:1358878749.000002")
        XCTAssertNil(del["parts"])

        // A file share: the text and the file as a media part.
        let file = try XCTUnwrap(by["docs_message_file_share"])
        XCTAssertEqual(file["channel_ids"]?["chat"], "D0L4B9P0Q")
        XCTAssertEqual(part(file, 0)["text"], "We got one!")
        let media = part(file, 1)
        XCTAssertEqual(media["type"], "media")
        XCTAssertEqual(media["kind"], "image")
        XCTAssertEqual(media["url"], "https://files.slack.com/files-pri/T061EG9R6-F0RDC39U1/ghostrap.png")
        XCTAssertEqual(media["channel_media_id"], "F0RDC39U1")
        XCTAssertEqual(media["mime_type"], "image/png")
        XCTAssertEqual(media["file_name"], "ghostrap.png")
        XCTAssertEqual(media["size"], 196920)
        XCTAssertEqual(media["width"], 512)

        // A bot's message.
        let bot = try XCTUnwrap(by["docs_message_bot_message"])
        XCTAssertEqual(bot["sender"]?["id"], "BB12033")
        XCTAssertEqual(bot["sender"]?["role"], "bot")
        XCTAssertEqual(bot["sender"]?["is_bot"], true)
        XCTAssertEqual(bot["sender"]?["name"], "github")
        XCTAssertEqual(part(bot)["text"], "Pushing is the answer")

        // A subtype Chorus does not model: kept as unsupported, with the text as its description.
        let join = try XCTUnwrap(by["docs_message_channel_join"])
        XCTAssertEqual(part(join), ["type": "unsupported", "channel_type": "channel_join",
                                    "description": "<@U2147483828|cal> has joined the channel"])
        XCTAssertEqual(join["channel_ids"]?["chat"], "C123ABC456")

        // Reactions added and removed.
        let added = try XCTUnwrap(by["docs_reaction_added"])
        XCTAssertEqual(added["type"], "reaction")
        XCTAssertEqual(added["reaction"], ["emoji": "👍"])
        XCTAssertEqual(added["target"]?["channel_message_id"], "C123ABC456:1360782400.498405")
        XCTAssertEqual(added["sender"]?["id"], "U123ABC456")
        XCTAssertEqual(added["context"]?["reaction_name"], "thumbsup")
        let removed = try XCTUnwrap(by["table_reaction_removed"])
        XCTAssertEqual(removed["reaction"], ["action": "remove", "emoji": "👍"])

        // An event type Chorus does not model.
        let created = try XCTUnwrap(by["docs_channel_created"])
        XCTAssertEqual(part(created)["channel_type"], "channel_created")
        XCTAssertEqual(created["channel_ids"]?["chat"], "C024BE91L")

        // A button click (block_actions).
        let click = try XCTUnwrap(by["docs_block_actions"])
        XCTAssertEqual(click["type"], "message")
        XCTAssertEqual(click["channel_ids"]?["chat"], "CBR2V3XEX")
        XCTAssertEqual(click["sender"]?["id"], "UA8RXUSPL")
        XCTAssertEqual(part(click), ["type": "interactive_reply", "choice_id": "click_me_123", "kind": "button", "title": "View", "payload": "WaXA"])
        XCTAssertEqual(click["reply_to"]?["channel_message_id"], "CBR2V3XEX:1548261231.000200")
        XCTAssertEqual(click["context"]?["trigger_id"], "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3")

        // An app_mention and the message.channels delivery of the same message (different event_ids): stored once.
        XCTAssertEqual(try postEvent(d, try SlackTestSupport.fixtureText("docs_app_mention")).status, 200)
        let mention = try events(c, count: 1)[0]
        XCTAssertEqual(mention["channel_ids"]?["message"], "C0LAN2Q65:1515449522.000016")
        XCTAssertEqual(part(mention)["text"], "What is the hour of the pearl, <@U0LAN0Z89>?")
        XCTAssertEqual(mention["timestamp"], "2018-01-08T22:12:02.000Z")
        XCTAssertEqual(try postEvent(d, try SlackTestSupport.fixtureText("table_message_mention_copy")).status, 200)
        let stored = try replayAll(c, types: ["message"])
        XCTAssertEqual(stored.filter { $0["channel_ids"]?["message"]?.stringValue == "C0LAN2Q65:1515449522.000016" }.count, 1)

        XCTAssertEqual(try fake.requests().count, 0, "inbound traffic calls no Web API")
        XCTAssertFalse(d.logText.contains(SlackTestSupport.signingSecret), "the signing secret must never be logged")
        XCTAssertFalse(d.logText.contains(fake.token), "the bot token must never be logged")
    }

    func testSignaturesTimestampsMalformedBodiesRetriesAndUnknownTypes() throws {
        let fake = try FakeSlack()
        let d = try startDaemon(fake, prefix: "slack-sig")
        defer { d.stop() }
        let c = try subscribe(d)
        let body = try SlackTestSupport.fixtureText("docs_message_channels")
        let path = "/webhooks/slack/events"
        func raw(_ headers: [(String, String)], _ text: String = body) throws -> HTTPTestResponse {
            try HTTPTestClient.request(port: d.httpPort, method: "POST", path: path, headers: [("Content-Type", "application/json")] + headers,
                                       body: Array(text.utf8))
        }
        let now = SlackTestSupport.now()
        let good = try SlackTestSupport.headers(body, timestamp: now)
        let goodSig = good.first { $0.0 == "X-Slack-Signature" }!.1

        // No signature, a wrong one, one for another body, one made with another secret, a mangled one.
        XCTAssertEqual(try raw([]).status, 401)
        XCTAssertEqual(try raw([("X-Slack-Request-Timestamp", String(now))]).status, 401)
        XCTAssertEqual(try raw([("X-Slack-Request-Timestamp", String(now)), ("X-Slack-Signature", "v0=" + String(repeating: "0", count: 64))]).status, 401)
        XCTAssertEqual(try raw(good, body + " ").status, 401, "a signature covers the exact body")
        let otherSecret = try SlackTestSupport.sign([(now, body)], secret: "another-signing-secret")[0]
        XCTAssertEqual(try raw([("X-Slack-Request-Timestamp", String(now)), ("X-Slack-Signature", otherSecret)]).status, 401)
        XCTAssertEqual(try raw([("X-Slack-Request-Timestamp", String(now)), ("X-Slack-Signature", String(goodSig.dropLast()))]).status, 401)
        XCTAssertEqual(try raw([("X-Slack-Request-Timestamp", String(now + 1)), ("X-Slack-Signature", goodSig)]).status, 401,
                       "the timestamp is part of the signed text")

        // Replayed (old) and future timestamps, correctly signed by slack_sdk, are refused; 4 minutes old is fine.
        XCTAssertEqual(try postEvent(d, body, timestamp: now - 301).status, 401)
        XCTAssertEqual(try postEvent(d, body, timestamp: now - 3600).status, 401)
        XCTAssertEqual(try postEvent(d, body, timestamp: now + 400).status, 401)
        XCTAssertEqual(try raw([("X-Slack-Request-Timestamp", "yesterday"), ("X-Slack-Signature", goodSig)]).status, 401)

        // Malformed bodies, correctly signed, are refused with 400.
        for bad in ["{not json", "[1,2]", "{}", #"{"type":"event_callback","event":{"type":"message"}}"#,
                    #"{"type":"event_callback","event_id":"Ev1","event":"text"}"#, #"{"type":"url_verification"}"#] {
            XCTAssertEqual(try postEvent(d, bad).status, 400, bad)
        }
        let noPayload = "foo=bar"
        let formHeaders = try SlackTestSupport.headers(noPayload, contentType: "application/x-www-form-urlencoded")
        XCTAssertEqual(try HTTPTestClient.request(port: d.httpPort, method: "POST", path: "/webhooks/slack/interactivity",
                                                  headers: formHeaders, body: Array(noPayload.utf8)).status, 400)
        XCTAssertEqual(try postInteraction(d, payload: "{broken").status, 400)
        XCTAssertEqual(try stats(c)["events"]?["accepted"]?.intValue, 0, "nothing may be stored from refused requests")

        // The good request is stored and answered well within Slack's 3 s; Slack's redeliveries (X-Slack-Retry-Num)
        // of the same event are answered 200 and stored once.
        let signed = try SlackTestSupport.headers(body)
        let started = Date()
        XCTAssertEqual(try raw(signed.filter { $0.0 != "Content-Type" }).status, 200)
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.0, "committed and answered well within 3 s")
        XCTAssertEqual(try postEvent(d, body, retry: 1).status, 200)
        XCTAssertEqual(try postEvent(d, body, retry: 2).status, 200)
        let first = try events(c, count: 1)[0]
        XCTAssertEqual(first["channel_ids"]?["message"], "C123ABC456:1355517523.000005")
        // The same for an event without a message id of its own (a reaction): deduplicated on its event_id.
        let reaction = try SlackTestSupport.fixtureText("docs_reaction_added")
        XCTAssertEqual(try postEvent(d, reaction).status, 200)
        XCTAssertEqual(try postEvent(d, reaction, retry: 1).status, 200)
        XCTAssertEqual(try events(c, count: 1)[0]["type"], "reaction")

        // A made-up event type and a made-up message subtype: stored as unsupported, never dropped.
        let unknown = #"{"type":"event_callback","team_id":"T123ABC456","event_id":"Ev0UNKNOWN01","event_time":1700000000,"event":{"type":"brand_new_event","user":"U777","channel":"C0NEW00001"}}"#
        XCTAssertEqual(try postEvent(d, unknown).status, 200)
        let unk = try events(c, count: 1)[0]
        XCTAssertEqual(unk["parts"]?.arrayValue?.first?["channel_type"], "brand_new_event")
        XCTAssertEqual(unk["channel_ids"]?["chat"], "C0NEW00001")
        XCTAssertEqual(unk["sender"]?["id"], "U777")
        let subtype = #"{"type":"event_callback","team_id":"T123ABC456","event_id":"Ev0UNKNOWN02","event":{"type":"message","subtype":"huddle_thread","channel":"C0NEW00001","ts":"1700000001.000100"}}"#
        XCTAssertEqual(try postEvent(d, subtype).status, 200)
        XCTAssertEqual(try events(c, count: 1)[0]["parts"]?.arrayValue?.first?["channel_type"], "huddle_thread")
        // An event outside any channel falls back to the team as its chat.
        let teamEvent = #"{"type":"event_callback","team_id":"T123ABC456","event_id":"Ev0UNKNOWN03","event":{"type":"team_rename","name":"New name"}}"#
        XCTAssertEqual(try postEvent(d, teamEvent).status, 200)
        XCTAssertEqual(try events(c, count: 1)[0]["channel_ids"]?["chat"], "team:T123ABC456")
        // An envelope type without an event (app_rate_limited) is acknowledged, not stored.
        XCTAssertEqual(try postEvent(d, #"{"token":"x","type":"app_rate_limited","team_id":"T123ABC456","minute_rate_limited":1518467820,"api_app_id":"A123ABC456"}"#).status, 200)

        let stored = try replayAll(c, types: ["message"])
        XCTAssertEqual(stored.count, 4, "the redelivered event is stored once; the acknowledged envelope not at all")
        XCTAssertEqual(try replayAll(c, types: ["reaction"]).count, 1)
        XCTAssertFalse(d.logText.contains(SlackTestSupport.signingSecret), "the signing secret must never be logged")
        XCTAssertFalse(d.logText.contains(fake.token), "the bot token must never be logged")
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
