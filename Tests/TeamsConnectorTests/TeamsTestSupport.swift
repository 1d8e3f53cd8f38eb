import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// The fake Bot Framework (`Tests/Fakes/fake_botframework/fake_botframework.py`) as a subprocess, and its admin API.
final class FakeBotFramework {
    static let appId = "9ad6b1a6-4d5b-4f0e-9b1b-6b3a5a8f1f70"
    static let appPassword = "fake~Secret.0123456789abcdefABCDEF"
    let server: FakeServerProcess
    var port: Int { server.port }
    var base: String { "http://127.0.0.1:\(port)" }
    /// The service URL Teams would put in activities (`https://smba.trafficmanager.net/amer/`).
    var serviceURL: String { base + "/amer/" }
    var metadataURL: String { base + "/v1/.well-known/openidconfiguration" }
    var tokenURL: String { base + "/botframework.com/oauth2/v2.0/token" }

    init() throws {
        try TeamsTestSupport.ensurePyJWT()
        server = try FakeServerProcess(script: "Tests/Fakes/fake_botframework/fake_botframework.py",
                                       arguments: ["--app-id", FakeBotFramework.appId, "--app-password", FakeBotFramework.appPassword])
    }

    deinit { server.stop() }

    @discardableResult
    func admin(_ method: String, _ path: String, _ body: JSONValue? = nil) throws -> JSONValue {
        try server.admin(method, path, body)
    }

    /// A JWT minted by PyJWT in the fake: valid by default; `claims` override (null removes), `key: "rogue"`
    /// signs with a key that is not in the JWKS.
    func mint(_ claims: JSONObject = [:], key: String = "good", kid: String? = nil) throws -> String {
        var body: JSONObject = ["claims": .object(claims), "key": .string(key)]
        if let kid { body["kid"] = .string(kid) }
        return try XCTUnwrap(admin("POST", "/admin/mint", .object(body))["token"]?.stringValue)
    }

    func scriptError(method: String, pathContains: String = "", status: Int, retryAfter: Int? = nil, code: String? = nil, count: Int = 1) throws {
        var e: JSONObject = ["method": .string(method), "path_contains": .string(pathContains), "http_status": .int(Int64(status)), "count": .int(Int64(count))]
        if let retryAfter { e["retry_after"] = .int(Int64(retryAfter)) }
        if let code { e["code"] = .string(code) }
        try admin("POST", "/admin/errors", .object(e))
    }

    func requests() throws -> [JSONValue] { try admin("GET", "/admin/requests")["requests"]?.arrayValue ?? [] }
    func connectorRequests() throws -> [JSONValue] { try requests().filter { $0["path"]?.stringValue != "/token" } }
    func tokenRequests() throws -> [JSONValue] { try requests().filter { $0["path"]?.stringValue == "/token" } }
    func violations() throws -> [JSONValue] { try admin("GET", "/admin/violations")["violations"]?.arrayValue ?? [] }
    func stats() throws -> JSONValue { try admin("GET", "/admin/stats") }
}

enum TeamsTestSupport {
    static let root = TestPaths.repoRoot()
    nonisolated(unsafe) static var pyjwtReady = false

    /// Makes sure PyJWT and cryptography are importable (the fake signs tokens with them), installing them when not.
    static func ensurePyJWT() throws {
        if pyjwtReady { return }
        let probe = ["python3", "-c", "import jwt, cryptography.hazmat.primitives.asymmetric.rsa"]
        if (try? TestProcess.run("/usr/bin/env", probe))?.0 == 0 { pyjwtReady = true; return }
        let (status, out, err) = try TestProcess.run("/usr/bin/env", ["python3", "-m", "pip", "install", "--quiet", "pyjwt", "cryptography"], timeout: 300)
        guard status == 0, (try? TestProcess.run("/usr/bin/env", probe))?.0 == 0 else {
            throw TestKitError("PyJWT and cryptography are required by these tests (the fake Bot Framework signs tokens with them) and "
                + "could not be installed (python3 -m pip install pyjwt cryptography): \(out)\(err)")
        }
        pyjwtReady = true
    }

    /// A documented activity from `Tests/Fixtures/teams`, with `{{SERVICE_URL}}` replaced.
    static func fixture(_ name: String, serviceURL: String) throws -> String {
        try String(contentsOfFile: root + "/Tests/Fixtures/teams/\(name).json", encoding: .utf8)
            .replacingOccurrences(of: "{{SERVICE_URL}}", with: serviceURL)
    }

    /// `[[instance]]` TOML for a Teams instance pointed at the fake; the password goes through `app_password_file`.
    static func instance(fake: FakeBotFramework, directory: String, extra: [(String, String)] = []) throws -> String {
        let pwFile = directory + "/teams.password"
        try (FakeBotFramework.appPassword + "\n").write(toFile: pwFile, atomically: true, encoding: .utf8)
        var settings: [(String, String)] = [
            ("app_id", "\"\(FakeBotFramework.appId)\""), ("app_password_file", "\"\(pwFile)\""),
            ("openid_metadata_url", "\"\(fake.metadataURL)\""), ("token_url", "\"\(fake.tokenURL)\""),
        ]
        for (k, v) in extra {
            settings.removeAll { $0.0 == k }
            settings.append((k, v))
        }
        return "[[instance]]\nname = \"teams\"\nplugin = \"teams\"\n[instance.settings]\n"
            + settings.map { "\($0.0) = \($0.1)" }.joined(separator: "\n") + "\n"
    }
}

/// Helpers shared by the test cases: a daemon with a Teams instance, posting activities, waiting for events.
class TeamsTestCase: XCTestCase {
    var received: [JSONValue] = []

    override func tearDown() {
        if !received.isEmpty, let problems = SchemaCheck.problems(received) { XCTFail(problems) }
        received = []
        super.tearDown()
    }

    func startDaemon(_ fake: FakeBotFramework, prefix: String, extra: [(String, String)] = []) throws -> TestDaemon {
        let dir = TestPaths.temporaryDirectory(prefix)
        let d = try TestDaemon(instancesTOML: try TeamsTestSupport.instance(fake: fake, directory: dir, extra: extra), directory: dir)
        try d.start()
        return d
    }

    /// POSTs an activity to the messaging endpoint with `Authorization: Bearer <token>` (none when nil).
    func post(_ d: TestDaemon, _ body: String, token: String?) throws -> HTTPTestResponse {
        var headers = [("Content-Type", "application/json")]
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        return try HTTPTestClient.request(port: d.httpPort, method: "POST", path: "/webhooks/teams/messages", headers: headers, body: Array(body.utf8))
    }

    func subscribe(_ d: TestDaemon) throws -> ChorusConnection {
        let c = try ChorusConnection(path: d.socketPath, timeoutMilliseconds: 10_000)
        let r = try c.request(.subscribe(name: nil, filter: nil, from: .now))
        guard case .reply = r else { throw TestKitError("subscribe refused: \(r)") }
        return c
    }

    func events(_ c: ChorusConnection, count n: Int, timeoutMs: Int = 15_000) throws -> [JSONValue] {
        try EventWait.events(c, count: n, timeoutMs: timeoutMs) { received.append($0) }
    }

    func event(_ c: ChorusConnection, timeoutMs: Int = 15_000, where match: (JSONValue) -> Bool) throws -> JSONValue {
        try EventWait.event(c, timeoutMs: timeoutMs, seen: { received.append($0) }, where: match)
    }

    /// Sends and waits for the send's final status (`sent` or `failed`).
    func sendAndWait(_ c: ChorusConnection, _ message: JSONValue, timeoutMs: Int = 20_000) throws -> JSONValue {
        try EventWait.sendAndWait(c, message, timeoutMs: timeoutMs, seen: { received.append($0) })
    }
}

extension Array {
    subscript(ok i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
