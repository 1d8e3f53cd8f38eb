import ChorusClient
import ChorusConformance
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// Outbound: sends through the real chorusd become Connector API calls on the fake's service URL, with a
/// client-credentials token fetched once, exactly one final status each, and Retry-After honoured.
final class TeamsOutboundTests: TeamsTestCase {
    let chat = "a:1iPgEHJwcBk7GmqQ9TqGI1MdFvq4Ea0W8SN8N6Tn0e9Lw3m4yqTshLL0cH5dvO0TDeOBqMDdEuz8BGH9Kza-IBeXCcJJ7G1b7N5zcPRzPkDzPCjRAVp1HSm6k7hRlIKnM"

    func message(_ parts: [JSONValue], type: String = "message", extra: JSONObject = [:]) -> JSONValue {
        var m: JSONObject = ["instance": "teams", "to": .string(chat), "type": .string(type)]
        if !parts.isEmpty { m["parts"] = .array(parts) }
        for (k, v) in extra { m[k] = v }
        return .object(m)
    }

    @discardableResult
    func assertSent(_ status: JSONValue, file: StaticString = #filePath, line: UInt = #line) -> String {
        XCTAssertEqual(status["status"]?["state"]?.stringValue, "sent", JSONWriter.encodeString(status), file: file, line: line)
        return status["status"]?["channel_message_id"]?.stringValue ?? ""
    }

    /// Starts a daemon and lets the user write first (so the connector learns the conversation's serviceUrl).
    func started(_ fake: FakeBotFramework, prefix: String) throws -> (TestDaemon, ChorusConnection) {
        let d = try startDaemon(fake, prefix: prefix)
        let c = try subscribe(d)
        let r = try post(d, try TeamsTestSupport.fixture("message_update", serviceURL: fake.serviceURL), token: try fake.mint())
        XCTAssertEqual(r.status, 200, r.body)
        _ = try events(c, count: 1)
        return (d, c)
    }

    func testSendsBecomeConnectorAPICalls() throws {
        let fake = try FakeBotFramework()
        let (d, c) = try started(fake, prefix: "teams-out")
        defer { d.stop() }

        // Text: POST …/activities with a bearer token from the token endpoint.
        let first = assertSent(try sendAndWait(c, message([["type": "text", "text": "**Hello** from Chorus", "format": "markdown"]])))
        XCTAssertFalse(first.isEmpty)
        var req = try XCTUnwrap(fake.connectorRequests().last)
        XCTAssertEqual(req["method"], "POST")
        XCTAssertEqual(req["path"]?.stringValue, "/v3/conversations/\(chat)/activities")
        XCTAssertEqual(req["content_type"], "application/json")
        XCTAssertEqual(req["auth"], "Bearer fake-access-token-1")
        XCTAssertEqual(req["body"], ["type": "message", "text": "**Hello** from Chorus", "textFormat": "markdown"])
        let tokenReq = try XCTUnwrap(fake.tokenRequests().first)
        XCTAssertEqual(tokenReq["content_type"], "application/x-www-form-urlencoded")
        XCTAssertEqual(tokenReq["body"], ["grant_type": "client_credentials", "client_id": .string(FakeBotFramework.appId),
                                          "client_secret": "***", "scope": "https://api.botframework.com/.default"])

        // Buttons as a reply: POST …/activities/{replyToId}, an Adaptive Card with Action.Submit buttons.
        assertSent(try sendAndWait(c, message([
            ["type": "text", "text": "Confirm the order?"],
            ["type": "interactive", "style": "buttons", "body": "Order 1042", "buttons": [["id": "yes", "title": "Yes"], ["id": "no", "title": "No"]]],
        ], extra: ["reply_to": ["channel_message_id": .string(first)]])))
        req = try XCTUnwrap(fake.connectorRequests().last)
        XCTAssertEqual(req["path"]?.stringValue, "/v3/conversations/\(chat)/activities/\(first)")
        XCTAssertEqual(req["body"]?["replyToId"]?.stringValue, first)
        let card = try XCTUnwrap(req["body"]?["attachments"]?.arrayValue?.first)
        XCTAssertEqual(card["contentType"], "application/vnd.microsoft.card.adaptive")
        XCTAssertEqual(card["content"]?["type"], "AdaptiveCard")
        XCTAssertEqual(card["content"]?["actions"], [["type": "Action.Submit", "title": "Yes", "data": ["choice_id": "yes", "title": "Yes"]],
                                                     ["type": "Action.Submit", "title": "No", "data": ["choice_id": "no", "title": "No"]]])

        // A payment link: an Adaptive Card with Action.OpenUrl.
        assertSent(try sendAndWait(c, message([["type": "payment_request", "amount": 11499, "currency": "EUR",
                                                "description": "Order 1042", "link": "https://pay.example.com/i/1042"]])))
        let pay = try XCTUnwrap(fake.connectorRequests().last?["body"]?["attachments"]?.arrayValue?.first?["content"])
        XCTAssertEqual(pay["actions"], [["type": "Action.OpenUrl", "title": "Pay 114.99 EUR", "url": "https://pay.example.com/i/1042"]])

        // Update: PUT …/activities/{id}; delete: DELETE …/activities/{id}.
        let edited = assertSent(try sendAndWait(c, message([["type": "text", "text": "Hello, edited"]], type: "edit",
                                                           extra: ["target": ["channel_message_id": .string(first)]])))
        XCTAssertEqual(edited, first)
        req = try XCTUnwrap(fake.connectorRequests().last)
        XCTAssertEqual(req["method"], "PUT")
        XCTAssertEqual(req["activity_id"]?.stringValue, first)
        XCTAssertEqual(req["body"]?["id"]?.stringValue, first)
        XCTAssertEqual(req["body"]?["text"], "Hello, edited")
        assertSent(try sendAndWait(c, message([], type: "delete", extra: ["target": ["channel_message_id": .string(first)]])))
        req = try XCTUnwrap(fake.connectorRequests().last)
        XCTAssertEqual(req["method"], "DELETE")
        XCTAssertEqual(req["activity_id"]?.stringValue, first)

        // Deleting it again: the Connector API answers 404 ActivityNotFound, a permanent failure.
        let gone = try sendAndWait(c, message([], type: "delete", extra: ["target": ["channel_message_id": .string(first)]]))
        XCTAssertEqual(gone["status"]?["state"], "failed")
        XCTAssertEqual(gone["status"]?["error"]?["code"], "ActivityNotFound")
        XCTAssertEqual(gone["status"]?["retryable"], false)

        // One token for all of it; every call followed the documented shapes.
        XCTAssertEqual(try fake.stats()["tokens_issued"], 1)
        XCTAssertEqual(try fake.tokenRequests().count, 1)
        XCTAssertEqual(try fake.violations(), [])
        XCTAssertFalse(d.logText.contains(FakeBotFramework.appPassword))
        XCTAssertFalse(d.logText.contains("fake-access-token-1"))
    }

    func testRateLimitsAndUnknownConversations() throws {
        let fake = try FakeBotFramework()
        let (d, c) = try started(fake, prefix: "teams-429")
        defer { d.stop() }

        // 429 with Retry-After: 1, then success: one final status, two calls at least a second apart.
        try fake.scriptError(method: "POST", pathContains: "/activities", status: 429, retryAfter: 1, code: "Throttled")
        let started = Date()
        assertSent(try sendAndWait(c, message([["type": "text", "text": "after the limit"]])))
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.95, "Retry-After is honoured")
        XCTAssertEqual(try fake.connectorRequests().filter { $0["method"]?.stringValue == "POST" }.count, 2)

        // A 5xx is retried as well.
        try fake.scriptError(method: "POST", pathContains: "/activities", status: 503)
        assertSent(try sendAndWait(c, message([["type": "text", "text": "after an outage"]])))

        // A 400 is final.
        try fake.scriptError(method: "POST", pathContains: "/activities", status: 400, code: "BadArgument")
        let bad = try sendAndWait(c, message([["type": "text", "text": "refused"]]))
        XCTAssertEqual(bad["status"]?["state"], "failed")
        XCTAssertEqual(bad["status"]?["error"]?["code"], "BadArgument")

        // A conversation that never wrote to the bot and no service_url setting: permanent, no call made.
        let before = try fake.connectorRequests().count
        let lost = try sendAndWait(c, .object(["instance": "teams", "to": "a:nobody", "parts": [["type": "text", "text": "hi"]]]))
        XCTAssertEqual(lost["status"]?["error"]?["code"], "unknown_conversation")
        XCTAssertEqual(try fake.connectorRequests().count, before)
        // Reactions cannot be sent by a bot: the capability is not declared, so the daemon refuses the send.
        let reaction = try c.request(.send(idempotencyKey: nil, message: message([], type: "reaction",
                                                                                 extra: ["reaction": ["emoji": "👍"], "target": ["channel_message_id": "1"]])))
        guard case .error = reaction else { return XCTFail("a reaction send was accepted: \(reaction)") }
        XCTAssertEqual(try fake.stats()["tokens_issued"], 1)
    }

    func testConformanceKitPasses() throws {
        guard let path = ConformanceKit.builtPlugin(product: "chorus-teams") else {
            return XCTFail("libchorus-teams.so is not in \(ConformanceKit.productsDirectory ?? "?"): run swift build with the same --scratch-path first")
        }
        let fake = try FakeBotFramework()
        let report = ConformanceKit.run(pluginPath: path, settings: [
            ("app_id", FakeBotFramework.appId), ("app_password", FakeBotFramework.appPassword), ("openid_metadata_url", fake.metadataURL),
            ("token_url", fake.tokenURL), ("service_url", fake.serviceURL),
        ], options: ConformanceOptions())
        for r in report.results where !r.passed { XCTFail(r.description) }
        XCTAssertTrue(report.allPassed, report.summary)
        XCTAssertEqual(report.results.first { $0.check == ConformanceKit.Check.routes }?.detail, "POST /webhooks/conformance/messages")
        XCTAssertFalse(report.log.contains { $0.message.contains(FakeBotFramework.appPassword) })
        XCTAssertEqual(try fake.connectorRequests().filter { $0["method"]?.stringValue == "POST" }.count, 1)
        XCTAssertEqual(try fake.violations(), [])
    }
}
