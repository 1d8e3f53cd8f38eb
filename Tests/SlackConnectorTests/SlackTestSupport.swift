import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The fake Web API (`Tests/Fakes/fake_slack/fake_slack.py`) as a subprocess, and its admin API.
final class FakeSlack {
    let token: String
    /// The fake's process (Tests/Fakes), started by ChorusTestKit.
    let server: FakeServerProcess
    var port: Int { server.port }
    var process: Process { server.process }
    var baseURL: String { "http://127.0.0.1:\(port)/api" }
    var blobBase: String { "http://127.0.0.1:\(port)/blobs" }

    init(token: String = FakeSlack.defaultToken) throws {
        try SlackTestSupport.ensureSlackSDK()
        self.token = token
        server = try FakeServerProcess(script: "Tests/Fakes/fake_slack/fake_slack.py", arguments: ["--token", token])
    }

    static let defaultToken = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"

    deinit { stop() }

    func stop() {
        server.stop()
    }

    @discardableResult
    func admin(_ method: String, _ path: String, _ body: JSONValue? = nil) throws -> JSONValue {
        try server.admin(method, path, body)
    }

    /// The next `count` calls of `method` fail with a Slack error, or with HTTP 429 and Retry-After.
    func scriptError(_ method: String, error: String? = nil, httpStatus: Int? = nil, retryAfter: Int? = nil, count: Int = 1) throws {
        var e: JSONObject = ["method": .string(method), "count": .int(count)]
        if let error { e["error"] = .string(error) }
        if let httpStatus { e["http_status"] = .int(httpStatus) }
        if let retryAfter { e["retry_after"] = .int(retryAfter) }
        try admin("POST", "/admin/errors", .object(e))
    }

    func requests(_ method: String? = nil) throws -> [JSONValue] {
        try admin("GET", "/admin/requests" + (method.map { "?method=\($0)" } ?? ""))["requests"]?.arrayValue ?? []
    }

    func violations() throws -> [JSONValue] { try admin("GET", "/admin/violations")["violations"]?.arrayValue ?? [] }
    func messages() throws -> [JSONValue] { try admin("GET", "/admin/messages")["messages"]?.arrayValue ?? [] }
    func reactions() throws -> [JSONValue] { try admin("GET", "/admin/reactions")["reactions"]?.arrayValue ?? [] }
}

enum SlackTestSupport {
    static let root = TestPaths.repoRoot()
    static let signingSecret = "8f742231b10e8888abcd99yyyzzz85a5"

    /// Makes sure slack_sdk is importable, installing it with pip when it is not.
    nonisolated(unsafe) static var slackSDKReady = false

    static func ensureSlackSDK() throws {
        if slackSDKReady { return }
        if (try? TestProcess.run("/usr/bin/env", ["python3", "-c", "import slack_sdk.signature"]))?.0 == 0 { slackSDKReady = true; return }
        let (status, out, err) = try TestProcess.run("/usr/bin/env", ["python3", "-m", "pip", "install", "--quiet", "slack_sdk"], timeout: 300)
        guard status == 0, (try? TestProcess.run("/usr/bin/env", ["python3", "-c", "import slack_sdk.signature"]))?.0 == 0 else {
            throw TestKitError("slack_sdk is required by these tests (it signs the webhooks) and could not be installed "
                + "(python3 -m pip install slack_sdk): \(out)\(err)")
        }
        slackSDKReady = true
    }

    /// Signs bodies with slack_sdk's SignatureVerifier (`sign_requests.py`); one signature per (timestamp, body).
    static func sign(_ items: [(timestamp: Int64, body: String)], secret: String = signingSecret) throws -> [String] {
        try ensureSlackSDK()
        let input = TestPaths.temporaryDirectory("slack-sign") + "/items.json"
        let arr: JSONValue = .array(items.map { ["timestamp": .string(String($0.timestamp)), "body": .string($0.body)] })
        try JSONWriter.encodeString(arr).write(toFile: input, atomically: true, encoding: .utf8)
        let (status, out, err) = try TestProcess.run("/bin/sh", ["-c", "python3 \"$0\" \"$1\" < \"$2\"",
                                                                 root + "/Tests/Fakes/fake_slack/sign_requests.py", secret, input])
        guard status == 0, case .array(let a) = try JSONParser.parse(out) else { throw TestKitError("sign_requests.py failed (\(status)): \(err)") }
        return a.compactMap { $0.stringValue }
    }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    /// The Slack headers for `body`, signed by slack_sdk at `timestamp` (default: now).
    static func headers(_ body: String, timestamp: Int64? = nil, retry: Int? = nil, contentType: String = "application/json") throws -> [(String, String)] {
        let ts = timestamp ?? now()
        let sig = try sign([(ts, body)])[0]
        var h = [("Content-Type", contentType), ("X-Slack-Request-Timestamp", String(ts)), ("X-Slack-Signature", sig)]
        if let retry { h += [("X-Slack-Retry-Num", String(retry)), ("X-Slack-Retry-Reason", "http_timeout")] }
        return h
    }

    /// A documented payload from `Tests/Fixtures/slack`, as its raw text.
    static func fixtureText(_ name: String) throws -> String {
        try String(contentsOfFile: root + "/Tests/Fixtures/slack/\(name).json", encoding: .utf8)
    }

    static func fixture(_ name: String) throws -> JSONValue { try JSONParser.parse(try fixtureText(name)) }

    /// `[[instance]]` TOML for a Slack instance; both secrets go through `_file` settings.
    static func instance(name: String = "slack", fake: FakeSlack, directory: String, extra: [(String, String)] = []) throws -> String {
        let tokenFile = directory + "/\(name).token", secretFile = directory + "/\(name).signing"
        try (fake.token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        try (signingSecret + "\n").write(toFile: secretFile, atomically: true, encoding: .utf8)
        var settings: [(String, String)] = [
            ("bot_token_file", "\"\(tokenFile)\""), ("signing_secret_file", "\"\(secretFile)\""), ("api_base_url", "\"\(fake.baseURL)\""),
        ]
        for (k, v) in extra {
            settings.removeAll { $0.0 == k }
            settings.append((k, v))
        }
        return "[[instance]]\nname = \"\(name)\"\nplugin = \"slack\"\n[instance.settings]\n"
            + settings.map { "\($0.0) = \($0.1)" }.joined(separator: "\n") + "\n"
    }
}

/// Helpers shared by the test cases: a daemon with a Slack instance, subscriptions, waiting, schema validation.
class SlackTestCase: XCTestCase {
    var received: [JSONValue] = []

    override func tearDown() {
        if !received.isEmpty { assertSchemaValid(received) }
        received = []
        super.tearDown()
    }

    func startDaemon(_ fake: FakeSlack, extra: [(String, String)] = [], prefix: String = "slack") throws -> TestDaemon {
        let dir = TestPaths.temporaryDirectory(prefix)
        let d = try TestDaemon(instancesTOML: try SlackTestSupport.instance(fake: fake, directory: dir, extra: extra), directory: dir)
        try d.start()
        return d
    }

    /// POSTs a body signed by slack_sdk to the instance's Events API route.
    func postEvent(_ d: TestDaemon, _ body: String, timestamp: Int64? = nil, retry: Int? = nil, path: String = "/webhooks/slack/events") throws -> HTTPTestResponse {
        try HTTPTestClient.request(port: d.httpPort, method: "POST", path: path,
                                   headers: try SlackTestSupport.headers(body, timestamp: timestamp, retry: retry), body: Array(body.utf8))
    }

    /// POSTs an interactivity payload (form-encoded `payload=`), signed by slack_sdk.
    func postInteraction(_ d: TestDaemon, payload: String) throws -> HTTPTestResponse {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = "payload=" + (payload.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")
        return try HTTPTestClient.request(port: d.httpPort, method: "POST", path: "/webhooks/slack/interactivity",
                                          headers: try SlackTestSupport.headers(body, contentType: "application/x-www-form-urlencoded"),
                                          body: Array(body.utf8))
    }

    func assertSchemaValid(_ events: [JSONValue], file: StaticString = #filePath, line: UInt = #line) {
        if let problems = SchemaCheck.problems(events) { XCTFail(problems, file: file, line: line) }
    }

    func subscribe(_ d: TestDaemon) throws -> ChorusConnection {
        let c = try ChorusConnection(path: d.socketPath, timeoutMilliseconds: 10_000)
        let r = try c.request(.subscribe(name: nil, filter: nil, from: .now))
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

    /// Every stored event of these types, by replay.
    func replayAll(_ c: ChorusConnection, types: Set<String>? = nil) throws -> [JSONValue] {
        try EventWait.replayAll(c, types: types)
    }

    /// Sends and waits for the send's final status (`sent` or `failed`).
    func sendAndWait(_ c: ChorusConnection, _ message: JSONValue, timeoutMs: Int = 20_000) throws -> JSONValue {
        try EventWait.sendAndWait(c, message, timeoutMs: timeoutMs, seen: { received.append($0) })
    }

    func stats(_ c: ChorusConnection) throws -> JSONObject {
        guard case .reply("stats", _, let s) = try c.request(.stats) else { throw TestKitError("no stats") }
        return s
    }
}
