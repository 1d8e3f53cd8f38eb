import XCTest
@testable import ChorusStore

final class StateTests: XCTestCase {
    func testKVRoundTripOverwriteAndDelete() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        let reader = try StoreReader(path: dir.file("s.db"))
        XCTAssertEqual(try writer.commit([
            .putKV(instance: "tg", key: "offset", value: Array("41".utf8)),
            .putKV(instance: "wa", key: "offset", value: Array("7".utf8)),
            .putKV(instance: "tg", key: "empty", value: []),
        ]), [.ok, .ok, .ok])
        XCTAssertEqual(try reader.kv(instance: "tg", key: "offset"), Array("41".utf8))
        XCTAssertEqual(try reader.kv(instance: "wa", key: "offset"), Array("7".utf8))
        XCTAssertEqual(try reader.kv(instance: "tg", key: "empty"), [])
        XCTAssertNil(try reader.kv(instance: "tg", key: "absent"))

        _ = try writer.commit([.putKV(instance: "tg", key: "offset", value: Array("42".utf8))])
        XCTAssertEqual(try reader.kv(instance: "tg", key: "offset"), Array("42".utf8))

        _ = try writer.commit([.putKV(instance: "tg", key: "offset", value: nil),
                               .putKV(instance: "tg", key: "never-set", value: nil)])
        XCTAssertNil(try reader.kv(instance: "tg", key: "offset"))
        XCTAssertEqual(try reader.kv(instance: "wa", key: "offset"), Array("7".utf8), "other instances untouched")

        let big = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        _ = try writer.commit([.putKV(instance: "tg", key: "blob", value: big)])
        XCTAssertEqual(try reader.kv(instance: "tg", key: "blob"), big)
    }

    func testConversationUpsertKeepsLatestTimes() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        let reader = try StoreReader(path: dir.file("s.db"))
        let base = ConversationRecord(id: "conv_1", instance: "tg", channelKind: "telegram", chatId: "100",
                                      accountId: "acct", lastInboundAtMs: nil, lastEventAtMs: 1_000)
        _ = try writer.commit([.upsertConversation(base)])
        XCTAssertEqual(try reader.conversation(id: "conv_1"), base)

        var inbound = base
        inbound.lastInboundAtMs = 2_000
        inbound.lastEventAtMs = 2_000
        inbound.accountId = nil
        _ = try writer.commit([.upsertConversation(inbound)])
        var expected = base
        expected.lastInboundAtMs = 2_000
        expected.lastEventAtMs = 2_000
        XCTAssertEqual(try reader.conversation(id: "conv_1"), expected, "nil accountId keeps the stored one")

        var older = base
        older.lastInboundAtMs = 1_500
        older.lastEventAtMs = 1_500
        older.chatId = "100"
        _ = try writer.commit([.upsertConversation(older)])
        XCTAssertEqual(try reader.conversation(id: "conv_1"), expected, "timestamps never move backwards")

        var outbound = base
        outbound.lastInboundAtMs = nil
        outbound.lastEventAtMs = 3_000
        _ = try writer.commit([.upsertConversation(outbound)])
        expected.lastEventAtMs = 3_000
        XCTAssertEqual(try reader.conversation(id: "conv_1"), expected, "nil lastInbound keeps the stored one")
        XCTAssertNil(try reader.conversation(id: "conv_2"))
    }

    func testSendIdempotency() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        let reader = try StoreReader(path: dir.file("s.db"))
        let original = makeSend("snd_1", key: "k1")
        XCTAssertEqual(try writer.commit([.insertSend(original)]), [.ok])

        // Same client and key: the stored send comes back and nothing changes.
        var retry = makeSend("snd_2", key: "k1", createdAtMs: 6_000)
        retry.json = Array("{}".utf8)
        XCTAssertEqual(try writer.commit([.insertSend(retry)]), [.existingSend(original)])
        XCTAssertNil(try reader.send(id: "snd_2"))

        // Same key, other client: independent.
        let otherClient = makeSend("snd_3", client: "uid:1001", key: "k1")
        // No key: never deduplicated.
        let noKey1 = makeSend("snd_4", key: nil)
        let noKey2 = makeSend("snd_5", key: nil)
        // Within one batch the second insert sees the first.
        let inBatch = makeSend("snd_6", client: "uid:1001", key: "k1")
        XCTAssertEqual(try writer.commit([.insertSend(otherClient), .insertSend(noKey1), .insertSend(noKey2),
                                          .insertSend(inBatch)]),
                       [.ok, .ok, .ok, .existingSend(otherClient)])
        // Same send id again (a replayed commit): reported, not duplicated.
        XCTAssertEqual(try writer.commit([.insertSend(noKey1)]), [.existingSend(noKey1)])

        XCTAssertEqual(try reader.send(id: "snd_1"), original)
        XCTAssertEqual(try reader.send(client: "uid:1001", idempotencyKey: "k1"), otherClient)
        XCTAssertEqual(try reader.unfinishedSends().map(\.id).sorted(), ["snd_1", "snd_3", "snd_4", "snd_5"])
    }

    func testUpdateSendAndLookups() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        let reader = try StoreReader(path: dir.file("s.db"))
        _ = try writer.commit([.insertSend(makeSend("snd_1", key: "a", createdAtMs: 1)),
                               .insertSend(makeSend("snd_2", key: "b", createdAtMs: 2)),
                               .insertSend(makeSend("snd_3", key: "c", createdAtMs: 3))])
        XCTAssertEqual(try writer.commit([
            .updateSend(id: "snd_1", state: "sent", attempts: 1, channelMessageId: "m-1", errorCode: nil,
                        errorMessage: nil, nextAttemptAtMs: nil, updatedAtMs: 10),
            .updateSend(id: "snd_2", state: "retrying", attempts: 2, channelMessageId: nil, errorCode: "rate_limited",
                        errorMessage: "429 from channel", nextAttemptAtMs: 20_000, updatedAtMs: 11),
            .updateSend(id: "snd_3", state: "failed", attempts: 3, channelMessageId: nil, errorCode: "rejected",
                        errorMessage: "blocked", nextAttemptAtMs: nil, updatedAtMs: 12),
        ]), [.ok, .ok, .ok])

        let sent = try XCTUnwrap(reader.send(id: "snd_1"))
        XCTAssertEqual(sent.state, "sent")
        XCTAssertEqual(sent.attempts, 1)
        XCTAssertEqual(sent.channelMessageId, "m-1")
        XCTAssertEqual(sent.updatedAtMs, 10)
        XCTAssertEqual(sent.createdAtMs, 1)
        XCTAssertEqual(sent.idempotencyKey, "a")
        XCTAssertEqual(sent.json, makeSend("snd_1", key: "a").json)

        let retrying = try XCTUnwrap(reader.send(id: "snd_2"))
        XCTAssertEqual(retrying.state, "retrying")
        XCTAssertEqual(retrying.errorCode, "rate_limited")
        XCTAssertEqual(retrying.errorMessage, "429 from channel")
        XCTAssertEqual(retrying.nextAttemptAtMs, 20_000)

        XCTAssertEqual(try reader.send(instance: "tg", channelMessageId: "m-1")?.id, "snd_1")
        XCTAssertNil(try reader.send(instance: "wa", channelMessageId: "m-1"))
        XCTAssertNil(try reader.send(instance: "tg", channelMessageId: "m-404"))
        XCTAssertEqual(try reader.unfinishedSends().map(\.id), ["snd_2"])

        // Pruning finished sends keeps unfinished ones and frees their idempotency keys.
        XCTAssertEqual(try writer.pruneSends(updatedBeforeMs: 100), 2)
        XCTAssertNil(try reader.send(id: "snd_1"))
        XCTAssertNotNil(try reader.send(id: "snd_2"))
        XCTAssertEqual(try writer.commit([.insertSend(makeSend("snd_9", key: "a"))]), [.ok])
    }

    func testSubscriptionsSaveAckForwardOnlyDelete() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        let reader = try StoreReader(path: dir.file("s.db"))
        let filter = Array(#"{"types":["message"]}"#.utf8)
        _ = try writer.commit([.saveSubscription(name: "crm", filterJSON: filter, cursor: 0),
                               .saveSubscription(name: "audit", filterJSON: Array("{}".utf8), cursor: 5)])
        var subs = try reader.subscriptions()
        XCTAssertEqual(subs.map(\.name), ["audit", "crm"])
        XCTAssertEqual(subs[1].filterJSON, filter)
        XCTAssertEqual(subs.map(\.cursor), [5, 0])

        _ = try writer.commit([.ackSubscription(name: "crm", cursor: 10)])
        XCTAssertEqual(try reader.subscriptionRecords().first { $0.name == "crm" }?.cursor, 10)
        _ = try writer.commit([.ackSubscription(name: "crm", cursor: 7), .ackSubscription(name: "ghost", cursor: 3)])
        XCTAssertEqual(try reader.subscriptionRecords().first { $0.name == "crm" }?.cursor, 10, "acks only move forward")
        XCTAssertEqual(try reader.subscriptions().count, 2, "acking an unknown name creates nothing")

        // Saving again replaces filter and cursor (an explicit reset).
        _ = try writer.commit([.saveSubscription(name: "crm", filterJSON: Array("{}".utf8), cursor: 2)])
        XCTAssertEqual(try reader.subscriptionRecords().first { $0.name == "crm" },
                       SubscriptionRecord(name: "crm", filterJSON: Array("{}".utf8), cursor: 2))

        _ = try writer.commit([.deleteSubscription(name: "crm"), .deleteSubscription(name: "ghost")])
        subs = try reader.subscriptions()
        XCTAssertEqual(subs.map(\.name), ["audit"])
    }
}
