import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// End-to-end tests: the real chorusd with the Swift sandbox and the C echo
/// plugins, driven only through HTTP, the consumer socket and chorusctl.
final class DaemonIntegrationTests: XCTestCase {
    /// Every event received in these tests, validated against the JSON Schema at the end of each test.
    var received: [JSONValue] = []

    override func tearDown() {
        if !received.isEmpty { assertSchemaValid(received) }
        received = []
    }

    func assertSchemaValid(_ events: [JSONValue], file: StaticString = #filePath, line: UInt = #line) {
        if let problems = SchemaCheck.problems(events) { XCTFail(problems, file: file, line: line) }
    }

    func connect(_ d: TestDaemon) throws -> ChorusConnection {
        try ChorusConnection(path: d.socketPath, timeoutMilliseconds: 10_000)
    }

    /// Reads frames until `n` events arrived for `sub` (replies and other frames are ignored).
    func events(_ c: ChorusConnection, sub: String? = nil, count n: Int, timeoutMs: Int = 10_000) throws -> [(cursor: Int64, event: JSONValue)] {
        var out: [(Int64, JSONValue)] = []
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while out.count < n {
            let left = Int(deadline.timeIntervalSinceNow * 1000)
            if left <= 0 { throw TestKitError("timed out with \(out.count)/\(n) events") }
            let m = try c.nextMessage(timeoutMilliseconds: left)
            if case .event(let s, let cursor, let event) = m, sub == nil || s == sub {
                out.append((cursor, event))
                received.append(event)
            }
        }
        return out
    }

    func reply(_ m: ServerMessage) -> JSONObject? {
        if case .reply(_, _, let body) = m { return body }
        return nil
    }

    // MARK: Inbound → durable subscriber → ack → resume

    func testInboundEventReachesDurableSubscriberAndResumesFromCursor() throws {
        let d = try TestDaemon()
        try d.start()
        defer { d.stop() }
        let c = try connect(d)
        let sub = try c.request(.subscribe(name: "crm", filter: SubscriptionFilter(types: ["message"]), from: .now))
        XCTAssertEqual(reply(sub)?["sub"]?.stringValue, "crm")

        let r = try d.post("/webhooks/sandbox/messages", json: #"{"from":"cust-1","name":"Alice","text":"Hello","id":"m-1"}"#)
        XCTAssertEqual(r.status, 200, r.body)
        XCTAssertTrue(r.body.contains("evt_"), r.body)
        let got = try events(c, sub: "crm", count: 1)
        let ev = got[0].event
        XCTAssertEqual(ev["type"]?.stringValue, "message")
        XCTAssertEqual(ev["direction"]?.stringValue, "inbound")
        XCTAssertEqual(ev["channel"]?.stringValue, "sandbox")
        XCTAssertEqual(ev["instance"]?.stringValue, "sandbox")
        XCTAssertEqual(ev["sender"]?["name"]?.stringValue, "Alice")
        XCTAssertEqual(ev["parts"]?.arrayValue?.first?["text"]?.stringValue, "Hello")
        XCTAssertTrue(ev["conversation_id"]?.stringValue?.hasPrefix("conv_") ?? false)
        XCTAssertTrue(ev["sender"]?["contact_id"]?.stringValue?.hasPrefix("ct_") ?? false)

        // A channel retry of the same message id is accepted (200) but stored once.
        let again = try d.post("/webhooks/sandbox/messages", json: #"{"from":"cust-1","name":"Alice","text":"Hello","id":"m-1"}"#)
        XCTAssertEqual(again.status, 200)
        XCTAssertTrue(again.body.contains(#""duplicate":true"#), again.body)

        // Ack, disconnect, more messages arrive meanwhile, resume from the stored cursor.
        let ack = try c.request(.ack(sub: "crm", cursor: got[0].cursor))
        if case .error(let e) = ack { XCTFail("ack refused: \(e)") }
        c.close()
        for i in 2...3 {
            XCTAssertEqual(try d.post("/webhooks/sandbox/messages", json: #"{"from":"cust-1","text":"msg \#(i)","id":"m-\#(i)"}"#).status, 200)
        }
        let c2 = try connect(d)
        _ = try c2.request(.subscribe(name: "crm", filter: nil, from: nil))
        let resumed = try events(c2, sub: "crm", count: 2)
        XCTAssertEqual(resumed.map { $0.event["parts"]?.arrayValue?.first?["text"]?.stringValue }, ["msg 2", "msg 3"])
        XCTAssertGreaterThan(resumed[0].cursor, got[0].cursor)

        // Replay sees all three messages; the duplicate was stored once.
        let replayed = try c2.request(.replay(filter: SubscriptionFilter(types: ["message"]), fromCursor: 0, toCursor: nil, fromTimeMs: nil, toTimeMs: nil, limit: nil))
        guard case .reply("replay_done", _, let done) = replayed else { return XCTFail("no replay_done: \(replayed)") }
        XCTAssertEqual(done["count"]?.intValue, 3)
        // The replayed events arrived before replay_done; the client queued them.
        var texts: [String] = []
        while let m = try? c2.nextMessage(timeoutMilliseconds: 300) {
            if case .event(let sub, _, let ev) = m, sub.hasPrefix("replay-") {
                texts.append(ev["parts"]?.arrayValue?.first?["text"]?.stringValue ?? "")
            }
        }
        XCTAssertEqual(texts, ["Hello", "msg 2", "msg 3"])
    }

    // MARK: Send → statuses

    func testSendIsAcceptedAndStatusesFollow() throws {
        let d = try TestDaemon()
        try d.start()
        defer { d.stop() }
        let c = try connect(d)
        _ = try c.request(.subscribe(name: nil, filter: nil, from: .now))
        XCTAssertEqual(try d.post("/webhooks/sandbox/messages", json: #"{"from":"cust-9","text":"I want to order"}"#).status, 200)
        let inbound = try events(c, count: 1)[0].event
        let conv = inbound["conversation_id"]!.stringValue!

        let message: JSONValue = ["conversation_id": .string(conv), "parts": [
            ["type": "text", "text": "Here is your payment link"],
            ["type": "payment_request", "amount": 1999, "currency": "EUR", "link": "https://pay.example/abc", "description": "Order 42"],
        ]]
        let accepted = try c.request(.send(idempotencyKey: "order-42", message: message))
        guard case .reply("accepted", _, let body) = accepted else { return XCTFail("not accepted: \(accepted)") }
        let messageId = body["message_id"]!.stringValue!
        XCTAssertEqual(body["duplicate"], false)

        // The same idempotency key returns the same message id and sends nothing new.
        let dup = try c.request(.send(idempotencyKey: "order-42", message: message))
        guard case .reply("accepted", _, let dupBody) = dup else { return XCTFail("not accepted: \(dup)") }
        XCTAssertEqual(dupBody["message_id"]?.stringValue, messageId)
        XCTAssertEqual(dupBody["duplicate"], true)

        // The outbound message event, then sent and delivered statuses about it.
        var states: [String] = []
        var sawOutbound = false
        let deadline = Date().addingTimeInterval(10)
        while !(states.contains("sent") && states.contains("delivered")) && Date() < deadline {
            for (_, ev) in try events(c, count: 1) {
                if ev["direction"]?.stringValue == "outbound" && ev["type"]?.stringValue == "message" {
                    XCTAssertEqual(ev["message_id"]?.stringValue, messageId); sawOutbound = true
                }
                if ev["type"]?.stringValue == "status" {
                    XCTAssertEqual(ev["status"]?["message_id"]?.stringValue, messageId)
                    XCTAssertEqual(ev["conversation_id"]?.stringValue, conv)
                    states.append(ev["status"]!["state"]!.stringValue!)
                }
            }
        }
        XCTAssertTrue(sawOutbound)
        XCTAssertEqual(states, ["sent", "delivered"])

        // The sandbox outbox shows exactly one message (the duplicate send was not dispatched).
        let outbox = try d.get("/webhooks/sandbox/outbox")
        XCTAssertEqual(outbox.status, 200)
        XCTAssertEqual(outbox.body.components(separatedBy: "\"message_id\":\"\(messageId)\"").count - 1, 1, outbox.body)

        // A permanent failure ends in exactly one failed status with the channel's code.
        let fail = try c.request(.send(idempotencyKey: nil, message: ["instance": "sandbox", "to": "fail-permanent-1", "parts": [["type": "text", "text": "x"]]]))
        guard case .reply("accepted", _, let fb) = fail else { return XCTFail("\(fail)") }
        var failed: JSONValue?
        while failed == nil {
            for (_, ev) in try events(c, count: 1) where ev["type"]?.stringValue == "status" && ev["status"]?["message_id"] == fb["message_id"] {
                failed = ev
            }
        }
        XCTAssertEqual(failed?["status"]?["state"]?.stringValue, "failed")
        XCTAssertEqual(failed?["status"]?["error"]?["code"]?.stringValue, "sandbox_rejected")

        // Retryable failures are retried until sent.
        let retry = try c.request(.send(idempotencyKey: nil, message: ["instance": "sandbox", "to": "fail-retry-1", "parts": [["type": "text", "text": "y"]]]))
        guard case .reply("accepted", _, let rb) = retry else { return XCTFail("\(retry)") }
        var final: String?
        while final == nil {
            for (_, ev) in try events(c, count: 1) where ev["type"]?.stringValue == "status" && ev["status"]?["message_id"] == rb["message_id"] {
                final = ev["status"]?["state"]?.stringValue
            }
        }
        XCTAssertEqual(final, "sent")

        // Invalid sends get clear errors.
        let bad = try c.request(.send(idempotencyKey: nil, message: ["conversation_id": .string(conv), "parts": [["type": "payment_request", "amount": 10, "currency": "euro", "link": "x"]]]))
        guard case .error(let e) = bad else { return XCTFail("expected an error, got \(bad)") }
        XCTAssertEqual(e.code, .invalid)
        XCTAssertEqual(e.field, "message.parts[0].currency")
        let unknown = try c.request(.send(idempotencyKey: nil, message: ["conversation_id": "conv_nope", "parts": [["type": "text", "text": "x"]]]))
        guard case .error(let e2) = unknown else { return XCTFail("expected an error") }
        XCTAssertEqual(e2.code, .notFound)
    }

    // MARK: Bad input on the socket and on HTTP

    func testMalformedFramesGetErrorsAndTheConnectionSurvives() throws {
        let d = try TestDaemon()
        try d.start()
        defer { d.stop() }
        let c = try connect(d)
        try c.sendRaw(Array("this is not json".utf8))
        guard case .error(let e1) = try c.nextMessage(timeoutMilliseconds: 5000) else { return XCTFail() }
        XCTAssertEqual(e1.code, .badFrame)
        try c.sendRaw(Array(#"{"op":"dance","id":7}"#.utf8))
        guard case .error(let e2) = try c.nextMessage(timeoutMilliseconds: 5000) else { return XCTFail() }
        XCTAssertEqual(e2.code, .unknownOp)
        try c.sendRaw(Array(#"{"op":"subscribe","id":8,"colour":"red"}"#.utf8))
        guard case .error(let e3) = try c.nextMessage(timeoutMilliseconds: 5000) else { return XCTFail() }
        XCTAssertEqual(e3.code, .unknownField)
        let huge = "{\"op\":\"ping\",\"pad\":\"" + String(repeating: "x", count: 2 << 20) + "\"}"
        try c.sendRaw(Array(huge.utf8))
        guard case .error(let e4) = try c.nextMessage(timeoutMilliseconds: 5000) else { return XCTFail() }
        XCTAssertEqual(e4.code, .frameTooLarge)
        // Still usable.
        guard case .reply("pong", _, _) = try c.request(.ping) else { return XCTFail("no pong after bad frames") }

        // HTTP: malformed JSON → 400, oversized → 413, unknown route → 404, nothing stored.
        XCTAssertEqual(try d.post("/webhooks/sandbox/messages", json: "{not json").status, 400)
        XCTAssertEqual(try d.post("/webhooks/sandbox/messages", json: #"{"from":"x","text":"hi","surprise":1}"#).status, 400)
        let big = "{\"from\":\"x\",\"text\":\"" + String(repeating: "y", count: 2 << 20) + "\"}"
        XCTAssertEqual(try d.post("/webhooks/sandbox/messages", json: big).status, 413)
        XCTAssertEqual(try d.post("/webhooks/nope/messages", json: "{}").status, 404)
        XCTAssertEqual(try d.get("/healthz").status, 200)
        guard case .reply("stats", _, let stats) = try c.request(.stats) else { return XCTFail() }
        XCTAssertEqual(stats["events"]?["accepted"]?.intValue, 0)
    }

    // MARK: Plugins: the C plugin works, bad plugins are refused, the rest runs

    func testCPluginAndRefusedPlugins() throws {
        let root = TestPaths.repoRoot()
        let dir = TestPaths.temporaryDirectory("chorus-plugins")
        let (status, out, err) = try TestProcess.run("/usr/bin/make", ["-s", "-C", root + "/Tests/Fixtures/plugins", "OUT=" + dir])
        XCTAssertEqual(status, 0, out + err)
        let echo = TestPaths.buildDir + "/libchorus-echo.so"
        XCTAssertTrue(FileManager.default.fileExists(atPath: echo), "build the C plugin first (make build)")
        let d = try TestDaemon(instancesTOML: TestDaemon.sandboxInstance + """

        [[instance]]
        name = "echo"
        plugin = "\(echo)"

        [[instance]]
        name = "badversion"
        plugin = "\(dir)/bad_version.so"

        [[instance]]
        name = "noentry"
        plugin = "\(dir)/no_entry.so"

        [[instance]]
        name = "failinit"
        plugin = "\(dir)/failing_init.so"
        """)
        try d.start()
        defer { d.stop() }
        let c = try connect(d)
        guard case .reply("instances", _, let body) = try c.request(.instances) else { return XCTFail() }
        var states: [String: (String, String)] = [:]
        for i in body["instances"]?.arrayValue ?? [] {
            states[i["name"]!.stringValue!] = (i["state"]!.stringValue!, i["error"]?.stringValue ?? "")
        }
        XCTAssertEqual(states["sandbox"]?.0, "running")
        XCTAssertEqual(states["echo"]?.0, "running")
        XCTAssertEqual(states["badversion"]?.0, "failed")
        XCTAssertTrue(states["badversion"]?.1.contains("bad_version.so") ?? false, states["badversion"]?.1 ?? "")
        XCTAssertTrue(states["badversion"]?.1.contains("99") ?? false, states["badversion"]?.1 ?? "")
        XCTAssertTrue(states["noentry"]?.1.contains("chorus_plugin_entry") ?? false)
        XCTAssertTrue(states["failinit"]?.1.contains("missing api_key setting") ?? false, states["failinit"]?.1 ?? "")

        // The C plugin round trip: inbound text, send, echo reply.
        _ = try c.request(.subscribe(name: nil, filter: SubscriptionFilter(instances: ["echo"]), from: .now))
        let r = try HTTPTestClient.request(port: d.httpPort, method: "POST", path: "/webhooks/echo/inbound",
                                           headers: [("X-Echo-From", "bob"), ("X-Echo-Message-Id", "e-1")], body: Array("ping".utf8))
        XCTAssertEqual(r.status, 200, r.body)
        let inbound = try events(c, count: 1)[0].event
        XCTAssertEqual(inbound["parts"]?.arrayValue?.first?["text"]?.stringValue, "ping")
        let conv = inbound["conversation_id"]!
        guard case .reply("accepted", _, _) = try c.request(.send(idempotencyKey: nil, message: ["conversation_id": conv, "parts": [["type": "text", "text": "pong"]]])) else { return XCTFail() }
        var sawEcho = false, sawSent = false
        let deadline = Date().addingTimeInterval(10)
        while !(sawEcho && sawSent) && Date() < deadline {
            let ev = try events(c, count: 1)[0].event
            if ev["type"]?.stringValue == "status" && ev["status"]?["state"]?.stringValue == "sent" { sawSent = true }
            if ev["direction"]?.stringValue == "inbound", let t = ev["parts"]?.arrayValue?.first?["text"]?.stringValue, t.contains("pong") { sawEcho = true }
        }
        XCTAssertTrue(sawSent)
        XCTAssertTrue(sawEcho)
    }

    // MARK: A slow subscriber beside a fast one

    func testSlowSubscriberDoesNotHoldBackAFastOne() throws {
        let d = try TestDaemon(extraTOML: "[store]\nsubscriber_buffer_bytes = 65536\n")
        try d.start()
        defer { d.stop() }
        let slow = try connect(d)
        _ = try slow.request(.subscribe(name: "slow", filter: nil, from: .now))
        let fast = try connect(d)
        _ = try fast.request(.subscribe(name: "fast", filter: nil, from: .now))
        let n = 400
        var batch: [String] = []
        for i in 0..<n { batch.append(#"{"from":"c\#(i % 7)","text":"\#(String(repeating: "z", count: 400)) \#(i)","id":"s-\#(i)"}"#) }
        for chunk in stride(from: 0, to: n, by: 50) {
            let body = "[" + batch[chunk..<min(n, chunk + 50)].joined(separator: ",") + "]"
            XCTAssertEqual(try d.post("/webhooks/sandbox/messages", json: body).status, 200)
        }
        // The fast one gets everything while the slow one has read nothing.
        let got = try events(fast, sub: "fast", count: n, timeoutMs: 20_000)
        XCTAssertEqual(got.count, n)
        XCTAssertEqual(Set(got.map { $0.cursor }).count, n)
        // The slow one, reading now, still gets every event in order (fed from the log as it catches up).
        let late = try events(slow, sub: "slow", count: n, timeoutMs: 20_000)
        XCTAssertEqual(late.map { $0.cursor }, got.map { $0.cursor })
        received = Array(received.prefix(50))
    }

    // MARK: kill -9 loses nothing that was acknowledged

    func testCrashLosesNothingAcknowledged() throws {
        let d = try TestDaemon()
        try d.start()
        let port = d.httpPort
        let acknowledged = LockedSet()
        let stop = LockedFlag()
        let group = DispatchGroup()
        for t in 0..<4 {
            DispatchQueue.global().async(group: group) {
                var i = 0
                while !stop.value {
                    let id = "k-\(t)-\(i)"
                    if let r = try? HTTPTestClient.request(port: port, method: "POST", path: "/webhooks/sandbox/messages", headers: [],
                                                           body: Array(#"{"from":"flood","text":"x","id":"\#(id)"}"#.utf8)), r.status == 200 {
                        acknowledged.insert(id)
                    }
                    i += 1
                }
            }
        }
        usleep(UInt32.random(in: 300_000...900_000))
        d.crash()
        stop.value = true
        group.wait()
        XCTAssertGreaterThan(acknowledged.count, 10)

        let d2 = try TestDaemon(directory: d.directory)
        try d2.start()
        defer { d2.stop() }
        let c = try connect(d2)
        _ = try c.request(.subscribe(name: "audit", filter: SubscriptionFilter(types: ["message"]), from: .earliest))
        guard case .reply("stats", _, let stats) = try c.request(.stats) else { return XCTFail() }
        let total = Int(stats["log"]?["last_cursor"]?.intValue ?? 0)
        var seen: [String: String] = [:]   // channel message id → chorus id
        var m = try c.nextMessage(timeoutMilliseconds: 10_000)
        while true {
            if case .event(_, let cursor, let ev) = m {
                let cmid = ev["channel_ids"]?["message"]?.stringValue ?? ""
                if let prev = seen[cmid] { XCTAssertEqual(prev, ev["id"]?.stringValue, "a duplicate with a different Chorus id") }
                seen[cmid] = ev["id"]?.stringValue
                if cursor >= total { break }
            }
            m = try c.nextMessage(timeoutMilliseconds: 10_000)
        }
        let missing = acknowledged.values.subtracting(seen.keys)
        XCTAssertTrue(missing.isEmpty, "\(missing.count) acknowledged messages lost: \(missing.prefix(5))")
    }

    // MARK: chorusctl

    func testChorusctl() throws {
        let d = try TestDaemon()
        try d.start()
        defer { d.stop() }
        let (s1, out1, err1) = try d.chorusctl(["status"])
        XCTAssertEqual(s1, 0, err1)
        XCTAssertTrue(out1.contains("sandbox"), out1)
        let (s2, out2, _) = try d.chorusctl(["plugins"])
        XCTAssertEqual(s2, 0)
        XCTAssertTrue(out2.contains("sandbox"), out2)
        XCTAssertEqual(try d.post("/webhooks/sandbox/messages", json: #"{"from":"cust-ctl","text":"via ctl"}"#).status, 200)
        let (s3, out3, err3) = try d.chorusctl(["tail", "--json", "--from", "earliest", "-n", "1"])
        XCTAssertEqual(s3, 0, err3)
        let ev = try JSONParser.parse(out3.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertEqual(ev["parts"]?.arrayValue?.first?["text"]?.stringValue, "via ctl")
        received.append(ev)
        let (s4, out4, err4) = try d.chorusctl(["send", "--instance", "sandbox", "--to", "cust-ctl", "--text", "answer", "--wait"])
        XCTAssertEqual(s4, 0, err4)
        XCTAssertTrue(out4.contains("msg_"), out4)
        // Not running: a clear message and a non-zero exit.
        let (s5, _, err5) = try TestProcess.run(TestPaths.buildDir + "/chorusctl", ["--socket", d.directory + "/nope.sock", "status"])
        XCTAssertNotEqual(s5, 0)
        XCTAssertTrue(err5.contains("not running"), err5)
    }

    // MARK: Config errors name the key and the line

    func testCheckConfigReportsKeyAndLine() throws {
        let dir = TestPaths.temporaryDirectory()
        let path = dir + "/bad.toml"
        try "[http]\nlisten = \"127.0.0.1:8780\"\nmax_body_bytez = 5\n".write(toFile: path, atomically: true, encoding: .utf8)
        let (status, _, err) = try TestProcess.run(TestPaths.buildDir + "/chorusd", ["--check-config", path])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(err.contains(":3:"), err)
        XCTAssertTrue(err.contains("max_body_bytez"), err)
    }
}

final class LockedSet: @unchecked Sendable {
    private var set: Set<String> = []
    private let lock = NSLock()
    func insert(_ s: String) { lock.lock(); set.insert(s); lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return set.count }
    var values: Set<String> { lock.lock(); defer { lock.unlock() }; return set }
}

final class LockedFlag: @unchecked Sendable {
    private var v = false
    private let lock = NSLock()
    var value: Bool {
        get { lock.lock(); defer { lock.unlock() }; return v }
        set { lock.lock(); v = newValue; lock.unlock() }
    }
}

/// The host services behind the ABI (outbound HTTP, fd watches, post from another thread,
/// timers, the durable kv store), exercised by a C plugin inside the real chorusd.
final class HostServicesIntegrationTests: XCTestCase {
    func testPluginUsesHTTPClientFDWatchPostTimersAndKV() throws {
        let dir = TestPaths.temporaryDirectory("chorus-probe")
        let (status, out, err) = try TestProcess.run("/usr/bin/make", ["-s", "-C", TestPaths.repoRoot() + "/Tests/Fixtures/plugins", "OUT=" + dir])
        XCTAssertEqual(status, 0, out + err)
        let port = try freeLoopbackPort()
        let d = try TestDaemon(instancesTOML: """
        [[instance]]
        name = "probe"
        plugin = "\(dir)/host_api_probe.so"
        [instance.settings]
        url = "http://127.0.0.1:\(port)/metrics"
        """)
        // Listen on the chosen port so the plugin's outbound request reaches this same chorusd's /metrics.
        var text = try String(contentsOfFile: d.configPath, encoding: .utf8)
        text = text.replacingOccurrences(of: "listen = \"127.0.0.1:0\"", with: "listen = \"127.0.0.1:\(port)\"")
        try text.write(toFile: d.configPath, atomically: true, encoding: .utf8)
        try d.start()
        defer { d.stop() }
        let r = try d.post("/webhooks/probe/probe", json: "{}")
        XCTAssertEqual(r.status, 200, r.body + d.logText)
        XCTAssertTrue(r.body.hasPrefix("http=200 bytes="), r.body)
        XCTAssertTrue(r.body.contains("fd=x post=ok timer=ok kv=ok kv_async=ok off_loop=0"), r.body)
    }
}
