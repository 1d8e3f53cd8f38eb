import ChorusClient
import ChorusJSON
import ChorusProtocol
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A local fake of a vendor API (Tests/Fakes/*), run as a Python subprocess that
/// prints `PORT <n>` as its first line once it listens on 127.0.0.1.
public final class FakeServerProcess: @unchecked Sendable {
    public let process = Process()
    public let port: Int
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    /// `script` is relative to the repository root; `arguments` follow it.
    public init(script: String, arguments: [String] = [], showErrors: Bool = true) throws {
        let path = TestPaths.repoRoot() + "/" + script
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", path] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = showErrors ? FileHandle.standardError : FileHandle.nullDevice
        try process.run()
        var line = [UInt8]()
        let fh = out.fileHandleForReading
        while true {
            let b = fh.readData(ofLength: 1)
            if b.isEmpty { throw TestKitError("\(script) exited before printing its port") }
            if b[0] == 10 { break }
            line.append(b[0])
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("PORT "), let p = Int(text.dropFirst(5).trimmingCharacters(in: .whitespaces)) else {
            throw TestKitError("\(script) printed \(text) instead of PORT <n>")
        }
        port = p
    }

    deinit { stop() }

    public func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
    }

    /// A call to the fake's admin API: must answer 200 with JSON, which is returned.
    @discardableResult
    public func admin(_ method: String, _ path: String, _ body: JSONValue? = nil) throws -> JSONValue {
        let r = try request(method, path, json: body)
        guard r.status == 200 else { throw TestKitError("fake admin \(method) \(path): \(r.status) \(r.body)") }
        return try JSONParser.parse(r.body)
    }

    /// An HTTP request to the fake with an optional JSON body.
    public func request(_ method: String, _ path: String, json: JSONValue? = nil) throws -> HTTPTestResponse {
        try HTTPTestClient.request(port: port, method: method, path: path, headers: [("Content-Type", "application/json")],
                                   body: json.map { JSONWriter.encode($0) } ?? [])
    }
}

/// Waiting for what chorusd sends on the socket.
public enum EventWait {
    /// Reads frames until `count` events arrived (replay frames skipped); each is passed to `seen`.
    public static func events(_ c: ChorusConnection, count n: Int, timeoutMs: Int,
                              seen: (JSONValue) -> Void = { _ in }) throws -> [JSONValue]
    {
        var out: [JSONValue] = []
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while out.count < n {
            let left = Int(deadline.timeIntervalSinceNow * 1000)
            if left <= 0 { throw TestKitError("timed out with \(out.count)/\(n) events: \(out.map { JSONWriter.encodeString($0) })") }
            if case .event(let sub, _, let event) = try c.nextMessage(timeoutMilliseconds: left), !sub.hasPrefix("replay-") {
                seen(event)
                out.append(event)
            }
        }
        return out
    }

    /// Reads events until one matches `match`; every event read is passed to `seen`.
    public static func event(_ c: ChorusConnection, timeoutMs: Int, seen: (JSONValue) -> Void = { _ in },
                             where match: (JSONValue) -> Bool) throws -> JSONValue
    {
        var others: [String] = []
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while true {
            let left = Int(deadline.timeIntervalSinceNow * 1000)
            if left <= 0 { throw TestKitError("no matching event within \(timeoutMs) ms; seen: \(others)") }
            if case .event(let sub, _, let event) = try c.nextMessage(timeoutMilliseconds: left), !sub.hasPrefix("replay-") {
                seen(event)
                if match(event) { return event }
                others.append(JSONWriter.encodeString(event))
            }
        }
    }

    /// Sends `message` and reads events until its final send status (`sent` or `failed`) arrives;
    /// every event read is passed to `seen`. Throws when the daemon does not accept the send.
    public static func sendAndWait(_ c: ChorusConnection, _ message: JSONValue, timeoutMs: Int,
                                   seen: (JSONValue) -> Void = { _ in }) throws -> JSONValue
    {
        let id = try send(c, message)
        return try event(c, timeoutMs: timeoutMs, seen: seen) { isFinalStatus($0, of: id) }
    }

    /// Sends `message`; returns its Chorus message id, or throws when the daemon does not accept it.
    public static func send(_ c: ChorusConnection, _ message: JSONValue) throws -> String {
        let r = try c.request(.send(idempotencyKey: nil, message: message))
        guard case .reply("accepted", _, let body) = r, let id = body["message_id"]?.stringValue else {
            throw TestKitError("send not accepted: \(r)")
        }
        return id
    }

    /// Whether `event` is the final status (`sent` or `failed`) of the send `messageId`.
    public static func isFinalStatus(_ event: JSONValue, of messageId: String) -> Bool {
        event["type"]?.stringValue == "status" && event["status"]?["message_id"]?.stringValue == messageId
            && ["sent", "failed"].contains(event["status"]?["state"]?.stringValue ?? "")
    }

    /// Every stored event (optionally of these types), replayed on a connection of its own to `socketPath`.
    public static func stored(socketPath: String, types: Set<String>? = nil) throws -> [JSONValue] {
        let c = try ChorusConnection(path: socketPath, timeoutMilliseconds: 10_000)
        defer { c.close() }
        return try replayAll(c, types: types)
    }

    /// Every stored event (optionally of these types), read back with `replay`.
    public static func replayAll(_ c: ChorusConnection, types: Set<String>? = nil) throws -> [JSONValue] {
        let r = try c.request(.replay(filter: SubscriptionFilter(types: types), fromCursor: 0, toCursor: nil,
                                      fromTimeMs: nil, toTimeMs: nil, limit: nil))
        guard case .reply("replay_done", _, let done) = r else { throw TestKitError("no replay_done: \(r)") }
        let n = Int(done["count"]?.intValue ?? 0)
        var out: [JSONValue] = []
        while out.count < n, let m = try? c.nextMessage(timeoutMilliseconds: 2000) {
            if case .event(let sub, _, let ev) = m, sub.hasPrefix("replay-") { out.append(ev) }
        }
        return out
    }
}

/// Checks events against the published JSON Schema with tools/validate_events.py (python jsonschema).
public enum SchemaCheck {
    /// nil when every event is valid, else the validator's report.
    public static func problems(_ events: [JSONValue]) -> String? {
        let root = TestPaths.repoRoot()
        let schema = root + "/schema/chorus-event-v1.schema.json"
        let path = TestPaths.temporaryDirectory("chorus-events") + "/events.ndjson"
        let text = events.map { JSONWriter.encodeString($0) }.joined(separator: "\n") + "\n"
        do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch { return "cannot write \(path): \(error)" }
        guard let (status, out, err) = try? TestProcess.run("/usr/bin/env", ["python3", root + "/tools/validate_events.py", schema, path]) else {
            return "could not run the schema validator"
        }
        return status == 0 ? nil : "events do not match the JSON Schema:\n\(out)\n\(err)"
    }
}

/// Polls `condition` until it holds or `timeout` passes.
public func waitUntil(timeout: TimeInterval = 10, _ what: String = "condition", _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        usleep(20_000)
    }
    throw TestKitError("timed out after \(timeout) s waiting for \(what)")
}
