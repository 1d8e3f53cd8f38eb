import ChorusJSON
import ChorusModel
import XCTest

final class OutboundTests: XCTestCase {
    static let route = OutboundRoute(instance: "wa-main", channel: "whatsapp", conversationId: "conv_WVT7XCB17G817NMATQ90TVNFVP",
                                     chatId: "4915112345678", accountId: "1065")

    func validated(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> OutboundRequest? {
        do { return try OutboundRequest.validate(Fixtures.parse(text, file: file, line: line)) } catch {
            XCTFail("refused: \(error)\n\(text)", file: file, line: line)
            return nil
        }
    }

    // MARK: Validation

    func testMessageByConversation() throws {
        let r = try XCTUnwrap(validated(#"{"conversation_id":"conv_A","parts":[{"type":"text","text":"hi"},{"type":"media","kind":"image","url":"https://x/y.png"}],"reply_to":{"channel_message_id":"wamid.1"},"options":{"preview_url":true},"metadata":{"ticket":"T-9"}}"#))
        XCTAssertEqual(r.type, "message", "type defaults to message")
        XCTAssertEqual(r.conversationId, "conv_A")
        XCTAssertNil(r.instance)
        XCTAssertNil(r.to)
        XCTAssertEqual(r.object.keys, ["parts", "reply_to", "options", "metadata"], "routing fields are taken out")
        XCTAssertEqual(r.partTypes, ["text", "media"])
    }

    func testMessageByInstanceAndTo() throws {
        let r = try XCTUnwrap(validated(#"{"type":"message","instance":"wa-main","to":"4915112345678","parts":[{"type":"text","text":"hi"}]}"#))
        XCTAssertEqual(r.instance, "wa-main")
        XCTAssertEqual(r.to, "4915112345678")
        XCTAssertNil(r.conversationId)
        XCTAssertEqual(r.object.keys, ["parts"])
    }

    func testEveryValidSendIsAccepted() throws {
        for text in Fixtures.validSends {
            let r = try XCTUnwrap(validated(text), text)
            XCTAssertTrue(Schema.outboundTypes.contains(r.type))
            for key in ["conversation_id", "instance", "to", "type"] { XCTAssertNil(r.object[key], key) }
            XCTAssertFalse(r.object.contains { $0.value.isNull }, "null fields are dropped: \(r.object)")
        }
    }

    func testNonMessageTypes() throws {
        let edit = try XCTUnwrap(validated(#"{"type":"edit","conversation_id":"c","target":{"message_id":"msg_1"},"parts":[{"type":"text","text":"v2"}]}"#))
        XCTAssertEqual(edit.type, "edit")
        XCTAssertEqual(edit.object["target"], Fixtures.parse(#"{"message_id":"msg_1"}"#))
        let reaction = try XCTUnwrap(validated(#"{"type":"reaction","conversation_id":"c","target":{"channel_message_id":"w"},"reaction":{"emoji":"❤️"}}"#))
        XCTAssertEqual(reaction.partTypes, [])
        XCTAssertNotNil(validated(#"{"type":"reaction","conversation_id":"c","target":{"channel_message_id":"w"},"reaction":{"action":"remove"}}"#))
        XCTAssertNotNil(validated(#"{"type":"delete","conversation_id":"c","target":{"channel_message_id":"w"}}"#))
        XCTAssertNotNil(validated(#"{"type":"typing","conversation_id":"c"}"#))
        XCTAssertNotNil(validated(#"{"type":"typing","conversation_id":"c","typing":{"state":"off"}}"#))
        XCTAssertNotNil(validated(#"{"type":"read","conversation_id":"c","target":{"channel_message_id":"w"}}"#))
    }

    func testNullFieldsAreAbsent() throws {
        let r = try XCTUnwrap(validated(#"{"type":null,"conversation_id":"c","instance":null,"parts":[{"type":"text","text":"t"}],"thread_id":null,"options":null,"metadata":null,"reply_to":null}"#))
        XCTAssertEqual(r.type, "message")
        XCTAssertEqual(r.object.keys, ["parts"])
    }

    func testEveryInvalidSendIsRefusedWithItsPath() {
        for (json, path, message) in Fixtures.invalidSends {
            assertSendRefused(json, path: path, message)
        }
    }

    func testSendPartsUseTheSameRulesAsEvents() {
        for (json, path, message) in Fixtures.invalidParts {
            assertSendRefused(#"{"conversation_id":"c","parts":[\#(json)]}"#, path: "message." + path, message)
        }
        for part in Fixtures.validParts {
            XCTAssertNotNil(validated(#"{"conversation_id":"c","parts":[\#(part)]}"#), part)
        }
    }

    // MARK: What the plugin receives

    func testPluginMessage() throws {
        let r = try XCTUnwrap(validated(#"{"conversation_id":"conv_WVT7XCB17G817NMATQ90TVNFVP","parts":[{"type":"text","text":"Your order shipped"}],"reply_to":{"channel_message_id":"wamid.IN1"},"thread_id":"th","options":{"preview_url":false},"metadata":{"ticket":"T-9"}}"#))
        let bytes = HostEvents.pluginMessage(messageId: "msg_01JD8X3Z5Q7K9M2N4P6R8S0T1V", request: r, route: Self.route, targetChannelMessageId: nil)
        let o = try XCTUnwrap(try JSONParser.parse(bytes).objectValue)
        XCTAssertEqual(o.keys, ["schema", "message_id", "type", "instance", "conversation_id", "to", "channel_ids",
                                "parts", "reply_to", "thread_id", "options", "metadata"])
        XCTAssertEqual(o["schema"], .int(1))
        XCTAssertEqual(o["message_id"], "msg_01JD8X3Z5Q7K9M2N4P6R8S0T1V")
        XCTAssertEqual(o["type"], "message")
        XCTAssertEqual(o["instance"], "wa-main")
        XCTAssertEqual(o["conversation_id"], "conv_WVT7XCB17G817NMATQ90TVNFVP")
        XCTAssertEqual(o["to"], "4915112345678")
        XCTAssertEqual(o["channel_ids"], Fixtures.parse(#"{"chat":"4915112345678","account":"1065"}"#))
        XCTAssertEqual(o["options"], Fixtures.parse(#"{"preview_url":false}"#))
        XCTAssertEqual(o["reply_to"], Fixtures.parse(#"{"channel_message_id":"wamid.IN1"}"#))
        XCTAssertFalse(bytes.contains(0x0A), "one line of compact JSON")
    }

    func testPluginMessageResolvesTheTargetsChannelId() throws {
        let r = try XCTUnwrap(validated(#"{"type":"edit","instance":"wa-main","to":"4915112345678","target":{"message_id":"msg_OLD"},"parts":[{"type":"text","text":"v2"}]}"#))
        let resolved = try JSONParser.parse(HostEvents.pluginMessage(messageId: "msg_NEW", request: r, route: Self.route, targetChannelMessageId: "wamid.OUT7"))
        XCTAssertEqual(resolved["type"], "edit")
        XCTAssertEqual(resolved["target"], Fixtures.parse(#"{"message_id":"msg_OLD","channel_message_id":"wamid.OUT7"}"#))
        XCTAssertEqual(resolved["instance"], "wa-main", "routing comes from the route")
        XCTAssertEqual(resolved["to"], "4915112345678")
        let unresolved = try JSONParser.parse(HostEvents.pluginMessage(messageId: "msg_NEW", request: r, route: Self.route, targetChannelMessageId: nil))
        XCTAssertEqual(unresolved["target"], Fixtures.parse(#"{"message_id":"msg_OLD"}"#))
    }

    // MARK: Host events

    func testOutboundEvent() throws {
        let r = try XCTUnwrap(validated(#"{"conversation_id":"conv_WVT7XCB17G817NMATQ90TVNFVP","parts":[{"type":"text","text":"hi"}],"thread_id":"th","options":{"x":1},"metadata":{"ticket":"T-9"}}"#))
        let o = HostEvents.outboundEvent(id: "evt_01JD8X3Z5Q7K9M2N4P6R8S0T1V", messageId: "msg_01JD8X3Z5Q7K9M2N4P6R8S0T1W", request: r, route: Self.route, nowMs: Fixtures.now)
        XCTAssertEqual(o.keys, ["schema", "id", "type", "direction", "channel", "instance", "conversation_id", "message_id",
                                "channel_ids", "received_at", "thread_id", "parts", "metadata", "status"])
        XCTAssertEqual(o["direction"], "outbound")
        XCTAssertEqual(o["channel"], "whatsapp")
        XCTAssertEqual(o["received_at"], "2026-11-23T10:00:00.000Z")
        XCTAssertEqual(o["status"], Fixtures.parse(#"{"state":"accepted","message_id":"msg_01JD8X3Z5Q7K9M2N4P6R8S0T1W"}"#))
        XCTAssertNil(o["options"], "options are for the plugin only")
        XCTAssertEqual(o["metadata"], Fixtures.parse(#"{"ticket":"T-9"}"#))

        let reaction = try XCTUnwrap(validated(#"{"type":"reaction","conversation_id":"c","target":{"channel_message_id":"w"},"reaction":{"emoji":"👍"}}"#))
        let ro = HostEvents.outboundEvent(id: "evt_1", messageId: "msg_1", request: reaction, route: Self.route, nowMs: 0)
        XCTAssertEqual(ro["type"], "reaction")
        XCTAssertEqual(ro["reaction"], Fixtures.parse(#"{"emoji":"👍"}"#))
        XCTAssertEqual(ro["target"], Fixtures.parse(#"{"channel_message_id":"w"}"#))
        XCTAssertNil(ro["parts"])
    }

    func testStatusEvents() {
        let sent = HostEvents.statusEvent(id: "evt_2", messageId: "msg_1", route: Self.route, state: "sent", channelMessageId: "wamid.OUT1",
                                          errorCode: nil, errorMessage: nil, retryable: nil, nowMs: Fixtures.now)
        XCTAssertEqual(sent.keys, ["schema", "id", "type", "direction", "channel", "instance", "conversation_id", "channel_ids", "received_at", "status"])
        XCTAssertEqual(sent["type"], "status")
        XCTAssertEqual(sent["direction"], "outbound")
        XCTAssertEqual(sent["channel_ids"], Fixtures.parse(#"{"chat":"4915112345678","account":"1065","message":"wamid.OUT1"}"#))
        XCTAssertEqual(sent["status"], Fixtures.parse(#"{"state":"sent","message_id":"msg_1","channel_message_id":"wamid.OUT1"}"#))

        let failed = HostEvents.statusEvent(id: "evt_3", messageId: "msg_1", route: Self.route, state: "failed", channelMessageId: nil,
                                            errorCode: "131026", errorMessage: "Message undeliverable", retryable: false, nowMs: Fixtures.now)
        XCTAssertEqual(failed["channel_ids"], Fixtures.parse(#"{"chat":"4915112345678","account":"1065"}"#))
        XCTAssertEqual(failed["status"], Fixtures.parse(#"{"state":"failed","message_id":"msg_1","error":{"code":"131026","message":"Message undeliverable"},"retryable":false}"#))

        // Empty strings from the C ABI mean "none".
        let empty = HostEvents.statusEvent(id: "evt_4", messageId: "msg_1", route: Self.route, state: "failed", channelMessageId: "",
                                           errorCode: "", errorMessage: "timed out", retryable: true, nowMs: Fixtures.now)
        XCTAssertEqual(empty["channel_ids"]?["message"], nil)
        XCTAssertEqual(empty["status"], Fixtures.parse(#"{"state":"failed","message_id":"msg_1","error":{"message":"timed out"},"retryable":true}"#))
        let bare = HostEvents.statusEvent(id: "evt_5", messageId: "msg_1", route: Self.route, state: "failed", channelMessageId: nil,
                                          errorCode: nil, errorMessage: nil, retryable: nil, nowMs: Fixtures.now)
        XCTAssertEqual(bare["status"], Fixtures.parse(#"{"state":"failed","message_id":"msg_1"}"#))
    }
}
