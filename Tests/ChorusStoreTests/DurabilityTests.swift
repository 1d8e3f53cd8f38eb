import Dispatch
import Foundation
import XCTest
@testable import ChorusStore
#if canImport(Glibc)
import Glibc
#endif

final class DurabilityTests: XCTestCase {
    // MARK: Disk full

    func testDiskFullFromMaxPageCountRollsBackAndRecovers() throws {
        let dir = try TempDir()
        let writer = try StoreWriter(path: dir.file("s.db"))
        defer { writer.close() }
        let reader = try StoreReader(path: dir.file("s.db"))
        _ = try writer.append((1...20).map { makeEvent($0, payloadBytes: 1_000) })
        let pages = try writer.pageCount()
        XCTAssertEqual(try writer.setMaxPageCount(pages + 8), pages + 8)

        var next = 21
        var committed = 20
        var failedBatch: [NewEvent]?
        for _ in 0..<200 {
            let batch = (next..<(next + 10)).map { makeEvent($0, payloadBytes: 2_000) }
            do {
                _ = try writer.append(batch)
                committed += batch.count
                next += batch.count
            } catch let error as StoreError {
                guard case .diskFull = error else { return XCTFail("expected diskFull, got \(error)") }
                failedBatch = batch
                break
            }
        }
        let failed = try XCTUnwrap(failedBatch, "the page cap never filled up")

        // Nothing committed before is lost, and the failed batch left no trace.
        let events = try reader.events(after: 0, limit: 10_000)
        XCTAssertEqual(events.count, committed)
        XCTAssertEqual(events.map(\.seq), Array(1...Int64(committed)))
        XCTAssertNil(try reader.event(id: failed[0].id))
        XCTAssertEqual(try reader.stats().eventCount, Int64(committed))

        // Space returns: commits work again and seqs continue without a gap.
        try writer.setMaxPageCount(1_000_000)
        let outcomes = try writer.append(failed)
        XCTAssertEqual(outcomes, (0..<failed.count).map { .appended(seq: Int64(committed + 1 + $0)) })
        XCTAssertEqual(try reader.lastSeq(), Int64(committed + failed.count))
    }

    func testRealENOSPCOnSmallTmpfs() throws {
        let dir = try TempDir()
        let mountPoint = dir.file("tiny")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        guard mount("tmpfs", mountPoint, "tmpfs", 0, "size=1m") == 0 else {
            throw XCTSkip("cannot mount a tmpfs here: \(String(cString: strerror(errno)))")
        }
        defer { umount2(mountPoint, Int32(MNT_DETACH)) }

        // Reserve space we can give back later.
        let filler = "\(mountPoint)/filler"
        try Data(repeating: 0xAB, count: 256 * 1024).write(to: URL(fileURLWithPath: filler))

        let path = "\(mountPoint)/s.db"
        let writer = try StoreWriter(path: path)
        defer { writer.close() }
        let reader = try StoreReader(path: path)
        var next = 1
        var committed = 0
        var failure: StoreError?
        var failedBatch: [NewEvent] = []
        for _ in 0..<1_000 {
            let batch = (next..<(next + 8)).map { makeEvent($0, payloadBytes: 4_000) }
            do {
                _ = try writer.append(batch)
                committed += batch.count
                next += batch.count
            } catch let error as StoreError {
                failure = error
                failedBatch = batch
                break
            }
        }
        let error = try XCTUnwrap(failure, "1 MiB tmpfs never filled up")
        XCTAssertTrue(error.isDiskFull, "ENOSPC must map to diskFull, got \(error)")
        XCTAssertGreaterThan(committed, 0)

        let events = try reader.events(after: 0, limit: 10_000)
        XCTAssertEqual(events.count, committed)
        XCTAssertEqual(events.last?.json, makeEvent(committed, payloadBytes: 4_000).json)

        // Space comes back: the same batch commits.
        try FileManager.default.removeItem(atPath: filler)
        let outcomes = try writer.append(failedBatch)
        XCTAssertEqual(outcomes.count, failedBatch.count)
        XCTAssertEqual(outcomes.first, .appended(seq: Int64(committed + 1)))
        XCTAssertEqual(try reader.events(after: 0, limit: 10_000).count, committed + failedBatch.count)
        reader.close()
    }

    // MARK: Crash safety

    /// Copies the database and its WAL while the writer is still open and mid-life — exactly what a
    /// `kill -9` or power cut leaves on disk once the data has been flushed — then opens the copy.
    private func copyLiveStore(from path: String, to copy: String) throws {
        try FileManager.default.copyItem(atPath: path, toPath: copy)
        if FileManager.default.fileExists(atPath: path + "-wal") {
            try FileManager.default.copyItem(atPath: path + "-wal", toPath: copy + "-wal")
        }
    }

    func testReopenAfterUncleanStopKeepsEveryCommittedBatch() throws {
        for policy in FsyncPolicy.allCases {
            let dir = try TempDir()
            let path = dir.file("s.db")
            let writer = try StoreWriter(path: path, fsync: policy)
            var seqs: [Int64] = []
            for batch in 0..<30 {
                let outcomes = try writer.append((0..<7).map { makeEvent(batch * 7 + $0 + 1) })
                for case .appended(let seq) in outcomes { seqs.append(seq) }
                _ = try writer.commit([.putKV(instance: "tg", key: "offset", value: Array("\(batch)".utf8))])
            }
            XCTAssertGreaterThan(StoreReader.fileSize(path + "-wal"), 0, "\(policy): data still in the WAL")
            let copy = dir.file("crashed.db")
            try copyLiveStore(from: path, to: copy)
            writer.close()

            let recovered = try StoreWriter(path: copy, fsync: policy)
            defer { recovered.close() }
            let reader = try StoreReader(path: copy)
            let events = try reader.events(after: 0, limit: 1_000)
            XCTAssertEqual(events.map(\.seq), seqs, "\(policy)")
            XCTAssertEqual(events.count, 210, "\(policy)")
            XCTAssertEqual(try reader.kv(instance: "tg", key: "offset"), Array("29".utf8), "\(policy)")
            XCTAssertEqual(try recovered.append([makeEvent(1), makeEvent(500)]),
                           [.duplicate(existingId: "evt_tg_1", seq: 1), .appended(seq: 211)], "\(policy)")
        }
    }

    func testTornWALTailLosesAtMostTheLastBatchWhole() throws {
        let dir = try TempDir()
        let path = dir.file("s.db")
        let writer = try StoreWriter(path: path, fsync: .grouped)
        defer { writer.close() }
        for batch in 0..<10 {
            _ = try writer.append((0..<20).map { makeEvent(batch * 20 + $0 + 1, payloadBytes: 300) })
        }
        let copy = dir.file("torn.db")
        try copyLiveStore(from: path, to: copy)
        // Cut the WAL in the middle of the last transaction's frames, like a power loss mid-write.
        let walSize = StoreReader.fileSize(copy + "-wal")
        XCTAssertEqual(truncate(copy + "-wal", off_t(walSize - 1_000)), 0)

        let recovered = try StoreWriter(path: copy)
        defer { recovered.close() }
        let reader = try StoreReader(path: copy)
        let events = try reader.events(after: 0, limit: 1_000)
        XCTAssertEqual(events.count, 180, "the torn last batch is dropped as a whole, the 9 before it survive")
        XCTAssertEqual(events.map(\.seq), Array(1...180))
        XCTAssertEqual(try reader.stats().eventCount, 180)
    }

    // MARK: Concurrency

    func testReadersSeeOnlyWholeCommittedBatchesWhileWriterRuns() throws {
        let dir = try TempDir()
        let path = dir.file("s.db")
        let writer = try StoreWriter(path: path, fsync: .off)
        defer { writer.close() }
        let batchSize = 5
        let batches = 300
        let state = SharedState()
        let group = DispatchGroup()

        for readerIndex in 0..<2 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                do {
                    let reader = try StoreReader(path: path)
                    defer { reader.close() }
                    var reads = 0
                    var previousLast: Int64 = 0
                    while true {
                        let finished = state.isFinished
                        let events = try reader.events(after: 0, limit: 100_000)
                        let last = events.last?.seq ?? 0
                        if events.map(\.seq) != Array(stride(from: Int64(1), through: last, by: 1)) {
                            state.fail("reader \(readerIndex): seqs not contiguous")
                        }
                        if last % Int64(batchSize) != 0 {
                            state.fail("reader \(readerIndex): saw a partial batch ending at \(last)")
                        }
                        if last < previousLast { state.fail("reader \(readerIndex): went backwards") }
                        previousLast = last
                        let lastSeq = try reader.lastSeq()
                        if lastSeq < last { state.fail("reader \(readerIndex): lastSeq \(lastSeq) < \(last)") }
                        reads += 1
                        if finished { break }
                    }
                    state.recordReads(reads, final: previousLast)
                } catch {
                    state.fail("reader \(readerIndex): \(error)")
                }
            }
        }

        group.enter()
        Thread.detachNewThread {
            defer { group.leave() }
            do {
                for b in 0..<batches {
                    _ = try writer.append((0..<batchSize).map { makeEvent(b * batchSize + $0 + 1) })
                }
            } catch {
                state.fail("writer: \(error)")
            }
            state.finish()
        }

        XCTAssertEqual(group.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(state.failures, [])
        XCTAssertEqual(state.finals, [Int64(batches * batchSize), Int64(batches * batchSize)],
                       "each reader's last read happened after the writer finished")
        XCTAssertGreaterThanOrEqual(state.totalReads, 2)
    }
}

/// Cross-thread bookkeeping for the concurrency test.
private final class SharedState: @unchecked Sendable {
    private let lock = NSLock()
    private var finished = false
    private var _failures: [String] = []
    private var _finals: [Int64] = []
    private var _reads = 0

    var isFinished: Bool { lock.withLock { finished } }
    func finish() { lock.withLock { finished = true } }
    func fail(_ message: String) { lock.withLock { if _failures.count < 20 { _failures.append(message) } } }
    func recordReads(_ n: Int, final: Int64) { lock.withLock { _reads += n; _finals.append(final) } }
    var failures: [String] { lock.withLock { _failures } }
    var finals: [Int64] { lock.withLock { _finals } }
    var totalReads: Int { lock.withLock { _reads } }
}
