import XCTest
@testable import ChorusStore

final class RetentionTests: XCTestCase {
    func testPruneByAgeRespectsUnackedSubscriptionsUnlessForced() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        let reader = try StoreReader(path: dir.file("s.db"))
        // seq n received at n * 100
        _ = try writer.append((1...10).map { makeEvent($0, receivedAtMs: Int64($0) * 100) })
        _ = try writer.commit([.saveSubscription(name: "crm", filterJSON: Array("{}".utf8), cursor: 3)])

        // Everything received before 800 (seq 1...7) is old, but crm has only acked up to 3.
        XCTAssertEqual(try writer.prune(olderThanMs: 800, maxBytes: nil, force: false), 3)
        XCTAssertEqual(try reader.firstSeq(), 4)

        _ = try writer.commit([.ackSubscription(name: "crm", cursor: 5)])
        XCTAssertEqual(try writer.prune(olderThanMs: 800, maxBytes: nil, force: false), 2)
        XCTAssertEqual(try reader.events(after: 0, limit: 100).map(\.seq), [6, 7, 8, 9, 10])

        // A second subscription with an older cursor holds everything it has not acked.
        _ = try writer.commit([.saveSubscription(name: "audit", filterJSON: Array("{}".utf8), cursor: 0)])
        XCTAssertEqual(try writer.prune(olderThanMs: 800, maxBytes: nil, force: false), 0)

        XCTAssertEqual(try writer.prune(olderThanMs: 800, maxBytes: nil, force: true), 2)
        XCTAssertEqual(try reader.events(after: 0, limit: 100).map(\.seq), [8, 9, 10])
        let stats = try reader.stats()
        XCTAssertEqual(stats.eventCount, 3)
        XCTAssertEqual(stats.eventBytes, Int64((8...10).reduce(0) { $0 + makeEvent($1).json.count }))
        XCTAssertEqual(try writer.prune(olderThanMs: nil, maxBytes: nil, force: true), 0)
    }

    func testPruneByAgeWithoutSubscriptionsDeletesInChunks() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"), fsync: .off)
        defer { writer.close() }
        let total = StoreWriter.pruneChunkRows * 2 + 17
        _ = try writer.append((1...total).map { makeEvent($0, receivedAtMs: Int64($0)) })
        let cutoff = Int64(total - 9)  // keeps the last 10
        XCTAssertEqual(try writer.prune(olderThanMs: cutoff, maxBytes: nil, force: false), total - 10)
        let reader = try StoreReader(path: dir.file("s.db"))
        XCTAssertEqual(try reader.events(after: 0, limit: 100).map(\.seq), Array(Int64(total - 9)...Int64(total)))
        XCTAssertEqual(try reader.stats().eventCount, 10)
    }

    func testPruneBySizeOldestFirst() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        let reader = try StoreReader(path: dir.file("s.db"))
        _ = try writer.append((1...10).map { makeEvent($0, payloadBytes: 100) })
        XCTAssertEqual(try reader.stats().eventBytes, 1_000)

        XCTAssertEqual(try writer.prune(olderThanMs: nil, maxBytes: 1_000, force: false), 0)
        XCTAssertEqual(try writer.prune(olderThanMs: nil, maxBytes: 650, force: false), 4)
        XCTAssertEqual(try reader.firstSeq(), 5)
        XCTAssertEqual(try reader.stats().eventBytes, 600)

        // An unacked subscription caps what size-based pruning may delete…
        _ = try writer.commit([.saveSubscription(name: "crm", filterJSON: Array("{}".utf8), cursor: 6)])
        XCTAssertEqual(try writer.prune(olderThanMs: nil, maxBytes: 100, force: false), 2)
        XCTAssertEqual(try reader.firstSeq(), 7)
        XCTAssertEqual(try reader.stats().eventBytes, 400, "still above maxBytes: the rest is not acked")
        // …unless forced.
        XCTAssertEqual(try writer.prune(olderThanMs: nil, maxBytes: 100, force: true), 3)
        XCTAssertEqual(try reader.events(after: 0, limit: 100).map(\.seq), [10])
        XCTAssertEqual(try writer.prune(olderThanMs: nil, maxBytes: 0, force: true), 1)
        XCTAssertEqual(try reader.stats().eventCount, 0)
    }

    func testPruneBySizeAcrossManyChunks() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"), fsync: .off)
        defer { writer.close() }
        let total = StoreWriter.pruneChunkRows + 2_500
        _ = try writer.append((1...total).map { makeEvent($0, payloadBytes: 50) })
        XCTAssertEqual(try writer.prune(olderThanMs: nil, maxBytes: 50 * 100, force: false), total - 100)
        let reader = try StoreReader(path: dir.file("s.db"))
        XCTAssertEqual(try reader.stats().eventCount, 100)
        XCTAssertEqual(try reader.firstSeq(), Int64(total - 99))
    }

    func testSeqNeverReusedAfterPruneAndReopen() throws {
        let dir = try TempDir()
        let path = dir.file("s.db")
        do {
            let writer = try StoreWriter(path: path)
            _ = try writer.append((1...5).map { makeEvent($0) })
            XCTAssertEqual(try writer.prune(olderThanMs: Int64.max, maxBytes: nil, force: true), 5)
            let reader = try StoreReader(path: path)
            XCTAssertEqual(try reader.firstSeq(), 0)
            XCTAssertEqual(try reader.lastSeq(), 5, "the high-water mark survives pruning")
            XCTAssertEqual(try reader.seq(atOrAfterTimeMs: 0), 5)
            XCTAssertEqual(try writer.append([makeEvent(6)]), [.appended(seq: 6)])
            XCTAssertEqual(try writer.prune(olderThanMs: Int64.max, maxBytes: nil, force: true), 1)
            reader.close()
            writer.close()
        }
        let writer = try StoreWriter(path: path)
        defer { writer.close() }
        XCTAssertEqual(try writer.append([makeEvent(7)]), [.appended(seq: 7)])
    }

    func testDedupKeysOutliveEventsAndExpireSeparately() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        let now = StoreWriter.wallClockMs()
        let day: Int64 = 24 * 3_600 * 1_000
        _ = try writer.append([makeEvent(1, receivedAtMs: now - 10 * day), makeEvent(2, receivedAtMs: now - day)])
        // Event retention of 12 hours deletes both events…
        XCTAssertEqual(try writer.prune(olderThanMs: now - day / 2, maxBytes: nil, force: false), 2)
        // …but the 1-day-old dedup key stays (7-day minimum), so a redelivery is still caught.
        var redelivered2 = makeEvent(2)
        redelivered2.id = "evt_redelivered_2"
        XCTAssertEqual(try writer.append([redelivered2]), [.duplicate(existingId: "evt_tg_2", seq: 2)])
        // The 10-day-old key was dropped: that message is accepted again.
        var redelivered1 = makeEvent(1, receivedAtMs: now)
        redelivered1.id = "evt_redelivered_1"
        XCTAssertEqual(try writer.append([redelivered1]), [.appended(seq: 3)])

        XCTAssertEqual(try writer.pruneDedup(olderThanMs: now), 1, "evt_tg_2's key; evt_redelivered_1's is recent")
        var again2 = makeEvent(2)
        again2.id = "evt_third_2"
        XCTAssertEqual(try writer.append([again2]), [.appended(seq: 4)])
    }
}
