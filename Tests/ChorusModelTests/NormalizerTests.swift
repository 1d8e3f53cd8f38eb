import ChorusJSON
import ChorusModel
import XCTest

final class NormalizerTests: XCTestCase {
    // MARK: Message events

    func testFullMessageIsNormalizedInSchemaKeyOrder() throws {
        let input = #"""
        {"type":"message","direction":"inbound",
         "channel_ids":{"message":"wamid.HBgM","chat":"4915112345678","account":"1065","thread":"th-9"},
         "sender":{"id":"4915112345678","name":"Ana Lima","phone":"+4915112345678","role":"customer"},
         "participants":[{"id":"4915112345678"},{"id":"1065","role":"business","is_bot":false}],
         "timestamp":"2026-11-23T11:59:58.5+02:00",
         "reply_to":{"channel_message_id":"wamid.PREV"},
         "thread_id":"th-9",
         "parts":[{"type":"text","text":"Where is my order?"}],
         "context":{"referral":{"source_type":"ad","source_id":"120"}},
         "raw":{"entry":[1,2,3]},
         "dedup_key":"wa:wamid.HBgM"}
        """#
        let ev = try XCTUnwrap(normalized(input))
        XCTAssertEqual(ev.object.keys, ["schema", "id", "type", "direction", "channel", "instance", "conversation_id", "channel_ids",
                                        "sender", "participants", "timestamp", "received_at", "reply_to", "thread_id", "parts", "context"])
        let o = ev.object
        XCTAssertEqual(o["schema"], .int(1))
        XCTAssertEqual(o["type"], "message")
        XCTAssertEqual(o["direction"], "inbound")
        XCTAssertEqual(o["channel"], "whatsapp")
        XCTAssertEqual(o["instance"], "wa-main")
        let conv = ChorusIdentifiers.conversationId(channel: "whatsapp", account: "1065", chat: "4915112345678")
        XCTAssertEqual(conv, "conv_WVT7XCB17G817NMATQ90TVNFVP")
        XCTAssertEqual(o["conversation_id"], .string(conv))
        XCTAssertEqual(o["channel_ids"], Fixtures.parse(#"{"message":"wamid.HBgM","chat":"4915112345678","account":"1065","thread":"th-9"}"#))
        XCTAssertEqual(o["sender"]?["contact_id"], "ct_NJS3FWFKB6Z5946G2MQCB7017Q")
        XCTAssertEqual(o["sender"]?["name"], "Ana Lima")
        XCTAssertEqual(o["participants"]?.arrayValue?.count, 2)
        XCTAssertEqual(o["participants"]?.arrayValue?[1]["contact_id"], .string(ChorusIdentifiers.contactId(channel: "whatsapp", nativeId: "1065")))
        // 11:59:58.5+02:00 is 09:59:58.500Z; the receive time is the host's clock.
        XCTAssertEqual(o["timestamp"], "2026-11-23T09:59:58.500Z")
        XCTAssertEqual(o["received_at"], "2026-11-23T10:00:00.000Z")
        XCTAssertEqual(o["reply_to"], Fixtures.parse(#"{"channel_message_id":"wamid.PREV"}"#))
        XCTAssertEqual(o["thread_id"], "th-9")
        XCTAssertEqual(o["parts"], Fixtures.parse(#"[{"type":"text","text":"Where is my order?"}]"#))
        XCTAssertNil(o["raw"], "raw is dropped unless the instance keeps it")
        XCTAssertNil(o["dedup_key"], "the dedup key is not part of the event")

        XCTAssertEqual(ev.type, "message")
        XCTAssertEqual(ev.direction, "inbound")
        XCTAssertEqual(ev.conversationId, conv)
        XCTAssertEqual(ev.chatId, "4915112345678")
        XCTAssertEqual(ev.accountId, "1065")
        XCTAssertEqual(ev.channelMessageId, "wamid.HBgM")
        XCTAssertEqual(ev.dedupKey, "wa:wamid.HBgM")
        XCTAssertEqual(ev.receivedAtMs, Fixtures.now)
        XCTAssertTrue(ev.id.hasPrefix("evt_"))
        XCTAssertEqual(o["id"], .string(ev.id))
        XCTAssertNil(ev.statusState)

        // encode() is the object's compact JSON.
        XCTAssertEqual(try JSONParser.parse(ev.encode()), .object(o))
    }

    func testMinimalMessageDefaultsDirectionAndAccount() throws {
        let ev = try XCTUnwrap(normalized(#"{"type":"message","channel_ids":{"chat":"c1"},"parts":[{"type":"text","text":"hi"}]}"#))
        XCTAssertEqual(ev.direction, "inbound")
        XCTAssertEqual(ev.object["direction"], "inbound")
        // Without channel_ids.account, the instance name stands for the account.
        XCTAssertEqual(ev.accountId, "wa-main")
        XCTAssertEqual(ev.conversationId, ChorusIdentifiers.conversationId(channel: "whatsapp", account: "wa-main", chat: "c1"))
        XCTAssertNil(ev.dedupKey, "no channel message id, no dedup key")
        XCTAssertEqual(ev.object.keys, ["schema", "id", "type", "direction", "channel", "instance", "conversation_id", "channel_ids", "received_at", "parts"])
        XCTAssertNil(ev.object["timestamp"])
    }

    func testOutboundDirectionFromThePluginIsKept() throws {
        // A message the business sent from another device, echoed by the channel.
        let ev = try XCTUnwrap(normalized(#"{"type":"message","direction":"outbound","channel_ids":{"chat":"c1","message":"m1"},"parts":[{"type":"text","text":"sent from phone"}]}"#))
        XCTAssertEqual(ev.direction, "outbound")
        XCTAssertEqual(ev.object["direction"], "outbound")
    }

    func testRawIsKeptOnlyWhenTheInstanceKeepsIt() throws {
        let input = #"{"type":"message","channel_ids":{"chat":"c1"},"parts":[{"type":"text","text":"x"}],"raw":{"update_id":7}}"#
        let kept = try XCTUnwrap(normalized(input, context: Fixtures.whatsappKeepRaw))
        XCTAssertEqual(kept.object["raw"], Fixtures.parse(#"{"update_id":7}"#))
        XCTAssertEqual(kept.object.keys.last, "raw")
        let dropped = try XCTUnwrap(normalized(input))
        XCTAssertNil(dropped.object["raw"])
    }

    func testNullTopLevelFieldsAreAbsent() throws {
        let ev = try XCTUnwrap(normalized(#"{"type":"message","channel_ids":{"chat":"c1"},"sender":null,"thread_id":null,"reply_to":null,"context":null,"timestamp":null,"parts":[{"type":"text","text":"x"}]}"#))
        for key in ["sender", "thread_id", "reply_to", "context", "timestamp"] {
            XCTAssertNil(ev.object[key], key)
        }
    }

    func testSenderContactIdIsAlwaysComputedByTheHost() throws {
        let ev = try XCTUnwrap(normalized(#"{"type":"message","channel_ids":{"chat":"c1"},"sender":{"id":"u1","contact_id":"ct_FORGED"},"parts":[{"type":"text","text":"x"}]}"#))
        XCTAssertEqual(ev.object["sender"]?["contact_id"], .string(ChorusIdentifiers.contactId(channel: "whatsapp", nativeId: "u1")))
    }

    // MARK: Other event types

    func testStatusEventWithoutChatWaitsForTheDaemonToResolveIt() throws {
        var ev = try XCTUnwrap(normalized(#"{"type":"status","direction":"outbound","status":{"state":"delivered","channel_message_id":"wamid.OUT1","recipient":{"id":"49151"},"pricing":{"billable":true}}}"#))
        XCTAssertEqual(ev.type, "status")
        XCTAssertNil(ev.conversationId)
        XCTAssertNil(ev.chatId)
        XCTAssertEqual(ev.statusState, "delivered")
        XCTAssertEqual(ev.statusChannelMessageId, "wamid.OUT1")
        XCTAssertNil(ev.statusMessageId)
        XCTAssertEqual(ev.dedupKey, "status:wamid.OUT1:delivered")
        XCTAssertNil(ev.object["conversation_id"])
        XCTAssertEqual(ev.object.keys, ["schema", "id", "type", "direction", "channel", "instance", "received_at", "status"])

        EventNormalizer.resolveStatus(&ev, conversationId: "conv_WVT7XCB17G817NMATQ90TVNFVP", messageId: "msg_01JD8X3Z5Q7K9M2N4P6R8S0T1V")
        XCTAssertEqual(ev.conversationId, "conv_WVT7XCB17G817NMATQ90TVNFVP")
        XCTAssertEqual(ev.statusMessageId, "msg_01JD8X3Z5Q7K9M2N4P6R8S0T1V")
        XCTAssertEqual(ev.object.keys, ["schema", "id", "type", "direction", "channel", "instance", "conversation_id", "received_at", "status"])
        XCTAssertEqual(ev.object["status"]?["message_id"], "msg_01JD8X3Z5Q7K9M2N4P6R8S0T1V")
        XCTAssertEqual(ev.object["status"]?["channel_message_id"], "wamid.OUT1")
        XCTAssertEqual(ev.object["status"]?["pricing"], Fixtures.parse(#"{"billable":true}"#))
    }

    func testResolveStatusKeepsAConversationTheEventAlreadyHas() throws {
        var ev = try XCTUnwrap(normalized(#"{"type":"status","channel_ids":{"chat":"c1"},"status":{"state":"read","message_id":"msg_A"}}"#))
        let own = try XCTUnwrap(ev.conversationId)
        EventNormalizer.resolveStatus(&ev, conversationId: "conv_OTHER", messageId: nil)
        XCTAssertEqual(ev.conversationId, own)
        XCTAssertEqual(ev.object["conversation_id"], .string(own))
        XCTAssertEqual(ev.object["status"]?["message_id"], "msg_A")
        XCTAssertEqual(ev.dedupKey, "status:msg_A:read")
    }

    func testFailedStatusCarriesTheError() throws {
        let ev = try XCTUnwrap(normalized(#"{"type":"status","channel_ids":{"chat":"c1"},"status":{"state":"failed","channel_message_id":"w1","error":{"code":"131047","title":"Re-engagement message","message":"More than 24 hours have passed","details":{"href":"x"}},"retryable":false}}"#))
        XCTAssertEqual(ev.statusState, "failed")
        XCTAssertEqual(ev.object["status"]?["error"]?["code"], "131047")
        XCTAssertEqual(ev.object["status"]?["retryable"], false)
        XCTAssertEqual(ev.dedupKey, "status:w1:failed")
    }

    func testReactionEditDeleteTypingReadConversation() throws {
        let reaction = try XCTUnwrap(normalized(#"{"type":"reaction","channel_ids":{"chat":"c1","message":"r1"},"sender":{"id":"u1"},"reaction":{"emoji":"👍"},"target":{"channel_message_id":"m1"}}"#))
        XCTAssertEqual(reaction.object["reaction"], Fixtures.parse(#"{"emoji":"👍"}"#))
        XCTAssertEqual(reaction.object["target"], Fixtures.parse(#"{"channel_message_id":"m1"}"#))
        XCTAssertEqual(reaction.dedupKey, "reaction:r1")

        let unreact = try XCTUnwrap(normalized(#"{"type":"reaction","channel_ids":{"chat":"c1"},"reaction":{"action":"remove","emoji":""},"target":{"message_id":"msg_1"}}"#))
        XCTAssertEqual(unreact.object["reaction"]?["action"], "remove")
        XCTAssertNil(unreact.dedupKey)

        let edit = try XCTUnwrap(normalized(#"{"type":"edit","channel_ids":{"chat":"c1","message":"m1"},"target":{"channel_message_id":"m1"},"parts":[{"type":"text","text":"fixed"}]}"#))
        XCTAssertEqual(edit.object["parts"]?.arrayValue?.count, 1)
        XCTAssertEqual(edit.dedupKey, "edit:m1")

        let delete = try XCTUnwrap(normalized(#"{"type":"delete","channel_ids":{"chat":"c1","message":"m1"},"target":{"channel_message_id":"m1"}}"#))
        XCTAssertEqual(delete.dedupKey, "delete:m1")
        XCTAssertNil(delete.object["parts"])

        let typing = try XCTUnwrap(normalized(#"{"type":"typing","channel_ids":{"chat":"c1","message":"t1"},"sender":{"id":"u1"},"typing":{"state":"on"}}"#))
        XCTAssertEqual(typing.object["typing"], Fixtures.parse(#"{"state":"on"}"#))
        XCTAssertNil(typing.dedupKey, "typing is never deduplicated")

        let bareTyping = try XCTUnwrap(normalized(#"{"type":"typing","channel_ids":{"chat":"c1"}}"#))
        XCTAssertNil(bareTyping.object["typing"])

        let read = try XCTUnwrap(normalized(#"{"type":"read","channel_ids":{"chat":"c1"},"read":{"up_to_channel_message_id":"m9","watermark":"2026-11-23T09:00:00Z"}}"#))
        XCTAssertEqual(read.object["read"]?["watermark"], "2026-11-23T09:00:00Z", "kept as the plugin wrote it")
        XCTAssertNil(read.dedupKey)

        let conv = try XCTUnwrap(normalized(#"{"type":"conversation","channel_ids":{"chat":"-100123"},"conversation":{"action":"member_joined","member":{"id":"u7"}},"participants":[{"id":"u7","role":"member"}]}"#, context: Fixtures.telegram))
        XCTAssertEqual(conv.object["conversation"]?["action"], "member_joined")
        XCTAssertEqual(conv.object["conversation"]?["member"]?["id"], "u7", "other conversation fields pass through")
        XCTAssertEqual(conv.object["channel"], "telegram")
        XCTAssertNil(conv.dedupKey)
    }

    // MARK: Dedup keys

    func testDedupKeysAreStableAcrossRetries() throws {
        var ids = IdentifierGenerator()
        let input = #"{"type":"message","channel_ids":{"chat":"c1","message":"wamid.X"},"parts":[{"type":"text","text":"x"}]}"#
        let first = try XCTUnwrap(normalized(input, ids: &ids))
        let retry = try XCTUnwrap(normalized(input, nowMs: Fixtures.now + 30_000, ids: &ids))
        XCTAssertEqual(first.dedupKey, "message:wamid.X")
        XCTAssertEqual(first.dedupKey, retry.dedupKey)
        XCTAssertNotEqual(first.id, retry.id, "every emit gets a new event id; the store drops the duplicate by its key")

        let explicit = try XCTUnwrap(normalized(#"{"type":"edit","channel_ids":{"chat":"c1","message":"m1"},"target":{"channel_message_id":"m1"},"parts":[{"type":"text","text":"v2"}],"dedup_key":"edit:m1:1700000100"}"#))
        XCTAssertEqual(explicit.dedupKey, "edit:m1:1700000100")

        let byMessageId = try XCTUnwrap(normalized(#"{"type":"status","status":{"state":"sent","message_id":"msg_Q"}}"#))
        XCTAssertEqual(byMessageId.dedupKey, "status:msg_Q:sent")
        let both = try XCTUnwrap(normalized(#"{"type":"status","status":{"state":"sent","message_id":"msg_Q","channel_message_id":"w9"}}"#))
        XCTAssertEqual(both.dedupKey, "status:w9:sent", "the channel's id wins: it is what a channel retry repeats")

        let conversation = try XCTUnwrap(normalized(#"{"type":"conversation","channel_ids":{"chat":"c1","message":"svc1"},"conversation":{"action":"created"}}"#))
        XCTAssertNil(conversation.dedupKey)
        let read = try XCTUnwrap(normalized(#"{"type":"read","channel_ids":{"chat":"c1","message":"r1"}}"#))
        XCTAssertNil(read.dedupKey)
    }

    // MARK: Refusals with exact paths

    func testEnvelopeRefusals() {
        assertRefused("[1]", path: "", "expected object, found array")
        assertRefused("{\"type\":", path: "", "invalid JSON")
        assertRefused(#"{"type":"message","type":"status"}"#, path: "", "duplicate key")
        assertRefused(#"{"channel_ids":{"chat":"c"}}"#, path: "type", "is required")
        assertRefused(#"{"type":"poll","channel_ids":{"chat":"c"}}"#, path: "type", "must be one of conversation, delete, edit, message, reaction, read, status, typing")
        assertRefused(#"{"type":7}"#, path: "type", "expected string, found number")
        assertRefused(#"{"type":"message","direction":"sideways","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}]}"#, path: "direction", "must be one of inbound, outbound")
        assertRefused(#"{"type":"message","foo":1}"#, path: "foo", "unknown field")
        // Host-assigned fields cannot be set by a plugin.
        for key in ["id", "conversation_id", "received_at", "instance", "channel", "schema", "message_id"] {
            assertRefused(#"{"type":"message","\#(key)":"x","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}]}"#, path: key, "unknown field")
        }
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c","user":"u"}}"#, path: "channel_ids.user", "unknown field")
        assertRefused(#"{"type":"message","channel_ids":{"chat":""}}"#, path: "channel_ids.chat", "must not be empty")
        assertRefused(#"{"type":"message","channel_ids":"c1"}"#, path: "channel_ids", "expected object, found string")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"timestamp":"yesterday","parts":[{"type":"text","text":"x"}]}"#, path: "timestamp", "expected an RFC 3339 timestamp")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"timestamp":1700000000,"parts":[{"type":"text","text":"x"}]}"#, path: "timestamp", "timestamp string, found number")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"sender":{"name":"Ana"},"parts":[{"type":"text","text":"x"}]}"#, path: "sender.id", "is required")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"sender":{"id":"u","role":"admin"},"parts":[{"type":"text","text":"x"}]}"#, path: "sender.role", "must be one of agent, bot, business, customer, member")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"sender":{"id":"u","nick":"a"},"parts":[{"type":"text","text":"x"}]}"#, path: "sender.nick", "unknown field")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"participants":[{"id":"a"},{"id":"b","is_bot":"yes"}],"parts":[{"type":"text","text":"x"}]}"#, path: "participants[1].is_bot", "expected boolean, found string")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"participants":{"id":"a"},"parts":[{"type":"text","text":"x"}]}"#, path: "participants", "expected array, found object")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}],"reply_to":{"id":"x"}}"#, path: "reply_to.id", "unknown field")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}],"thread_id":""}"#, path: "thread_id", "must not be empty")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}],"context":"ad"}"#, path: "context", "expected object, found string")
        let longKey = String(repeating: "k", count: 513)
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}],"dedup_key":"\#(longKey)"}"#, path: "dedup_key", "longer than 512 bytes")
    }

    func testMessageRefusals() {
        assertRefused(#"{"type":"message","parts":[{"type":"text","text":"x"}]}"#, path: "channel_ids.chat", "is required for a message")
        assertRefused(#"{"type":"message","channel_ids":{"message":"m"},"parts":[{"type":"text","text":"x"}]}"#, path: "channel_ids.chat", "is required for a message")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"}}"#, path: "parts", "is required")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[]}"#, path: "parts", "must contain at least one part")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":{"type":"text"}}"#, path: "parts", "expected array, found object")
        let many = Array(repeating: #"{"type":"text","text":"x"}"#, count: 101).joined(separator: ",")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[\#(many)]}"#, path: "parts", "more than 100 parts")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"ok"},{"type":"text"}]}"#, path: "parts[1].text", "is required")
        // Type-specific objects are validated wherever they appear.
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}],"reaction":5}"#, path: "reaction", "expected object, found number")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}],"typing":{"state":"maybe"}}"#, path: "typing.state", "must be one of off, on")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}],"target":{"x":1}}"#, path: "target.x", "unknown field")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}],"read":"all"}"#, path: "read", "expected object, found string")
        assertRefused(#"{"type":"message","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}],"conversation":{}}"#, path: "conversation.action", "is required")
    }

    func testStatusRefusals() {
        assertRefused(#"{"type":"status"}"#, path: "status", "is required")
        assertRefused(#"{"type":"status","status":"sent"}"#, path: "status", "expected object, found string")
        assertRefused(#"{"type":"status","status":{"channel_message_id":"w"}}"#, path: "status.state", "is required")
        assertRefused(#"{"type":"status","status":{"state":"seen","channel_message_id":"w"}}"#, path: "status.state", "must be one of accepted, delivered, failed, read, sent")
        assertRefused(#"{"type":"status","status":{"state":"sent"}}"#, path: "status.channel_message_id", "a status needs channel_message_id or message_id")
        assertRefused(#"{"type":"status","status":{"state":"failed","channel_message_id":"w","error":{"code":5}}}"#, path: "status.error.code", "expected string, found number")
        assertRefused(#"{"type":"status","status":{"state":"failed","channel_message_id":"w","error":{"reason":"x"}}}"#, path: "status.error.reason", "unknown field")
        assertRefused(#"{"type":"status","status":{"state":"failed","channel_message_id":"w","retryable":"no"}}"#, path: "status.retryable", "expected boolean, found string")
        assertRefused(#"{"type":"status","status":{"state":"sent","channel_message_id":"w","conversation_id":"c"}}"#, path: "status.conversation_id", "unknown field")
        assertRefused(#"{"type":"status","status":{"state":"sent","channel_message_id":"w"},"parts":[{"type":"text","text":"x"}]}"#, path: "parts", "only message and edit events carry parts")
    }

    func testReactionEditDeleteTypingReadConversationRefusals() {
        assertRefused(#"{"type":"reaction","reaction":{"emoji":"👍"},"target":{"channel_message_id":"m"}}"#, path: "channel_ids.chat", "is required for a reaction")
        assertRefused(#"{"type":"reaction","channel_ids":{"chat":"c"},"target":{"channel_message_id":"m"}}"#, path: "reaction", "is required")
        assertRefused(#"{"type":"reaction","channel_ids":{"chat":"c"},"reaction":{"emoji":"👍"}}"#, path: "target", "is required")
        assertRefused(#"{"type":"reaction","channel_ids":{"chat":"c"},"reaction":{"emoji":"👍"},"target":{}}"#, path: "target.channel_message_id", "is required")
        assertRefused(#"{"type":"reaction","channel_ids":{"chat":"c"},"reaction":{},"target":{"channel_message_id":"m"}}"#, path: "reaction.emoji", "is required")
        assertRefused(#"{"type":"reaction","channel_ids":{"chat":"c"},"reaction":{"emoji":""},"target":{"channel_message_id":"m"}}"#, path: "reaction.emoji", "must not be empty")
        assertRefused(#"{"type":"reaction","channel_ids":{"chat":"c"},"reaction":{"emoji":"x","action":"toggle"},"target":{"channel_message_id":"m"}}"#, path: "reaction.action", "must be one of add, remove")
        assertRefused(#"{"type":"reaction","channel_ids":{"chat":"c"},"reaction":{"emoji":"x","size":2},"target":{"channel_message_id":"m"}}"#, path: "reaction.size", "unknown field")
        assertRefused(#"{"type":"edit","channel_ids":{"chat":"c"},"target":{"channel_message_id":"m"}}"#, path: "parts", "is required")
        assertRefused(#"{"type":"edit","channel_ids":{"chat":"c"},"parts":[{"type":"text","text":"x"}]}"#, path: "target", "is required")
        assertRefused(#"{"type":"edit","target":{"channel_message_id":"m"},"parts":[{"type":"text","text":"x"}]}"#, path: "channel_ids.chat", "is required for an edit")
        assertRefused(#"{"type":"delete","channel_ids":{"chat":"c"}}"#, path: "target", "is required")
        assertRefused(#"{"type":"delete","target":{"channel_message_id":"m"}}"#, path: "channel_ids.chat", "is required for a delete")
        assertRefused(#"{"type":"delete","channel_ids":{"chat":"c"},"target":{"channel_message_id":"m"},"parts":[{"type":"text","text":"x"}]}"#, path: "parts", "only message and edit events carry parts")
        assertRefused(#"{"type":"typing","sender":{"id":"u"}}"#, path: "channel_ids.chat", "is required for typing")
        assertRefused(#"{"type":"typing","channel_ids":{"chat":"c"},"typing":{"state":"maybe"}}"#, path: "typing.state", "must be one of off, on")
        assertRefused(#"{"type":"typing","channel_ids":{"chat":"c"},"typing":{"state":"on","until":5}}"#, path: "typing.until", "unknown field")
        assertRefused(#"{"type":"read"}"#, path: "channel_ids.chat", "is required for a read receipt")
        assertRefused(#"{"type":"read","channel_ids":{"chat":"c"},"read":{"watermark":"noon"}}"#, path: "read.watermark", "expected an RFC 3339 timestamp")
        assertRefused(#"{"type":"read","channel_ids":{"chat":"c"},"read":{"up_to":"m"}}"#, path: "read.up_to", "unknown field")
        assertRefused(#"{"type":"conversation","conversation":{"action":"created"}}"#, path: "channel_ids.chat", "is required for a conversation event")
        assertRefused(#"{"type":"conversation","channel_ids":{"chat":"c"}}"#, path: "conversation", "is required")
        assertRefused(#"{"type":"conversation","channel_ids":{"chat":"c"},"conversation":{"action":""}}"#, path: "conversation.action", "must not be empty")
    }

    func testEveryValidPartIsAccepted() throws {
        for part in Fixtures.validParts {
            let ev = try XCTUnwrap(normalized(Fixtures.message(parts: "[\(part)]")), part)
            XCTAssertEqual(ev.object["parts"], Fixtures.parse("[\(part)]"), "parts are stored as given")
        }
        // All of them in one message, too.
        let all = try XCTUnwrap(normalized(Fixtures.message(parts: "[" + Fixtures.validParts.joined(separator: ",") + "]")))
        XCTAssertEqual(all.object["parts"]?.arrayValue?.count, Fixtures.validParts.count)
        XCTAssertEqual(Set(PartValidator.types(of: all.object["parts"])), Schema.partTypes, "the fixtures cover every part type")
    }

    func testEveryInvalidPartIsRefusedWithItsPath() {
        for (json, path, message) in Fixtures.invalidParts {
            assertRefused(Fixtures.message(parts: "[\(json)]"), path: path, message)
        }
    }

    func testPartValidatorDirectlyUsesTheGivenPath() {
        XCTAssertNoThrow(try PartValidator.validate(part: Fixtures.parse(#"{"type":"text","text":"x"}"#), path: "p"))
        do {
            try PartValidator.validate(part: Fixtures.parse(#"{"type":"location","latitude":0}"#), path: "message.parts[3]")
            XCTFail("accepted a location without longitude")
        } catch {
            XCTAssertEqual(error, SchemaError("message.parts[3].longitude", "is required"))
            XCTAssertEqual(error.description, "message.parts[3].longitude: is required")
        }
        do {
            try PartValidator.validate(parts: nil, path: "parts")
            XCTFail("accepted missing parts")
        } catch {
            XCTAssertEqual(error, SchemaError("parts", "is required"))
        }
        XCTAssertEqual(PartValidator.types(of: Fixtures.parse(#"[{"type":"text"},{"type":"media"},{"kind":"x"}]"#)), ["text", "media"])
        XCTAssertEqual(PartValidator.types(of: nil), [])
    }

    func testTextLimitIsInBytes() throws {
        let limit = 1 << 20
        let atLimit = String(repeating: "a", count: limit)
        XCTAssertNoThrow(try PartValidator.validate(part: .object(["type": "text", "text": .string(atLimit)]), path: "p"))
        // 2-byte characters: half as many fit.
        let over = String(repeating: "é", count: limit / 2 + 1)
        XCTAssertThrowsError(try PartValidator.validate(part: .object(["type": "text", "text": .string(over)]), path: "p")) { error in
            XCTAssertEqual((error as? SchemaError)?.path, "p.text")
            XCTAssertEqual((error as? SchemaError)?.message, "longer than 1048576 bytes")
        }
    }

    func testSchemaErrorDescription() {
        XCTAssertEqual(SchemaError("", "invalid").description, "invalid")
        XCTAssertEqual(SchemaError("parts[0].text", "is required").description, "parts[0].text: is required")
    }
}
