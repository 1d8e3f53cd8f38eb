import Foundation

/// A self-contained write/read benchmark of the store, for `chorus-bench` and `docs/storage.md`.
public enum StoreBenchmark {
    /// Measured figures of one run.
    public struct Result: Sendable, Equatable {
        public let events: Int
        public let batchSize: Int
        public let payloadBytes: Int
        public let fsync: FsyncPolicy
        public let batches: Int
        /// Committed events per second (commit time only, not building the ops).
        public let writeEventsPerSecond: Double
        public let meanMicrosPerBatch: Double
        public let p50MicrosPerBatch: Double
        public let p99MicrosPerBatch: Double
        public let maxMicrosPerBatch: Double
        /// Events per second read back with `events(after:limit:)` in pages of ``readPageSize``.
        public let readEventsPerSecond: Double
        public let readPageSize: Int
        public let databaseBytes: Int64
        public let walBytes: Int64

        /// A human-readable multi-line report.
        public var report: String {
            func f(_ v: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", v) }
            return """
                ChorusStore benchmark: \(events) events, batch \(batchSize), payload \(payloadBytes) B, \
                fsync \(fsync.rawValue)
                  write: \(f(writeEventsPerSecond)) events/s, \(batches) commits, µs per commit: \
                mean \(f(meanMicrosPerBatch)), p50 \(f(p50MicrosPerBatch)), p99 \(f(p99MicrosPerBatch)), \
                max \(f(maxMicrosPerBatch))
                  read:  \(f(readEventsPerSecond)) events/s (pages of \(readPageSize))
                  files: database \(databaseBytes) B, wal \(walBytes) B

                """
        }
    }

    /// Runs the benchmark in a fresh database inside `directory` (removed afterwards) and returns the report.
    ///
    /// Appends `events` events carrying a dedup key and a `payloadBytes`-byte JSON body, `batchSize` per
    /// ``StoreWriter/commit(_:)``, then reads them all back.
    public static func run(directory: String, events: Int, batchSize: Int, payloadBytes: Int,
                           fsync: FsyncPolicy) throws -> String {
        try measure(directory: directory, events: events, batchSize: batchSize, payloadBytes: payloadBytes,
                    fsync: fsync).report
    }

    /// Like ``run(directory:events:batchSize:payloadBytes:fsync:)`` but returns the figures.
    public static func measure(directory: String, events: Int, batchSize: Int, payloadBytes: Int,
                               fsync: FsyncPolicy) throws -> Result {
        precondition(events > 0 && batchSize > 0 && payloadBytes >= 0, "invalid benchmark parameters")
        let path = "\(directory)/chorus-store-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).db"
        defer {
            for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
        }
        let writer = try StoreWriter(path: path, fsync: fsync)
        defer { writer.close() }

        let payload = makePayload(bytes: payloadBytes)
        let clock = ContinuousClock()
        var commitMicros: [Double] = []
        commitMicros.reserveCapacity(events / batchSize + 1)
        var written = 0
        let baseTime: Int64 = 1_700_000_000_000
        while written < events {
            let n = min(batchSize, events - written)
            var ops: [WriteOp] = []
            ops.reserveCapacity(n)
            for i in written..<(written + n) {
                ops.append(.appendEvent(NewEvent(
                    id: "evt_bench_\(i)", instance: "bench", channelKind: "sandbox", type: "message",
                    direction: "inbound", conversationId: "conv_\(i % 64)", dedupKey: "message:\(i)",
                    receivedAtMs: baseTime + Int64(i), json: payload)))
            }
            let start = clock.now
            _ = try writer.commit(ops)
            commitMicros.append(micros(clock.now - start))
            written += n
        }
        let writeSeconds = commitMicros.reduce(0, +) / 1_000_000

        let reader = try StoreReader(path: path)
        defer { reader.close() }
        let pageSize = 1_000
        var cursor: Int64 = 0
        var read = 0
        let readStart = clock.now
        while true {
            let page = try reader.events(after: cursor, limit: pageSize)
            guard let last = page.last else { break }
            read += page.count
            cursor = last.seq
        }
        let readSeconds = micros(clock.now - readStart) / 1_000_000
        guard read == events else {
            throw StoreError.other(code: 0, message: "benchmark read back \(read) of \(events) events")
        }
        let stats = try reader.stats()

        let sorted = commitMicros.sorted()
        func percentile(_ p: Double) -> Double {
            sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
        }
        return Result(events: events, batchSize: batchSize, payloadBytes: payloadBytes, fsync: fsync,
                      batches: commitMicros.count,
                      writeEventsPerSecond: Double(events) / max(writeSeconds, 1e-9),
                      meanMicrosPerBatch: commitMicros.reduce(0, +) / Double(commitMicros.count),
                      p50MicrosPerBatch: percentile(0.5), p99MicrosPerBatch: percentile(0.99),
                      maxMicrosPerBatch: sorted.last ?? 0,
                      readEventsPerSecond: Double(read) / max(readSeconds, 1e-9), readPageSize: pageSize,
                      databaseBytes: stats.databaseBytes, walBytes: stats.walBytes)
    }

    private static func micros(_ d: Duration) -> Double {
        let (seconds, attoseconds) = d.components
        return Double(seconds) * 1_000_000 + Double(attoseconds) / 1_000_000_000_000
    }

    /// A JSON object of exactly `bytes` bytes when `bytes >= 12` (`{"text":"…"}`), filler otherwise.
    static func makePayload(bytes: Int) -> [UInt8] {
        let prefix = Array(#"{"text":""#.utf8)
        let suffix = Array(#""}"#.utf8)
        guard bytes >= prefix.count + suffix.count else { return [UInt8](repeating: UInt8(ascii: "x"), count: bytes) }
        let filler = (0..<(bytes - prefix.count - suffix.count)).map { UInt8(ascii: "a") + UInt8($0 % 26) }
        return prefix + filler + suffix
    }
}
