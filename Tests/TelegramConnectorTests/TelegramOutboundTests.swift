import ChorusClient
import ChorusConformance
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// Outbound: sends through the real chorusd become the documented Bot API calls on the fake,
/// with exactly one final status each, pacing, 429 handling and payments.
final class TelegramOutboundTests: TelegramTestCase {
    func startDaemon(_ fake: FakeTelegram, extra: [String: String] = [:], prefix: String = "tg-out") throws -> TestDaemon {
        let dir = TestPaths.temporaryDirectory(prefix)
        let d = try TestDaemon(instancesTOML: try TelegramTestSupport.instance(fake: fake, directory: dir, extra: extra), directory: dir)
        try d.start()
        return d
    }

    func message(to: String = "4242", _ parts: [JSONValue], extra: JSONObject = [:]) -> JSONValue {
        var m: JSONObject = ["instance": "tg", "to": .string(to), "parts": .array(parts)]
        for (k, v) in extra { m[k] = v }
        return .object(m)
    }

    func assertSent(_ status: JSONValue, _ channelId: String? = nil, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(status["status"]?["state"]?.stringValue, "sent", JSONWriter.encodeString(status), file: file, line: line)
        if let channelId { XCTAssertEqual(status["status"]?["channel_message_id"]?.stringValue, channelId, file: file, line: line) }
    }

    func lastParams(_ fake: FakeTelegram, _ method: String) throws -> JSONValue {
        try XCTUnwrap(fake.requests(method).last?["params"], "no \(method) request")
    }

    func testSendsBecomeTheDocumentedBotAPICalls() throws {
        let fake = try FakeTelegram()
        let d = try startDaemon(fake)
        defer { d.stop() }
        let c = try subscribe(d)

        // Text with its parse mode.
        let first = try sendAndWait(c, message([["type": "text", "text": "*Hello*", "format": "markdown"]]))
        assertSent(first, "4242:1")
        XCTAssertEqual(first["channel_ids"]?["message"]?.stringValue, "4242:1")
        let firstId = try XCTUnwrap(first["status"]?["message_id"]?.stringValue)
        var p = try lastParams(fake, "sendMessage")
        XCTAssertEqual(p["chat_id"], 4242)
        XCTAssertEqual(p["text"], "*Hello*")
        XCTAssertEqual(p["parse_mode"], "MarkdownV2")

        // Media by URL with a caption, and by Telegram file id.
        assertSent(try sendAndWait(c, message([["type": "media", "kind": "image", "url": "https://example.com/a.jpg", "caption": "A picture"]])), "4242:2")
        p = try lastParams(fake, "sendPhoto")
        XCTAssertEqual(p["photo"], "https://example.com/a.jpg")
        XCTAssertEqual(p["caption"], "A picture")
        assertSent(try sendAndWait(c, message([["type": "media", "kind": "file", "channel_media_id": "BQACAgFILE"]])))
        XCTAssertEqual(try lastParams(fake, "sendDocument")["document"], "BQACAgFILE")
        assertSent(try sendAndWait(c, message([["type": "media", "kind": "voice", "url": "https://example.com/v.ogg"]])))
        XCTAssertEqual(try fake.requests("sendVoice").count, 1)

        // Location, venue, contact.
        assertSent(try sendAndWait(c, message([["type": "location", "latitude": 52.52, "longitude": 13.405]])))
        XCTAssertEqual(try lastParams(fake, "sendLocation")["latitude"]?.doubleValue ?? 0, 52.52, accuracy: 1e-9)
        assertSent(try sendAndWait(c, message([["type": "location", "latitude": 48.8584, "longitude": 2.2945, "name": "Eiffel Tower", "address": "Paris"]])))
        XCTAssertEqual(try lastParams(fake, "sendVenue")["title"], "Eiffel Tower")
        assertSent(try sendAndWait(c, message([["type": "contact", "name": ["formatted": "Ana Lima", "first": "Ana", "last": "Lima"],
                                                "phones": [["number": "+4915112345678"]]]])))
        p = try lastParams(fake, "sendContact")
        XCTAssertEqual(p["phone_number"], "+4915112345678")
        XCTAssertEqual(p["first_name"], "Ana")
        XCTAssertEqual(p["last_name"], "Lima")

        // A text followed by buttons: one message with an inline keyboard; a reply to the first message.
        let buttons = try sendAndWait(c, message([
            ["type": "text", "text": "Confirm the order?"],
            ["type": "interactive", "style": "buttons", "buttons": [["id": "yes", "title": "Yes"], ["id": "no", "title": "No"]]],
        ], extra: ["reply_to": ["channel_message_id": "4242:1"]]))
        assertSent(buttons)
        p = try lastParams(fake, "sendMessage")
        XCTAssertEqual(p["text"], "Confirm the order?")
        XCTAssertEqual(p["reply_markup"], ["inline_keyboard": [[["text": "Yes", "callback_data": "yes"]], [["text": "No", "callback_data": "no"]]]])
        XCTAssertEqual(p["reply_parameters"], ["message_id": 1])

        // Quick replies: a reply keyboard.
        assertSent(try sendAndWait(c, message([["type": "interactive", "style": "quick_replies", "body": "Size?",
                                                "buttons": [["id": "s", "title": "Small"], ["id": "l", "title": "Large"]]]])))
        XCTAssertEqual(try lastParams(fake, "sendMessage")["reply_markup"]?["keyboard"], [[["text": "Small"]], [["text": "Large"]]])

        // A payment request without a provider token: a URL button to the payment link (after the text part).
        let pay = try sendAndWait(c, message([
            ["type": "text", "text": "Here is your payment link."],
            ["type": "payment_request", "amount": 11499, "currency": "EUR", "link": "https://pay.example.com/p/1042", "description": "Order 1042"],
        ]))
        let texts = try fake.requests("sendMessage").suffix(2).map { $0["params"] ?? .null }
        assertSent(pay)
        XCTAssertTrue(pay["status"]?["channel_message_id"]?.stringValue?.hasPrefix("4242:") ?? false, "the first message names the send")
        XCTAssertEqual(texts[0]["text"], "Here is your payment link.")
        XCTAssertEqual(texts[1]["text"], "Order 1042: 114.99 EUR")
        XCTAssertEqual(texts[1]["reply_markup"], ["inline_keyboard": [[["text": "Pay 114.99 EUR", "url": "https://pay.example.com/p/1042"]]]])
        XCTAssertEqual(try fake.requests("sendInvoice").count, 0)

        // Edit (by the Chorus id: the daemon resolves the Telegram id), reaction, typing, delete.
        assertSent(try sendAndWait(c, ["type": "edit", "instance": "tg", "to": "4242", "target": ["message_id": .string(firstId)],
                                       "parts": [["type": "text", "text": "Hello, edited"]]]), "4242:1")
        p = try lastParams(fake, "editMessageText")
        XCTAssertEqual(p["chat_id"], 4242)
        XCTAssertEqual(p["message_id"], 1)
        XCTAssertEqual(p["text"], "Hello, edited")
        assertSent(try sendAndWait(c, ["type": "reaction", "instance": "tg", "to": "4242", "target": ["channel_message_id": "4242:1"], "reaction": ["emoji": "👍"]]))
        XCTAssertEqual(try lastParams(fake, "setMessageReaction")["reaction"], [["type": "emoji", "emoji": "👍"]])
        assertSent(try sendAndWait(c, ["type": "typing", "instance": "tg", "to": "4242"]))
        XCTAssertEqual(try lastParams(fake, "sendChatAction")["action"], "typing")
        assertSent(try sendAndWait(c, ["type": "delete", "instance": "tg", "to": "4242", "target": ["message_id": .string(firstId)]]))
        XCTAssertEqual(try lastParams(fake, "deleteMessage")["message_id"], 1)

        // A group chat id stays a (negative) integer.
        assertSent(try sendAndWait(c, message(to: "-1001234567890", [["type": "text", "text": "Hi group"]])), "-1001234567890:1")
        XCTAssertEqual(try lastParams(fake, "sendMessage")["chat_id"], .int(-1001234567890))

        XCTAssertEqual(try fake.violations(), [], "every request follows the documented shapes")
        XCTAssertFalse(d.logText.contains(fake.token))
    }

    func testFailuresEndInExactlyOneOutcome() throws {
        let fake = try FakeTelegram()
        let d = try startDaemon(fake)
        defer { d.stop() }
        let c = try subscribe(d)

        // 403: the user blocked the bot → one failed status, not retryable.
        try fake.scriptError("sendMessage", code: 403, description: "Forbidden: bot was blocked by the user")
        let blocked = try sendAndWait(c, message([["type": "text", "text": "anyone there?"]]))
        XCTAssertEqual(blocked["status"]?["state"]?.stringValue, "failed")
        XCTAssertEqual(blocked["status"]?["error"]?["code"]?.stringValue, "403")
        XCTAssertTrue(blocked["status"]?["error"]?["message"]?.stringValue?.contains("blocked by the user") ?? false)
        XCTAssertEqual(try fake.requests("sendMessage").count, 1)

        // 429 with retry_after: retried after the delay Telegram asked for, then sent.
        try fake.scriptError("sendMessage", code: 429, retryAfter: 2)
        let limited = try sendAndWait(c, message([["type": "text", "text": "rate limited"]]), timeoutMs: 30_000)
        assertSent(limited)
        let attempts = try fake.requests("sendMessage").filter { $0["params"]?["text"] == "rate limited" }
        XCTAssertEqual(attempts.map { $0["status"]?.intValue }, [429, 200])
        let gap = (attempts[1]["t"]?.doubleValue ?? 0) - (attempts[0]["t"]?.doubleValue ?? 0)
        XCTAssertGreaterThanOrEqual(gap, 1.9, "retry_after (2 s) is honoured")

        // A server error is retryable too.
        try fake.scriptError("sendPhoto", code: 502, description: "Bad Gateway")
        assertSent(try sendAndWait(c, message([["type": "media", "kind": "image", "url": "https://example.com/b.jpg"]]), timeoutMs: 30_000))
        XCTAssertEqual(try fake.requests("sendPhoto").map { $0["status"]?.intValue }, [502, 200])

        // A two-part send failing on its second call continues after the first on retry (nothing sent twice).
        try fake.scriptError("sendLocation", code: 500, description: "Internal Server Error")
        assertSent(try sendAndWait(c, message([["type": "text", "text": "part one"], ["type": "location", "latitude": 1.5, "longitude": 2.5]]), timeoutMs: 30_000))
        XCTAssertEqual(try fake.requests("sendMessage").filter { $0["params"]?["text"] == "part one" }.count, 1)
        XCTAssertEqual(try fake.requests("sendLocation").map { $0["status"]?.intValue }, [500, 200])

        // What Telegram cannot carry fails permanently without a call.
        let before = try fake.requests().filter { $0["method"] != "getUpdates" }.count
        let noLink = try sendAndWait(c, message([["type": "payment_request", "amount": 500, "currency": "EUR", "provider_reference": "pi_123"]]))
        XCTAssertEqual(noLink["status"]?["error"]?["code"]?.stringValue, "payment_link_required")
        let ref = try sendAndWait(c, message([["type": "media", "kind": "image", "ref": "blob-1"]]))
        XCTAssertEqual(ref["status"]?["error"]?["code"]?.stringValue, "media_needs_url")
        let longData = try sendAndWait(c, message([["type": "interactive", "style": "buttons", "body": "Pick",
                                                    "buttons": [["id": .string(String(repeating: "x", count: 65)), "title": "X"]]]]))
        XCTAssertEqual(longData["status"]?["error"]?["code"]?.stringValue, "callback_data_too_long")
        XCTAssertEqual(try fake.requests().filter { $0["method"] != "getUpdates" }.count, before, "refused sends make no call")

        // Editing a message Telegram does not know: the documented 400, permanent.
        let edit = try sendAndWait(c, ["type": "edit", "instance": "tg", "to": "4242", "target": ["channel_message_id": "4242:999"],
                                       "parts": [["type": "text", "text": "x"]]])
        XCTAssertEqual(edit["status"]?["state"]?.stringValue, "failed")
        XCTAssertEqual(edit["status"]?["error"]?["code"]?.stringValue, "400")
        XCTAssertEqual(try fake.violations(), [])
    }

    func testInvoiceWhenAProviderTokenIsConfigured() throws {
        let fake = try FakeTelegram()
        let dir = TestPaths.temporaryDirectory("tg-invoice")
        try "284685063:TEST:NjQ5ZTQ2\n".write(toFile: dir + "/provider.token", atomically: true, encoding: .utf8)
        let d = try TestDaemon(instancesTOML: try TelegramTestSupport.instance(
            fake: fake, directory: dir, extra: ["payment_provider_token_file": "\"\(dir)/provider.token\""]), directory: dir)
        try d.start()
        defer { d.stop() }
        let c = try subscribe(d)
        let sent = try sendAndWait(c, message([["type": "payment_request", "amount": 11499, "currency": "EUR", "description": "Order 1042",
                                                "link": "https://pay.example.com/p/1042", "order_id": "1042"]]))
        assertSent(sent, "4242:1")
        let p = try lastParams(fake, "sendInvoice")
        XCTAssertEqual(p["provider_token"], "284685063:TEST:NjQ5ZTQ2")
        XCTAssertEqual(p["currency"], "EUR")
        XCTAssertEqual(p["prices"], [["label": "Order 1042", "amount": 11499]])
        XCTAssertEqual(p["payload"], "1042")
        XCTAssertEqual(p["title"], "Order 1042")
        XCTAssertEqual(try fake.violations(), [])
        XCTAssertFalse(d.logText.contains("NjQ5ZTQ2"), "the provider token must never be logged")
    }

    func testSendsArePacedPerChat() throws {
        let fake = try FakeTelegram()
        let dir = TestPaths.temporaryDirectory("tg-pacing")
        let toml = try TelegramTestSupport.instance(fake: fake, directory: dir, extra: ["chat_interval_ms": "1000", "group_per_minute": "2"])
        var d = try TestDaemon(instancesTOML: toml, directory: dir)
        try d.start()
        defer { d.stop() }
        var c = try subscribe(d)
        var ids: [String] = []
        for i in 1...3 {
            let r = try c.request(.send(idempotencyKey: nil, message: message([["type": "text", "text": .string("paced \(i)")]])))
            guard case .reply("accepted", _, let b) = r else { return XCTFail("\(r)") }
            ids.append(b["message_id"]!.stringValue!)
        }
        guard case .reply("accepted", _, _) = try c.request(.send(idempotencyKey: nil, message: message(to: "5555", [["type": "text", "text": "other chat"]]))) else {
            return XCTFail("not accepted")
        }
        var sent = Set<String>()
        while sent.count < 3 {
            let ev = try event(c, timeoutMs: 20_000) { $0["type"]?.stringValue == "status" }
            if ev["status"]?["state"]?.stringValue == "sent", let id = ev["status"]?["message_id"]?.stringValue, ids.contains(id) { sent.insert(id) }
        }
        let reqs = try fake.requests("sendMessage")
        let chat = reqs.filter { $0["params"]?["chat_id"] == 4242 }
        XCTAssertEqual(chat.map { $0["params"]?["text"]?.stringValue ?? "" }, ["paced 1", "paced 2", "paced 3"], "order is kept")
        let times = chat.map { $0["t"]?.doubleValue ?? 0 }
        XCTAssertGreaterThanOrEqual(times[1] - times[0], 0.95)
        XCTAssertGreaterThanOrEqual(times[2] - times[1], 0.95)
        try waitFor(timeout: 5, "the other chat's send") { try fake.requests("sendMessage").contains { $0["params"]?["chat_id"] == 5555 } }
        let other = try fake.requests("sendMessage").first { $0["params"]?["chat_id"] == 5555 }?["t"]?.doubleValue ?? 0
        XCTAssertLessThan(other - times[0], 0.9, "another chat does not wait for this one")

        // A group (negative id) gets group_per_minute calls per rolling minute: the third waits.
        var groupIds: [String] = []
        for i in 1...3 {
            guard case .reply("accepted", _, let b) = try c.request(.send(idempotencyKey: nil, message: message(to: "-100777", [["type": "text", "text": .string("group \(i)")]]))) else {
                return XCTFail("not accepted")
            }
            groupIds.append(b["message_id"]?.stringValue ?? "")
        }
        try waitFor(timeout: 5, "two group sends") { try fake.requests("sendMessage").filter { $0["params"]?["chat_id"] == -100777 }.count == 2 }
        usleep(2_500_000)
        XCTAssertEqual(try fake.requests("sendMessage").filter { $0["params"]?["chat_id"] == -100777 }.map { $0["params"]?["text"]?.stringValue ?? "" },
                       ["group 1", "group 2"], "the third message of the minute is held back")

        // Stopping fails the held-back send retryably ("stopping"); chorusd, shutting down, keeps it unfinished
        // and dispatches it again after the restart: it is sent exactly once and gets exactly one "sent" status.
        c.close()
        XCTAssertEqual(d.stop(), 0)
        d = try TestDaemon(instancesTOML: toml, directory: dir)
        try d.start()
        c = try subscribe(d)
        try waitFor(timeout: 10, "the deferred group send after the restart") {
            try fake.requests("sendMessage").filter { $0["params"]?["text"] == "group 3" }.count == 1
        }
        usleep(500_000)
        let statuses = try replayAll(c, types: ["status"]).filter { $0["status"]?["message_id"]?.stringValue == groupIds[2] }
        XCTAssertEqual(statuses.map { $0["status"]?["state"]?.stringValue ?? "" }, ["sent"], "exactly one final status: \(statuses)")
        XCTAssertEqual(try fake.requests("sendMessage").filter { $0["params"]?["text"] == "group 3" }.count, 1)
    }

    // MARK: Media download

    func testInboundMediaCanBeFetchedThroughTheAuthenticatedFileRoute() throws {
        let fake = try FakeTelegram()
        let mediaToken = "media-token-0123456789abcdef"
        let d = try startDaemon(fake, extra: ["media_token": "\"\(mediaToken)\""])
        defer { d.stop() }
        try fake.admin("POST", "/admin/files", ["file_id": "BQACAgFILE", "content": "%PDF-1.4 test document"])
        func get(_ path: String, _ token: String?) throws -> HTTPTestResponse {
            try HTTPTestClient.request(port: d.httpPort, method: "GET", path: path,
                                       headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [], body: [])
        }
        XCTAssertEqual(try get("/webhooks/tg/file/BQACAgFILE", nil).status, 401)
        XCTAssertEqual(try get("/webhooks/tg/file/BQACAgFILE", "wrong-token-0123456789").status, 401)
        let ok = try get("/webhooks/tg/file/BQACAgFILE", mediaToken)
        XCTAssertEqual(ok.status, 200, ok.body)
        XCTAssertEqual(ok.body, "%PDF-1.4 test document")
        XCTAssertEqual(try get("/webhooks/tg/file/NOSUCHFILE", mediaToken).status, 404)
        XCTAssertEqual(try get("/webhooks/tg/file/bad%20id", mediaToken).status, 400)
        XCTAssertEqual(try fake.requests("getFile").count, 2)
        XCTAssertEqual(try fake.violations(), [])
        XCTAssertFalse(d.logText.contains(mediaToken))
    }

    // MARK: Settings and conformance

    func testBadSettingsAreRefusedWithoutShowingSecrets() throws {
        let fake = try FakeTelegram()
        let dir = TestPaths.temporaryDirectory("tg-settings")
        let secretish = "not-a-token-SECRETVALUE"
        let toml = """
        [[instance]]
        name = "badtoken"
        plugin = "telegram"
        [instance.settings]
        bot_token = "\(secretish)"

        [[instance]]
        name = "typo"
        plugin = "telegram"
        [instance.settings]
        bot_token = "\(fake.token)"
        colour = "blue"

        [[instance]]
        name = "nosecret"
        plugin = "telegram"
        [instance.settings]
        bot_token = "\(fake.token)"
        mode = "webhook"
        """
        let d = try TestDaemon(instancesTOML: toml, directory: dir)
        try d.start()
        defer { d.stop() }
        let c = try connect(d)
        guard case .reply("instances", _, let body) = try c.request(.instances) else { return XCTFail("no instances reply") }
        var errors: [String: String] = [:]
        for i in body["instances"]?.arrayValue ?? [] {
            XCTAssertEqual(i["state"]?.stringValue, "failed", "\(i)")
            errors[i["name"]?.stringValue ?? ""] = i["error"]?.stringValue ?? ""
        }
        XCTAssertTrue(errors["badtoken"]?.contains("bot_token") ?? false, errors["badtoken"] ?? "")
        XCTAssertFalse(errors["badtoken"]?.contains("SECRETVALUE") ?? true)
        XCTAssertTrue(errors["typo"]?.contains("colour") ?? false, errors["typo"] ?? "")
        XCTAssertTrue(errors["nosecret"]?.contains("webhook_secret") ?? false, errors["nosecret"] ?? "")
        XCTAssertFalse(d.logText.contains("SECRETVALUE"))
    }

    func testTokenFromASystemdCredential() throws {
        let fake = try FakeTelegram()
        let dir = TestPaths.temporaryDirectory("tg-credential")
        let creds = dir + "/credentials"
        mkdir(creds, 0o700)
        try (fake.token + "\n").write(toFile: creds + "/telegram-bot-token", atomically: true, encoding: .utf8)
        // chorusd reads $CREDENTIALS_DIRECTORY (set by systemd); the child process inherits it from here.
        setenv("CREDENTIALS_DIRECTORY", creds, 1)
        defer { unsetenv("CREDENTIALS_DIRECTORY") }
        let toml = """
        [[instance]]
        name = "tg"
        plugin = "telegram"
        [instance.settings]
        bot_token_credential = "telegram-bot-token"
        api_base_url = "\(fake.baseURL)"
        poll_timeout_s = 1
        """
        let d = try TestDaemon(instancesTOML: toml, directory: dir)
        try d.start()
        defer { d.stop() }
        let c = try subscribe(d)
        assertSent(try sendAndWait(c, message([["type": "text", "text": "token from a credential"]])), "4242:1")
        XCTAssertGreaterThan(try fake.requests("getUpdates").count, 0, "polling with the credential's token")
        XCTAssertFalse(d.logText.contains(fake.token))
    }

    func testConformanceKitPasses() throws {
        guard let path = ConformanceKit.builtPlugin(product: "chorus-telegram") else {
            return XCTFail("libchorus-telegram.so is not in \(ConformanceKit.productsDirectory ?? "?"): run swift build with the same --scratch-path first")
        }
        let fake = try FakeTelegram()
        let report = ConformanceKit.run(pluginPath: path, settings: [
            ("bot_token", fake.token), ("mode", "webhook"), ("webhook_secret", "conformance-secret"), ("api_base_url", fake.baseURL),
        ], options: ConformanceOptions())
        for r in report.results where !r.passed { XCTFail(r.description) }
        XCTAssertTrue(report.allPassed, report.summary)
        XCTAssertEqual(report.results.first { $0.check == ConformanceKit.Check.routes }?.detail, "POST /webhooks/conformance/update")
        XCTAssertFalse(report.log.contains { $0.message.contains(fake.token) })
    }
}
