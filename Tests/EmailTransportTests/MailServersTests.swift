import ChorusTestKit
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The mail-server harness itself: real Dovecot and Postfix started by tools/test-servers/mailservers.py.
final class MailServersTests: XCTestCase {
    /// A CRLF message (what an MTA sends) with a unique Message-ID.
    static func message(from: String, to: String, subject: String, body: String = "Hello from the harness test.") -> (id: String, raw: [UInt8]) {
        let id = "<\(UUID().uuidString.lowercased())@outside.test>"
        let text = "From: \(from)\r\nTo: \(to)\r\nSubject: \(subject)\r\nMessage-ID: \(id)\r\n"
            + "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            + "\(body)\r\n.a line starting with a dot\r\n"
        return (id, Array(text.utf8))
    }

    static func text(_ raw: [UInt8]) -> String { String(decoding: raw, as: UTF8.self) }

    func testTwoSetsStartInParallelOnDistinctPortsAndStopCleanly() throws {
        let box = Results()
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            do { box.add(try MailServers.start()) } catch { box.fail("\(error)") }
        }
        XCTAssertEqual(box.errors, [])
        let sets = box.servers
        guard sets.count == 2 else { return }
        let ports = sets.flatMap(Self.ports)
        XCTAssertEqual(Set(ports).count, ports.count, "ports clash: \(ports)")
        XCTAssertNotEqual(sets[0].directory, sets[1].directory)
        for s in sets {
            let imap = try LineClient(port: s.imapPort)
            XCTAssertTrue(try imap.line().hasPrefix("* OK"))
            let smtp = try LineClient(port: s.smtpPort)
            XCTAssertTrue(try smtp.line().hasPrefix("220 mail.example.test ESMTP"))
        }
        // Each set has its own mailboxes.
        try sets[0].deliver(to: "customer@example.test", raw: Self.message(from: "a@outside.test", to: "customer@example.test", subject: "set 0").raw)
        XCTAssertEqual(try sets[0].messages(user: "customer@example.test").count, 1)
        XCTAssertEqual(try sets[1].messages(user: "customer@example.test").count, 0)

        for s in sets {
            let dir = s.directory
            let setPorts = Self.ports(s)
            let stopping = Date()
            s.stop()
            // SIGTERM works even for a set started from a Dispatch worker thread (which blocks signals).
            XCTAssertLessThan(Date().timeIntervalSince(stopping), 5, "the servers needed SIGKILL")
            s.stop() // idempotent
            for p in setPorts { XCTAssertFalse(LineClient.accepts(port: p), "port \(p) still open after stop") }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir), "\(dir) left behind")
        }
    }

    func testDeliverListAndMailboxes() throws {
        let servers = try MailServers.start()
        defer { servers.stop() }
        let user = "customer@example.test"
        let first = Self.message(from: "alice@outside.test", to: user, subject: "first")
        let second = Self.message(from: "bob@outside.test", to: user, subject: "second")
        try servers.deliver(to: user, raw: first.raw)
        try servers.deliver(to: user, raw: second.raw)
        let inbox = try servers.messages(user: user)
        XCTAssertEqual(inbox.count, 2)
        XCTAssertLessThan(inbox[0].uid, inbox[1].uid)
        // Dovecot adds Return-Path, Delivered-To and Received on top; the delivered bytes follow unchanged.
        XCTAssertTrue(inbox[0].raw.count > first.raw.count && Array(inbox[0].raw.suffix(first.raw.count)) == first.raw,
                      Self.text(inbox[0].raw))
        XCTAssertEqual(Array(inbox[1].raw.suffix(second.raw.count)), second.raw)
        XCTAssertTrue(Self.text(inbox[0].raw).hasPrefix("Return-Path: <"))
        XCTAssertEqual(inbox[0].flags, [], "listing must not mark messages \\Seen")
        XCTAssertEqual(try servers.messages(user: "support@example.test").count, 0)

        // A line-feed-only message is stored with CRLF line ends, as an MTA would send it.
        let lf = Array("From: lf@outside.test\nSubject: lf\n\nbody\n".utf8)
        try servers.deliver(to: user, raw: lf)
        let afterLF = try servers.waitForMessages(user: user, count: 3, timeout: 5)
        XCTAssertTrue(Self.text(afterLF[2].raw).hasSuffix("From: lf@outside.test\r\nSubject: lf\r\n\r\nbody\r\n"))

        // Unknown users are refused by Dovecot's LMTP with 550 5.1.1 (and nothing is stored).
        XCTAssertThrowsError(try servers.deliver(to: "nobody@example.test", raw: first.raw)) { error in
            XCTAssertTrue("\(error)".contains("550 5.1.1"), "\(error)")
        }

        // Mailboxes: created (idempotently), initially empty; a missing one is a clear error.
        try servers.createMailbox(user: user, "Processed")
        try servers.createMailbox(user: user, "Processed")
        try servers.createMailbox(user: user, "Chorus/Réponses")
        XCTAssertEqual(try servers.messages(user: user, mailbox: "Processed").count, 0)
        XCTAssertEqual(try servers.messages(user: user, mailbox: "Chorus/Réponses").count, 0)
        XCTAssertThrowsError(try servers.messages(user: user, mailbox: "Missing")) { error in
            XCTAssertTrue("\(error)".contains("Missing"), "\(error)")
        }

        // Added users can receive and log in.
        try servers.addUser("sales@shop.test", password: "other-secret")
        try servers.deliver(to: "sales@shop.test", raw: first.raw)
        XCTAssertEqual(try servers.messages(user: "sales@shop.test").count, 1)
        XCTAssertThrowsError(try servers.addUser("bad:user", password: "x"))

        // waitForMessages times out with a clear message.
        XCTAssertThrowsError(try servers.waitForMessages(user: "other@example.test", count: 1, timeout: 0.5)) { error in
            XCTAssertTrue("\(error)".contains("0 of 1"), "\(error)")
        }
    }

    func testTLSIsVerifiedWithThePrivateCA() throws {
        let servers = try MailServers.start()
        defer { servers.stop() }
        // The IMAP port offers STARTTLS. (Dovecot counts a loopback client whose address equals its own as secure
        // and so allows plaintext LOGIN there too; Postfix's submission port does refuse mail before STARTTLS.)
        let imap = try LineClient(port: servers.imapPort)
        let greeting = try imap.line()
        XCTAssertTrue(greeting.hasPrefix("* OK") && greeting.contains("STARTTLS"), greeting)
        let sub = try LineClient(port: servers.submissionPort)
        _ = try sub.line()
        try sub.send("EHLO client.test\r\n")
        let ehlo = try sub.fullReply()
        XCTAssertTrue(ehlo.contains("STARTTLS"), ehlo)
        XCTAssertFalse(ehlo.contains("AUTH"), "AUTH offered before TLS: \(ehlo)")
        try sub.send("MAIL FROM:<support@example.test>\r\n")
        XCTAssertTrue(try sub.fullReply().hasPrefix("530"), "mail accepted without TLS")

        // Each TLS endpoint presents a chain that verifies against caFile for localhost and 127.0.0.1 ...
        guard let smtps = servers.smtpsPort else { return XCTFail("the harness offers no smtps port") }
        let endpoints: [(Int, String?)] = [(servers.imapPort, "imap"), (servers.imapsPort, nil),
                                           (servers.submissionPort, "smtp"), (smtps, nil)]
        for (port, starttls) in endpoints {
            let r = try Self.sClient(port: port, starttls: starttls, caFile: servers.caFile)
            XCTAssertEqual(r.status, 0, "port \(port): \(r.output)")
            XCTAssertTrue(r.output.contains("Verification: OK"), r.output)
        }
        // ... and not against the system's CAs (so a passing check means real verification).
        let bundle = "/etc/ssl/certs/ca-certificates.crt"
        if FileManager.default.fileExists(atPath: bundle) {
            let r = try Self.sClient(port: servers.imapsPort, starttls: nil, caFile: bundle)
            XCTAssertNotEqual(r.status, 0, r.output)
        }
    }

    func testInboundSMTPLandsInDovecotAndUnknownRecipientsBounceWithADSN() throws {
        let servers = try MailServers.start()
        defer { servers.stop() }
        let m = Self.message(from: "support@example.test", to: "customer@example.test", subject: "over smtp")
        try servers.sendSMTP(from: "support@example.test", to: ["customer@example.test"], raw: m.raw)
        let got = try servers.waitForMessages(user: "customer@example.test", count: 1)
        let text = Self.text(got[0].raw)
        XCTAssertTrue(text.contains("Message-ID: \(m.id)"), text)
        XCTAssertTrue(text.contains("by mail.example.test (Postfix)"), "not relayed by Postfix: \(text)")
        XCTAssertTrue(text.contains("\r\n.a line starting with a dot\r\n"), "dot-stuffing broke the body: \(text)")

        let lost = Self.message(from: "support@example.test", to: "nobody@example.test", subject: "to nobody")
        try servers.sendSMTP(from: "support@example.test", to: ["nobody@example.test"], raw: lost.raw)
        let dsns = try servers.waitForMessages(user: "support@example.test", count: 1)
        let dsn = Self.text(dsns[0].raw)
        XCTAssertTrue(dsn.contains("Return-Path: <>"), dsn)
        XCTAssertTrue(dsn.contains("Content-Type: multipart/report; report-type=delivery-status"), dsn)
        XCTAssertTrue(dsn.contains("Content-Type: message/delivery-status"), dsn)
        XCTAssertTrue(dsn.contains("Final-Recipient: rfc822; nobody@example.test"), dsn)
        XCTAssertTrue(dsn.contains("Status: 5.1.1"), dsn)
        XCTAssertTrue(dsn.contains(lost.id), "the DSN does not carry the original message: \(dsn)")
    }

    func testPostfixRelaysChorusTestMailOverLMTPAndRetriesAfter451() throws {
        let listener = try TinyLMTPServer(answers: ["451 4.3.0 try again later", "250 2.0.0 stored"])
        defer { listener.stop() }
        let servers = try MailServers.start(lmtpRelayPort: listener.port)
        defer { servers.stop() }
        XCTAssertEqual(servers.lmtpRelayPort, listener.port)
        let m = Self.message(from: "customer@example.test", to: "x@chorus.test", subject: "to chorus")
        let sent = Date()
        try servers.sendSMTP(from: "customer@example.test", to: ["x@chorus.test"], raw: m.raw)
        let delivered = try listener.waitForDeliveries(1, timeout: 30, context: servers.logTail())
        XCTAssertLessThan(Date().timeIntervalSince(sent), 20, "the deferred message was not retried within seconds")
        XCTAssertEqual(listener.attempts.count, 2, "\(listener.attempts)")
        XCTAssertEqual(delivered[0].from, "customer@example.test")
        XCTAssertEqual(delivered[0].to, ["x@chorus.test"])
        XCTAssertTrue(Self.text(delivered[0].data).contains("Message-ID: \(m.id)"))
        // Nothing bounced back to the sender.
        XCTAssertEqual(try servers.messages(user: "customer@example.test").count, 0)
    }

    func testPostfixDeliversToTheRelayOnceItComesUp() throws {
        let port = try freeLoopbackPort()
        let servers = try MailServers.start(lmtpRelayPort: port)
        defer { servers.stop() }
        let m = Self.message(from: "customer@example.test", to: "y@chorus.test", subject: "while chorus is down")
        try servers.sendSMTP(from: "customer@example.test", to: ["y@chorus.test"], raw: m.raw)
        // Let Postfix fail to connect at least once.
        try waitUntil(timeout: 15, "a refused LMTP connection in the Postfix log") {
            servers.logTail(lines: 200).contains("connect to 127.0.0.1[127.0.0.1]:\(port): Connection refused")
        }
        let listener = try TinyLMTPServer(port: port, answers: ["250 2.0.0 stored"])
        defer { listener.stop() }
        let cameUp = Date()
        let delivered = try listener.waitForDeliveries(1, timeout: 30, context: servers.logTail())
        XCTAssertLessThan(Date().timeIntervalSince(cameUp), 15)
        XCTAssertTrue(Self.text(delivered[0].data).contains(m.id))
    }

    func testWatchdogStopsTheServersWhenTheParentDies() throws {
        let parent = Process()
        parent.executableURL = URL(fileURLWithPath: "/bin/sleep")
        parent.arguments = ["60"]
        try parent.run()
        defer { if parent.isRunning { parent.terminate() } }
        let dir = TestPaths.temporaryDirectory("chorus-mail-watchdog")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = TestPaths.repoRoot() + "/tools/test-servers/mailservers.py"
        let (status, out, err) = try TestProcess.run("/usr/bin/python3", [script, "start", dir, "--parent-pid", String(parent.processIdentifier)])
        XCTAssertEqual(status, 0, err)
        defer { _ = try? TestProcess.run("/usr/bin/python3", [script, "stop", dir]) }
        guard status == 0, let info = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
              let ports = info["ports"] as? [String: Int], let imap = ports["imap"], let smtp = ports["smtp"]
        else { return XCTFail("bad start output: \(out)") }
        XCTAssertTrue(LineClient.accepts(port: imap))
        parent.terminate()
        parent.waitUntilExit()
        try waitUntil(timeout: 20, "the watchdog to stop the servers") {
            !LineClient.accepts(port: imap) && !LineClient.accepts(port: smtp)
        }
    }

    static func ports(_ s: MailServers) -> [Int] {
        [s.imapPort, s.imapsPort, s.submissionPort, s.smtpPort, s.lmtpPort, s.authPort] + (s.smtpsPort.map { [$0] } ?? [])
    }

    /// `openssl s_client` with strict verification against `caFile` for the name localhost and the address 127.0.0.1.
    static func sClient(port: Int, starttls: String?, caFile: String) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = ["s_client", "-brief", "-connect", "127.0.0.1:\(port)", "-CAfile", caFile, "-verify_return_error",
                       "-verify_hostname", "localhost", "-verify_ip", "127.0.0.1"]
            + (starttls.map { ["-starttls", $0] } ?? [])
        p.standardInput = FileHandle.nullDevice
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Thread-safe collection of the parallel starts' results.
private final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var servers: [MailServers] = []
    private(set) var errors: [String] = []
    func add(_ s: MailServers) { lock.lock(); servers.append(s); lock.unlock() }
    func fail(_ e: String) { lock.lock(); errors.append(e); lock.unlock() }
}

/// A tiny LMTP server standing in for Chorus's LMTP listener: answers each DATA with the next of `answers`
/// (the last one repeats) and records every attempt.
private final class TinyLMTPServer: @unchecked Sendable {
    struct Delivery { var from: String; var to: [String]; var data: [UInt8] }

    let port: Int
    private let listenFD: Int32
    private let lock = NSLock()
    private var answers: [String]
    private var _attempts: [String] = []
    private var _delivered: [Delivery] = []
    private var stopped = false
    private var clients: Set<Int32> = []

    static func listeningSocket(port: Int) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestKitError("socket failed") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0, listen(fd, 16) == 0 else { let e = errno; close(fd); throw TestKitError("bind/listen on \(port) failed: errno \(e)") }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return (fd, Int(UInt16(bigEndian: bound.sin_port)))
    }

    init(port: Int = 0, answers: [String]) throws {
        precondition(!answers.isEmpty)
        (listenFD, self.port) = try TinyLMTPServer.listeningSocket(port: port)
        self.answers = answers
        let t = Thread { [self] in acceptLoop() }
        t.start()
    }

    var attempts: [String] { lock.lock(); defer { lock.unlock() }; return _attempts }
    var delivered: [Delivery] { lock.lock(); defer { lock.unlock() }; return _delivered }

    func stop() {
        lock.lock()
        let was = stopped
        stopped = true
        lock.unlock()
        if was { return }
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        lock.lock()
        for fd in clients { shutdown(fd, Int32(SHUT_RDWR)) }
        lock.unlock()
    }

    func waitForDeliveries(_ n: Int, timeout: Double, context: @autoclosure () -> String) throws -> [Delivery] {
        do {
            try waitUntil(timeout: timeout, "\(n) LMTP deliveries") { delivered.count >= n }
        } catch {
            throw TestKitError("\(error); attempts: \(attempts)\n\(context())")
        }
        return delivered
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                lock.lock(); let s = stopped; lock.unlock()
                if s || errno == EBADF || errno == EINVAL { return }
                continue
            }
            var tv = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            lock.lock(); clients.insert(fd); lock.unlock()
            // Postfix may keep a connection cached while it opens another: one thread per connection.
            let t = Thread { [self] in
                let c = LineClient(adopting: fd)
                withExtendedLifetime(c) {
                    serve(c)
                    lock.lock(); clients.remove(fd); lock.unlock()
                }
            }
            t.start()
        }
    }

    /// One LMTP session (RFC 2033): LHLO, then transactions until QUIT.
    private func serve(_ c: LineClient) {
        do {
            try c.send("220 chorus.test LMTP ready\r\n")
            var from = "", rcpts: [String] = []
            while let line = try c.lineOrNil() {
                let verb = line.prefix(4).uppercased()
                switch verb {
                case "LHLO": try c.send("250-chorus.test\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n")
                case "MAIL":
                    from = TinyLMTPServer.address(in: line)
                    rcpts = []
                    try c.send("250 2.1.0 ok\r\n")
                case "RCPT":
                    rcpts.append(TinyLMTPServer.address(in: line))
                    try c.send("250 2.1.5 ok\r\n")
                case "DATA":
                    try c.send("354 go ahead\r\n")
                    var data: [UInt8] = []
                    while let l = try c.lineOrNil(), l != "." {
                        data += Array((l.hasPrefix(".") ? String(l.dropFirst()) : l).utf8) + [13, 10]
                    }
                    lock.lock()
                    let answer = answers.count > 1 ? answers.removeFirst() : answers[0]
                    _attempts.append(answer)
                    if answer.hasPrefix("2") { _delivered.append(Delivery(from: from, to: rcpts, data: data)) }
                    lock.unlock()
                    // LMTP: one reply per accepted recipient.
                    for _ in rcpts { try c.send(answer + "\r\n") }
                case "RSET": from = ""; rcpts = []; try c.send("250 2.0.0 ok\r\n")
                case "NOOP": try c.send("250 2.0.0 ok\r\n")
                case "QUIT": try c.send("221 2.0.0 bye\r\n"); return
                default: try c.send("500 5.5.1 unknown command\r\n")
                }
            }
        } catch {
            return
        }
    }

    static func address(in line: String) -> String {
        guard let a = line.firstIndex(of: "<"), let b = line[a...].firstIndex(of: ">") else { return "" }
        return String(line[line.index(after: a)..<b])
    }
}
