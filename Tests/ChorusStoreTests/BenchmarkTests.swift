import XCTest
@testable import ChorusStore

final class BenchmarkTests: XCTestCase {
    func testBenchmarkWritesReadsAndCleansUp() throws {
        let dir = try TempDir()
        let result = try StoreBenchmark.measure(directory: dir.path, events: 300, batchSize: 64, payloadBytes: 500,
                                                fsync: .off)
        XCTAssertEqual(result.events, 300)
        XCTAssertEqual(result.batches, 5, "4 full batches of 64 and one of 44")
        XCTAssertGreaterThan(result.writeEventsPerSecond, 0)
        XCTAssertGreaterThan(result.readEventsPerSecond, 0)
        XCTAssertLessThanOrEqual(result.p50MicrosPerBatch, result.maxMicrosPerBatch)
        XCTAssertGreaterThan(result.databaseBytes + result.walBytes, Int64(300 * 500))
        XCTAssertTrue(result.report.contains("batch 64, payload 500 B, fsync off"))
        XCTAssertTrue(result.report.contains("events/s"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [],
                       "the benchmark database is removed")

        let text = try StoreBenchmark.run(directory: dir.path, events: 10, batchSize: 3, payloadBytes: 20,
                                          fsync: .grouped)
        XCTAssertTrue(text.hasPrefix("ChorusStore benchmark: 10 events, batch 3, payload 20 B, fsync grouped"))
    }

    func testPayloadHasRequestedSize() {
        XCTAssertEqual(StoreBenchmark.makePayload(bytes: 500).count, 500)
        XCTAssertEqual(StoreBenchmark.makePayload(bytes: 5).count, 5)
        let payload = StoreBenchmark.makePayload(bytes: 40)
        XCTAssertEqual(String(decoding: payload.prefix(9), as: UTF8.self), #"{"text":""#)
        XCTAssertEqual(payload.last, UInt8(ascii: "}"))
    }
}
