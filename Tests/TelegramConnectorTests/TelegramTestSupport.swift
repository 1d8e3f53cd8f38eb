import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The fake Bot API (`Tests/Fakes/fake_telegram/fake_telegram.py`) as a subprocess, and its admin API.
final class FakeTelegram {
    let token: String
    let process: Process
    let port: Int
    var baseURL: String { "http://127.0.0.1:\(port)" }

    init(token: String = FakeTelegram.defaultToken) throws {
        self.token = token
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", TestPaths.repoRoot() + "/Tests/Fakes/fake_telegram/fake_telegram.py", "--token", token]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.standardError
        try p.run()
        process = p
        // The first line is "PORT <n>".
        var line = [UInt8]()
        let fh = out.fileHandleForReading
        while true {
            let b = fh.readData(ofLength: 1)
            if b.isEmpty { throw TestKitError("fake_telegram.py exited before printing its port") }
            if b[0] == 10 { break }
            line.append(b[0])
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5)) else { throw TestKitError("fake_telegram.py printed \(text)") }
        self.port = port
    }

    static let defaultToken = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"

    deinit { stop() }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
    }

    @discardableResult
    func admin(_ method: String, _ path: String, _ body: JSONValue? = nil) throws -> JSONValue {
        let r = try HTTPTestClient.request(port: port, method: method, path: path, headers: [("Content-Type", "application/json")],
                                           body: body.map { JSONWriter.encode($0) } ?? [])
        guard r.status == 200 else { throw TestKitError("fake admin \(method) \(path): \(r.status) \(r.body)") }
        return try JSONParser.parse(r.body)
    }

    func enqueue(_ updates: [JSONValue]) throws { try admin("POST", "/admin/updates", .array(updates)) }

    /// The next `count` calls of `method` fail with this Bot API error.
    func scriptError(_ method: String, code: Int, description: String? = nil, retryAfter: Int? = nil, count: Int = 1) throws {
        var e: JSONObject = ["method": .string(method), "error_code": .int(code), "count": .int(count)]
        if let d = description { e["description"] = .string(d) }
        if let r = retryAfter { e["retry_after"] = .int(r) }
        try admin("POST", "/admin/errors", .object(e))
    }

    /// Requests the fake received (optionally of one method), oldest first.
    func requests(_ method: String? = nil) throws -> [JSONValue] {
        try admin("GET", "/admin/requests" + (method.map { "?method=\($0)" } ?? ""))["requests"]?.arrayValue ?? []
    }

    func violations() throws -> [JSONValue] { try admin("GET", "/admin/violations")["violations"]?.arrayValue ?? [] }

    func state() throws -> JSONValue { try admin("GET", "/admin/state") }
}

enum TelegramTestSupport {
    static let root = TestPaths.repoRoot()

    /// Makes sure python-telegram-bot is importable, installing it with pip when it is not.
    static func ensurePythonTelegramBot() throws {
        if (try? TestProcess.run("/usr/bin/env", ["python3", "-c", "import telegram"]))?.0 == 0 { return }
        let (status, out, err) = try TestProcess.run("/usr/bin/env", ["python3", "-m", "pip", "install", "--quiet", "python-telegram-bot"], timeout: 300)
        guard status == 0, (try? TestProcess.run("/usr/bin/env", ["python3", "-c", "import telegram"]))?.0 == 0 else {
            throw TestKitError("python-telegram-bot is required by these tests and could not be installed "
                + "(python3 -m pip install python-telegram-bot): \(out)\(err)")
        }
    }

    /// Builds Update payloads with python-telegram-bot (`make_updates.py`), one per spec.
    static func buildUpdates(_ specs: [JSONValue]) throws -> [JSONValue] {
        try ensurePythonTelegramBot()
        let input = TestPaths.temporaryDirectory("tg-specs") + "/specs.json"
        try JSONWriter.encodeString(.array(specs)).write(toFile: input, atomically: true, encoding: .utf8)
        let (status, out, err) = try TestProcess.run("/bin/sh", ["-c", "python3 \"$0\" < \"$1\"", root + "/Tests/Fakes/fake_telegram/make_updates.py", input])
        guard status == 0 else { throw TestKitError("make_updates.py failed (\(status)): \(err)") }
        guard case .array(let a) = try JSONParser.parse(out) else { throw TestKitError("make_updates.py printed no array") }
        return a
    }

    /// A documented update from `Tests/Fixtures/telegram`.
    static func fixture(_ name: String) throws -> JSONValue {
        let data = try Data(contentsOf: URL(fileURLWithPath: root + "/Tests/Fixtures/telegram/\(name).json"))
        return try JSONParser.parse(Array(data))
    }

    /// `[[instance]]` TOML for a Telegram instance; the token goes through a `bot_token_file`.
    static func instance(name: String = "tg", fake: FakeTelegram, directory: String, mode: String = "polling",
                         extra: [String: String] = [:]) throws -> String
    {
        let tokenFile = directory + "/\(name).token"
        try (fake.token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        var settings: [(String, String)] = [
            ("bot_token_file", "\"\(tokenFile)\""), ("mode", "\"\(mode)\""), ("api_base_url", "\"\(fake.baseURL)\""),
            ("poll_timeout_s", "1"), ("chat_interval_ms", "0"),
        ]
        if mode == "webhook" { settings.append(("webhook_secret", "\"\(webhookSecret)\"")) }
        for (k, v) in extra.sorted(by: { $0.key < $1.key }) {
            settings.removeAll { $0.0 == k }
            settings.append((k, v))
        }
        return "[[instance]]\nname = \"\(name)\"\nplugin = \"telegram\"\n[instance.settings]\n"
            + settings.map { "\($0.0) = \($0.1)" }.joined(separator: "\n") + "\n"
    }

    static let webhookSecret = "s3cr3t-Token_for-tests"
}

/// Helpers shared by the test cases: subscriptions, waiting and schema validation.
class TelegramTestCase: XCTestCase {
    var received: [JSONValue] = []

    override func tearDown() {
        if !received.isEmpty { assertSchemaValid(received) }
        received = []
        super.tearDown()
    }

    func assertSchemaValid(_ events: [JSONValue], file: StaticString = #filePath, line: UInt = #line) {
        let root = TestPaths.repoRoot()
        let schema = root + "/schema/chorus-event-v1.schema.json"
        let path = TestPaths.temporaryDirectory("tg-events") + "/events.ndjson"
        let text = events.map { JSONWriter.encodeString($0) }.joined(separator: "\n") + "\n"
        try? text.write(toFile: path, atomically: true, encoding: .utf8)
        guard let (status, out, err) = try? TestProcess.run("/usr/bin/env", ["python3", root + "/tools/validate_events.py", schema, path]) else {
            return XCTFail("could not run the schema validator", file: file, line: line)
        }
        XCTAssertEqual(status, 0, "events do not match the JSON Schema:\n\(out)\n\(err)", file: file, line: line)
    }

    func connect(_ d: TestDaemon) throws -> ChorusConnection {
        try ChorusConnection(path: d.socketPath, timeoutMilliseconds: 10_000)
    }

    /// Subscribes (from now) and returns the connection.
    func subscribe(_ d: TestDaemon, types: Set<String>? = nil) throws -> ChorusConnection {
        let c = try connect(d)
        let r = try c.request(.subscribe(name: nil, filter: types.map { SubscriptionFilter(types: $0) }, from: .now))
        guard case .reply = r else { throw TestKitError("subscribe refused: \(r)") }
        return c
    }

    /// Reads events until `n` arrived.
    func events(_ c: ChorusConnection, count n: Int, timeoutMs: Int = 15_000) throws -> [JSONValue] {
        var out: [JSONValue] = []
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while out.count < n {
            let left = Int(deadline.timeIntervalSinceNow * 1000)
            if left <= 0 { throw TestKitError("timed out with \(out.count)/\(n) events: \(out.map { JSONWriter.encodeString($0) })") }
            if case .event(let sub, _, let event) = try c.nextMessage(timeoutMilliseconds: left), !sub.hasPrefix("replay-") {
                out.append(event)
                received.append(event)
            }
        }
        return out
    }

    /// Reads events until one matches.
    func event(_ c: ChorusConnection, timeoutMs: Int = 15_000, where match: (JSONValue) -> Bool) throws -> JSONValue {
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while true {
            let left = Int(deadline.timeIntervalSinceNow * 1000)
            if left <= 0 { throw TestKitError("timed out waiting for an event") }
            if case .event(let sub, _, let event) = try c.nextMessage(timeoutMilliseconds: left), !sub.hasPrefix("replay-") {
                received.append(event)
                if match(event) { return event }
            }
        }
    }

    /// Every stored event matching `filter`, by replay.
    func replayAll(_ c: ChorusConnection, types: Set<String>? = nil) throws -> [JSONValue] {
        let r = try c.request(.replay(filter: SubscriptionFilter(types: types), fromCursor: 0, toCursor: nil, fromTimeMs: nil, toTimeMs: nil, limit: nil))
        guard case .reply("replay_done", _, let done) = r else { throw TestKitError("no replay_done: \(r)") }
        let n = Int(done["count"]?.intValue ?? 0)
        var out: [JSONValue] = []
        while out.count < n, let m = try? c.nextMessage(timeoutMilliseconds: 2000) {
            if case .event(let sub, _, let ev) = m, sub.hasPrefix("replay-") { out.append(ev) }
        }
        return out
    }

    /// Sends and waits for the send's final status (`sent` or `failed`).
    func sendAndWait(_ c: ChorusConnection, _ message: JSONValue, timeoutMs: Int = 20_000,
                     file: StaticString = #filePath, line: UInt = #line) throws -> JSONValue
    {
        let r = try c.request(.send(idempotencyKey: nil, message: message))
        guard case .reply("accepted", _, let body) = r, let id = body["message_id"]?.stringValue else {
            throw TestKitError("send not accepted: \(r)")
        }
        return try event(c, timeoutMs: timeoutMs) { ev in
            ev["type"]?.stringValue == "status" && ev["status"]?["message_id"]?.stringValue == id
                && ["sent", "failed"].contains(ev["status"]?["state"]?.stringValue ?? "")
        }
    }

    func waitFor(timeout: TimeInterval = 10, _ what: String = "condition", _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? condition()) == true { return }
            usleep(50_000)
        }
        throw TestKitError("timed out waiting for \(what)")
    }
}
