import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Test kit: spawns the real `chorusd` and talks to it only through its public surfaces.
public enum TestPaths {
    /// The repository root, found from this source file's location.
    public static func repoRoot(_ file: String = #filePath) -> String {
        var url = URL(fileURLWithPath: file)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        }
        return FileManager.default.currentDirectoryPath
    }

    /// The build directory holding chorusd, chorusctl and the plugins (debug unless CHORUS_BUILD_DIR says otherwise).
    public static var buildDir: String {
        if let d = ProcessInfo.processInfo.environment["CHORUS_BUILD_DIR"] { return d }
        // The test bundle runs from the build directory.
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [exe.path, exe.deletingLastPathComponent().path, exe.deletingLastPathComponent().deletingLastPathComponent().path,
                          repoRoot() + "/.build/debug", repoRoot() + "/.build/release"] {
            if FileManager.default.fileExists(atPath: candidate + "/chorusd") { return candidate }
        }
        return repoRoot() + "/.build/debug"
    }

    public static func temporaryDirectory(_ prefix: String = "chorus-test") -> String {
        var template = Array((NSTemporaryDirectory() + "/\(prefix)-XXXXXX").utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return p.map { String(cString: $0) } ?? NSTemporaryDirectory() + "/\(prefix)-\(getpid())-\(Int.random(in: 0..<1_000_000))"
    }
}

/// A running chorusd started for a test.
public final class TestDaemon: @unchecked Sendable {
    public let directory: String
    public let configPath: String
    public let logPath: String
    public private(set) var process: Process?
    public private(set) var httpPort: Int = 0
    public var socketPath: String { directory + "/state/chorus.sock" }
    public var stateDirectory: String { directory + "/state" }

    /// Writes a config with the given [[instance]] tables (TOML) and extra top-level TOML.
    public init(instancesTOML: String = TestDaemon.sandboxInstance, extraTOML: String = "", directory: String? = nil) throws {
        self.directory = directory ?? TestPaths.temporaryDirectory()
        configPath = self.directory + "/chorus.toml"
        logPath = self.directory + "/chorusd.log"
        let toml = """
        [daemon]
        state_dir = "\(self.directory)/state"
        log_level = "info"
        shutdown_timeout_ms = 3000

        [http]
        listen = "127.0.0.1:0"

        \(extraTOML)

        \(instancesTOML)
        """
        try toml.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    public static let sandboxInstance = """
    [[instance]]
    name = "sandbox"
    plugin = "sandbox"
    [instance.settings]
    deliver_after_ms = 20
    """

    /// Starts chorusd and waits until it logs that it is ready.
    public func start(timeout: TimeInterval = 30) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestPaths.buildDir + "/chorusd")
        p.arguments = ["--config", configPath]
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        p.standardError = log
        p.standardOutput = log
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: logPath, encoding: .utf8),
               let line = text.split(separator: "\n").last(where: { $0.contains("ready") && $0.contains("http=") }) {
                if let r = line.range(of: "http=127.0.0.1:") {
                    let digits = line[r.upperBound...].prefix { $0.isNumber }
                    httpPort = Int(digits) ?? 0
                }
                return
            }
            if !p.isRunning { throw TestKitError("chorusd exited with \(p.terminationStatus) before it was ready:\n\(logText)") }
            usleep(20_000)
        }
        throw TestKitError("chorusd not ready after \(timeout) s:\n\(logText)")
    }

    public var logText: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    public func stop(timeout: TimeInterval = 20) -> Int32 {
        guard let p = process, p.isRunning else { return process?.terminationStatus ?? 0 }
        kill(p.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        return p.terminationStatus
    }

    /// kill -9.
    public func crash() {
        guard let p = process, p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    public func signal(_ sig: Int32) {
        if let p = process, p.isRunning { kill(p.processIdentifier, sig) }
    }

    deinit { if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL) } }

    /// POST to the HTTP ingress.
    public func post(_ path: String, json: String, headers: [(String, String)] = []) throws -> HTTPTestResponse {
        try HTTPTestClient.request(port: httpPort, method: "POST", path: path, headers: [("Content-Type", "application/json")] + headers,
                                   body: Array(json.utf8))
    }

    public func get(_ path: String) throws -> HTTPTestResponse {
        try HTTPTestClient.request(port: httpPort, method: "GET", path: path, headers: [], body: [])
    }

    /// Runs chorusctl against this daemon and returns (status, stdout, stderr).
    public func chorusctl(_ args: [String]) throws -> (Int32, String, String) {
        try TestProcess.run(TestPaths.buildDir + "/chorusctl", ["--socket", socketPath] + args)
    }
}

public struct TestKitError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

public enum TestProcess {
    /// Runs a program to completion and returns (status, stdout, stderr).
    public static func run(_ path: String, _ args: [String], timeout: TimeInterval = 60) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}

public struct HTTPTestResponse {
    public let status: Int
    public let headers: [(String, String)]
    public let body: String
}

/// A minimal blocking HTTP/1.1 client (one request per connection) for tests and the benchmark.
public enum HTTPTestClient {
    public static func request(port: Int, method: String, path: String, headers: [(String, String)], body: [UInt8]) throws -> HTTPTestResponse {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestKitError("socket failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw TestKitError("connect to 127.0.0.1:\(port) failed: errno \(errno)") }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "\r\n"
        let req = Array(head.utf8) + body
        var off = 0
        while off < req.count {
            let n = req.withUnsafeBytes { send(fd, $0.baseAddress! + off, req.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            off += n
        }
        var resp: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            resp.append(contentsOf: buf[0..<n])
        }
        let text = String(decoding: resp, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw TestKitError("bad HTTP response: \(text)") }
        let lines = text[..<split.lowerBound].split(separator: "\r\n")
        let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        let hs = lines.dropFirst().compactMap { l -> (String, String)? in
            guard let c = l.firstIndex(of: ":") else { return nil }
            return (l[..<c].lowercased(), l[l.index(after: c)...].trimmingCharacters(in: .whitespaces))
        }
        return HTTPTestResponse(status: status, headers: hs, body: String(text[split.upperBound...]))
    }
}

/// A keep-alive HTTP/1.1 client on one connection (for load generation).
public final class KeepAliveHTTPClient {
    let fd: Int32
    var buffer: [UInt8] = []
    public init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestKitError("socket failed") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { close(fd); throw TestKitError("connect failed: errno \(errno)") }
    }
    deinit { close(fd) }

    /// Sends a POST and waits for its response; returns the status.
    public func post(path: String, headers: [(String, String)] = [], body: [UInt8]) throws -> Int {
        var head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "\r\n"
        let req = Array(head.utf8) + body
        var off = 0
        while off < req.count {
            let n = req.withUnsafeBytes { send(fd, $0.baseAddress! + off, req.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw TestKitError("send failed: errno \(errno)") }
            off += n
        }
        return try readResponse()
    }

    func readResponse() throws -> Int {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if let end = find(buffer, [13, 10, 13, 10]) {
                let head = String(decoding: buffer[0..<end], as: UTF8.self)
                var length = 0
                for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
                    length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
                let total = end + 4 + length
                if buffer.count >= total {
                    let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
                    buffer.removeFirst(total)
                    return status
                }
            }
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { throw TestKitError("connection closed") }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    private func find(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        var i = 0
        while i <= hay.count - needle.count {
            if hay[i] == needle[0] && hay[i + 1] == needle[1] && hay[i + 2] == needle[2] && hay[i + 3] == needle[3] { return i }
            i += 1
        }
        return nil
    }
}

/// Resident memory of a process in KiB (VmRSS).
public func residentKiB(pid: Int32) -> Int {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
    }
    return 0
}
