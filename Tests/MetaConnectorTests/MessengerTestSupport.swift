import ChorusClient
import ChorusConformance
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// The fake Messenger/Instagram Send API (Tests/Fakes/fake_graph/fake_messenger.py).
final class FakeMessengerGraph: GraphFakeServer {
    init(token: String = "EAAM-messenger-test-token", ids: [String]) throws {
        try super.init(script: "Tests/Fakes/fake_graph/fake_messenger.py", token: token, arguments: ids.flatMap { ["--id", $0] })
    }
}

/// Ids, fixtures (Tests/Fixtures/meta/messenger and …/instagram) and signing for the Messenger and Instagram tests.
enum MessengerFixtures {
    static let pageId = "106378219046701"
    static let psid = "6945418768855427"
    static let instagramId = "17841405822304914"
    static let igsid = "8023456789012345"
    static let appSecret = "messenger-app-secret-for-tests"
    static let verifyToken = "messenger-verify-token"

    static func raw(_ channel: String, _ name: String) throws -> [UInt8] {
        let path = TestPaths.repoRoot() + "/Tests/Fixtures/meta/\(channel)/\(name).json"
        guard let d = FileManager.default.contents(atPath: path) else { throw TestKitError("missing fixture \(path)") }
        return Array(d)
    }

    /// `sha256=<hex>` computed by Python's hmac module, independently of the plugin code.
    static func signature(_ body: [UInt8], secret: String = appSecret) throws -> String {
        let file = TestPaths.temporaryDirectory("msgr-sign") + "/body.json"
        guard FileManager.default.createFile(atPath: file, contents: Data(body)) else { throw TestKitError("cannot write \(file)") }
        let script = "import hmac,hashlib,sys;print(hmac.new(sys.argv[1].encode(),open(sys.argv[2],'rb').read(),hashlib.sha256).hexdigest())"
        let (status, out, err) = try TestProcess.run("/usr/bin/env", ["python3", "-c", script, secret, file])
        let hex = out.trimmingCharacters(in: .whitespacesAndNewlines)
        guard status == 0, hex.count == 64 else { throw TestKitError("python hmac failed: \(err)") }
        return "sha256=" + hex
    }

    static var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// A Messenger text message from `from` (the documented envelope), timestamped now.
    static func messengerText(from: String = psid, mid: String, text: String, atMs: Int64 = nowMs) -> [UInt8] {
        let item: JSONValue = ["sender": ["id": .string(from)], "recipient": ["id": .string(pageId)], "timestamp": .int(atMs),
                               "message": ["mid": .string(mid), "text": .string(text)]]
        return JSONWriter.encode(["object": "page", "entry": [["id": .string(pageId), "time": .int(atMs), "messaging": [item]]]])
    }

    /// An Instagram text message from `from`, timestamped now.
    static func instagramText(from: String = igsid, mid: String, text: String, atMs: Int64 = nowMs) -> [UInt8] {
        let item: JSONValue = ["sender": ["id": .string(from)], "recipient": ["id": .string(instagramId)], "timestamp": .int(atMs),
                               "message": ["mid": .string(mid), "text": .string(text)]]
        return JSONWriter.encode(["object": "instagram", "entry": [["id": .string(instagramId), "time": .int(atMs), "messaging": [item]]]])
    }

    /// One messaging item (sender: the customer) wrapped in a webhook of the channel's object.
    static func webhook(_ channel: String, item: JSONValue) -> [UInt8] {
        let (object, id) = channel == "instagram" ? ("instagram", instagramId) : ("page", pageId)
        return JSONWriter.encode(["object": .string(object), "entry": [["id": .string(id), "time": .int(nowMs), "messaging": [item]]]])
    }
}

/// Checks that libchorus-instagram.so is the Instagram plugin: it has no code of its own and exports
/// `chorus_plugin_entry` only when its target links MessengerConnector (a Package.swift dependency).
func requireInstagramPlugin() throws {
    guard let path = ConformanceKit.builtPlugin(product: "chorus-instagram") else {
        throw TestKitError("libchorus-instagram.so is not built")
    }
    // Read the dynamic symbol table with nm rather than dlopen: a Swift library cannot be unloaded from the test process.
    let (status, out, err) = try TestProcess.run("/usr/bin/nm", ["-D", "--defined-only", path])
    guard status == 0 else { throw TestKitError("nm \(path) failed: \(err)") }
    guard out.split(separator: "\n").contains(where: { $0.hasSuffix(" chorus_plugin_entry") }) else {
        throw TestKitError("\(path) exports no chorus_plugin_entry: in Package.swift, InstagramConnector must depend on MessengerConnector")
    }
}

/// A chorusd with one Messenger ("fb") or Instagram ("ig") instance pointed at the fake Send API.
final class MessengerDaemon {
    let daemon: TestDaemon
    let graph: FakeMessengerGraph
    let connection: ChorusConnection
    let instance: String
    let channel: String
    var received: [JSONValue] = []

    init(channel: String = "messenger", extraSettings: String = "", extraInstanceTOML: String = "") throws {
        if channel == "instagram" { try requireInstagramPlugin() }
        self.channel = channel
        instance = channel == "instagram" ? "ig" : "fb"
        graph = try FakeMessengerGraph(ids: [MessengerFixtures.pageId, MessengerFixtures.instagramId])
        let dir = TestPaths.temporaryDirectory("chorus-\(instance)")
        let secretFile = dir + "/app_secret"
        let tokenFile = dir + "/access_token"
        try (MessengerFixtures.appSecret + "\n").write(toFile: secretFile, atomically: true, encoding: .utf8)
        try (graph.token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let businessId = channel == "instagram" ? MessengerFixtures.instagramId : MessengerFixtures.pageId
        let idSetting = (channel == "instagram" ? "instagram_account_id" : "page_id") + " = \"\(businessId)\"\naccount = \"\(businessId)\""
        daemon = try TestDaemon(instancesTOML: """
        [[instance]]
        name = "\(instance)"
        plugin = "\(channel)"
        max_send_attempts = 4
        \(extraInstanceTOML)
        [instance.settings]
        app_secret_file = "\(secretFile)"
        verify_token = "\(MessengerFixtures.verifyToken)"
        access_token_file = "\(tokenFile)"
        \(idSetting)
        api_base_url = "\(graph.baseURL)"
        api_version = "v21.0"
        \(extraSettings)
        """, directory: dir)
        try daemon.start()
        connection = try ChorusConnection(path: daemon.socketPath, timeoutMilliseconds: 10_000)
        _ = try connection.request(.subscribe(name: nil, filter: nil, from: .now))
    }

    func stop() {
        connection.close()
        daemon.stop()
        graph.stop()
    }

    /// POSTs a webhook body, signed unless `signature` is given (`.some(nil)`: no header at all).
    func webhook(_ body: [UInt8], signature: String?? = nil) throws -> HTTPTestResponse {
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        switch signature {
        case .none: headers.append(("X-Hub-Signature-256", try MessengerFixtures.signature(body)))
        case .some(.some(let s)): headers.append(("X-Hub-Signature-256", s))
        case .some(.none): break
        }
        return try HTTPTestClient.request(port: daemon.httpPort, method: "POST", path: "/webhooks/\(instance)", headers: headers, body: body)
    }

    /// Posts a fixture and returns the HTTP status.
    func post(fixture name: String) throws -> Int {
        try webhook(try MessengerFixtures.raw(channel, name)).status
    }

    func events(_ n: Int, timeoutMs: Int = 10_000) throws -> [JSONValue] {
        try EventWait.events(connection, count: n, timeoutMs: timeoutMs) { received.append($0) }
    }

    func event(where match: (JSONValue) -> Bool, timeoutMs: Int = 10_000) throws -> JSONValue {
        try EventWait.event(connection, timeoutMs: timeoutMs, seen: { received.append($0) }, where: match)
    }

    /// Whether no event arrives within `ms`.
    func quiet(forMs ms: Int) -> Bool {
        if case .event(_, _, let ev)? = try? connection.nextMessage(timeoutMilliseconds: ms) {
            received.append(ev)
            return false
        }
        return true
    }

    func send(_ message: JSONValue) throws -> String {
        try EventWait.send(connection, message)
    }

    /// The final sent/failed status event of a send.
    func outcome(of messageId: String, timeoutMs: Int = 15_000) throws -> JSONValue {
        try event(where: { EventWait.isFinalStatus($0, of: messageId) }, timeoutMs: timeoutMs)
    }

    /// Opens the 24-hour window with an inbound text from `from`; returns the conversation id.
    func openWindow(from: String? = nil, mid: String = "m_IN\(Int.random(in: 0..<1_000_000_000))") throws -> String {
        let body = channel == "instagram"
            ? MessengerFixtures.instagramText(from: from ?? MessengerFixtures.igsid, mid: mid, text: "Hi there")
            : MessengerFixtures.messengerText(from: from ?? MessengerFixtures.psid, mid: mid, text: "Hi there")
        let r = try webhook(body)
        guard r.status == 200 else { throw TestKitError("inbound webhook answered \(r.status): \(r.body)") }
        let ev = try event(where: { $0["type"]?.stringValue == "message" && $0["channel_ids"]?["message"]?.stringValue == mid })
        guard let conv = ev["conversation_id"]?.stringValue else { throw TestKitError("no conversation id") }
        return conv
    }

    /// Checks every event received against the JSON Schema of stored events.
    func assertSchemaValid(file: StaticString = #filePath, line: UInt = #line) {
        guard !received.isEmpty else { return }
        if let problems = SchemaCheck.problems(received) { XCTFail(problems, file: file, line: line) }
    }
}
