import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A free TCP port on 127.0.0.1 (bound, read, released): for servers a test or benchmark
/// must configure before they start (chorusd's HTTP ingress, an LMTP listener).
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestKitError("socket failed: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else { throw TestKitError("cannot find a free port: errno \(errno)") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A blocking client for line-oriented TCP protocols with SMTP-style replies (SMTP, LMTP):
/// for tests that speak the protocol by hand, hostile input included, and for the benchmark.
public final class LineClient {
    private let fd: Int32
    private var buffer: [UInt8] = []

    /// Connects to 127.0.0.1:`port`; reads time out after `timeoutSeconds`.
    public init(port: Int, timeoutSeconds: Int = 30) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw TestKitError("cannot connect to 127.0.0.1:\(port): errno \(e)")
        }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Wraps a connected socket (a test server's accepted connection); closes it on deinit.
    public init(adopting fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// Whether something accepts connections on 127.0.0.1:`port` right now.
    public static func accepts(port: Int) -> Bool { (try? LineClient(port: port)) != nil }

    /// Sends the UTF-8 of `s` whole.
    public func send(_ s: String) throws { try sendBytes(Array(s.utf8)) }

    /// Sends `b` whole.
    public func sendBytes(_ b: [UInt8]) throws {
        var off = 0
        while off < b.count {
            let n = b.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, b.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw TestKitError("send failed: errno \(errno)") }
            off += n
        }
    }

    /// One line, without its line end; throws on timeout or when the server closed the connection.
    public func line() throws -> String {
        guard let l = try lineOrNil() else { throw TestKitError("connection closed by the peer") }
        return l
    }

    /// One line, without its line end; nil when the peer closed the connection; throws on timeout.
    public func lineOrNil() throws -> String? {
        while true {
            if let i = buffer.firstIndex(of: 10) {
                var end = i
                if end > 0 && buffer[end - 1] == 13 { end -= 1 }
                let l = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeSubrange(...i)
                return l
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n == 0 { return nil }
            guard n > 0 else { throw TestKitError("read failed or timed out: errno \(errno)") }
            buffer += chunk[0..<n]
        }
    }

    /// The last line of one reply (a multi-line reply's lines have "-" after the code).
    public func reply() throws -> String { try replyLines().last ?? "" }

    /// One whole reply, its lines joined with "\n" (an EHLO answer with its extensions).
    public func fullReply() throws -> String { try replyLines().joined(separator: "\n") }

    private func replyLines() throws -> [String] {
        var lines: [String] = []
        while true {
            let l = try line()
            lines.append(l)
            let b = Array(l.utf8)
            if b.count < 4 || b[3] != UInt8(ascii: "-") { return lines }
        }
    }
}
