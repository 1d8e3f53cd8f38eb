import Foundation
import XCTest
@testable import ChorusStore

/// A temporary directory removed at deinit.
final class TempDir {
    let path: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.path
        path = "\(base)/chorus-store-tests-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Builds a test event; `n` makes the id, dedup key (when asked) and payload unique.
func makeEvent(_ n: Int, instance: String = "tg", dedup: Bool = true, receivedAtMs: Int64? = nil,
               payloadBytes: Int = 40, conversation: String = "conv_1") -> NewEvent {
    var json = Array(#"{"n":\#(n),"pad":""#.utf8)
    json.append(contentsOf: [UInt8](repeating: UInt8(ascii: "x"), count: max(0, payloadBytes - json.count - 2)))
    json.append(contentsOf: Array(#""}"#.utf8))
    return NewEvent(id: "evt_\(instance)_\(n)", instance: instance, channelKind: "telegram", type: "message",
                    direction: "inbound", conversationId: conversation,
                    dedupKey: dedup ? "message:\(n)" : nil, receivedAtMs: receivedAtMs ?? (1_000_000 + Int64(n)),
                    json: json)
}

func makeSend(_ id: String, client: String = "uid:1000", key: String?, state: String = "accepted",
              createdAtMs: Int64 = 5_000) -> SendRecord {
    SendRecord(id: id, idempotencyKey: key, client: client, instance: "tg", conversationId: "conv_1",
               state: state, attempts: 0, createdAtMs: createdAtMs, updatedAtMs: createdAtMs,
               json: Array(#"{"text":"hi \#(id)"}"#.utf8))
}

extension XCTestCase {
    /// Asserts that `body` throws a ``StoreError`` matching `predicate`.
    func assertStoreError<T>(_ body: @autoclosure () throws -> T, _ predicate: (StoreError) -> Bool,
                             file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected a StoreError", file: file, line: line)
        } catch let error as StoreError {
            XCTAssertTrue(predicate(error), "unexpected error \(error)", file: file, line: line)
        } catch {
            XCTFail("unexpected non-store error \(error)", file: file, line: line)
        }
    }
}
