import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// Operator-facing behaviour of the real chorusd: several instances of one plugin,
/// SIGHUP reload, SIGTERM, access control by peer credentials, and a full disk.
final class OperationsIntegrationTests: XCTestCase {
    func instancesState(_ c: ChorusConnection) throws -> [String: JSONValue] {
        guard case .reply("instances", _, let body) = try c.request(.instances) else { throw TestKitError("no instances reply") }
        var out: [String: JSONValue] = [:]
        for i in body["instances"]?.arrayValue ?? [] { out[i["name"]!.stringValue!] = i }
        return out
    }

    func nextEvent(_ c: ChorusConnection, timeoutMs: Int = 10_000) throws -> JSONValue {
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while true {
            let left = Int(deadline.timeIntervalSinceNow * 1000)
            if left <= 0 { throw TestKitError("no event within \(timeoutMs) ms") }
            if case .event(_, _, let ev) = try c.nextMessage(timeoutMilliseconds: left) { return ev }
        }
    }

    func testTwoInstancesOfOnePluginAndSIGHUPReload() throws {
        let two = """
        [[instance]]
        name = "shop-a"
        plugin = "sandbox"
        [instance.settings]
        account = "number-a"

        [[instance]]
        name = "shop-b"
        plugin = "sandbox"
        [instance.settings]
        account = "number-b"
        """
        let d = try TestDaemon(instancesTOML: two)
        try d.start()
        defer { d.stop() }
        let c = try ChorusConnection(path: d.socketPath)
        _ = try c.request(.subscribe(name: nil, filter: SubscriptionFilter(types: ["message"]), from: .now))
        XCTAssertEqual(try d.post("/webhooks/shop-a/messages", json: #"{"from":"same-customer","text":"to a"}"#).status, 200)
        XCTAssertEqual(try d.post("/webhooks/shop-b/messages", json: #"{"from":"same-customer","text":"to b"}"#).status, 200)
        let ea = try nextEvent(c), eb = try nextEvent(c)
        XCTAssertEqual(ea["instance"]?.stringValue, "shop-a")
        XCTAssertEqual(eb["instance"]?.stringValue, "shop-b")
        XCTAssertEqual(ea["channel_ids"]?["account"]?.stringValue, "number-a")
        XCTAssertNotEqual(ea["conversation_id"], eb["conversation_id"], "two business numbers are two conversations")
        XCTAssertEqual(ea["sender"]?["contact_id"], eb["sender"]?["contact_id"], "one customer, one contact id")

        // SIGHUP: remove shop-b, add shop-c, reconfigure shop-a (an unknown setting is refused by the plugin: old settings stay).
        let next = """
        [[instance]]
        name = "shop-a"
        plugin = "sandbox"
        [instance.settings]
        account = "number-a"
        deliver_after_ms = 5

        [[instance]]
        name = "shop-c"
        plugin = "sandbox"
        """
        try rewriteInstances(d, next)
        d.signal(SIGHUP)
        try waitFor { (try? self.instancesState(c))?["shop-c"]?["state"]?.stringValue == "running" }
        let states = try instancesState(c)
        XCTAssertNil(states["shop-b"])
        XCTAssertEqual(states["shop-a"]?["state"]?.stringValue, "running")
        XCTAssertEqual(try d.post("/webhooks/shop-c/messages", json: #"{"from":"x","text":"to c"}"#).status, 200)
        XCTAssertEqual(try d.post("/webhooks/shop-b/messages", json: #"{"from":"x","text":"gone"}"#).status, 404)
        XCTAssertEqual(try nextEvent(c)["instance"]?.stringValue, "shop-c")
        XCTAssertTrue(d.logText.contains("instance shop-a reconfigured"), d.logText)

        // A reload the plugin refuses keeps the running settings and says why.
        try rewriteInstances(d, next.replacingOccurrences(of: "deliver_after_ms = 5", with: "colour = \"red\""))
        d.signal(SIGHUP)
        try waitFor { d.logText.contains("keeps its previous settings") }
        XCTAssertTrue(d.logText.contains("colour"), d.logText)
        // An invalid config file is refused as a whole.
        try "[[instance]]\nname = 5\n".write(toFile: d.configPath, atomically: true, encoding: .utf8)
        d.signal(SIGHUP)
        try waitFor { d.logText.contains("config not reloaded") }
        XCTAssertEqual(try instancesState(c)["shop-c"]?["state"]?.stringValue, "running")
    }

    func rewriteInstances(_ d: TestDaemon, _ instances: String) throws {
        let text = try String(contentsOfFile: d.configPath, encoding: .utf8)
        let head = text.components(separatedBy: "[[instance]]").first ?? ""
        try (head + instances + "\n").write(toFile: d.configPath, atomically: true, encoding: .utf8)
    }

    func waitFor(_ timeout: TimeInterval = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(20_000)
        }
        throw TestKitError("condition not met within \(timeout) s")
    }

    func testSIGTERMShutsDownCleanlyAndSaysGoodbye() throws {
        let d = try TestDaemon()
        try d.start()
        let c = try ChorusConnection(path: d.socketPath)
        _ = try c.request(.subscribe(name: "keep", filter: nil, from: .now))
        XCTAssertEqual(try d.post("/webhooks/sandbox/messages", json: #"{"from":"a","text":"before shutdown"}"#).status, 200)
        _ = try nextEvent(c)
        XCTAssertEqual(d.stop(), 0, d.logText)
        var sawGoodbye = false
        while let m = try? c.nextMessage(timeoutMilliseconds: 2000) {
            if case .goodbye = m { sawGoodbye = true }
        }
        XCTAssertTrue(sawGoodbye)
        XCTAssertTrue(d.logText.contains("chorusd stopped"), d.logText)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d.socketPath), "the socket file is removed")
    }

    /// [[access]]: a peer that is not root nor the daemon's user gets only what a rule grants.
    func testAccessRulesByPeerCredentials() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser"), getpwnam("nobody") != nil else {
            throw XCTSkip("needs root and runuser to connect as another user")
        }
        let d = try TestDaemon(extraTOML: """
        [socket]
        mode = "0666"

        [[access]]
        user = "nobody"
        read = true
        send = false
        """)
        chmod(d.directory, 0o755)
        try d.start()
        chmod(d.stateDirectory, 0o755)
        defer { d.stop() }
        let ctl = TestPaths.buildDir + "/chorusctl"
        let (s1, out1, err1) = try TestProcess.run("/usr/sbin/runuser", ["-u", "nobody", "--", ctl, "--socket", d.socketPath, "plugins"])
        XCTAssertEqual(s1, 0, err1)
        XCTAssertTrue(out1.contains("sandbox"))
        let (s2, _, err2) = try TestProcess.run("/usr/sbin/runuser", ["-u", "nobody", "--", ctl, "--socket", d.socketPath,
                                                                      "send", "--instance", "sandbox", "--to", "x", "--text", "no"])
        XCTAssertNotEqual(s2, 0)
        XCTAssertTrue(err2.contains("may not send"), err2)
    }

    /// A full disk: webhooks get 503 and nothing committed is damaged; when space returns, Chorus resumes.
    func testFullDiskGives503ThenRecovers() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a small tmpfs needs root") }
        let dir = TestPaths.temporaryDirectory("chorus-full")
        let mnt = dir + "/state"
        mkdir(mnt, 0o755)
        let (ms, _, merr) = try TestProcess.run("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt])
        guard ms == 0 else { throw XCTSkip("cannot mount tmpfs here: \(merr)") }
        defer { _ = try? TestProcess.run("/bin/umount", ["-l", mnt]) }
        let d = try TestDaemon(directory: dir)
        try d.start()
        defer { d.stop() }
        let c = try ChorusConnection(path: d.socketPath)
        _ = try c.request(.subscribe(name: "audit", filter: SubscriptionFilter(types: ["message"]), from: .now))
        let pad = String(repeating: "p", count: 8000)
        var accepted: [String] = []
        var sawUnavailable = false
        for i in 0..<2000 {
            let r = try d.post("/webhooks/sandbox/messages", json: #"{"from":"f","text":"\#(pad)","id":"full-\#(i)"}"#)
            if r.status == 200 { accepted.append("full-\(i)") } else {
                XCTAssertEqual(r.status, 503, r.body)
                XCTAssertTrue(r.headers.contains { $0.0 == "retry-after" })
                sawUnavailable = true
                break
            }
        }
        XCTAssertTrue(sawUnavailable, "the 2 MiB disk never filled")
        XCTAssertEqual(try d.get("/healthz").status, 503)
        // A send is refused with a clear error while the store cannot commit.
        let refused = try c.request(.send(idempotencyKey: nil, message: ["instance": "sandbox", "to": "f", "parts": [["type": "text", "text": "x"]]]))
        if case .error(let e) = refused { XCTAssertEqual(e.code, .unavailable) } else { XCTFail("send accepted on a full disk: \(refused)") }

        // Space returns.
        let (rs, _, rerr) = try TestProcess.run("/bin/mount", ["-o", "remount,size=64m", mnt])
        XCTAssertEqual(rs, 0, rerr)
        try waitFor(15) { (try? d.post("/webhooks/sandbox/messages", json: #"{"from":"f","text":"after","id":"after-1"}"#))?.status == 200 }
        XCTAssertEqual(try d.get("/healthz").status, 200)

        // Everything acknowledged before the disk filled is intact and delivered.
        let c2 = try ChorusConnection(path: d.socketPath)
        _ = try c2.request(.replay(filter: SubscriptionFilter(types: ["message"]), fromCursor: 0, toCursor: nil, fromTimeMs: nil, toTimeMs: nil, limit: nil))
        var ids = Set<String>()
        while let m = try? c2.nextMessage(timeoutMilliseconds: 500) {
            if case .event(_, _, let ev) = m, let id = ev["channel_ids"]?["message"]?.stringValue { ids.insert(id) }
        }
        XCTAssertTrue(Set(accepted).isSubset(of: ids), "lost \(Set(accepted).subtracting(ids).count) acknowledged messages")
        XCTAssertTrue(ids.contains("after-1"))
    }
}
