import ChorusClient
import ChorusConformance
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// Outbound: sends through the real chorusd become the documented Web API calls on the fake, with exactly
/// one final status each, Retry-After honoured, and Slack's errors reported with their codes.
final class SlackOutboundTests: SlackTestCase {
    let chat = "C0CHAT0001"

    func message(to: String? = nil, _ parts: [JSONValue], extra: JSONObject = [:]) -> JSONValue {
        var m: JSONObject = ["instance": "slack", "to": .string(to ?? chat), "parts": .array(parts)]
        for (k, v) in extra { m[k] = v }
        return .object(m)
    }

    func other(_ type: String, _ extra: JSONObject, to: String? = nil) -> JSONValue {
        var m: JSONObject = ["instance": "slack", "to": .string(to ?? chat), "type": .string(type)]
        for (k, v) in extra { m[k] = v }
        return .object(m)
    }

    @discardableResult
    func assertSent(_ status: JSONValue, file: StaticString = #filePath, line: UInt = #line) -> String {
        XCTAssertEqual(status["status"]?["state"]?.stringValue, "sent", JSONWriter.encodeString(status), file: file, line: line)
        return status["status"]?["channel_message_id"]?.stringValue ?? ""
    }

    func last(_ fake: FakeSlack, _ method: String) throws -> JSONValue {
        let r = try XCTUnwrap(fake.requests(method).last, "no \(method) request")
        return r["params"] ?? .null
    }

    func testSendsBecomeTheDocumentedWebAPICalls() throws {
        let fake = try FakeSlack()
        let d = try startDaemon(fake, prefix: "slack-out")
        defer { d.stop() }
        let c = try subscribe(d)

        // Plain text: chat.postMessage with mrkdwn, as JSON with the bot token.
        let firstId = assertSent(try sendAndWait(c, message([["type": "text", "text": "*Hello* from Chorus", "format": "markdown"]])))
        let post = try XCTUnwrap(fake.requests("chat.postMessage").last)
        XCTAssertEqual(post["content_type"], "application/json")
        XCTAssertEqual(post["params"], ["channel": .string(chat), "text": "*Hello* from Chorus", "mrkdwn": true])
        let posted = try XCTUnwrap(SlackSplit(firstId))
        XCTAssertEqual(posted.channel, chat)
        XCTAssertTrue(try fake.messages().contains { $0["ts"]?.stringValue == posted.ts }, "the id is the ts Slack answered")

        // Text and buttons: a section and an actions block, each button's value its id; a threaded reply.
        let buttons = try sendAndWait(c, message([
            ["type": "text", "text": "Confirm the order?"],
            ["type": "interactive", "style": "buttons", "footer": "Order 1042",
             "buttons": [["id": "yes", "title": "Yes"], ["id": "no", "title": "No"]]],
        ], extra: ["reply_to": ["channel_message_id": .string(firstId)]]))
        assertSent(buttons)
        var p = try last(fake, "chat.postMessage")
        XCTAssertEqual(p["thread_ts"]?.stringValue, posted.ts)
        XCTAssertEqual(p["text"], "Confirm the order?\nOrder 1042")
        let blocks = try XCTUnwrap(p["blocks"]?.arrayValue)
        XCTAssertEqual(blocks.map { $0["type"]?.stringValue ?? "" }, ["section", "actions", "context"])
        XCTAssertEqual(blocks[0]["text"], ["type": "mrkdwn", "text": "Confirm the order?"])
        let els = try XCTUnwrap(blocks[1]["elements"]?.arrayValue)
        XCTAssertEqual(els.map { $0["value"]?.stringValue ?? "" }, ["yes", "no"])
        XCTAssertEqual(els.map { $0["action_id"]?.stringValue ?? "" }, ["yes", "no"])
        XCTAssertEqual(els[0]["text"]?["text"], "Yes")

        // A list becomes a static select menu; thread_id posts into that thread.
        assertSent(try sendAndWait(c, message([
            ["type": "interactive", "style": "list", "body": "Pick a size", "buttons": [["id": "menu", "title": "Sizes"]],
             "sections": [["title": "Sizes", "rows": [["id": "s", "title": "Small"], ["id": "l", "title": "Large", "description": "XL too"]]]]],
        ], extra: ["thread_id": .string(posted.ts)])))
        p = try last(fake, "chat.postMessage")
        XCTAssertEqual(p["thread_ts"]?.stringValue, posted.ts)
        let select = p["blocks"]?.arrayValue?.last?["elements"]?.arrayValue?.first
        XCTAssertEqual(select?["type"], "static_select")
        XCTAssertEqual(select?["options"]?.arrayValue?.map { $0["value"]?.stringValue ?? "" }, ["s", "l"])

        // A payment request: a section with a link button to pay.
        assertSent(try sendAndWait(c, message([["type": "payment_request", "amount": 11499, "currency": "EUR",
                                                "description": "Order 1042", "link": "https://pay.example.com/i/1042"]])))
        p = try last(fake, "chat.postMessage")
        let pay = p["blocks"]?.arrayValue?.first
        XCTAssertEqual(pay?["accessory"]?["url"], "https://pay.example.com/i/1042")
        XCTAssertEqual(pay?["accessory"]?["text"]?["text"], "Pay 114.99 EUR")
        XCTAssertTrue(p["text"]?.stringValue?.contains("114.99 EUR") ?? false)

        // Media by URL: an image block; a file by URL: a link.
        assertSent(try sendAndWait(c, message([["type": "media", "kind": "image", "url": "https://example.com/a.png", "caption": "A picture"]])))
        p = try last(fake, "chat.postMessage")
        XCTAssertEqual(p["blocks"]?.arrayValue?.first, ["type": "image", "image_url": "https://example.com/a.png", "alt_text": "A picture",
                                                        "title": ["type": "plain_text", "text": "A picture", "emoji": true]])
        assertSent(try sendAndWait(c, message([["type": "media", "kind": "file", "url": "https://example.com/r.pdf", "file_name": "r.pdf"]])))
        XCTAssertEqual(try last(fake, "chat.postMessage")["blocks"]?.arrayValue?.first?["text"]?["text"], "<https://example.com/r.pdf|r.pdf>")

        // Media by ref: the files v2 upload flow, with the text as the file's comment, in the thread.
        try fake.admin("POST", "/admin/blobs", ["name": "report.txt", "content": "quarterly numbers\n"])
        let upId = assertSent(try sendAndWait(c, message([
            ["type": "text", "text": "Here is the report"],
            ["type": "media", "kind": "file", "ref": .string(fake.blobBase + "/report.txt"), "caption": "Q3 report"],
        ], extra: ["thread_id": .string(posted.ts)])))
        let ask = try XCTUnwrap(fake.requests("files.getUploadURLExternal").last)
        XCTAssertEqual(ask["content_type"], "application/x-www-form-urlencoded")
        XCTAssertEqual(ask["params"], ["filename": "report.txt", "length": "18"])
        XCTAssertEqual(try fake.requests("upload").last?["params"]?["bytes"], 18)
        let done = try last(fake, "files.completeUploadExternal")
        XCTAssertEqual(done["channel_id"]?.stringValue, chat)
        XCTAssertEqual(done["initial_comment"], "Here is the report")
        XCTAssertEqual(done["thread_ts"]?.stringValue, posted.ts)
        let files = try JSONParser.parse(try XCTUnwrap(done["files"]?.stringValue))
        XCTAssertEqual(files.arrayValue?.first?["title"], "Q3 report")
        XCTAssertEqual(SlackSplit(upId)?.channel, chat)

        // Edit: chat.update of the first message.
        XCTAssertEqual(assertSent(try sendAndWait(c, other("edit", ["target": ["channel_message_id": .string(firstId)],
                                                                    "parts": [["type": "text", "text": "Hello again"]]]))), firstId)
        p = try last(fake, "chat.update")
        XCTAssertEqual(p["channel"]?.stringValue, chat)
        XCTAssertEqual(p["ts"]?.stringValue, posted.ts)
        XCTAssertEqual(p["text"], "Hello again")

        // Reactions: 👍 is Slack's thumbsup; removing it calls reactions.remove; a :custom: name is passed as is.
        assertSent(try sendAndWait(c, other("reaction", ["target": ["channel_message_id": .string(firstId)], "reaction": ["emoji": "👍"]])))
        XCTAssertEqual(try last(fake, "reactions.add"), ["channel": .string(chat), "timestamp": .string(posted.ts), "name": "thumbsup"])
        assertSent(try sendAndWait(c, other("reaction", ["target": ["channel_message_id": .string(firstId)], "reaction": ["emoji": ":party-parrot:"]])))
        XCTAssertEqual(try last(fake, "reactions.add")["name"], "party-parrot")
        assertSent(try sendAndWait(c, other("reaction", ["target": ["channel_message_id": .string(firstId)],
                                                         "reaction": ["action": "remove", "emoji": "👍"]])))
        XCTAssertEqual(try last(fake, "reactions.remove")["name"], "thumbsup")
        XCTAssertEqual(try fake.reactions(), [[.string(chat), .string(posted.ts), "party-parrot"]])

        // Delete: chat.delete.
        XCTAssertEqual(assertSent(try sendAndWait(c, other("delete", ["target": ["channel_message_id": .string(firstId)]]))), firstId)
        XCTAssertEqual(try last(fake, "chat.delete"), ["channel": .string(chat), "ts": .string(posted.ts)])

        // A reply to an inbound DM lands in the DM (to is the D… channel).
        assertSent(try sendAndWait(c, message(to: "D123ABC456", [["type": "text", "text": "Hi in the DM"]])))
        XCTAssertEqual(try last(fake, "chat.postMessage")["channel"], "D123ABC456")

        XCTAssertEqual(try fake.violations(), [], "every call follows the documented shapes")
        for r in try fake.requests() where r["method"]?.stringValue != "upload" {
            XCTAssertNotNil(r["params"]?.objectValue, "\(r)")
        }
        XCTAssertFalse(d.logText.contains(fake.token), "the bot token must never be logged")
    }

    func testRateLimitsAreHonouredAndErrorsReportedOnce() throws {
        let fake = try FakeSlack()
        let d = try startDaemon(fake, prefix: "slack-429")
        defer { d.stop() }
        let c = try subscribe(d)

        // HTTP 429 with Retry-After: 1 → the send is retried after the delay and then sent, with one final status.
        try fake.scriptError("chat.postMessage", httpStatus: 429, retryAfter: 1)
        let status = try sendAndWait(c, message([["type": "text", "text": "after the limit"]]))
        assertSent(status)
        let posts = try fake.requests("chat.postMessage")
        XCTAssertEqual(posts.count, 2)
        XCTAssertEqual(posts[0]["status"], 429)
        let gap = (posts[1]["t"]?.doubleValue ?? 0) - (posts[0]["t"]?.doubleValue ?? 0)
        XCTAssertGreaterThanOrEqual(gap, 0.95, "Retry-After is honoured")

        // ok:false "ratelimited" is retryable too; a transient internal_error as well.
        try fake.scriptError("chat.postMessage", error: "ratelimited")
        try fake.scriptError("chat.postMessage", error: "internal_error")
        assertSent(try sendAndWait(c, message([["type": "text", "text": "after two transient errors"]])))

        // A permanent Slack error fails the send with Slack's code, not retried.
        try fake.scriptError("chat.postMessage", error: "channel_not_found")
        let before = try fake.requests("chat.postMessage").count
        let failed = try sendAndWait(c, message(to: "C0GONE0001", [["type": "text", "text": "nobody there"]]))
        XCTAssertEqual(failed["status"]?["state"], "failed")
        XCTAssertEqual(failed["status"]?["error"]?["code"], "channel_not_found")
        XCTAssertEqual(failed["status"]?["retryable"], false)
        XCTAssertEqual(try fake.requests("chat.postMessage").count, before + 1)

        // Editing a message Slack does not know: message_not_found, permanent.
        let missing = try sendAndWait(c, other("edit", ["target": ["channel_message_id": "C0CHAT0001:1111111111.000001"],
                                                      "parts": [["type": "text", "text": "x"]]]))
        XCTAssertEqual(missing["status"]?["error"]?["code"], "message_not_found")

        // What Slack cannot carry is refused without calling it.
        let calls = try fake.requests().count
        let typing = try c.request(.send(idempotencyKey: nil, message: other("typing", [:])))
        if case .reply("accepted", _, let body) = typing, let id = body["message_id"]?.stringValue {
            let st = try event(c) { $0["status"]?["message_id"]?.stringValue == id && $0["status"]?["state"]?.stringValue == "failed" }
            XCTAssertEqual(st["status"]?["error"]?["code"], "unsupported_type")
        }
        let noTarget = try sendAndWait(c, other("reaction", ["target": ["channel_message_id": "not-a-slack-id"], "reaction": ["emoji": "👍"]]))
        XCTAssertEqual(noTarget["status"]?["state"], "failed")
        XCTAssertEqual(noTarget["status"]?["error"]?["code"], "invalid_target")
        XCTAssertEqual(try fake.requests().count, calls, "nothing Slack cannot carry reaches it")

        // A send's outcome is reported exactly once: one sent/failed status per message.
        let all = try replayAll(c, types: ["status"])
        var finals: [String: Int] = [:]
        for s in all where ["sent", "failed"].contains(s["status"]?["state"]?.stringValue ?? "") {
            finals[s["status"]?["message_id"]?.stringValue ?? "", default: 0] += 1
        }
        XCTAssertTrue(finals.values.allSatisfy { $0 == 1 }, "\(finals)")
        XCTAssertEqual(try fake.violations(), [])
    }

    func testARetriedMultiStepSendResumesWhereItStopped() throws {
        let fake = try FakeSlack()
        let d = try startDaemon(fake, prefix: "slack-resume")
        defer { d.stop() }
        let c = try subscribe(d)
        try fake.admin("POST", "/admin/blobs", ["name": "menu.pdf", "content": "%PDF-1.4 menu"])

        // Buttons and a file: chat.postMessage, then the upload. The upload is rate-limited once: the daemon's retry
        // must not post the buttons a second time, and the send reports the posted message's id.
        try fake.scriptError("files.getUploadURLExternal", httpStatus: 429, retryAfter: 1)
        let status = try sendAndWait(c, message([
            ["type": "interactive", "style": "buttons", "body": "Today's menu", "buttons": [["id": "order", "title": "Order"]]],
            ["type": "media", "kind": "file", "ref": .string(fake.blobBase + "/menu.pdf"), "file_name": "menu.pdf"],
        ]))
        let id = assertSent(status)
        let posts = try fake.requests("chat.postMessage")
        XCTAssertEqual(posts.count, 1, "the buttons are posted once")
        XCTAssertEqual(try fake.requests("files.getUploadURLExternal").count, 2)
        XCTAssertEqual(try fake.requests("files.completeUploadExternal").count, 1)
        let posted = try XCTUnwrap(fake.messages().first { $0["blocks"] != nil })
        XCTAssertEqual(id, "\(chat):\(posted["ts"]?.stringValue ?? "")")
        XCTAssertNil(try last(fake, "files.completeUploadExternal")["initial_comment"], "with blocks, the text is not repeated on the file")

        // A file that cannot be fetched fails permanently before anything is posted to Slack.
        let before = try fake.requests().count
        let missing = try sendAndWait(c, message([["type": "media", "kind": "file", "ref": .string(fake.blobBase + "/nope.pdf")]]))
        XCTAssertEqual(missing["status"]?["state"], "failed")
        XCTAssertEqual(missing["status"]?["error"]?["code"], "media_fetch_failed")
        XCTAssertEqual(try fake.requests().count, before)
        XCTAssertEqual(try fake.violations(), [])
    }

    func testBadSettingsAreRefusedWithoutShowingSecrets() throws {
        let fake = try FakeSlack()
        let dir = TestPaths.temporaryDirectory("slack-settings")
        let toml = """
        [[instance]]
        name = "typo"
        plugin = "slack"
        [instance.settings]
        bot_token = "xoxb-SECRETVALUE"
        signing_secret = "SECRETSIGNING"
        colour = "blue"

        [[instance]]
        name = "nosecret"
        plugin = "slack"
        [instance.settings]
        bot_token = "xoxb-SECRETVALUE"

        [[instance]]
        name = "badtoken"
        plugin = "slack"
        [instance.settings]
        bot_token = "not a token SECRETVALUE"
        signing_secret = "SECRETSIGNING"
        api_base_url = "\(fake.baseURL)"
        """
        let d = try TestDaemon(instancesTOML: toml, directory: dir)
        try d.start()
        defer { d.stop() }
        let c = try ChorusConnection(path: d.socketPath, timeoutMilliseconds: 10_000)
        guard case .reply("instances", _, let body) = try c.request(.instances) else { return XCTFail("no instances reply") }
        var errors: [String: String] = [:]
        for i in body["instances"]?.arrayValue ?? [] {
            XCTAssertEqual(i["state"]?.stringValue, "failed", "\(i)")
            errors[i["name"]?.stringValue ?? ""] = i["error"]?.stringValue ?? ""
        }
        XCTAssertTrue(errors["typo"]?.contains("colour") ?? false, errors["typo"] ?? "")
        XCTAssertTrue(errors["nosecret"]?.contains("signing_secret") ?? false, errors["nosecret"] ?? "")
        XCTAssertTrue(errors["badtoken"]?.contains("bot_token") ?? false, errors["badtoken"] ?? "")
        for e in errors.values { XCTAssertFalse(e.contains("SECRET"), e) }
        XCTAssertFalse(d.logText.contains("SECRETVALUE"))
        XCTAssertFalse(d.logText.contains("SECRETSIGNING"))
    }

    func testConformanceKitPasses() throws {
        guard let path = ConformanceKit.builtPlugin(product: "chorus-slack") else {
            return XCTFail("libchorus-slack.so is not in \(ConformanceKit.productsDirectory ?? "?"): run swift build with the same --scratch-path first")
        }
        let fake = try FakeSlack()
        var options = ConformanceOptions()
        // The default test message goes to "conformance-chat"; Slack channel ids look like C…, so send to one.
        var msg = try JSONParser.parse(ConformanceKit.defaultTestMessage()).objectValue ?? [:]
        msg["to"] = "C0CONFORM01"
        msg["channel_ids"] = ["chat": "C0CONFORM01", "account": "conformance"]
        options.sendJSON = JSONWriter.encode(.object(msg))
        let report = ConformanceKit.run(pluginPath: path, settings: [
            ("bot_token", fake.token), ("signing_secret", SlackTestSupport.signingSecret), ("api_base_url", fake.baseURL),
        ], options: options)
        for r in report.results where !r.passed { XCTFail(r.description) }
        XCTAssertTrue(report.allPassed, report.summary)
        XCTAssertEqual(report.results.first { $0.check == ConformanceKit.Check.routes }?.detail,
                       "POST /webhooks/conformance/events, POST /webhooks/conformance/interactivity")
        XCTAssertFalse(report.log.contains { $0.message.contains(fake.token) })
        XCTAssertEqual(try fake.requests("chat.postMessage").count, 1)
        XCTAssertEqual(try fake.violations(), [])
    }
}

/// `"<channel>:<ts>"` split.
func SlackSplit(_ id: String) -> (channel: String, ts: String)? {
    guard let i = id.firstIndex(of: ":") else { return nil }
    return (String(id[..<i]), String(id[id.index(after: i)...]))
}
