import ChorusJSON
import ChorusTestKit
import Foundation
import XCTest

/// chorusd as a systemd service, with the test playing systemd's part (no systemd needed): the notify
/// socket, socket activation with descriptors created before chorusd starts, the watchdog variables,
/// SIGHUP/SIGTERM, and the journal's native protocol.
final class SystemdTests: XCTestCase {
    var chorusd: String { TestPaths.buildDir + "/chorusd" }

    /// Builds Tests/Fixtures/plugins/blocking.c (with that folder's Makefile) and returns the .so path.
    func blockingPlugin() throws -> String {
        let dir = TestPaths.temporaryDirectory("chorus-blocking")
        let (status, out, err) = try TestProcess.run("/usr/bin/make", ["-s", "-C", TestPaths.repoRoot() + "/Tests/Fixtures/plugins",
                                                                       "OUT=" + dir, dir + "/blocking.so"])
        XCTAssertEqual(status, 0, out + err)
        return dir + "/blocking.so"
    }

    static let sandbox = """
    [[instance]]
    name = "sandbox"
    plugin = "sandbox"
    [instance.settings]
    deliver_after_ms = 20
    """

    static func blocking(_ path: String, name: String = "blk", startDelayMs: Int = 0) -> String {
        """
        [[instance]]
        name = "\(name)"
        plugin = "\(path)"
        [instance.settings]
        start_delay_ms = \(startDelayMs)
        """
    }

    /// A notify socket in `dir`.
    func notifySocket(_ dir: String) throws -> NotifySocket {
        try NotifySocket(path: dir + "/notify.sock")
    }

    func webhookRequest(_ path: String, _ body: String) -> [UInt8] {
        Array("POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
    }

    func statusLine(_ response: String) -> Int {
        Int(response.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    // MARK: The whole life of a socket-activated service

    func testSocketActivatedServiceReadyStatusWatchdogReloadAndStop() throws {
        let blocking = try blockingPlugin()
        let d = try TestDaemon(instancesTOML: SystemdTests.sandbox + "\n" + SystemdTests.blocking(blocking, startDelayMs: 400))
        let notify = try notifySocket(d.directory)
        defer { notify.close() }
        let listeners = try PassedListeners(unixPath: d.directory + "/activated.sock")

        // Clients connect while no chorusd runs: the kernel queues them on the listening sockets.
        let consumer = try EarlyClient(unixPath: listeners.unixPath)
        let webhook = try EarlyClient(tcpPort: listeners.port)
        try webhook.write(webhookRequest("/webhooks/sandbox/messages", #"{"from":"cust-1","name":"Early","text":"before start","id":"early-1"}"#))

        let service = try SystemdServiceProcess(
            executable: chorusd, arguments: ["--config", d.configPath], passing: [listeners.unixFD, listeners.tcpFD],
            names: ["consumer", "http"], environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"],
            watchdogPidIsSelf: true, logPath: d.logPath)
        defer { service.killNow() }
        listeners.close()

        // READY=1 only once both instances' start returned (blk's takes 400 ms), with a status line.
        let (readyIndex, ready) = try notify.waitFor("READY", "1")
        XCTAssertGreaterThanOrEqual(ready.at - service.startedAt, 0.4, "READY=1 came before blk's start could have returned")
        let logAtReady = service.logText
        XCTAssertTrue(logAtReady.contains("instance blk running"), logAtReady)
        XCTAssertTrue(logAtReady.contains("instance sandbox running"), logAtReady)
        XCTAssertEqual(ready.value("STATUS")?.hasPrefix("2/2 instances up, 0 subscribers"), true, ready.description)
        XCTAssertEqual(ready.senderPid, service.pid, "the notification must come from the main process")
        XCTAssertEqual(notify.messages.prefix(readyIndex).filter { $0.value("READY") != nil }.count, 0, "a single READY=1 at start")
        XCTAssertTrue(logAtReady.contains("socket activation"), logAtReady)
        XCTAssertFalse(logAtReady.contains("<3>"), logAtReady)

        // The webhook sent before start is answered after it, once durable.
        let answer = try webhook.readToEnd(timeout: 10)
        XCTAssertEqual(statusLine(answer), 200, answer)
        XCTAssertTrue(answer.contains("evt_"), answer)

        // The consumer that connected before start gets its hello and subscribes.
        let hello = try JSONParser.parse(try consumer.readLine(timeout: 10))
        XCTAssertEqual(hello["type"]?.stringValue, "hello", "\(hello)")
        try consumer.write(Array(#"{"op":"subscribe","id":1,"filter":{"types":["message"]},"from":"earliest"}"#.utf8) + [10])
        var sawEvent = false
        var sawSubscribed = false
        while !(sawEvent && sawSubscribed) {
            let frame = try JSONParser.parse(try consumer.readLine(timeout: 10))
            if frame["type"]?.stringValue == "subscribed" { sawSubscribed = true }
            if frame["type"]?.stringValue == "event" {
                XCTAssertEqual(frame["event"]?["parts"]?.arrayValue?.first?["text"]?.stringValue, "before start")
                sawEvent = true
            }
        }

        // STATUS= follows the change (one subscriber now), within the refresh interval.
        try notify.waitFor(from: readyIndex + 1, timeout: 6, "STATUS with 1 subscriber") {
            $0.value("STATUS")?.hasPrefix("2/2 instances up, 1 subscriber,") == true
        }

        // Watchdog pings at about half of WATCHDOG_USEC (200 ms).
        try notify.waitFor("WATCHDOG", "1", from: readyIndex)
        let windowStart = monotonicSeconds()
        usleep(1_500_000)
        let pings = notify.messages.filter { $0.value("WATCHDOG") == "1" && $0.at >= windowStart && $0.at <= windowStart + 1.5 }
        XCTAssertGreaterThanOrEqual(pings.count, 5, "\(pings.count) pings in 1.5 s")
        XCTAssertLessThanOrEqual(pings.count, 12, "\(pings.count) pings in 1.5 s")
        let gaps = zip(pings.dropFirst(), pings).map { $0.at - $1.at }.sorted()
        let median = gaps[gaps.count / 2]
        XCTAssertTrue((0.12...0.35).contains(median), "median ping gap \(median) s, expected about 0.2 s")

        // A plugin that blocks the loop for 1.5 s stops the pings; they resume afterwards.
        XCTAssertFalse(service.logText.contains("event loop was blocked"), "no blocked loop before the block:\n\(service.logText)")
        let blockAnswer = try EarlyClient(tcpPort: listeners.port)
        let blockStart = monotonicSeconds()
        try blockAnswer.write(webhookRequest("/webhooks/blk/block", "1500"))
        let blocked = try blockAnswer.readToEnd(timeout: 10)
        let blockEnd = monotonicSeconds()
        XCTAssertEqual(statusLine(blocked), 200, blocked)
        XCTAssertTrue(blocked.hasSuffix("blocked 1500 ms"), blocked)
        try notify.waitFor(from: notify.messages.count, timeout: 5, "a ping after the block") { $0.value("WATCHDOG") == "1" }
        usleep(400_000)
        let around = notify.messages.filter { $0.value("WATCHDOG") == "1" && $0.at >= blockStart - 0.6 && $0.at <= blockEnd + 0.6 }.map(\.at)
        let longest = zip(around.dropFirst(), around).map { $0 - $1 }.max() ?? 0
        XCTAssertGreaterThanOrEqual(longest, 1.3, "pings around the block: \(around)")
        try waitUntil(timeout: 5, "the blocked-loop log line") { service.logText.contains("event loop was blocked for about") }

        // SIGHUP: RELOADING=1 with MONOTONIC_USEC in the same datagram, then READY=1 once the new
        // configuration runs (blk removed, a second sandbox instance added).
        var text = try String(contentsOfFile: d.configPath, encoding: .utf8)
        text = String(text[..<text.range(of: "[[instance]]")!.lowerBound])
        text += SystemdTests.sandbox + "\n" + SystemdTests.sandbox.replacingOccurrences(of: "name = \"sandbox\"", with: "name = \"sandbox2\"")
        try text.write(toFile: d.configPath, atomically: true, encoding: .utf8)
        let beforeReload = notify.messages.count
        let sentAt = monotonicSeconds()
        service.signal(SIGHUP)
        let (reloadingIndex, reloading) = try notify.waitFor("RELOADING", "1", from: beforeReload, timeout: 10)
        let usec = try XCTUnwrap(reloading.value("MONOTONIC_USEC").flatMap { UInt64($0) }, reloading.description)
        let stamp = Double(usec) / 1e6
        XCTAssertTrue(stamp >= sentAt - 0.01 && stamp <= monotonicSeconds() + 0.01, "MONOTONIC_USEC \(stamp) not between \(sentAt) and now")
        let (_, reloaded) = try notify.waitFor("READY", "1", from: reloadingIndex + 1, timeout: 10)
        XCTAssertEqual(reloaded.value("STATUS")?.hasPrefix("2/2 instances up"), true, reloaded.description)
        let logAfterReload = service.logText
        XCTAssertTrue(logAfterReload.contains("SIGHUP: stopping instance blk"), logAfterReload)
        XCTAssertTrue(logAfterReload.contains("SIGHUP: starting instance sandbox2"), logAfterReload)

        // SIGTERM: STOPPING=1 (with a status), then a clean exit; the passed socket's file stays.
        let beforeStop = notify.messages.count
        service.signal(SIGTERM)
        let (_, stopping) = try notify.waitFor("STOPPING", "1", from: beforeStop, timeout: 10)
        XCTAssertEqual(stopping.value("STATUS")?.hasPrefix("stopping: draining "), true, stopping.description)
        XCTAssertEqual(service.waitForExit(timeout: 20), 0, service.logText)
        XCTAssertTrue(FileManager.default.fileExists(atPath: listeners.unixPath), "chorusd must not unlink a socket systemd passed")
        XCTAssertEqual(notify.messages.filter { $0.senderPid != nil && $0.senderPid != service.pid }.map(\.description), [])
    }

    // MARK: A store writer that does not complete its commit

    func testStuckStoreWriterWithholdsWatchdogPings() throws {
        let d = try TestDaemon(instancesTOML: SystemdTests.sandbox)
        let notify = try notifySocket(d.directory)
        defer { notify.close() }
        let service = try SystemdServiceProcess(
            executable: chorusd, arguments: ["--config", d.configPath],
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"], watchdogPidIsSelf: true, logPath: d.logPath)
        defer { service.killNow() }
        try notify.waitFor("READY", "1")
        let port = try XCTUnwrap(service.logText.range(of: "http=127.0.0.1:").map { r in
            Int(service.logText[r.upperBound...].prefix { $0.isNumber })
        } ?? nil)

        // Another process holds SQLite's write lock for 2 s: the writer thread waits in its commit
        // (busy timeout 5 s) while the loop keeps turning.
        let locker = Process()
        locker.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        locker.arguments = ["python3", "-c", """
            import sqlite3, sys, time
            c = sqlite3.connect(sys.argv[1], isolation_level=None)
            c.execute("BEGIN IMMEDIATE")
            print("locked", flush=True)
            time.sleep(2)
            c.execute("ROLLBACK")
            """, d.stateDirectory + "/chorus.db"]
        let out = Pipe()
        locker.standardOutput = out
        try locker.run()
        defer { if locker.isRunning { locker.terminate() } }
        XCTAssertEqual(String(decoding: out.fileHandleForReading.readData(ofLength: 7), as: UTF8.self), "locked\n")
        let lockedAt = monotonicSeconds()
        let webhook = try EarlyClient(tcpPort: port)
        try webhook.write(webhookRequest("/webhooks/sandbox/messages", #"{"from":"cust-1","text":"while locked","id":"locked-1"}"#))
        let answer = try webhook.readToEnd(timeout: 10)
        XCTAssertEqual(statusLine(answer), 200, answer)
        locker.waitUntilExit()
        try notify.waitFor(from: notify.messages.count, timeout: 5, "a ping after the commit") { $0.value("WATCHDOG") == "1" }
        let pings = notify.messages.filter { $0.value("WATCHDOG") == "1" && $0.at > lockedAt + 0.6 && $0.at < lockedAt + 1.8 }
        XCTAssertEqual(pings.count, 0, "pings while the commit was stuck: \(pings.map(\.at)) (locked at \(lockedAt))")
        let log = service.logText
        XCTAssertTrue(log.contains("withholding the systemd watchdog ping: the store's writer thread has not finished a commit for"), log)
        XCTAssertTrue(log.contains("healthy again: systemd watchdog pings resume"), log)
        XCTAssertFalse(log.contains("event loop was blocked"), "the loop itself kept turning:\n\(log)")
        service.signal(SIGTERM)
        XCTAssertEqual(service.waitForExit(timeout: 20), 0, service.logText)
    }

    // MARK: Without activation, failed instances, watchdog for another pid, stderr prefixes

    func testWithoutActivationFailedInstanceIsNamedAndForeignWatchdogPidIsIgnored() throws {
        let d = try TestDaemon(instancesTOML: SystemdTests.sandbox + """

        [[instance]]
        name = "broken"
        plugin = "/nonexistent/libchorus-broken.so"
        """)
        let notify = try notifySocket(d.directory)
        defer { notify.close() }
        _ = FileManager.default.createFile(atPath: d.logPath, contents: nil)
        let service = try SystemdServiceProcess(
            executable: chorusd, arguments: ["--config", d.configPath],
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1",
                          "JOURNAL_STREAM": "1:1"],
            logPath: d.logPath)
        defer { service.killNow() }

        let (readyIndex, ready) = try notify.waitFor("READY", "1")
        XCTAssertEqual(ready.value("STATUS")?.hasPrefix("1/2 instances up (failed: broken), 0 subscribers, backlog 0 events, 0 sends"), true,
                       ready.description)
        // It bound the configured socket itself and answers there.
        let c = try EarlyClient(unixPath: d.socketPath)
        XCTAssertTrue(try c.readLine(timeout: 10).contains("\"hello\""))
        // WATCHDOG_PID names another process: no pings from us.
        usleep(800_000)
        XCTAssertEqual(notify.messages.dropFirst(readyIndex).filter { $0.value("WATCHDOG") != nil }.count, 0)
        // JOURNAL_STREAM does not name our stderr: prefixed lines on stderr.
        let log = service.logText
        XCTAssertTrue(log.contains("<5>chorusd 0.1.0 ready"), log)
        XCTAssertTrue(log.contains("<3>instance broken not started"), log)
        // A reload with a file that does not load: RELOADING=1, then READY=1 with the old config running,
        // and the status says so.
        try "[http]\nlisten = \"nonsense\"\n".write(toFile: d.configPath, atomically: true, encoding: .utf8)
        let before = notify.messages.count
        service.signal(SIGHUP)
        let reloading = try notify.waitFor("RELOADING", "1", from: before, timeout: 10)
        let (_, again) = try notify.waitFor("READY", "1", from: reloading.index + 1, timeout: 10)
        let status = again.value("STATUS") ?? ""
        XCTAssertTrue(status.hasPrefix("1/2 instances up (failed: broken)"), status)
        XCTAssertTrue(status.contains("; reload failed, running the previous config: "), status)
        service.signal(SIGTERM)
        XCTAssertEqual(service.waitForExit(timeout: 20), 0, service.logText)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d.socketPath), "a socket chorusd bound itself is removed at exit")
    }

    // MARK: Descriptor names

    func testUnnamedDescriptorsAreConsumerThenHTTP() throws {
        let d = try TestDaemon(instancesTOML: SystemdTests.sandbox)
        let notify = try notifySocket(d.directory)
        defer { notify.close() }
        let listeners = try PassedListeners(unixPath: d.directory + "/unnamed.sock")
        let service = try SystemdServiceProcess(
            executable: chorusd, arguments: ["--config", d.configPath], passing: [listeners.unixFD, listeners.tcpFD],
            environment: ["NOTIFY_SOCKET": notify.path], logPath: d.logPath)
        defer { service.killNow() }
        listeners.close()
        try notify.waitFor("READY", "1")
        let c = try EarlyClient(unixPath: listeners.unixPath)
        XCTAssertTrue(try c.readLine(timeout: 10).contains("\"hello\""))
        let r = try HTTPTestClient.request(port: listeners.port, method: "GET", path: "/healthz", headers: [], body: [])
        XCTAssertEqual(r.status, 200, r.body)
        service.signal(SIGTERM)
        XCTAssertEqual(service.waitForExit(timeout: 20), 0, service.logText)
    }

    func testUnknownDescriptorNameIsRefusedAndClosed() throws {
        let d = try TestDaemon(instancesTOML: SystemdTests.sandbox)
        let notify = try notifySocket(d.directory)
        defer { notify.close() }
        let listeners = try PassedListeners(unixPath: d.directory + "/named.sock")
        let extra = try PassedListeners(unixPath: d.directory + "/extra.sock")
        let service = try SystemdServiceProcess(
            executable: chorusd, arguments: ["--config", d.configPath], passing: [listeners.unixFD, listeners.tcpFD, extra.unixFD],
            names: ["consumer", "http", "metrics"], environment: ["NOTIFY_SOCKET": notify.path], logPath: d.logPath)
        defer { service.killNow() }
        listeners.close()
        extra.close()
        try notify.waitFor("READY", "1")
        let log = service.logText
        XCTAssertTrue(log.contains("socket activation: refusing descriptor 5: unknown descriptor name \"metrics\""), log)
        // Closed by chorusd and by us: nobody listens there any more.
        XCTAssertThrowsError(try EarlyClient(unixPath: extra.unixPath))
        let c = try EarlyClient(unixPath: listeners.unixPath)
        XCTAssertTrue(try c.readLine(timeout: 10).contains("\"hello\""))
        service.signal(SIGTERM)
        XCTAssertEqual(service.waitForExit(timeout: 20), 0, service.logText)
    }

    func testDescriptorOfTheWrongKindIsAFatalError() throws {
        let d = try TestDaemon(instancesTOML: SystemdTests.sandbox)
        let notify = try notifySocket(d.directory)
        defer { notify.close() }
        let listeners = try PassedListeners(unixPath: d.directory + "/swapped.sock")
        // The TCP socket named "consumer" and the Unix one named "http": chorus.socket and chorusd disagree.
        let service = try SystemdServiceProcess(
            executable: chorusd, arguments: ["--config", d.configPath], passing: [listeners.tcpFD, listeners.unixFD],
            names: ["consumer", "http"], environment: ["NOTIFY_SOCKET": notify.path], logPath: d.logPath)
        defer { service.killNow() }
        listeners.close()
        XCTAssertEqual(service.waitForExit(timeout: 20), 1, service.logText)
        XCTAssertTrue(service.logText.contains("the descriptor named \"consumer\" (fd 3) is not a listening AF_UNIX stream socket"), service.logText)
        let failed = try notify.waitFor(timeout: 5, "STATUS=failed to start") { $0.value("STATUS")?.hasPrefix("failed to start: ") == true }
        XCTAssertTrue(failed.message.value("STATUS")!.contains("fd 3"), failed.message.description)
        XCTAssertEqual(notify.messages.filter { $0.value("READY") != nil }.count, 0)
    }

    // MARK: Journal

    /// With JOURNAL_STREAM naming its stderr, chorusd writes structured entries with sd_journal_send. No journald
    /// runs here, so chorusd runs in a private mount namespace where a fake journal socket is mounted on
    /// /run/systemd/journal/socket (needs root and unshare; skipped otherwise).
    func testJournalStreamGivesStructuredEntries() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else {
            throw XCTSkip("needs root and /usr/bin/unshare to mount a fake journal socket")
        }
        let d = try TestDaemon(instancesTOML: SystemdTests.sandbox)
        let journal = try FakeJournal(path: d.directory + "/journal.sock")
        defer { journal.close() }
        let notify = try notifySocket(d.directory)
        defer { notify.close() }
        _ = FileManager.default.createFile(atPath: d.logPath, contents: nil)
        let stream = try XCTUnwrap(SystemdServiceProcess.journalStreamValue(of: d.logPath))
        let service = try SystemdServiceProcess(
            executable: chorusd, arguments: ["--config", d.configPath],
            environment: ["NOTIFY_SOCKET": notify.path, "JOURNAL_STREAM": stream], logPath: d.logPath, fakeJournalSocket: journal.path)
        defer { service.killNow() }
        do {
            try notify.waitFor("READY", "1", timeout: 30)
        } catch {
            if service.waitForExit(timeout: 1) == 97 { throw XCTSkip("cannot mount in a private namespace here: \(service.logText)") }
            throw error
        }
        _ = try journal.waitForDatagram(timeout: 5, "the ready entry") { FakeJournal.parse($0.bytes)["MESSAGE"] == "chorusd 0.1.0 ready" }
        let entries = journal.entries
        let ready = try XCTUnwrap(entries.first { $0["MESSAGE"] == "chorusd 0.1.0 ready" })
        XCTAssertEqual(ready["PRIORITY"], "5")
        XCTAssertEqual(ready["SYSLOG_IDENTIFIER"], "chorusd")
        XCTAssertEqual(ready["CODE_FILE"]?.hasSuffix("Daemon.swift"), true, "\(ready)")
        XCTAssertNotNil(ready["CODE_LINE"].flatMap { Int($0) }, "\(ready)")
        XCTAssertEqual(ready["CODE_FUNC"]?.hasPrefix("startServices"), true, "\(ready)")
        XCTAssertEqual(ready["CHORUS_FSYNC"], "grouped", "\(ready)")
        XCTAssertNotNil(ready["CHORUS_STATE_DIR"], "\(ready)")
        let running = try XCTUnwrap(entries.first { $0["MESSAGE"] == "instance sandbox running" }, "\(entries)")
        XCTAssertEqual(running["PRIORITY"], "6")
        XCTAssertEqual(running["CHORUS_CHANNEL"], "sandbox", "\(running)")
        XCTAssertEqual(running["CHORUS_PLUGIN"]?.hasPrefix("sandbox "), true, "\(running)")
        // A plugin's own log line carries its instance and plugin.
        let plugin = try XCTUnwrap(entries.first { $0["MESSAGE"] == "sandbox channel ready" }, "\(entries)")
        XCTAssertEqual(plugin["CHORUS_INSTANCE"], "sandbox", "\(plugin)")
        XCTAssertEqual(plugin["CHORUS_PLUGIN"], "sandbox", "\(plugin)")
        XCTAssertEqual(plugin["CHORUS_DELIVER_AFTER_MS"], "20", "\(plugin)")
        // Nothing of that went to stderr.
        XCTAssertFalse(service.logText.contains("ready"), service.logText)
        service.signal(SIGTERM)
        XCTAssertEqual(service.waitForExit(timeout: 20), 0, service.logText)
        XCTAssertNotNil(journal.entries.first { $0["MESSAGE"] == "chorusd stopped" })
    }
}
