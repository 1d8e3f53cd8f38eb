import CSQLite
import XCTest
@testable import ChorusStore

final class EventLogTests: XCTestCase {
    func testAppendAndReadInOrder() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"), fsync: .grouped)
        defer { writer.close() }
        let first = try writer.commit((1...5).map { .appendEvent(makeEvent($0)) })
        XCTAssertEqual(first, (1...5).map { .appended(seq: Int64($0)) })
        let second = try writer.commit((6...8).map { .appendEvent(makeEvent($0)) })
        XCTAssertEqual(second, [.appended(seq: 6), .appended(seq: 7), .appended(seq: 8)])

        let reader = try StoreReader(path: dir.file("s.db"))
        defer { reader.close() }
        let all = try reader.events(after: 0, limit: 100)
        XCTAssertEqual(all.map(\.seq), Array(1...8))
        XCTAssertEqual(all.map(\.id), (1...8).map { "evt_tg_\($0)" })
        XCTAssertEqual(all[2].json, makeEvent(3).json)
        XCTAssertEqual(all[2].instance, "tg")
        XCTAssertEqual(all[2].channelKind, "telegram")
        XCTAssertEqual(all[2].type, "message")
        XCTAssertEqual(all[2].direction, "inbound")
        XCTAssertEqual(all[2].conversationId, "conv_1")
        XCTAssertEqual(all[2].receivedAtMs, 1_000_003)

        XCTAssertEqual(try reader.events(after: 3, limit: 2).map(\.seq), [4, 5])
        XCTAssertEqual(try reader.events(after: 8, limit: 10), [])
        XCTAssertEqual(try reader.events(after: 0, limit: 0), [])
        XCTAssertEqual(try reader.lastSeq(), 8)
        XCTAssertEqual(try reader.firstSeq(), 1)
        XCTAssertEqual(try reader.event(id: "evt_tg_7")?.seq, 7)
        XCTAssertNil(try reader.event(id: "evt_missing"))
    }

    func testEmptyStoreBounds() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        XCTAssertEqual(try writer.commit([]), [])
        let reader = try StoreReader(path: dir.file("s.db"))
        XCTAssertEqual(try reader.lastSeq(), 0)
        XCTAssertEqual(try reader.firstSeq(), 0)
        XCTAssertEqual(try reader.seq(atOrAfterTimeMs: 0), 0)
        let stats = try reader.stats()
        XCTAssertEqual(stats.eventCount, 0)
        XCTAssertEqual(stats.eventBytes, 0)
        XCTAssertGreaterThan(stats.databaseBytes, 0)
    }

    func testDedupWithinOneBatchAndAcrossBatches() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        var again = makeEvent(1)
        again.id = "evt_retry_of_1"
        let results = try writer.commit([.appendEvent(makeEvent(1)), .appendEvent(again), .appendEvent(makeEvent(2))])
        XCTAssertEqual(results, [.appended(seq: 1), .duplicate(existingId: "evt_tg_1", seq: 1), .appended(seq: 2)])

        var later = makeEvent(2)
        later.id = "evt_retry_of_2"
        XCTAssertEqual(try writer.append([later, makeEvent(3)]),
                       [.duplicate(existingId: "evt_tg_2", seq: 2), .appended(seq: 3)])

        // The same dedup key on another instance is a different event.
        var otherInstance = makeEvent(1)
        otherInstance.id = "evt_other_1"
        otherInstance.instance = "wa"
        XCTAssertEqual(try writer.append([otherInstance]), [.appended(seq: 4)])

        // Events without a dedup key are never deduplicated by content.
        XCTAssertEqual(try writer.append([makeEvent(10, dedup: false), makeEvent(11, dedup: false)]),
                       [.appended(seq: 5), .appended(seq: 6)])

        let reader = try StoreReader(path: dir.file("s.db"))
        XCTAssertEqual(try reader.events(after: 0, limit: 100).map(\.id),
                       ["evt_tg_1", "evt_tg_2", "evt_tg_3", "evt_other_1", "evt_tg_10", "evt_tg_11"])
        XCTAssertNil(try reader.event(id: "evt_retry_of_1"))
        XCTAssertEqual(try reader.stats().eventCount, 6)
    }

    func testSameEventIdTwiceIsReportedAsDuplicate() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        XCTAssertEqual(try writer.append([makeEvent(1, dedup: false)]), [.appended(seq: 1)])
        var replay = makeEvent(1, dedup: false)
        replay.json = Array("{}".utf8)
        XCTAssertEqual(try writer.append([replay, makeEvent(2, dedup: false)]),
                       [.duplicate(existingId: "evt_tg_1", seq: 1), .appended(seq: 2)])
        // Same id under a new dedup key: still a duplicate, and the key is not left claimed.
        var replayWithKey = makeEvent(1, dedup: false)
        replayWithKey.dedupKey = "message:other"
        XCTAssertEqual(try writer.append([replayWithKey]), [.duplicate(existingId: "evt_tg_1", seq: 1)])
        var fresh = makeEvent(3, dedup: false)
        fresh.dedupKey = "message:other"
        XCTAssertEqual(try writer.append([fresh]), [.appended(seq: 3)])

        let reader = try StoreReader(path: dir.file("s.db"))
        XCTAssertEqual(try reader.event(id: "evt_tg_1")?.json, makeEvent(1, dedup: false).json)
        XCTAssertEqual(try reader.lastSeq(), 3)
        XCTAssertEqual(try reader.stats().eventCount, 3)
    }

    func testSeqAtOrAfterTime() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        // seq 1..5 received at 100, 200, 200, 300, 500
        let times: [Int64] = [100, 200, 200, 300, 500]
        _ = try writer.append(times.enumerated().map { makeEvent($0.offset + 1, receivedAtMs: $0.element) })
        let reader = try StoreReader(path: dir.file("s.db"))
        XCTAssertEqual(try reader.seq(atOrAfterTimeMs: 0), 0)
        XCTAssertEqual(try reader.seq(atOrAfterTimeMs: 100), 0)
        XCTAssertEqual(try reader.seq(atOrAfterTimeMs: 101), 1)
        XCTAssertEqual(try reader.seq(atOrAfterTimeMs: 200), 1)
        XCTAssertEqual(try reader.seq(atOrAfterTimeMs: 250), 3)
        XCTAssertEqual(try reader.seq(atOrAfterTimeMs: 500), 4)
        XCTAssertEqual(try reader.seq(atOrAfterTimeMs: 501), 5, "nothing that recent: start at the end")
        // Replaying from the cursor yields exactly the events at or after the time.
        let cursor = try reader.seq(atOrAfterTimeMs: 250)
        XCTAssertEqual(try reader.events(after: cursor, limit: 10).map(\.receivedAtMs), [300, 500])
    }

    func testBatchIsAtomicOnError() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        _ = try writer.append([makeEvent(1)])
        let failing: [WriteOp] = [
            .appendEvent(makeEvent(2)),
            .putKV(instance: "tg", key: "offset", value: [1, 2, 3]),
            .updateSend(id: "snd_missing", state: "sent", attempts: 1, channelMessageId: "42", errorCode: nil,
                        errorMessage: nil, nextAttemptAtMs: nil, updatedAtMs: 9),
        ]
        assertStoreError(try writer.commit(failing)) {
            if case .constraint(let m) = $0 { return m.contains("snd_missing") }
            return false
        }
        let reader = try StoreReader(path: dir.file("s.db"))
        XCTAssertEqual(try reader.events(after: 0, limit: 10).map(\.seq), [1])
        XCTAssertNil(try reader.kv(instance: "tg", key: "offset"))
        // The rolled-back append did not burn a seq, and the writer keeps working.
        XCTAssertEqual(try writer.append([makeEvent(2)]), [.appended(seq: 2)])
    }

    func testAlwaysPolicyCommitsEachOpSeparately() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"), fsync: .always)
        defer { writer.close() }
        XCTAssertEqual(try writer.append([makeEvent(1), makeEvent(1), makeEvent(2)]),
                       [.appended(seq: 1), .duplicate(existingId: "evt_tg_1", seq: 1), .appended(seq: 2)])
        let ops: [WriteOp] = [
            .appendEvent(makeEvent(3)),
            .updateSend(id: "snd_missing", state: "sent", attempts: 1, channelMessageId: nil, errorCode: nil,
                        errorMessage: nil, nextAttemptAtMs: nil, updatedAtMs: 1),
            .appendEvent(makeEvent(4)),
        ]
        assertStoreError(try writer.commit(ops)) { if case .constraint = $0 { return true }; return false }
        let reader = try StoreReader(path: dir.file("s.db"))
        XCTAssertEqual(try reader.events(after: 0, limit: 10).map(\.seq), [1, 2, 3],
                       "ops before the failing one stay committed, ops after it are not attempted")
    }

    func testOffPolicyPersistsAcrossReopen() throws {
        let dir = try TempDir()
        do {
            let writer = try StoreWriter(path: dir.file("s.db"), fsync: .off)
            _ = try writer.append((1...10).map { makeEvent($0) })
            writer.close()
        }
        let writer = try StoreWriter(path: dir.file("s.db"), fsync: .grouped)
        defer { writer.close() }
        XCTAssertEqual(try writer.append([makeEvent(11)]), [.appended(seq: 11)])
        let reader = try StoreReader(path: dir.file("s.db"))
        XCTAssertEqual(try reader.events(after: 0, limit: 100).count, 11)
    }

    func testStatsCountEventsAndBytes() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        let events = (1...20).map { makeEvent($0, payloadBytes: 100) }
        _ = try writer.append(events)
        let reader = try StoreReader(path: dir.file("s.db"))
        let stats = try reader.stats()
        XCTAssertEqual(stats.eventCount, 20)
        XCTAssertEqual(stats.eventBytes, Int64(events.reduce(0) { $0 + $1.json.count }))
        XCTAssertEqual(stats.firstSeq, 1)
        XCTAssertEqual(stats.lastSeq, 20)
        XCTAssertGreaterThan(stats.walBytes, 0, "the writer is open, so its WAL exists")
        XCTAssertGreaterThan(stats.databaseBytes, 0)

        let result = try writer.checkpoint()
        XCTAssertTrue(result.complete)
        XCTAssertEqual(try reader.stats().walBytes, 0, "TRUNCATE checkpoint empties the WAL")
        XCTAssertEqual(try reader.events(after: 0, limit: 100).count, 20)
    }

    func testEmptyPayloadRoundTrips() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        var e = makeEvent(1)
        e.json = []
        XCTAssertEqual(try writer.append([e]), [.appended(seq: 1)])
        XCTAssertEqual(try StoreReader(path: dir.file("s.db")).event(id: e.id)?.json, [])
    }

    func testSchemaVersionAndReopen() throws {
        let dir = try TempDir()
        let path = dir.file("s.db")
        do {
            let writer = try StoreWriter(path: path)
            _ = try writer.append([makeEvent(1)])
            writer.close()
        }
        let writer = try StoreWriter(path: path)
        XCTAssertEqual(try writer.append([makeEvent(1), makeEvent(2)]),
                       [.duplicate(existingId: "evt_tg_1", seq: 1), .appended(seq: 2)])
        writer.close()

        // A database written by a newer build is refused, by writers and readers alike.
        var db: OpaquePointer?
        XCTAssertEqual(sqlite3_open(path, &db), SQLITE_OK)
        XCTAssertEqual(sqlite3_exec(db, "PRAGMA user_version = 99", nil, nil, nil), SQLITE_OK)
        sqlite3_close(db)
        assertStoreError(try StoreWriter(path: path)) {
            if case .other(_, let m) = $0 { return m.contains("schema version 99") }
            return false
        }
        assertStoreError(try StoreReader(path: path)) {
            if case .other(_, let m) = $0 { return m.contains("schema version 99") }
            return false
        }
    }

    func testReaderErrorsOnMissingOrForeignFiles() throws {
        let dir = try TempDir()
        assertStoreError(try StoreReader(path: dir.file("missing.db"))) {
            if case .io = $0 { return true }
            return false
        }
        let garbage = dir.file("garbage.db")
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: garbage))
        assertStoreError(try StoreWriter(path: garbage)) {
            if case .corrupt = $0 { return true }
            return false
        }
    }

    func testClosedStoreThrowsMisuse() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        let reader = try StoreReader(path: dir.file("s.db"))
        writer.close()
        reader.close()
        writer.close()
        assertStoreError(try writer.commit([.appendEvent(makeEvent(1))])) {
            if case .other(let code, _) = $0 { return code == SQLITE_MISUSE }
            return false
        }
        assertStoreError(try reader.lastSeq()) {
            if case .other(let code, _) = $0 { return code == SQLITE_MISUSE }
            return false
        }
    }
}
