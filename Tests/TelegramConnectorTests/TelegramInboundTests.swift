import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// Inbound: updates through the real chorusd with the Telegram plugin, by long polling against the
/// fake Bot API and by webhook.
final class TelegramInboundTests: TelegramTestCase {
    static let docsFixtures = [
        "docs_message_text", "docs_message_forwarded", "docs_message_forwarded_channel", "docs_message_reply",
        "docs_edited_message", "docs_message_entities", "docs_message_audio", "docs_message_voice",
        "docs_message_document", "docs_inline_query", "docs_chosen_inline_result", "docs_callback_query",
    ]
    static let tableFixtures = [
        "table_message_photo", "table_message_location", "table_message_venue", "table_message_contact",
        "table_message_sticker", "table_message_video_note", "table_message_reaction", "table_chat_member_joined",
        "table_my_chat_member_blocked", "table_pre_checkout_query",
    ]

    /// Updates built with python-telegram-bot, one of each kind the connector maps (chat 4242).
    static func libraryUpdates() throws -> [JSONValue] {
        let specs: [JSONValue] = [
            ["kind": "text", "text": "Hello there", "entities": [["type": "bold", "offset": 0, "length": 5]]],
            ["kind": "photo", "caption": "my receipt"],
            ["kind": "document"], ["kind": "audio"], ["kind": "voice"], ["kind": "video"], ["kind": "video_note"],
            ["kind": "sticker"], ["kind": "location"], ["kind": "venue"], ["kind": "contact"],
            ["kind": "reply", "reply_to": 1300],
            ["kind": "edited", "message_id": 113, "text": "first edit", "edit_date": 1441645600],
            ["kind": "edited", "message_id": 113, "text": "second edit", "edit_date": 1441645700],
            ["kind": "callback", "data": "yes", "callback_id": "cbq-15"],
            ["kind": "reaction", "message_id": 116, "old": ["👎"], "new": ["👍"]],
            ["kind": "chat_member", "chat_id": -1001234, "member_id": 778],
            ["kind": "new_members", "chat_id": -1005, "member_id": 779],
            ["kind": "inline_query"],
            ["kind": "dice"],
        ]
        let withIds: [JSONValue] = specs.enumerated().map { i, s in
            guard case .object(var o) = s else { return s }
            o["update_id"] = .int(i + 1)
            if o["chat_id"] == nil { o["chat_id"] = 4242 }
            if o["message_id"] == nil { o["message_id"] = .int(101 + i) }
            return .object(o)
        }
        return try TelegramTestSupport.buildUpdates(withIds)
    }

    func find(_ events: [JSONValue], _ what: String, file: StaticString = #filePath, line: UInt = #line,
              _ match: (JSONValue) -> Bool) -> JSONValue
    {
        let found = events.filter(match)
        XCTAssertEqual(found.count, 1, "expected one \(what), found \(found.count)", file: file, line: line)
        return found.first ?? .null
    }

    func part(_ ev: JSONValue) -> JSONValue { ev["parts"]?.arrayValue?.first ?? .null }

    func testLongPollingMapsEveryKindOfUpdate() throws {
        let fake = try FakeTelegram()
        let dir = TestPaths.temporaryDirectory("tg-poll")
        let d = try TestDaemon(instancesTOML: try TelegramTestSupport.instance(fake: fake, directory: dir), directory: dir)
        try d.start()
        defer { d.stop() }
        let c = try subscribe(d)

        let library = try Self.libraryUpdates()
        let docs = try Self.docsFixtures.map(TelegramTestSupport.fixture)
        let tables = try Self.tableFixtures.map(TelegramTestSupport.fixture)
        try fake.enqueue(library + docs + tables)
        // One event per update, two for the reaction update that swaps 👎 for 👍.
        let evs = try events(c, count: library.count + 1 + docs.count + tables.count)
        XCTAssertTrue(evs.allSatisfy { $0["channel"]?.stringValue == "telegram" && $0["instance"]?.stringValue == "tg" })
        XCTAssertTrue(evs.allSatisfy { $0["channel_ids"]?["account"]?.stringValue == "tg" })

        let text = find(evs, "text") { part($0)["text"]?.stringValue == "Hello there" }
        XCTAssertEqual(text["channel_ids"]?["chat"]?.stringValue, "4242")
        XCTAssertEqual(text["channel_ids"]?["message"]?.stringValue, "4242:101")
        XCTAssertEqual(text["sender"]?["id"]?.stringValue, "4242")
        XCTAssertEqual(text["sender"]?["name"]?.stringValue, "Test Lastname")
        XCTAssertEqual(text["sender"]?["username"]?.stringValue, "testuser")
        XCTAssertEqual(text["timestamp"]?.stringValue, "2015-09-07T17:05:32.000Z")
        XCTAssertEqual(text["context"]?["entities"]?.arrayValue?.first?["type"]?.stringValue, "bold")

        let photo = find(evs, "photo") { part($0)["kind"]?.stringValue == "image" && $0["channel_ids"]?["chat"]?.stringValue == "4242" }
        XCTAssertEqual(part(photo)["channel_media_id"]?.stringValue, "PHLFILEID1234", "the largest size is kept")
        XCTAssertEqual(part(photo)["width"]?.intValue, 1280)
        XCTAssertEqual(part(photo)["caption"]?.stringValue, "my receipt")
        let doc = find(evs, "document") { part($0)["file_name"]?.stringValue == "invoice.pdf" }
        XCTAssertEqual(part(doc)["kind"]?.stringValue, "file")
        XCTAssertEqual(part(doc)["mime_type"]?.stringValue, "application/pdf")
        let audio = find(evs, "audio") { part($0)["channel_media_id"]?.stringValue == "AUDFILEID1234" }
        XCTAssertEqual(part(audio)["kind"]?.stringValue, "audio")
        XCTAssertEqual(part(audio)["duration_ms"]?.intValue, 243_000)
        XCTAssertEqual(part(find(evs, "voice") { part($0)["channel_media_id"]?.stringValue == "VOIFILEID1234" })["kind"]?.stringValue, "voice")
        XCTAssertEqual(part(find(evs, "video") { part($0)["channel_media_id"]?.stringValue == "VIDFILEID1234" })["width"]?.intValue, 640)
        let note = find(evs, "video note") { part($0)["channel_media_id"]?.stringValue == "VNOFILEID1234" }
        XCTAssertEqual(part(note)["kind"]?.stringValue, "video")
        XCTAssertEqual(note["context"]?["video_note"], true)
        XCTAssertEqual(part(find(evs, "sticker") { part($0)["channel_media_id"]?.stringValue == "STKFILEID1234" })["kind"]?.stringValue, "sticker")
        let loc = find(evs, "location") { part($0)["type"]?.stringValue == "location" && part($0)["name"] == nil && $0["channel_ids"]?["chat"]?.stringValue == "4242" }
        XCTAssertEqual(part(loc)["latitude"]?.doubleValue ?? 0, 52.52, accuracy: 0.0001)
        let venue = find(evs, "venue") { part($0)["name"]?.stringValue == "Eiffel Tower" && $0["channel_ids"]?["chat"]?.stringValue == "4242" }
        XCTAssertEqual(part(venue)["address"]?.stringValue, "Champ de Mars, Paris")
        let contact = find(evs, "contact") { part($0)["type"]?.stringValue == "contact" && $0["channel_ids"]?["chat"]?.stringValue == "4242" }
        XCTAssertEqual(part(contact)["name"]?["formatted"]?.stringValue, "Ana Lima")
        XCTAssertEqual(part(contact)["phones"]?.arrayValue?.first?["channel_id"]?.stringValue, "777000")
        let reply = find(evs, "reply") { part($0)["text"]?.stringValue == "A reply" }
        XCTAssertEqual(reply["reply_to"]?["channel_message_id"]?.stringValue, "4242:1300")

        // Edits: Telegram reuses the message id, so both edits are kept (their own dedup keys).
        let edits = evs.filter { $0["type"]?.stringValue == "edit" && $0["channel_ids"]?["chat"]?.stringValue == "4242" }
        XCTAssertEqual(edits.map { part($0)["text"]?.stringValue ?? "" }.sorted(), ["first edit", "second edit"])
        XCTAssertTrue(edits.allSatisfy { $0["target"]?["channel_message_id"]?.stringValue == "4242:113" })

        let cb = find(evs, "callback") { part($0)["type"]?.stringValue == "interactive_reply" && $0["channel_ids"]?["chat"]?.stringValue == "4242" }
        XCTAssertEqual(part(cb)["choice_id"]?.stringValue, "yes")
        XCTAssertEqual(part(cb)["title"]?.stringValue, "Yes")
        XCTAssertEqual(part(cb)["kind"]?.stringValue, "callback")
        XCTAssertEqual(cb["reply_to"]?["channel_message_id"]?.stringValue, "4242:115")

        let reactions = evs.filter { $0["type"]?.stringValue == "reaction" && $0["channel_ids"]?["chat"]?.stringValue == "4242" }
        XCTAssertEqual(reactions.count, 2)
        XCTAssertTrue(reactions.contains { $0["reaction"] == ["emoji": "👍"] })
        XCTAssertTrue(reactions.contains { $0["reaction"] == ["action": "remove", "emoji": "👎"] })
        XCTAssertTrue(reactions.allSatisfy { $0["target"]?["channel_message_id"]?.stringValue == "4242:116" })

        let joined = find(evs, "chat_member") { $0["channel_ids"]?["chat"]?.stringValue == "-1001234" }
        XCTAssertEqual(joined["conversation"]?["action"]?.stringValue, "member_joined")
        XCTAssertEqual(joined["participants"]?.arrayValue?.first?["id"]?.stringValue, "778")
        let newMembers = find(evs, "new_chat_members") { $0["channel_ids"]?["chat"]?.stringValue == "-1005" }
        XCTAssertEqual(newMembers["type"]?.stringValue, "conversation")
        XCTAssertEqual(newMembers["conversation"]?["members"], [["id": "779"]])

        // Unknown kinds are never dropped.
        let unsupported = evs.filter { part($0)["type"]?.stringValue == "unsupported" }.map { part($0)["channel_type"]?.stringValue ?? "" }
        XCTAssertEqual(unsupported.sorted(), ["chosen_inline_result", "dice", "inline_query", "inline_query", "pre_checkout_query"])

        // The documentation's examples, which lack chat.type and from.is_bot.
        let start = evs.filter { part($0)["text"]?.stringValue == "/start" }
        XCTAssertEqual(start.count, 4)
        XCTAssertEqual(find(evs, "docs reply") { $0["channel_ids"]?["message"]?.stringValue == "1111111:1368" }["reply_to"]?["channel_message_id"]?.stringValue,
                       "1111111:1334")
        let docsEdit = find(evs, "docs edit") { $0["type"]?.stringValue == "edit" && $0["channel_ids"]?["chat"]?.stringValue == "1111111" }
        XCTAssertEqual(docsEdit["timestamp"]?.stringValue, "2015-09-07T17:23:20.000Z")
        let inlineCallback = find(evs, "docs callback") { part($0)["choice_id"]?.stringValue == "Data from button callback" }
        XCTAssertEqual(inlineCallback["channel_ids"]?["chat"]?.stringValue, "1111111")
        XCTAssertEqual(inlineCallback["context"]?["inline_message_id"]?.stringValue, "1234csdbsk4839")
        XCTAssertEqual(find(evs, "docs audio") { part($0)["duration_ms"]?.intValue == 243_000 && $0["channel_ids"]?["chat"]?.stringValue == "1111111" }["context"]?["audio_title"]?.stringValue,
                       "Test music file")
        let blocked = find(evs, "my_chat_member") { $0["conversation"]?["action"]?.stringValue == "blocked" }
        XCTAssertEqual(blocked["conversation"]?["new_status"]?.stringValue, "kicked")

        // Callback queries and the pre-checkout query were answered once stored.
        try waitFor(timeout: 5, "answers") {
            try fake.requests("answerCallbackQuery").count == 2 && fake.requests("answerPreCheckoutQuery").count == 1
        }
        let answered = try fake.requests("answerCallbackQuery").compactMap { $0["params"]?["callback_query_id"]?.stringValue }
        XCTAssertEqual(Set(answered), ["cbq-15", "4382bfdwdsb323b2d9"])
        XCTAssertEqual(try fake.requests("answerPreCheckoutQuery").first?["params"]?["ok"], true)

        // The offset moved past the last update and every getUpdates asked for the modelled kinds.
        try waitFor(timeout: 5, "offset confirmed") { try fake.state()["confirmed_offset"]?.intValue == 20010 }
        let polls = try fake.requests("getUpdates")
        XCTAssertTrue(polls.allSatisfy { $0["params"]?["allowed_updates"]?.arrayValue?.contains("message_reaction") == true })
        XCTAssertEqual(try fake.violations(), [])
        XCTAssertFalse(d.logText.contains(fake.token), "the bot token must never be logged")
    }

    // MARK: Restarts: nothing lost, nothing twice

    func testPollingRestartAndCrashLoseNothingAndDuplicateNothing() throws {
        var logs: [String] = []
        let fake = try FakeTelegram()
        let dir = TestPaths.temporaryDirectory("tg-restart")
        let toml = try TelegramTestSupport.instance(fake: fake, directory: dir)
        func texts(_ range: ClosedRange<Int>) throws -> [JSONValue] {
            try TelegramTestSupport.buildUpdates(range.map { i in
                ["kind": "text", "update_id": .int(i), "message_id": .int(500 + i), "chat_id": 4242, "text": .string("m\(i)")]
            })
        }

        /// The texts of every stored message, by replay.
        func stored(_ d: TestDaemon) throws -> [String] {
            let c = try connect(d)
            defer { c.close() }
            return try replayAll(c, types: ["message"]).compactMap { $0["parts"]?.arrayValue?.first?["text"]?.stringValue }
        }
        func waitStored(_ d: TestDaemon, _ n: Int) throws {
            try waitFor(timeout: 15, "\(n) stored messages") { try stored(d).count >= n }
        }

        // 1. Five updates, a clean stop.
        var d = try TestDaemon(instancesTOML: toml, directory: dir)
        try d.start()
        try fake.enqueue(try texts(1...5))
        try waitStored(d, 5)
        XCTAssertEqual(d.stop(), 0)
        logs.append(d.logText)

        // 2. As if chorusd had died after committing updates 3…5 but before saving the offset: the stored
        //    offset goes back to 3 and Telegram, never told, delivers 3…5 again. Updates 6…8 arrive while
        //    chorusd is down. The restart resumes from offset 3 and the dedup keys keep 3…5 single.
        let sql = "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
            + "c.execute(\"UPDATE kv SET value=CAST('3' AS BLOB) WHERE instance='tg' AND key='telegram.offset'\"); c.commit(); print(c.total_changes)"
        let (status, out, err) = try TestProcess.run("/usr/bin/env", ["python3", "-c", sql, dir + "/state/chorus.db"])
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines), "1", "the offset is kept in the instance's durable state")
        try fake.enqueue(try texts(3...8))
        d = try TestDaemon(instancesTOML: toml, directory: dir)
        try d.start()
        try waitStored(d, 8)
        XCTAssertTrue(d.logText.contains("offset=3"), d.logText)
        try waitFor(timeout: 5, "redelivered batch confirmed") { try fake.state()["confirmed_offset"]?.intValue == 9 }
        XCTAssertEqual(try stored(d).count, 8, "redelivered updates are stored once")

        // 3. kill -9 right after a batch was stored (the offset may or may not be saved yet),
        //    more updates meanwhile; the restarted daemon stores each exactly once.
        try fake.enqueue(try texts(9...12))
        try waitStored(d, 12)
        d.crash()
        logs.append(d.logText)
        try fake.enqueue(try texts(13...15))
        d = try TestDaemon(instancesTOML: toml, directory: dir)
        try d.start()
        try waitStored(d, 15)

        // 4. kill -9 while a poll is waiting (between batches).
        usleep(300_000)
        d.crash()
        logs.append(d.logText)
        try fake.enqueue(try texts(16...16))
        d = try TestDaemon(instancesTOML: toml, directory: dir)
        try d.start()
        defer { d.stop() }
        defer { logs.append(d.logText) }
        try waitStored(d, 16)

        // Give a duplicate the chance to show up, then count what is stored.
        usleep(1_500_000)
        let all = try stored(d)
        XCTAssertEqual(all.count, 16, "\(all)\n" + logs.joined(separator: "\n----\n"))
        XCTAssertEqual(Set(all), Set((1...16).map { "m\($0)" }))
        try waitFor(timeout: 5, "offset 17 confirmed") { try fake.state()["confirmed_offset"]?.intValue == 17 }
        XCTAssertEqual(try fake.violations(), [])
    }

    func testGetUpdatesHonoursRetryAfterAndRecoversFromErrors() throws {
        let fake = try FakeTelegram()
        try fake.scriptError("getUpdates", code: 429, retryAfter: 2)
        let dir = TestPaths.temporaryDirectory("tg-poll429")
        let d = try TestDaemon(instancesTOML: try TelegramTestSupport.instance(fake: fake, directory: dir), directory: dir)
        try d.start()
        defer { d.stop() }
        let c = try subscribe(d)
        try fake.enqueue(try TelegramTestSupport.buildUpdates([["kind": "text", "update_id": 1, "chat_id": 4242, "text": "after the wait"]]))
        let ev = try events(c, count: 1)[0]
        XCTAssertEqual(ev["parts"]?.arrayValue?.first?["text"]?.stringValue, "after the wait")
        let polls = try fake.requests("getUpdates")
        XCTAssertEqual(polls.first?["status"]?.intValue, 429)
        XCTAssertGreaterThanOrEqual((polls[1]["t"]?.doubleValue ?? 0) - (polls[0]["t"]?.doubleValue ?? 0), 1.9, "retry_after is honoured")
        XCTAssertTrue(d.logText.contains("getUpdates failed"), d.logText)
    }

    // MARK: Webhook

    func testWebhookIsRegisteredWithTheSecretToken() throws {
        let fake = try FakeTelegram()
        let dir = TestPaths.temporaryDirectory("tg-setwebhook")
        let url = "https://bot.example.com/webhooks/tg/update"
        let d = try TestDaemon(instancesTOML: try TelegramTestSupport.instance(fake: fake, directory: dir, mode: "webhook",
                                                                              extra: ["webhook_url": "\"\(url)\""]), directory: dir)
        try d.start()
        defer { d.stop() }
        try waitFor(timeout: 5, "setWebhook") { try fake.requests("setWebhook").count == 1 }
        let p = try XCTUnwrap(fake.requests("setWebhook").first?["params"])
        XCTAssertEqual(p["url"]?.stringValue, url)
        XCTAssertEqual(p["secret_token"]?.stringValue, TelegramTestSupport.webhookSecret)
        XCTAssertTrue(p["allowed_updates"]?.arrayValue?.contains("callback_query") ?? false)
        XCTAssertEqual(try fake.state()["webhook_url"]?.stringValue, url)
        XCTAssertEqual(try fake.violations(), [])
        XCTAssertFalse(d.logText.contains(TelegramTestSupport.webhookSecret))
    }

    func testWebhookChecksTheSecretTokenAndRefusesMalformedBodies() throws {
        let fake = try FakeTelegram()
        let dir = TestPaths.temporaryDirectory("tg-webhook")
        let d = try TestDaemon(instancesTOML: try TelegramTestSupport.instance(fake: fake, directory: dir, mode: "webhook"), directory: dir)
        try d.start()
        defer { d.stop() }
        let c = try subscribe(d)
        let path = "/webhooks/tg/update"
        let good = [("X-Telegram-Bot-Api-Secret-Token", TelegramTestSupport.webhookSecret)]
        let update = JSONWriter.encodeString(try TelegramTestSupport.fixture("docs_message_text"))

        XCTAssertEqual(try d.post(path, json: update).status, 401, "no secret token")
        XCTAssertEqual(try d.post(path, json: update, headers: [("X-Telegram-Bot-Api-Secret-Token", "wrong")]).status, 403)
        XCTAssertEqual(try d.post(path, json: update, headers: [("X-Telegram-Bot-Api-Secret-Token", TelegramTestSupport.webhookSecret + "x")]).status, 403)
        XCTAssertEqual(try d.post(path, json: "{not json", headers: good).status, 400)
        XCTAssertEqual(try d.post(path, json: "[1,2]", headers: good).status, 400)
        XCTAssertEqual(try d.post(path, json: #"{"message":{"text":"no update id"}}"#, headers: good).status, 400)
        XCTAssertEqual(try d.post(path, json: #"{"update_id":77,"message":{"message_id":1,"text":"no chat"}}"#, headers: good).status, 400)
        XCTAssertEqual(try d.post(path, json: #"{"update_id":78}"#, headers: good).status, 400)
        guard case .reply("stats", _, let stats) = try c.request(.stats) else { return XCTFail("no stats") }
        XCTAssertEqual(stats["events"]?["accepted"]?.intValue, 0, "nothing may be stored from refused requests")

        // A good update is stored and answered 200; Telegram's redelivery of it is answered 200 and stored once.
        let r = try d.post(path, json: update, headers: good)
        XCTAssertEqual(r.status, 200, r.body)
        let ev = try events(c, count: 1)[0]
        XCTAssertEqual(ev["parts"]?.arrayValue?.first?["text"]?.stringValue, "/start")
        XCTAssertEqual(ev["channel_ids"]?["message"]?.stringValue, "1111111:1365")
        XCTAssertEqual(try d.post(path, json: update, headers: good).status, 200)

        // An update kind Chorus does not model, built with python-telegram-bot, arrives as unsupported.
        let inline = try TelegramTestSupport.buildUpdates([["kind": "inline_query", "update_id": 9001, "chat_id": 4242]])[0]
        XCTAssertEqual(try d.post(path, json: JSONWriter.encodeString(inline), headers: good).status, 200)
        let unk = try events(c, count: 1)[0]
        XCTAssertEqual(unk["parts"]?.arrayValue?.first?["channel_type"]?.stringValue, "inline_query")
        XCTAssertEqual(unk["channel_ids"]?["chat"]?.stringValue, "4242")
        // A made-up update kind too.
        XCTAssertEqual(try d.post(path, json: #"{"update_id":9002,"brand_new_kind":{"from":{"id":5,"is_bot":false,"first_name":"Z"}}}"#, headers: good).status, 200)
        XCTAssertEqual(try events(c, count: 1)[0]["parts"]?.arrayValue?.first?["channel_type"]?.stringValue, "brand_new_kind")

        // A callback query through the webhook is answered so the user's spinner stops.
        let cb = try TelegramTestSupport.buildUpdates([["kind": "callback", "update_id": 9003, "chat_id": 4242, "callback_id": "cbq-wh"]])[0]
        XCTAssertEqual(try d.post(path, json: JSONWriter.encodeString(cb), headers: good).status, 200)
        _ = try events(c, count: 1)
        try waitFor(timeout: 5, "answerCallbackQuery") { try fake.requests("answerCallbackQuery").count == 1 }

        let replayed = try replayAll(c, types: ["message"])
        XCTAssertEqual(replayed.count, 4, "the redelivered update is stored once")
        XCTAssertEqual(try fake.requests("getUpdates").count, 0, "webhook mode does not poll")
        XCTAssertEqual(try fake.violations(), [])
        XCTAssertFalse(d.logText.contains(TelegramTestSupport.webhookSecret), "the webhook secret must never be logged")
        XCTAssertFalse(d.logText.contains(fake.token), "the bot token must never be logged")
    }

    // MARK: A store that cannot commit

    /// A full disk: the webhook answers 503 (Telegram retries) and polling does not confirm the batch;
    /// when space returns, every update is stored, none twice.
    func testFullDiskMakesTelegramRetryAndLosesNothing() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a small tmpfs needs root") }
        let fake = try FakeTelegram()
        let dir = TestPaths.temporaryDirectory("tg-full")
        let mnt = dir + "/state"
        mkdir(mnt, 0o755)
        let (ms, _, merr) = try TestProcess.run("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt])
        guard ms == 0 else { throw XCTSkip("cannot mount tmpfs here: \(merr)") }
        defer { _ = try? TestProcess.run("/bin/umount", ["-l", mnt]) }
        let toml = try TelegramTestSupport.instance(name: "tgw", fake: fake, directory: dir, mode: "webhook")
            + "\n" + TelegramTestSupport.instance(name: "tgp", fake: fake, directory: dir)
        let d = try TestDaemon(instancesTOML: toml, directory: dir)
        try d.start()
        defer { d.stop() }
        let good = [("X-Telegram-Bot-Api-Secret-Token", TelegramTestSupport.webhookSecret)]
        let pad = String(repeating: "p", count: 8000)
        func update(_ id: Int) -> String {
            #"{"update_id":\#(id),"message":{"message_id":\#(id),"date":1700000000,"chat":{"id":4242,"type":"private"},"from":{"id":4242,"is_bot":false,"first_name":"F"},"text":"\#(pad)"}}"#
        }
        var accepted: [Int] = []
        var refused: Int?
        for i in 1...2000 {
            let r = try d.post("/webhooks/tgw/update", json: update(i), headers: good)
            if r.status == 200 { accepted.append(i); continue }
            XCTAssertEqual(r.status, 503, r.body)
            XCTAssertTrue(r.headers.contains { $0.0 == "retry-after" })
            refused = i
            break
        }
        let refusedId = try XCTUnwrap(refused, "the 2 MiB disk never filled")

        // Polling meanwhile: the batch cannot be stored, so it is not confirmed to Telegram.
        try fake.enqueue(try TelegramTestSupport.buildUpdates((1...3).map {
            ["kind": "text", "update_id": .int(90_000 + $0), "chat_id": 5151, "text": .string("polled \($0) " + pad)]
        }))
        usleep(2_000_000)
        XCTAssertLessThan(try fake.state()["confirmed_offset"]?.intValue ?? 0, 90_004, "an unstored batch must not be confirmed")
        XCTAssertTrue(d.logText.contains("updates not stored, fetching them again"), d.logText)

        // Space returns: Telegram's retry of the refused update is taken, and the polled batch is stored.
        let (rs, _, rerr) = try TestProcess.run("/bin/mount", ["-o", "remount,size=64m", mnt])
        XCTAssertEqual(rs, 0, rerr)
        try waitFor(timeout: 20, "the webhook accepts again") { (try? d.post("/webhooks/tgw/update", json: update(refusedId), headers: good))?.status == 200 }
        try waitFor(timeout: 20, "the polled batch confirmed") { try fake.state()["confirmed_offset"]?.intValue == 90_004 }
        let c = try connect(d)
        let stored = try replayAll(c, types: ["message"])
        let webhookIds = stored.filter { $0["instance"]?.stringValue == "tgw" }.compactMap { $0["channel_ids"]?["message"]?.stringValue }
        XCTAssertEqual(webhookIds.count, Set(webhookIds).count, "no update stored twice")
        XCTAssertTrue(Set(accepted.map { "4242:\($0)" }).isSubset(of: Set(webhookIds)), "an acknowledged update was lost")
        XCTAssertTrue(webhookIds.contains("4242:\(refusedId)"))
        let polled = stored.filter { $0["instance"]?.stringValue == "tgp" }.compactMap { $0["parts"]?.arrayValue?.first?["text"]?.stringValue?.prefix(8) }
        XCTAssertEqual(polled.sorted(), ["polled 1", "polled 2", "polled 3"])
    }
}
