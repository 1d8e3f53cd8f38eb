import ChorusJSON
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Real mail servers for the email tests: a private Dovecot (IMAP, IMAPS, LMTP, SASL auth) and a private
/// Postfix (MX-style SMTP, submission, smtps) on free loopback ports, run from a fresh temporary directory by
/// tools/test-servers/mailservers.py (see tools/test-servers/README.md). Nothing is configured system-wide.
///
/// Users `support@example.test`, `customer@example.test` and `other@example.test` exist with the password
/// ``MailServers/password``; mail for `@example.test` lands in Dovecot, mail for `@chorus.test` is relayed by
/// Postfix over LMTP to `127.0.0.1:<lmtpRelayPort>` when one is given. TLS certificates are issued by a private
/// CA: verify against ``caFile``.
///
/// The servers are stopped by ``stop()``, by `deinit`, when the test process exits (atexit), and by the
/// script's watchdog when the test process dies without exiting.
public final class MailServers: @unchecked Sendable {
    /// The temporary directory holding the configs, certificates, mail, queues and logs.
    public let directory: String
    /// Dovecot IMAP with STARTTLS (plaintext login refused before STARTTLS).
    public let imapPort: Int
    /// Dovecot IMAP over implicit TLS.
    public let imapsPort: Int
    /// Postfix submission: STARTTLS required, SASL AUTH (PLAIN/LOGIN) through Dovecot.
    public let submissionPort: Int
    /// Postfix submission over implicit TLS with SASL AUTH, when available.
    public let smtpsPort: Int?
    /// Postfix MX-style inbound SMTP (no AUTH; accepts mail for example.test and chorus.test).
    public let smtpPort: Int
    /// Dovecot's LMTP listener (what Postfix delivers example.test mail to); unknown users get 550 5.1.1.
    public let lmtpPort: Int
    /// Dovecot's SASL auth listener (the one Postfix uses).
    public let authPort: Int
    /// The PEM file of the private CA that issued the servers' certificate (for `localhost` and `127.0.0.1`).
    public let caFile: String
    /// Where Postfix relays mail for `@chorus.test` (LMTP), if anywhere.
    public let lmtpRelayPort: Int?
    /// The password of every predefined user.
    public static let password = "secret"
    /// The predefined users.
    public static let users = ["support@example.test", "customer@example.test", "other@example.test"]

    private let lock = NSLock()
    private var stopped = false
    private var counter = 0

    /// Starts Dovecot and Postfix (and whatever else) in a fresh temp dir; `lmtpRelayPort`: Postfix relays mail for
    /// @chorus.test to 127.0.0.1:<port> over LMTP. Returns once every server accepts connections; throws with the
    /// servers' log tails when something cannot start.
    public static func start(lmtpRelayPort: Int? = nil) throws -> MailServers {
        let dir = TestPaths.temporaryDirectory("chorus-mail")
        var args = ["start", dir, "--parent-pid", String(getpid())]
        if let p = lmtpRelayPort { args += ["--lmtp-relay", String(p)] }
        let r = try MailServers.runScript(args, scratch: dir, timeout: 120)
        guard r.status == 0 else {
            _ = try? MailServers.runScript(["stop", dir], scratch: dir, timeout: 60)
            throw TestKitError("mail servers did not start (exit \(r.status)):\n\(r.stderr)\(r.stdout)")
        }
        let info: JSONValue
        do {
            info = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/servers.json"))))
        } catch {
            _ = try? MailServers.runScript(["stop", dir], scratch: dir, timeout: 60)
            throw TestKitError("mail servers started but \(dir)/servers.json is unreadable: \(error)")
        }
        func port(_ name: String) -> Int? { info["ports"]?[name]?.intValue.map { Int($0) } }
        guard let imap = port("imap"), let imaps = port("imaps"), let submission = port("submission"),
              let smtp = port("smtp"), let lmtp = port("lmtp"), let auth = port("auth"),
              let ca = info["ca_file"]?.stringValue
        else {
            _ = try? MailServers.runScript(["stop", dir], scratch: dir, timeout: 60)
            throw TestKitError("\(dir)/servers.json lacks a port or the CA file: \(JSONWriter.encodeString(info))")
        }
        let servers = MailServers(directory: dir, imapPort: imap, imapsPort: imaps, submissionPort: submission,
                                  smtpsPort: port("smtps"), smtpPort: smtp, lmtpPort: lmtp, authPort: auth,
                                  caFile: ca, lmtpRelayPort: lmtpRelayPort)
        MailServersRegistry.add(dir)
        return servers
    }

    private init(directory: String, imapPort: Int, imapsPort: Int, submissionPort: Int, smtpsPort: Int?, smtpPort: Int,
                 lmtpPort: Int, authPort: Int, caFile: String, lmtpRelayPort: Int?)
    {
        self.directory = directory
        self.imapPort = imapPort
        self.imapsPort = imapsPort
        self.submissionPort = submissionPort
        self.smtpsPort = smtpsPort
        self.smtpPort = smtpPort
        self.lmtpPort = lmtpPort
        self.authPort = authPort
        self.caFile = caFile
        self.lmtpRelayPort = lmtpRelayPort
    }

    deinit { stop() }

    /// Puts a raw message into the user's INBOX through Dovecot's LMTP (as an MTA would). Throws with the LMTP
    /// reply when Dovecot refuses it (e.g. 550 5.1.1 for an unknown user).
    public func deliver(to user: String, raw: [UInt8]) throws {
        let file = try scratchFile("msg", raw)
        defer { unlink(file) }
        try run(["deliver", directory, user, file])
    }

    /// Sends a raw message to Postfix's MX-style ``smtpPort`` (as an MTA from outside would), envelope `from`/`to`.
    /// Returns once Postfix accepted it (250 after DATA); delivery happens in the background.
    public func sendSMTP(from: String, to: [String], raw: [UInt8]) throws {
        let file = try scratchFile("msg", raw)
        defer { unlink(file) }
        try run(["send", directory, "--from", from, file] + to)
    }

    /// The messages of a user's mailbox, in UID order, with their flags and exact raw bytes.
    public func messages(user: String, mailbox: String = "INBOX") throws -> [(uid: Int, flags: [String], raw: [UInt8])] {
        let out = try run(["list", directory, user, mailbox])
        let json: JSONValue
        do { json = try JSONParser.parse(out) } catch { throw TestKitError("list printed bad JSON (\(error)): \(out.prefix(500))") }
        guard let items = json.arrayValue else { throw TestKitError("list printed \(out.prefix(500)), not an array") }
        return try items.map { item in
            guard let uid = item["uid"]?.intValue, let b64 = item["raw"]?.stringValue,
                  let data = Data(base64Encoded: b64)
            else { throw TestKitError("list printed a bad message entry: \(JSONWriter.encodeString(item).prefix(300))") }
            let flags = item["flags"]?.arrayValue?.compactMap { $0.stringValue } ?? []
            return (uid: Int(uid), flags: flags, raw: Array(data))
        }
    }

    /// Polls the mailbox until it holds at least `count` messages; throws after `timeout` seconds with the logs' tails.
    public func waitForMessages(user: String, mailbox: String = "INBOX", count: Int,
                                timeout: Double = 20) throws -> [(uid: Int, flags: [String], raw: [UInt8])]
    {
        let deadline = Date().addingTimeInterval(timeout)
        var last: [(uid: Int, flags: [String], raw: [UInt8])] = []
        while true {
            last = try messages(user: user, mailbox: mailbox)
            if last.count >= count { return last }
            if Date() >= deadline { break }
            usleep(200_000)
        }
        throw TestKitError("\(user)'s \(mailbox) has \(last.count) of \(count) messages after \(timeout) s\n\(logTail())")
    }

    /// Creates a mailbox (folder) for a user; succeeds if it exists already.
    public func createMailbox(user: String, _ name: String) throws {
        try run(["mkmailbox", directory, user, name])
    }

    /// Adds a user (any domain Dovecot is asked about; Postfix accepts example.test recipients) with a password.
    public func addUser(_ user: String, password: String = MailServers.password) throws {
        try run(["adduser", directory, user, password])
    }

    /// The last lines of the Dovecot and Postfix logs (for failure messages).
    public func logTail(lines: Int = 40) -> String {
        var out = ""
        for name in ["dovecot.log", "postfix.log"] {
            let text = (try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? ""
            out += "--- \(name) ---\n" + text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n") + "\n"
        }
        return out
    }

    /// Stops every server and removes the directory (kept when CHORUS_KEEP_MAIL_DIR is set). Idempotent.
    public func stop() {
        lock.lock()
        let already = stopped
        stopped = true
        lock.unlock()
        if already { return }
        MailServersRegistry.remove(directory)
        MailServers.stopDirectory(directory)
    }

    // MARK: Running the script

    /// Stops the servers of `dir` with the script, then removes `dir` unless CHORUS_KEEP_MAIL_DIR is set.
    static func stopDirectory(_ dir: String) {
        _ = try? runScript(["stop", dir], scratch: nil, timeout: 60)
        if ProcessInfo.processInfo.environment["CHORUS_KEEP_MAIL_DIR"] == nil {
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @discardableResult
    private func run(_ args: [String], timeout: Double = 60) throws -> String {
        let r = try MailServers.runScript(args, scratch: directory, timeout: timeout)
        guard r.status == 0 else {
            throw TestKitError("mailservers.py \(args.first ?? "") failed (exit \(r.status)): \(r.stderr)\(r.stdout.prefix(2000))")
        }
        return r.stdout
    }

    private func scratchFile(_ prefix: String, _ bytes: [UInt8]) throws -> String {
        lock.lock()
        counter += 1
        let n = counter
        lock.unlock()
        let path = directory + "/tmp/\(prefix)-\(getpid())-\(n)-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: directory + "/tmp", withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            throw TestKitError("cannot write \(path)")
        }
        return path
    }

    /// The script, run with Debian's python3 (which has aiosmtpd); stdout and stderr go to files so that big outputs
    /// cannot block the pipe.
    static func runScript(_ args: [String], scratch: String?, timeout: Double) throws -> (status: Int32, stdout: String, stderr: String) {
        let script = TestPaths.repoRoot() + "/tools/test-servers/mailservers.py"
        let base = (scratch.map { $0 + "/tmp" } ?? NSTemporaryDirectory())
        try? FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let tag = "\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let outPath = base + "/cmd-\(tag).out", errPath = base + "/cmd-\(tag).err"
        guard FileManager.default.createFile(atPath: outPath, contents: nil),
              FileManager.default.createFile(atPath: errPath, contents: nil)
        else { throw TestKitError("cannot create the output files of mailservers.py in \(base)") }
        defer { unlink(outPath); unlink(errPath) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [script] + args
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            throw TestKitError("mailservers.py \(args.first ?? "") did not finish within \(timeout) s: \(err)")
        }
        p.waitUntilExit()
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return (p.terminationStatus, out, err)
    }
}

/// The directories of running server sets, stopped by an atexit handler when the test process exits normally.
enum MailServersRegistry {
    nonisolated(unsafe) private static var directories: Set<String> = []
    private static let lock = NSLock()
    nonisolated(unsafe) private static var installed = false

    static func add(_ dir: String) {
        lock.lock()
        defer { lock.unlock() }
        directories.insert(dir)
        if !installed {
            installed = true
            atexit { MailServersRegistry.stopAll() }
        }
    }

    static func remove(_ dir: String) {
        lock.lock()
        directories.remove(dir)
        lock.unlock()
    }

    static func stopAll() {
        lock.lock()
        let dirs = directories
        directories.removeAll()
        lock.unlock()
        for d in dirs { MailServers.stopDirectory(d) }
    }
}
