// EchoPluginTests.swift — the plain-C echo connector (Plugins/echo-c), built with gcc, loaded through
// PluginLoader and run on a real loop with the FakeDaemon: descriptor, webhook ingress (emit, then answer),
// sends and the bot's reply, the persisted message counter, settings and reload, stop.

import CChorusPlugin
import ChorusConformance
import ChorusJSON
import ChorusLoop
import ChorusPluginHost
import Foundation
import XCTest

final class EchoPluginTests: XCTestCase {
    private func echo() throws -> LoadedPlugin { try PluginLoader.load(path: TestPlugins.get().echo) }

    private func events(_ fake: FakeDaemon, from sender: String) -> [JSONValue] {
        fake.events.compactMap(\.value).filter { $0["sender"]?["id"]?.stringValue == sender }
    }

    // MARK: Descriptor

    func testDescriptorAndCapabilitiesAreRead() throws {
        let plugin = try echo()
        XCTAssertEqual(plugin.name, "echo")
        XCTAssertEqual(plugin.version, "1.0.0")
        XCTAssertEqual(plugin.channel, "echo")
        XCTAssertTrue(plugin.summary.contains("Echo bot"), plugin.summary)
        XCTAssertEqual(plugin.abiVersion, CHORUS_PLUGIN_ABI_V1)
        XCTAssertNil(plugin.swiftToolchain)
        XCTAssertEqual(plugin.capabilities, PluginCapabilities(flags: 0, receiveParts: ["text"], sendParts: ["text"]))
        XCTAssertFalse(plugin.capabilities.has("edit"))
        XCTAssertEqual(plugin.json["capabilities"]?["send"], ["text"])
        XCTAssertEqual(plugin.json["swift_toolchain"], .null)
    }

    // MARK: Inbound webhook

    func testWebhookEmitsANormalizedMessageAndAnswersWithTheChorusId() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        _ = try harness.started(echo())
        XCTAssertEqual(harness.fake.routes(of: "echo-test").map(\.mountedPath), ["/webhooks/echo-test/inbound"])

        let text = "Hé \"quoted\" \\ back\nslash\ttab \u{1}ctl 🎉"
        let response = try harness.request("POST", "/webhooks/echo-test/inbound",
                                           headers: [("X-Echo-From", "cust-1"), ("X-Echo-Message-Id", "m-1")],
                                           body: Array(text.utf8))
        let r = try XCTUnwrap(response)
        XCTAssertEqual(r.status, 200, String(decoding: r.body, as: UTF8.self))
        XCTAssertEqual(try JSONParser.parse(r.body), ["id": "evt_fake_1"])

        XCTAssertEqual(harness.fake.events.count, 1)
        let event = try XCTUnwrap(harness.fake.events.first?.value)
        XCTAssertEqual(event["type"], "message")
        XCTAssertEqual(event["direction"], "inbound")
        XCTAssertEqual(event["channel_ids"], ["chat": "cust-1", "message": "m-1"])
        XCTAssertEqual(event["sender"]?["id"], "cust-1")
        XCTAssertEqual(event["sender"]?["role"], "customer")
        XCTAssertEqual(event["parts"], [["type": "text", "text": .string(text)]])
        XCTAssertNil(event["id"])
        XCTAssertNil(event["instance"])
    }

    func testRetryWithTheSameMessageIdIsAcknowledgedAsDuplicate() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        _ = try harness.started(echo())
        let headers = [("X-Echo-From", "cust-2"), ("X-Echo-Message-Id", "dup-1")]
        let first = try XCTUnwrap(harness.request("POST", "/webhooks/echo-test/inbound", headers: headers, body: Array("hi".utf8)))
        let second = try XCTUnwrap(harness.request("POST", "/webhooks/echo-test/inbound", headers: headers, body: Array("hi".utf8)))
        XCTAssertEqual(first.status, 200)
        XCTAssertEqual(second.status, 200)
        XCTAssertEqual(try JSONParser.parse(second.body), ["duplicate": true])
        XCTAssertEqual(harness.fake.events.map(\.status), [CHORUS_OK, CHORUS_ERR_DUPLICATE])
    }

    func testWebhookIsAnsweredOnlyAfterTheCommit() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        _ = try harness.started(echo())
        harness.fake.holdsCommits = true
        var response: HTTPClientResponse?
        harness.startRequest("POST", "/webhooks/echo-test/inbound", headers: [("X-Echo-From", "cust-3")],
                             body: Array("wait for it".utf8)) { response = $0 }
        XCTAssertTrue(harness.fake.runLoop(until: { harness.fake.heldCommitCount == 1 }, timeoutMilliseconds: 5000))
        harness.fake.runLoop(forMilliseconds: 100)
        XCTAssertNil(response, "the webhook was answered before the event was committed")

        harness.fake.releaseCommits()
        XCTAssertTrue(harness.fake.runLoop(until: { response != nil }, timeoutMilliseconds: 5000))
        XCTAssertEqual(response?.status, 200)
        // Without X-Echo-Message-Id the event carries no channel message id.
        XCTAssertEqual(harness.fake.events.first?.value?["channel_ids"], ["chat": "cust-3"])
    }

    func testCommitFailuresMapTo503And400() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        _ = try harness.started(echo())
        harness.fake.emitAnswer = { _ in .unavailable("disk full") }
        let unavailable = try XCTUnwrap(harness.request("POST", "/webhooks/echo-test/inbound",
                                                        headers: [("X-Echo-From", "c")], body: Array("x".utf8)))
        XCTAssertEqual(unavailable.status, 503)
        XCTAssertEqual(unavailable.header("retry-after")?.trimmingCharacters(in: .whitespacesAndNewlines), "5")
        XCTAssertEqual(try JSONParser.parse(unavailable.body)["error"], "disk full")

        harness.fake.emitAnswer = { _ in .invalid("parts[0].text: too long") }
        let invalid = try XCTUnwrap(harness.request("POST", "/webhooks/echo-test/inbound",
                                                    headers: [("X-Echo-From", "c")], body: Array("x".utf8)))
        XCTAssertEqual(invalid.status, 400)
        XCTAssertEqual(try JSONParser.parse(invalid.body)["error"], "parts[0].text: too long")
    }

    func testMalformedWebhooksAreRefusedWithoutEmitting() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        _ = try harness.started(echo())
        let path = "/webhooks/echo-test/inbound"
        let noSender = try XCTUnwrap(harness.request("POST", path, body: Array("hi".utf8)))
        XCTAssertEqual(noSender.status, 400)
        XCTAssertTrue(String(decoding: noSender.body, as: UTF8.self).contains("X-Echo-From"))
        let empty = try XCTUnwrap(harness.request("POST", path, headers: [("X-Echo-From", "c")]))
        XCTAssertEqual(empty.status, 400)
        let badUTF8 = try XCTUnwrap(harness.request("POST", path, headers: [("X-Echo-From", "c")], body: [0x68, 0xC3, 0x28]))
        XCTAssertEqual(badUTF8.status, 400)
        let wrongMethod = try XCTUnwrap(harness.request("GET", path))
        XCTAssertEqual(wrongMethod.status, 405)
        XCTAssertTrue(harness.fake.events.isEmpty)
    }

    // MARK: Outbound

    func testSendReportsSentOnceAndTheBotEchoesIntoTheSameChat() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        let instance = try harness.started(echo())
        XCTAssertEqual(instance.send(id: 7, json: outboundMessage(to: "cust-9", parts: textParts("hi \"there\""))), CHORUS_OK)
        XCTAssertEqual(harness.fake.reports(forSend: 7).map(\.channelMessageId), ["echo-1"])
        XCTAssertEqual(harness.fake.reports(forSend: 7).first?.outcome, CHORUS_SEND_SENT)
        XCTAssertTrue(instance.pendingSends.isEmpty)

        XCTAssertTrue(harness.fake.runLoop(until: { !self.events(harness.fake, from: "echo-bot").isEmpty }, timeoutMilliseconds: 2000))
        let reply = try XCTUnwrap(events(harness.fake, from: "echo-bot").first)
        XCTAssertEqual(reply["type"], "message")
        XCTAssertEqual(reply["direction"], "inbound")
        XCTAssertEqual(reply["channel_ids"]?["chat"], "cust-9")
        XCTAssertEqual(reply["channel_ids"]?["message"], "echo-1-reply")
        XCTAssertEqual(reply["sender"]?["role"], "bot")
        XCTAssertEqual(reply["sender"]?["is_bot"], true)
        XCTAssertEqual(reply["reply_to"], ["channel_message_id": "echo-1"])
        XCTAssertEqual(reply["parts"], [["type": "text", "text": "echo: hi \"there\""]])

        XCTAssertEqual(instance.send(id: 8, json: outboundMessage(to: "cust-9", parts: textParts("again"), id: "msg_test_2")), CHORUS_OK)
        XCTAssertEqual(harness.fake.reports(forSend: 8).map(\.channelMessageId), ["echo-2"])
        harness.fake.runLoop(forMilliseconds: 100)
        XCTAssertEqual(harness.fake.sendReports.count, 2, "each send is reported exactly once")
        XCTAssertEqual(instance.counters["sent"], 2)
    }

    func testSeveralTextPartsAreEchoedAsOneText() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        let instance = try harness.started(echo())
        let parts: [JSONValue] = [["type": "text", "text": "one"], ["type": "text", "text": "two"]]
        XCTAssertEqual(instance.send(id: 1, json: outboundMessage(to: "c", parts: parts)), CHORUS_OK)
        XCTAssertTrue(harness.fake.runLoop(until: { !self.events(harness.fake, from: "echo-bot").isEmpty }, timeoutMilliseconds: 2000))
        XCTAssertEqual(events(harness.fake, from: "echo-bot").first?["parts"], [["type": "text", "text": "echo: one\ntwo"]])
    }

    func testNonTextPartsFailPermanently() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        let instance = try harness.started(echo())
        let parts: [JSONValue] = [["type": "text", "text": "look"], ["type": "media", "media": ["url": "https://example.org/a.png"]]]
        XCTAssertEqual(instance.send(id: 3, json: outboundMessage(to: "c", parts: parts)), CHORUS_OK)
        let report = try XCTUnwrap(harness.fake.reports(forSend: 3).first)
        XCTAssertEqual(report.outcome, CHORUS_SEND_FAILED_PERMANENT)
        XCTAssertEqual(report.errorCode, "unsupported_part")
        XCTAssertTrue(report.errorMessage?.contains("media") ?? false, report.errorMessage ?? "")
        harness.fake.runLoop(forMilliseconds: 50)
        XCTAssertTrue(harness.fake.events.isEmpty, "a failed send is not echoed")
        XCTAssertNil(harness.fake.store["echo-test"]?["send_counter"], "a failed send consumes no id")
    }

    func testMalformedMessageIsASynchronousFailureWithoutResult() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        let instance = try harness.started(echo())
        XCTAssertEqual(instance.send(id: 4, json: Array("{not json".utf8)), CHORUS_ERR_INVALID)
        XCTAssertTrue(harness.fake.sendReports.isEmpty)
        XCTAssertTrue(instance.pendingSends.isEmpty)
    }

    func testStoreFailureIsRetryable() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        let instance = try harness.started(echo())
        harness.fake.kvWritable = false
        XCTAssertEqual(instance.send(id: 5, json: outboundMessage(to: "c", parts: textParts("x"))), CHORUS_OK)
        let report = try XCTUnwrap(harness.fake.reports(forSend: 5).first)
        XCTAssertEqual(report.outcome, CHORUS_SEND_FAILED_RETRYABLE)
        XCTAssertEqual(report.errorCode, "state_unavailable")

        harness.fake.kvWritable = true
        XCTAssertEqual(instance.send(id: 6, json: outboundMessage(to: "c", parts: textParts("x"))), CHORUS_OK)
        XCTAssertEqual(harness.fake.reports(forSend: 6).first?.channelMessageId, "echo-1", "the failed attempt did not use up an id")
    }

    func testMessageCounterSurvivesARestart() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        let plugin = try echo()
        let first = try harness.started(plugin)
        XCTAssertEqual(first.send(id: 1, json: outboundMessage(to: "c", parts: textParts("a"))), CHORUS_OK)
        XCTAssertEqual(first.send(id: 2, json: outboundMessage(to: "c", parts: textParts("b"))), CHORUS_OK)
        XCTAssertTrue(harness.stopAndDestroy(first))
        XCTAssertEqual(harness.fake.store["echo-test"]?["send_counter"], Array("2".utf8))

        let second = try harness.started(plugin)
        XCTAssertEqual(second.send(id: 3, json: outboundMessage(to: "c", parts: textParts("c"))), CHORUS_OK)
        XCTAssertEqual(harness.fake.reports(forSend: 3).first?.channelMessageId, "echo-3")
    }

    // MARK: Settings, reload, stop

    func testPrefixSettingAndReload() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        let instance = try harness.started(echo(), settings: [("prefix", "bot says: ")])
        XCTAssertEqual(instance.send(id: 1, json: outboundMessage(to: "c", parts: textParts("one"))), CHORUS_OK)
        XCTAssertTrue(harness.fake.runLoop(until: { self.events(harness.fake, from: "echo-bot").count == 1 }, timeoutMilliseconds: 2000))
        XCTAssertEqual(events(harness.fake, from: "echo-bot")[0]["parts"]?.arrayValue?.first?["text"], "bot says: one")

        try instance.reload(settings: [("prefix", "re: ")])
        XCTAssertEqual(instance.setting("prefix"), "re: ")
        XCTAssertThrowsError(try instance.reload(settings: [("prefix", "x"), ("colour", "blue")])) { error in
            XCTAssertTrue("\(error)".contains("unknown setting \"colour\""), "\(error)")
        }
        XCTAssertEqual(instance.setting("prefix"), "re: ", "a refused reload keeps the previous settings")
        XCTAssertEqual(instance.send(id: 2, json: outboundMessage(to: "c", parts: textParts("two"))), CHORUS_OK)
        XCTAssertTrue(harness.fake.runLoop(until: { self.events(harness.fake, from: "echo-bot").count == 2 }, timeoutMilliseconds: 2000))
        XCTAssertEqual(events(harness.fake, from: "echo-bot")[1]["parts"]?.arrayValue?.first?["text"], "re: two")
    }

    func testUnknownSettingFailsCreateWithAClearReason() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        let instance = harness.instance(try echo(), settings: [("prefx", "oops")])
        XCTAssertThrowsError(try instance.create()) { error in
            guard let e = error as? PluginInstanceError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.stage, "create")
            XCTAssertEqual(e.reason, "unknown setting \"prefx\" (the echo connector knows only: prefix)")
        }
        XCTAssertTrue(harness.fake.routes.isEmpty)
    }

    func testStopCancelsPendingRepliesAndReportsStopped() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        let instance = try harness.started(echo())
        XCTAssertEqual(instance.send(id: 1, json: outboundMessage(to: "c", parts: textParts("late"))), CHORUS_OK)
        instance.stop()
        XCTAssertEqual(harness.fake.stoppedInstances, ["echo-test"], "stop with nothing pending reports stopped at once")
        XCTAssertEqual(instance.state, .stopped)
        harness.fake.runLoop(forMilliseconds: 60)
        XCTAssertTrue(harness.fake.events.isEmpty, "the reply timer was cancelled by stop")
        harness.fake.markDestroyed(instance)
        instance.destroy()
        harness.fake.runLoop(forMilliseconds: 20)
        XCTAssertTrue(harness.fake.callsAfterDestroy.isEmpty, "\(harness.fake.callsAfterDestroy)")
    }

    func testWebhookWhileStoppingIsAnswered503() throws {
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        _ = try harness.started(echo())
        // The host answers routes of an instance that is not running; the plugin's own stopping check is the
        // second line of defence. Either way the channel is told to retry.
        let instance = harness.instances[0]
        instance.stop()
        let r = try XCTUnwrap(harness.request("POST", "/webhooks/echo-test/inbound", headers: [("X-Echo-From", "c")], body: Array("x".utf8)))
        XCTAssertEqual(r.status, 503)
        XCTAssertTrue(harness.fake.events.isEmpty)
    }
}
