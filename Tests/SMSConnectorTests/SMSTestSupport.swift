import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The fake Twilio Messages API (`Tests/Fakes/fake_twilio/fake_twilio.py`) as a subprocess, and its admin API.
final class FakeTwilio {
    static let accountSid = "AC5ef8732a3c49700934481addd5ce1659"
    static let authToken = "d84a2c2e6f0b4b7c9a1e3f5d7b9c1e3f"

    /// The fake's process (Tests/Fakes), started by ChorusTestKit.
    let server: FakeServerProcess
    var port: Int { server.port }
    var process: Process { server.process }
    var baseURL: String { "http://127.0.0.1:\(port)" }

    init() throws {
        try SMSTestSupport.ensureTwilioLibrary()
        server = try FakeServerProcess(script: "Tests/Fakes/fake_twilio/fake_twilio.py",
                                         arguments: ["--account-sid", FakeTwilio.accountSid, "--auth-token", FakeTwilio.authToken])
    }

    deinit { stop() }

    func stop() {
        server.stop()
    }

    @discardableResult
    func admin(_ method: String, _ path: String, _ body: JSONValue? = nil) throws -> JSONValue {
        try server.admin(method, path, body)
    }

    /// Every create call the fake received (accepted or refused), oldest first.
    func messages() throws -> [JSONValue] { try admin("GET", "/admin/messages")["messages"]?.arrayValue ?? [] }

    /// Create calls that did not follow the documented API.
    func violations() throws -> [JSONValue] { try admin("GET", "/admin/violations")["violations"]?.arrayValue ?? [] }

    /// The next `count` create calls fail with this Twilio error.
    func scriptError(status: Int, code: Int, message: String, retryAfter: Int? = nil, count: Int = 1) throws {
        var e: JSONObject = ["status": .int(Int64(status)), "code": .int(Int64(code)), "message": .string(message), "count": .int(Int64(count))]
        if let r = retryAfter { e["retry_after"] = .int(Int64(r)) }
        try admin("POST", "/admin/errors", .object(e))
    }

    /// Puts a number on the carrier-level STOP list (Twilio answers 21610 for it).
    func optOut(_ number: String) throws { try admin("POST", "/admin/opt_out", ["number": .string(number)]) }

    /// Delivers status callbacks for a sent message; returns the HTTP statuses the daemon answered.
    func deliverStatuses(sid: String, _ statuses: [JSONValue]) throws -> [Int] {
        let r = try admin("POST", "/admin/status", ["sid": .string(sid), "statuses": .array(statuses)])
        return (r["deliveries"]?.arrayValue ?? []).map { Int($0["http_status"]?.intValue ?? -1) }
    }

    /// X-Twilio-Signature computed by Twilio's own Python library (RequestValidator.compute_signature).
    func sign(url: String, params: [(String, String)]) throws -> String {
        var o = JSONObject()
        for (k, v) in params { o[k] = .string(v) }
        guard let s = try admin("POST", "/admin/sign", ["url": .string(url), "params": .object(o)])["signature"]?.stringValue else {
            throw TestKitError("the fake returned no signature")
        }
        return s
    }
}

enum SMSTestSupport {
    static let root = TestPaths.repoRoot()
    /// The business number of the test instance (the fixtures' `To`).
    static let businessNumber = "+15017122661"
    /// The customer of the fixtures (`From`).
    static let customer = "+14155552671"

    /// Makes sure Twilio's Python library is importable, installing it with pip when it is not.
    static func ensureTwilioLibrary() throws {
        let probe = ["python3", "-c", "from twilio.request_validator import RequestValidator"]
        if (try? TestProcess.run("/usr/bin/env", probe))?.0 == 0 { return }
        let (status, out, err) = try TestProcess.run("/usr/bin/env", ["python3", "-m", "pip", "install", "--quiet", "twilio"], timeout: 300)
        guard status == 0, (try? TestProcess.run("/usr/bin/env", probe))?.0 == 0 else {
            throw TestKitError("Twilio's Python library is required by these tests (it signs the webhooks) and could not be installed "
                + "with `python3 -m pip install twilio`: \(out)\(err)")
        }
    }

    /// A parameter set from `Tests/Fixtures/sms`, in file order.
    static func fixture(_ name: String) throws -> [(String, String)] {
        let data = try Data(contentsOf: URL(fileURLWithPath: root + "/Tests/Fixtures/sms/\(name).json"))
        guard case .object(let o)? = try JSONParser.parse(Array(data))["params"] else { throw TestKitError("\(name).json has no params") }
        return o.map { ($0.key, $0.value.stringValue ?? "") }
    }

    /// Form-encodes parameters the way Twilio does (and Python's urlencode).
    static func formEncode(_ params: [(String, String)]) -> [UInt8] {
        var allowed = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)..<Unicode.Scalar(128)))
        allowed.insert(charactersIn: "-._~ ")
        func enc(_ s: String) -> String {
            (s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s).replacingOccurrences(of: " ", with: "+")
        }
        return Array(params.map { enc($0.0) + "=" + enc($0.1) }.joined(separator: "&").utf8)
    }
}

/// A daemon with one SMS instance talking to a fake Twilio, and the helpers the test cases share.
class SMSTestCase: XCTestCase {
    var received: [JSONValue] = []
    var fake: FakeTwilio!
    var daemon: TestDaemon!
    var connection: ChorusConnection!
    /// The public base URL the instance is configured with: the daemon's own HTTP address.
    var publicBaseURL: String = ""
    let instanceName = "sms"

    override func tearDown() {
        if !received.isEmpty { assertSchemaValid(received) }
        received = []
        connection = nil
        if let d = daemon {
            if (testRun?.failureCount ?? 0) + (testRun?.unexpectedExceptionCount ?? 0) > 0 {
                print("chorusd log (\(d.logPath)):\n" + d.logText.split(separator: "\n").suffix(60).joined(separator: "\n"))
            }
            XCTAssertFalse(d.logText.contains(FakeTwilio.authToken), "the auth token must never be logged")
            d.stop()
        }
        daemon = nil
        fake?.stop()
        fake = nil
        super.tearDown()
    }

    /// Starts the fake and a daemon whose `public_base_url` is its own HTTP address, and subscribes.
    func startDaemon(settings extra: [String: String] = [:]) throws {
        fake = try FakeTwilio()
        let dir = TestPaths.temporaryDirectory("sms-test")
        let port = try freeLoopbackPort()
        publicBaseURL = "http://127.0.0.1:\(port)"
        let tokenFile = dir + "/twilio.token"
        try (FakeTwilio.authToken + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        var settings: [(String, String)] = [
            ("account_sid", "\"\(FakeTwilio.accountSid)\""), ("auth_token_file", "\"\(tokenFile)\""),
            ("from_number", "\"\(SMSTestSupport.businessNumber)\""), ("account", "\"\(SMSTestSupport.businessNumber)\""),
            ("public_base_url", "\"\(publicBaseURL)\""), ("api_base_url", "\"\(fake.baseURL)\""),
        ]
        for (k, v) in extra.sorted(by: { $0.key < $1.key }) {
            settings.removeAll { $0.0 == k }
            settings.append((k, v))
        }
        let toml = "[[instance]]\nname = \"\(instanceName)\"\nplugin = \"sms\"\n[instance.settings]\n"
            + settings.map { "\($0.0) = \($0.1)" }.joined(separator: "\n") + "\n"
        let d = try TestDaemon(instancesTOML: toml, directory: dir)
        // Listen on the port chosen above, so the public URL (what Twilio signs) is the daemon's real address.
        let config = try String(contentsOfFile: d.configPath, encoding: .utf8)
        try config.replacingOccurrences(of: "listen = \"127.0.0.1:0\"", with: "listen = \"127.0.0.1:\(port)\"")
            .write(toFile: d.configPath, atomically: true, encoding: .utf8)
        try d.start()
        daemon = d
        XCTAssertEqual(d.httpPort, port, "the daemon listens where public_base_url says")
        connection = try subscribe(d)
    }

    // MARK: Webhooks

    /// Posts a form webhook, signed by Twilio's library for `signedURL` (default: the URL actually requested).
    @discardableResult
    func postWebhook(_ route: String, _ params: [(String, String)], query: String = "", signedURL: String? = nil, signature: String? = nil,
                     sign: Bool = true, body: [UInt8]? = nil, contentType: String = "application/x-www-form-urlencoded") throws -> HTTPTestResponse
    {
        let path = "/webhooks/\(instanceName)/\(route)" + (query.isEmpty ? "" : "?" + query)
        var headers: [(String, String)] = [("Content-Type", contentType)]
        if let signature {
            headers.append(("X-Twilio-Signature", signature))
        } else if sign {
            headers.append(("X-Twilio-Signature", try fake.sign(url: signedURL ?? publicBaseURL + path, params: params)))
        }
        return try HTTPTestClient.request(port: daemon.httpPort, method: "POST", path: path, headers: headers,
                                          body: body ?? SMSTestSupport.formEncode(params))
    }

    // MARK: Consumer side

    func assertSchemaValid(_ events: [JSONValue], file: StaticString = #filePath, line: UInt = #line) {
        if let problems = SchemaCheck.problems(events) { XCTFail(problems, file: file, line: line) }
    }

    func subscribe(_ d: TestDaemon) throws -> ChorusConnection {
        let c = try ChorusConnection(path: d.socketPath, timeoutMilliseconds: 10_000)
        let r = try c.request(.subscribe(name: nil, filter: nil, from: .now))
        guard case .reply = r else { throw TestKitError("subscribe refused: \(r)") }
        return c
    }

    /// Reads events until one matches.
    func event(timeoutMs: Int = 15_000, where match: (JSONValue) -> Bool) throws -> JSONValue {
        try EventWait.event(connection, timeoutMs: timeoutMs, seen: { received.append($0) }, where: match)
    }

    /// Every stored event (optionally of some types), by replay on a second connection.
    func storedEvents(types: Set<String>? = nil) throws -> [JSONValue] {
        try EventWait.stored(socketPath: daemon.socketPath, types: types)
    }

    /// Sends a message and waits for its final send status (`sent` or `failed`).
    func sendAndWait(_ message: JSONValue, timeoutMs: Int = 20_000) throws -> JSONValue {
        try EventWait.sendAndWait(connection, message, timeoutMs: timeoutMs, seen: { received.append($0) })
    }

    /// A text message to `to` through the SMS instance.
    func textMessage(_ text: String, to: String = SMSTestSupport.customer) -> JSONValue {
        ["instance": .string(instanceName), "to": .string(to), "parts": [["type": "text", "text": .string(text)]]]
    }

    func waitFor(timeout: TimeInterval = 10, _ what: String = "condition", _ condition: () throws -> Bool) throws {
        try waitUntil(timeout: timeout, what) { (try? condition()) == true }
    }
}

extension JSONValue {
    /// The first element of an array.
    var first: JSONValue? { arrayValue?.first }
}
