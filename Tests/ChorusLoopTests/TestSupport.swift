// TestSupport.swift — helpers shared by the ChorusLoop tests: a watchdog around `EventLoop.run()`,
// thread-safe boxes, blocking socket clients for driving servers from pool threads, and a minimal
// HTTP/1.1 response parser for checking what the server wrote on the wire.

import CLibUV
import ChorusLoop
import Foundation
import Logging
import XCTest

/// Wraps a loop-thread-only value so it can travel inside a `@Sendable` closure that runs on the loop thread.
struct LoopBound<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A value shared between threads.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
    func mutate<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&stored) } }
}

/// Runs the loop until it has nothing left to do, failing the test (and stopping the loop) if that takes
/// longer than `timeoutMilliseconds`. Then shuts the loop down.
func runToCompletion(_ loop: EventLoop, timeoutMilliseconds: UInt64 = 20_000,
                     file: StaticString = #filePath, line: UInt = #line) {
    let watchdog = LoopTimer(loop: loop)
    watchdog.setKeepsLoopAlive(false)
    var fired = false
    watchdog.start(timeoutMilliseconds: timeoutMilliseconds) {
        fired = true
        loop.stop()
    }
    loop.run()
    watchdog.close()
    XCTAssertFalse(fired, "event loop did not finish within \(timeoutMilliseconds) ms", file: file, line: line)
    loop.shutdown()
}

let testLogger: Logger = {
    var logger = Logger(label: "chorus.loop.tests")
    logger.logLevel = .warning
    return logger
}()

/// A unique socket path in the temporary directory.
func temporarySocketPath(_ name: String) -> String {
    let directory = FileManager.default.temporaryDirectory.path
    return "\(directory)/chorus-loop-\(getpid())-\(name)-\(UInt32.random(in: 0...UInt32.max)).sock"
}

/// Errors of the blocking test clients.
struct ClientError: Error, CustomStringConvertible {
    let description: String
}

/// Sets a receive timeout so a blocking test client can never hang the test.
func setReceiveTimeout(_ fd: Int32, seconds: Int) {
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
}

/// Blocking TCP connect to 127.0.0.1:`port`.
func connectTCP(port: Int) throws -> Int32 {
    let fd = cuv_tcp_connect("127.0.0.1", Int32(port))
    guard fd >= 0 else { throw ClientError(description: "connect: errno \(-fd)") }
    setReceiveTimeout(fd, seconds: 15)
    return fd
}

/// Writes all bytes to a blocking descriptor.
func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { try Syscall.writeAll(fd, $0) }
}

/// Reads until end of file (or the receive timeout).
func readToEnd(_ fd: Int32) throws -> [UInt8] {
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = try buffer.withUnsafeMutableBytes { try Syscall.read(fd, into: $0) }
        if n == 0 { return result }
        result.append(contentsOf: buffer[0..<n])
    }
}

/// Reads exactly `count` bytes.
func readExactly(_ fd: Int32, _ count: Int) throws -> [UInt8] {
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while result.count < count {
        let want = min(buffer.count, count - result.count)
        let n = try buffer.withUnsafeMutableBytes { try Syscall.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want])) }
        if n == 0 { throw ClientError(description: "unexpected end of file after \(result.count) bytes") }
        result.append(contentsOf: buffer[0..<n])
    }
    return result
}

/// Connects, sends `request`, and reads until the server closes. Returns the raw bytes received.
func rawHTTPExchange(port: Int, _ request: String) -> Result<[UInt8], ClientError> {
    rawHTTPExchange(port: port, Array(request.utf8))
}

func rawHTTPExchange(port: Int, _ request: [UInt8]) -> Result<[UInt8], ClientError> {
    do {
        let fd = try connectTCP(port: port)
        defer { try? Syscall.close(fd) }
        try sendAll(fd, request)
        return .success(try readToEnd(fd))
    } catch let error as ClientError {
        return .failure(error)
    } catch {
        return .failure(ClientError(description: "\(error)"))
    }
}

/// One parsed HTTP response.
struct ParsedResponse {
    let status: Int
    let headers: [(name: String, value: String)]
    let body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.name == name.lowercased() }?.value
    }

    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Parses consecutive HTTP/1.1 responses that use Content-Length (or have no body: 1xx, 204, 304).
func parseResponses(_ bytes: [UInt8]) throws -> [ParsedResponse] {
    var responses: [ParsedResponse] = []
    var index = 0
    let separator: [UInt8] = [13, 10, 13, 10]
    while index < bytes.count {
        guard let headEnd = firstIndex(of: separator, in: bytes, from: index) else {
            throw ClientError(description: "incomplete response head at offset \(index)")
        }
        let head = String(decoding: bytes[index..<headEnd], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0] == "HTTP/1.1", let status = Int(parts[1]) else {
            throw ClientError(description: "bad status line \(statusLine)")
        }
        let headers: [(name: String, value: String)] = lines.compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        let length = Int(headers.first { $0.name == "content-length" }?.value ?? "0") ?? 0
        let bodyStart = headEnd + 4
        guard bodyStart + length <= bytes.count else {
            throw ClientError(description: "truncated body: want \(length), have \(bytes.count - bodyStart)")
        }
        responses.append(ParsedResponse(status: status, headers: headers, body: Array(bytes[bodyStart..<bodyStart + length])))
        index = bodyStart + length
    }
    return responses
}

private func firstIndex(of needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    var i = start
    while i + needle.count <= haystack.count {
        if haystack[i] == needle[0] && Array(haystack[i..<i + needle.count]) == needle { return i }
        i += 1
    }
    return nil
}

/// Deterministic pseudo-random bytes for payload checks.
func patternBytes(_ count: Int, seed: UInt32 = 7) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 1_103_515_245 &+ 12345
        return UInt8(truncatingIfNeeded: state >> 16)
    }
}
