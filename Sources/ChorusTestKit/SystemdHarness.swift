// SystemdHarness.swift — plays systemd's part around the real chorusd, with no systemd running: the
// notification socket (READY/RELOADING/STOPPING/STATUS/WATCHDOG datagrams, with the sender's credentials),
// listening sockets created beforehand and passed as descriptors 3, 4… (socket activation), the watchdog
// variables, and a fake journald socket for the native journal protocol.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC in seconds (what MONOTONIC_USEC= is measured against).
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// An AF_UNIX datagram socket bound to a path, with a thread that collects every datagram
/// (and, with `SO_PASSCRED`, the sender's pid). Base of the notify socket and the fake journal.
public class DatagramCollector: @unchecked Sendable {
    /// One datagram.
    public struct Datagram: Sendable {
        public let bytes: [UInt8]
        /// The sender's pid (SCM_CREDENTIALS), if the kernel attached it.
        public let senderPid: Int32?
        /// When it was read (`monotonicSeconds()`).
        public let at: Double
    }

    /// The socket's path.
    public let path: String
    private let fd: Int32
    private let lock = NSCondition()
    private var received: [Datagram] = []
    private var closed = false
    private var thread: Thread?

    /// Binds `path` (removed first if it exists) and starts collecting.
    public init(path: String) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestKitError("socket(AF_UNIX, SOCK_DGRAM): errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, socklen_t(MemoryLayout<Int32>.size))
        var big: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, socklen_t(MemoryLayout<Int32>.size))
        guard UnixAddress.bind(fd, path) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw TestKitError("bind(\(path)): errno \(e)")
        }
        chmod(path, 0o666)
        // The thread keeps the collector alive until close() ends it.
        let t = Thread { self.readLoop() }
        t.name = "datagram-collector"
        thread = t
        t.start()
    }

    /// Stops collecting and removes the socket file. Call it when done: the reading thread keeps the collector
    /// alive until then.
    public func close() {
        lock.lock()
        let wasClosed = closed
        closed = true
        lock.unlock()
        if !wasClosed {
            // The reader polls with a timeout and notices `closed`; then the fd is closed by it.
            unlink(path)
        }
    }

    /// Every datagram so far, in arrival order.
    public var datagrams: [Datagram] {
        lock.lock(); defer { lock.unlock() }
        return received
    }

    /// Waits until a datagram at index ≥ `from` satisfies `match`; returns it with its index.
    public func waitForDatagram(from: Int = 0, timeout: TimeInterval, _ what: String,
                                where match: (Datagram) -> Bool) throws -> (index: Int, datagram: Datagram) {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock(); defer { lock.unlock() }
        var next = from
        while true {
            while next < received.count {
                if match(received[next]) { return (next, received[next]) }
                next += 1
            }
            if !lock.wait(until: deadline) {
                throw TestKitError("timed out after \(timeout) s waiting for \(what)")
            }
        }
    }

    private func readLoop() {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var control = [UInt8](repeating: 0, count: 256)
        while true {
            lock.lock()
            let stop = closed
            lock.unlock()
            if stop { break }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 100) <= 0 { continue }
            var pid: Int32? = nil
            let n: Int = buffer.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { ctl in
                    var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &iov) { iovp in
                        var msg = msghdr()
                        msg.msg_iov = iovp
                        msg.msg_iovlen = 1
                        msg.msg_control = ctl.baseAddress
                        msg.msg_controllen = ctl.count
                        let got = recvmsg(fd, &msg, 0)
                        if got >= 0 { pid = DatagramCollector.senderPid(ctl, length: Int(msg.msg_controllen)) }
                        return got
                    }
                }
            }
            guard n >= 0 else { continue }
            let d = Datagram(bytes: Array(buffer[0..<n]), senderPid: pid, at: monotonicSeconds())
            lock.lock()
            received.append(d)
            lock.broadcast()
            lock.unlock()
        }
        Glibc.close(fd)
    }

    /// The pid of an SCM_CREDENTIALS control message (`struct ucred`), walking the cmsghdr chain by hand
    /// (the CMSG_* macros are not available to Swift).
    static func senderPid(_ control: UnsafeMutableRawBufferPointer, length: Int) -> Int32? {
        let header = MemoryLayout<cmsghdr>.size
        var offset = 0
        while offset + header <= length {
            let h = control.load(fromByteOffset: offset, as: cmsghdr.self)
            let len = Int(h.cmsg_len)
            guard len >= header else { return nil }
            if h.cmsg_level == SOL_SOCKET && h.cmsg_type == 2 /* SCM_CREDENTIALS */ && len >= header + 12 {
                return control.load(fromByteOffset: offset + header, as: Int32.self)
            }
            offset += (len + 7) & ~7
        }
        return nil
    }
}

/// systemd's notification socket (`$NOTIFY_SOCKET`) as chorusd sees it.
public final class NotifySocket: DatagramCollector, @unchecked Sendable {
    /// One sd_notify message: its `KEY=value` lines.
    public struct Message: Sendable, CustomStringConvertible {
        public let fields: [(key: String, value: String)]
        public let senderPid: Int32?
        public let at: Double
        /// The value of `key` (the last one if repeated).
        public func value(_ key: String) -> String? { fields.last { $0.key == key }?.value }
        public var description: String { fields.map { "\($0.key)=\($0.value)" }.joined(separator: "|") }
    }

    /// Every message so far.
    public var messages: [Message] { datagrams.map(NotifySocket.message) }

    static func message(_ d: Datagram) -> Message {
        let text = String(decoding: d.bytes, as: UTF8.self)
        let fields = text.split(separator: "\n").map { line -> (key: String, value: String) in
            guard let eq = line.firstIndex(of: "=") else { return (String(line), "") }
            return (String(line[..<eq]), String(line[line.index(after: eq)...]))
        }
        return Message(fields: fields, senderPid: d.senderPid, at: d.at)
    }

    /// Waits for a message at index ≥ `from` that satisfies `match`.
    @discardableResult
    public func waitFor(from: Int = 0, timeout: TimeInterval = 30, _ what: String,
                        where match: @escaping (Message) -> Bool) throws -> (index: Int, message: Message) {
        do {
            let (i, d) = try waitForDatagram(from: from, timeout: timeout, what) { match(NotifySocket.message($0)) }
            return (i, NotifySocket.message(d))
        } catch {
            throw TestKitError("\(error); messages so far: \(messages.map(\.description))")
        }
    }

    /// Waits for a message at index ≥ `from` with `key=value`.
    @discardableResult
    public func waitFor(_ key: String, _ value: String, from: Int = 0, timeout: TimeInterval = 30) throws -> (index: Int, message: Message) {
        try waitFor(from: from, timeout: timeout, "\(key)=\(value)") { $0.value(key) == value }
    }
}

/// A fake journald: the native protocol's datagram socket (`/run/systemd/journal/socket`'s role).
public final class FakeJournal: DatagramCollector, @unchecked Sendable {
    /// Every entry so far, each as its fields (in order; binary-safe values decoded as UTF-8).
    public var entries: [[String: String]] { datagrams.map { FakeJournal.parse($0.bytes) } }

    /// Parses one native-protocol datagram: `KEY=value\n`, or `KEY\n<64-bit LE length><value>\n` for values
    /// that contain newlines.
    public static func parse(_ bytes: [UInt8]) -> [String: String] {
        var out: [String: String] = [:]
        var i = 0
        while i < bytes.count {
            guard let nl = bytes[i...].firstIndex(of: 10) else { break }
            let line = bytes[i..<nl]
            if let eq = line.firstIndex(of: UInt8(ascii: "=")) {
                out[String(decoding: bytes[i..<eq], as: UTF8.self)] = String(decoding: bytes[(eq + 1)..<nl], as: UTF8.self)
                i = nl + 1
            } else {
                let key = String(decoding: line, as: UTF8.self)
                guard nl + 9 <= bytes.count else { break }
                var length = 0
                for k in 0..<8 { length |= Int(bytes[nl + 1 + k]) << (8 * k) }
                let start = nl + 9
                guard start + length <= bytes.count else { break }
                out[key] = String(decoding: bytes[start..<(start + length)], as: UTF8.self)
                i = start + length + 1
            }
        }
        return out
    }
}

/// Listening sockets made by the test before chorusd starts (what `chorus.socket` does).
public final class PassedListeners {
    /// The consumer socket's path.
    public let unixPath: String
    /// The listening Unix socket.
    public let unixFD: Int32
    /// The listening TCP socket on 127.0.0.1.
    public let tcpFD: Int32
    /// Its port.
    public let port: Int

    /// Binds and listens on `unixPath` and on 127.0.0.1 with a free port.
    public init(unixPath: String) throws {
        self.unixPath = unixPath
        unlink(unixPath)
        unixFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard unixFD >= 0, UnixAddress.bind(unixFD, unixPath) == 0, listen(unixFD, 64) == 0 else {
            throw TestKitError("cannot listen on \(unixPath): errno \(errno)")
        }
        let tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        tcpFD = tcp
        var one: Int32 = 1
        setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(tcp, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard tcp >= 0, bound == 0, listen(tcp, 64) == 0 else { throw TestKitError("cannot listen on 127.0.0.1: errno \(errno)") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(tcp, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Closes the test's copies (chorusd keeps its own).
    public func close() {
        Glibc.close(unixFD)
        Glibc.close(tcpFD)
    }
}

enum UnixAddress {
    /// bind(2) to a filesystem path; 0 or -1 with errno.
    static func bind(_ fd: Int32, _ path: String) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { errno = ENAMETOOLONG; return -1 }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// A blocking connect to a Unix stream socket; the fd (CLOEXEC) or a thrown error.
    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in Array(path.utf8).enumerated() where i < raw.count - 1 { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { let e = errno; Glibc.close(fd); throw TestKitError("connect(\(path)): errno \(e)") }
        return fd
    }
}

/// A client socket whose connect happens before chorusd runs (it sits in the listen backlog), read and
/// written line by line or as a raw HTTP exchange afterwards.
public final class EarlyClient {
    public let fd: Int32
    private var pending: [UInt8] = []

    /// Connects to a Unix stream socket.
    public init(unixPath: String) throws { fd = try UnixAddress.connect(unixPath) }

    /// Connects to 127.0.0.1:`port`.
    public init(tcpPort port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { let e = errno; Glibc.close(fd); throw TestKitError("connect 127.0.0.1:\(port): errno \(e)") }
    }

    deinit { Glibc.close(fd) }

    /// Writes all of `bytes`.
    public func write(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw TestKitError("write failed: errno \(errno)") }
            off += n
        }
    }

    /// Reads one newline-terminated line (without the newline).
    public func readLine(timeout: TimeInterval) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let nl = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeFirst(nl + 1)
                return line
            }
            guard try readMore(until: deadline) else { throw TestKitError("connection closed before a full line") }
        }
    }

    /// Reads until the peer closes (an HTTP/1.1 exchange with `Connection: close`) and returns everything.
    public func readToEnd(timeout: TimeInterval) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while try readMore(until: deadline) {}
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// false at EOF.
    private func readMore(until deadline: Date) throws -> Bool {
        let left = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, left) > 0 else { throw TestKitError("read timed out; got so far: \(String(decoding: pending, as: UTF8.self))") }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &buf, buf.count, 0)
        if n < 0 { throw TestKitError("read failed: errno \(errno)") }
        if n == 0 { return false }
        pending.append(contentsOf: buf[0..<n])
        return true
    }
}

/// chorusd started the way systemd starts a service: descriptors passed as 3, 4, … with `LISTEN_PID` equal
/// to chorusd's own pid (a `/bin/sh` wrapper exports `$$` and then execs chorusd, keeping the pid),
/// `NOTIFY_SOCKET`, the watchdog variables, stdout and stderr to a log file.
public final class SystemdServiceProcess: @unchecked Sendable {
    /// chorusd's pid (the wrapper's, which exec'd it).
    public let pid: pid_t
    /// Where stdout and stderr go.
    public let logPath: String
    /// When it was spawned (`monotonicSeconds()`).
    public let startedAt: Double
    private var status: Int32?

    /// Spawns `executable arguments…`.
    /// - Parameters:
    ///   - passing: descriptors to pass as 3, 4, …; `LISTEN_FDS` is their count (not set when empty).
    ///   - names: `LISTEN_FDNAMES` (joined with `:`), or nil to leave it unset.
    ///   - environment: more variables (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `JOURNAL_STREAM`…); the
    ///     systemd-related variables of the test process itself are not inherited.
    ///   - watchdogPidIsSelf: export `WATCHDOG_PID` = chorusd's pid.
    ///   - fakeJournalSocket: run chorusd in a private mount namespace (`unshare --mount`, root only) where
    ///     this socket is bind-mounted on `/run/systemd/journal/socket`, so sd_journal_send reaches it.
    public init(executable: String, arguments: [String], passing descriptors: [Int32] = [], names: [String]? = nil,
                environment: [String: String] = [:], watchdogPidIsSelf: Bool = false, logPath: String,
                fakeJournalSocket: String? = nil) throws {
        self.logPath = logPath
        var script = "LISTEN_PID=$$; export LISTEN_PID; "
        if descriptors.isEmpty { script = "" }
        if watchdogPidIsSelf { script += "WATCHDOG_PID=$$; export WATCHDOG_PID; " }
        script += "exec \"$0\" \"$@\""
        var argv: [String]
        if let journal = fakeJournalSocket {
            let mount = "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && : > /run/systemd/journal/socket && "
                + "mount --bind '\(journal)' /run/systemd/journal/socket || exit 97; "
            argv = ["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", mount + script, executable] + arguments
        } else {
            argv = ["/bin/sh", "-c", script, executable] + arguments
        }
        let dropped: Set<String> = ["NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC",
                                    "WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID", "CREDENTIALS_DIRECTORY"]
        var env = ProcessInfo.processInfo.environment.filter { !dropped.contains($0.key) }
        for (k, v) in environment { env[k] = v }
        if !descriptors.isEmpty { env["LISTEN_FDS"] = String(descriptors.count) }
        if let names { env["LISTEN_FDNAMES"] = names.joined(separator: ":") }

        // Move the descriptors out of the way of 3, 4, … first, so every dup2 really copies (and clears CLOEXEC).
        let high = descriptors.map { fcntl($0, F_DUPFD_CLOEXEC, 64) }
        defer { for fd in high where fd >= 0 { Glibc.close(fd) } }
        guard !high.contains(where: { $0 < 0 }) else { throw TestKitError("fcntl(F_DUPFD_CLOEXEC): errno \(errno)") }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        for (i, fd) in high.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, 3 + Int32(i)) }

        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in cArgs { free(p) }; for p in cEnv { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, argv[0], &actions, nil, cArgs, cEnv)
        guard rc == 0 else { throw TestKitError("posix_spawn(\(argv[0])): \(String(cString: strerror(rc)))") }
        pid = child
        startedAt = monotonicSeconds()
    }

    deinit {
        if isRunning { kill(pid, SIGKILL); _ = waitForExit(timeout: 10) }
    }

    /// The log so far.
    public var logText: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Sends a signal.
    public func signal(_ sig: Int32) { if isRunning { kill(pid, sig) } }

    /// True until it exited (and was reaped).
    public var isRunning: Bool {
        if status != nil { return false }
        var s: Int32 = 0
        if waitpid(pid, &s, WNOHANG) == pid { status = s; return false }
        return true
    }

    /// Waits for the exit and returns the exit status (128 + n when killed by signal n), or nil on timeout.
    public func waitForExit(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning {
            if Date() >= deadline { return nil }
            usleep(10_000)
        }
        guard let s = status else { return nil }
        let signal = s & 0x7f
        return signal == 0 ? (s >> 8) & 0xff : 128 + signal
    }

    /// SIGKILL and reap.
    public func killNow() {
        guard isRunning else { return }
        kill(pid, SIGKILL)
        _ = waitForExit(timeout: 10)
    }

    /// `"<device>:<inode>"` of `path`, as systemd puts it in `JOURNAL_STREAM` for the stream it connected.
    public static func journalStreamValue(of path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return "\(st.st_dev):\(st.st_ino)"
    }
}
