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
    /// The fake's process (Tests/Fakes), started by ChorusTestKit.
    let server: FakeServerProcess
    var port: Int { server.port }
    var process: Process { server.process }
    var baseURL: String { "http://127.0.0.1:\(port)" }

    init(token: String = FakeTelegram.defaultToken) throws {
        self.token = token
        server = try FakeServerProcess(script: "Tests/Fakes/fake_telegram/fake_telegram.py", arguments: ["--token", token])
    }

    static let defaultToken = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"

    deinit { stop() }

    func stop() {
        server.stop()
    }

    @discardableResult
    func admin(_ method: String, _ path: String, _ body: JSONValue? = nil) throws -> JSONValue {
        try server.admin(method, path, body)
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
        if let problems = SchemaCheck.problems(events) { XCTFail(problems, file: file, line: line) }
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
        try EventWait.events(c, count: n, timeoutMs: timeoutMs) { received.append($0) }
    }

    /// Reads events until one matches.
    func event(_ c: ChorusConnection, timeoutMs: Int = 15_000, where match: (JSONValue) -> Bool) throws -> JSONValue {
        try EventWait.event(c, timeoutMs: timeoutMs, seen: { received.append($0) }, where: match)
    }

    /// Every stored event matching `filter`, by replay.
    func replayAll(_ c: ChorusConnection, types: Set<String>? = nil) throws -> [JSONValue] {
        try EventWait.replayAll(c, types: types)
    }

    /// Sends and waits for the send's final status (`sent` or `failed`).
    func sendAndWait(_ c: ChorusConnection, _ message: JSONValue, timeoutMs: Int = 20_000,
                     file: StaticString = #filePath, line: UInt = #line) throws -> JSONValue
    {
        try EventWait.sendAndWait(c, message, timeoutMs: timeoutMs, seen: { received.append($0) })
    }

    func waitFor(timeout: TimeInterval = 10, _ what: String = "condition", _ condition: () throws -> Bool) throws {
        try waitUntil(timeout: timeout, what) { (try? condition()) == true }
    }
}
