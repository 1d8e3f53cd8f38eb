import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// A fake Graph API server (Tests/Fakes/fake_graph) as a subprocess, with its admin API:
/// the WhatsApp Cloud API fake and the Messenger/Instagram Send API fake share it.
class GraphFakeServer {
    /// The fake's process (Tests/Fakes), started by ChorusTestKit.
    let server: FakeServerProcess
    var port: Int { server.port }
    var process: Process { server.process }
    let token: String
    var baseURL: String { "http://127.0.0.1:\(port)" }

    init(script: String, token: String, arguments: [String]) throws {
        self.token = token
        server = try FakeServerProcess(script: script, arguments: ["--token", token, "--version", "v21.0"] + arguments, showErrors: false)
    }

    deinit { stop() }

    func stop() {
        server.stop()
    }

    @discardableResult
    func admin(_ path: String, _ body: JSONValue = [:]) throws -> HTTPTestResponse {
        try server.request("POST", "/_admin/" + path, json: body)
    }

    /// Requests received by the fake (admin calls excluded).
    func requests() throws -> [JSONValue] {
        try JSONParser.parse(try server.request("GET", "/_admin/requests").body)["requests"]?.arrayValue ?? []
    }

    /// The message sends received (POST …/messages), in order.
    func sends() throws -> [JSONValue] {
        try requests().filter { $0["method"]?.stringValue == "POST" && ($0["path"]?.stringValue ?? "").hasSuffix("/messages") }
    }

    /// Waits until `count` sends arrived.
    func waitForSends(_ count: Int, timeout: TimeInterval = 10) throws -> [JSONValue] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let s = try sends()
            if s.count >= count { return s }
            usleep(20_000)
        }
        throw TestKitError("the fake got \(try sends().count) sends, expected \(count)")
    }
}

/// The fake WhatsApp Cloud API (Tests/Fakes/fake_graph/fake_graph.py).
final class FakeGraph: GraphFakeServer {
    let phoneNumberId: String

    init(token: String = "EAAG-test-token", phoneNumberId: String = MetaFixtures.phoneNumberId) throws {
        self.phoneNumberId = phoneNumberId
        try super.init(script: "Tests/Fakes/fake_graph/fake_graph.py", token: token, arguments: ["--phone-number-id", phoneNumberId])
    }
}

/// Fixture payloads (Tests/Fixtures/meta/whatsapp) and signing.
enum MetaFixtures {
    static let phoneNumberId = "106540352242922"
    static let appSecret = "app-secret-for-tests"
    static let verifyToken = "verify-me-please"
    static let user = "16505551234"

    static func raw(_ name: String) throws -> [UInt8] {
        let path = TestPaths.repoRoot() + "/Tests/Fixtures/meta/whatsapp/\(name).json"
        guard let d = FileManager.default.contents(atPath: path) else { throw TestKitError("missing fixture \(path)") }
        return Array(d)
    }

    /// A fixture with its documented timestamp replaced by the current time (so it opens the service window).
    static func fresh(_ name: String) throws -> [UInt8] {
        let text = String(decoding: try raw(name), as: UTF8.self)
        return Array(text.replacingOccurrences(of: "\"1739321024\"", with: "\"\(Int(Date().timeIntervalSince1970))\"").utf8)
    }

    /// `sha256=<hex>` computed by the OpenSSL command-line tool, independently of the plugin code.
    static func signature(_ body: [UInt8], secret: String = appSecret) throws -> String {
        let file = TestPaths.temporaryDirectory("meta-sign") + "/body.json"
        guard FileManager.default.createFile(atPath: file, contents: Data(body)) else { throw TestKitError("cannot write \(file)") }
        let (status, out, err) = try TestProcess.run("/usr/bin/openssl", ["dgst", "-sha256", "-hmac", secret, "-r", file])
        guard status == 0, let hex = out.split(separator: " ").first, hex.count == 64 else { throw TestKitError("openssl failed: \(err)") }
        return "sha256=" + hex
    }

    /// A text-message webhook with the given ids (the documented envelope).
    static func textWebhook(from: String = user, name: String = "Sheena Nelson", wamid: String, text: String, timestamp: Int = Int(Date().timeIntervalSince1970)) -> [UInt8] {
        Array("""
        {"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp",\
        "metadata":{"display_phone_number":"15550783881","phone_number_id":"\(phoneNumberId)"},\
        "contacts":[{"profile":{"name":"\(name)"},"wa_id":"\(from)"}],\
        "messages":[{"from":"\(from)","id":"\(wamid)","timestamp":"\(timestamp)","type":"text","text":{"body":"\(text)"}}]},"field":"messages"}]}]}
        """.utf8)
    }

    /// A status webhook for an outbound wamid.
    static func statusWebhook(wamid: String, status: String, to: String = user, errorCode: Int? = nil) -> [UInt8] {
        let errors = errorCode.map { #","errors":[{"code":\#($0),"title":"Message undeliverable","message":"Message undeliverable","error_data":{"details":"Message Undeliverable."}}]"# } ?? ""
        let pricing = status == "failed" ? "" : #","pricing":{"billable":true,"pricing_model":"PMP","type":"regular","category":"service"}"#
        return Array("""
        {"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp",\
        "metadata":{"display_phone_number":"15550783881","phone_number_id":"\(phoneNumberId)"},\
        "statuses":[{"id":"\(wamid)","status":"\(status)","timestamp":"\(Int(Date().timeIntervalSince1970))","recipient_id":"\(to)"\(pricing)\(errors)}]},"field":"messages"}]}]}
        """.utf8)
    }
}

/// A chorusd with one WhatsApp instance ("wa") pointed at a fake Graph API.
final class WhatsAppDaemon {
    let daemon: TestDaemon
    let graph: FakeGraph
    let connection: ChorusConnection
    var received: [JSONValue] = []

    let directory: String

    /// Starts a daemon in `directory` (a new one by default; give an old one to restart with its state), with a new fake
    /// Graph server unless `graph` is given.
    init(extraSettings: String = "", directory: String? = nil, graph: FakeGraph? = nil) throws {
        self.graph = try graph ?? FakeGraph()
        let dir = directory ?? TestPaths.temporaryDirectory("chorus-wa")
        self.directory = dir
        let secretFile = dir + "/app_secret"
        try (MetaFixtures.appSecret + "\n").write(toFile: secretFile, atomically: true, encoding: .utf8)
        daemon = try TestDaemon(instancesTOML: """
        [[instance]]
        name = "wa"
        plugin = "whatsapp"
        [instance.settings]
        app_secret_file = "\(secretFile)"
        verify_token = "\(MetaFixtures.verifyToken)"
        access_token = "\(self.graph.token)"
        phone_number_id = "\(MetaFixtures.phoneNumberId)"
        account = "\(MetaFixtures.phoneNumberId)"
        api_base_url = "\(self.graph.baseURL)"
        api_version = "v21.0"
        \(extraSettings)
        """, directory: dir)
        try daemon.start()
        connection = try ChorusConnection(path: daemon.socketPath, timeoutMilliseconds: 10_000)
        _ = try connection.request(.subscribe(name: nil, filter: nil, from: .now))
    }

    func stop(keepGraph: Bool = false) {
        connection.close()
        daemon.stop()
        if !keepGraph { graph.stop() }
    }

    /// POSTs a webhook body, signed unless `signature` is given.
    func webhook(_ body: [UInt8], signature: String?? = nil) throws -> HTTPTestResponse {
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        switch signature {
        case .none: headers.append(("X-Hub-Signature-256", try MetaFixtures.signature(body)))
        case .some(.some(let s)): headers.append(("X-Hub-Signature-256", s))
        case .some(.none): break
        }
        return try HTTPTestClient.request(port: daemon.httpPort, method: "POST", path: "/webhooks/wa", headers: headers, body: body)
    }

    /// Reads `n` events (any type).
    func events(_ n: Int, timeoutMs: Int = 10_000) throws -> [JSONValue] {
        try EventWait.events(connection, count: n, timeoutMs: timeoutMs) { received.append($0) }
    }

    /// Reads events until one matches, returning it.
    func event(where match: (JSONValue) -> Bool, timeoutMs: Int = 10_000) throws -> JSONValue {
        try EventWait.event(connection, timeoutMs: timeoutMs, seen: { received.append($0) }, where: match)
    }

    /// Whether any event arrives within `ms`.
    func quiet(forMs ms: Int) -> Bool {
        if case .event? = try? connection.nextMessage(timeoutMilliseconds: ms) { return false }
        return true
    }

    /// Sends a message on the socket; returns its Chorus message id.
    func send(_ message: JSONValue) throws -> String {
        try EventWait.send(connection, message)
    }

    /// The final sent/failed status event of a send.
    func outcome(of messageId: String, timeoutMs: Int = 15_000) throws -> JSONValue {
        try event(where: { EventWait.isFinalStatus($0, of: messageId) }, timeoutMs: timeoutMs)
    }

    /// Checks every event received against the JSON Schema of stored events.
    func assertSchemaValid(file: StaticString = #filePath, line: UInt = #line) {
        guard !received.isEmpty else { return }
        if let problems = SchemaCheck.problems(received) { XCTFail(problems, file: file, line: line) }
    }
}
