@_exported import ChorusProtocol
import ChorusJSON
#if canImport(Glibc)
import Glibc
#endif

/// A blocking connection to chorusd's consumer socket (docs/protocol.md).
///
/// One connection is meant for one thread at a time. Every call that waits takes
/// a timeout; nothing blocks forever except ``nextMessage(timeoutMilliseconds:)``
/// called with nil.
///
/// ```swift
/// let c = try ChorusConnection(path: ChorusConnection.defaultSocketPath())
/// let stats = try c.call(.stats)
/// ```
public final class ChorusConnection {
    /// The socket path this connection was made to.
    public let path: String
    /// The server's hello frame (the whole object).
    public let hello: JSONObject
    /// The server's largest accepted frame, from its hello.
    public let maxFrameBytes: Int
    /// How long ``request(_:)``, ``call(_:)`` and writes wait, in milliseconds.
    public var timeoutMilliseconds: Int

    private var fd: Int32
    private var framer: LineFramer
    private var readBuffer: [UInt8]
    private var queued: [ServerMessage] = []
    private var queueHead = 0
    private var nextRequestId: Int64 = 1
    private var goodbyeReason: String?
    private var peerClosed = false

    /// Server frames larger than this are refused (the daemon's own limit applies to what clients send).
    public static let maxServerFrameBytes = 64 << 20

    /// The socket to use when none is given: `$CHORUS_SOCKET`, else `./chorus-state/chorus.sock`
    /// when it exists (a daemon started from a checkout with `make run`), else `/run/chorus/chorus.sock`.
    public static func defaultSocketPath() -> String {
        if let env = getenv("CHORUS_SOCKET") {
            let value = String(cString: env)
            if !value.isEmpty { return value }
        }
        let local = "chorus-state/chorus.sock"
        if access(local, F_OK) == 0 { return "./" + local }
        return "/run/chorus/chorus.sock"
    }

    /// Connects and reads the server's hello.
    ///
    /// - Throws: ``ClientError/daemonNotRunning(path:)`` when there is no socket or nobody listens,
    ///   ``ClientError/permissionDenied(path:)`` when the user may not use it, ``ClientError/timeout``
    ///   when the daemon does not greet within `timeoutMilliseconds`, ``ClientError/protocolError(_:)``
    ///   when it refuses the connection with an error frame or speaks another protocol version.
    public init(path: String, timeoutMilliseconds: Int = 10_000) throws(ClientError) {
        self.path = path
        self.timeoutMilliseconds = timeoutMilliseconds
        self.framer = LineFramer(maxFrameBytes: ChorusConnection.maxServerFrameBytes)
        self.readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
        self.fd = try ChorusConnection.connect(path: path, timeoutMilliseconds: timeoutMilliseconds)

        var greeting: JSONObject?
        do throws(ClientError) {
            let first = try ChorusConnection.readMessage(
                fd: fd, path: path, framer: &framer, buffer: &readBuffer, peerClosed: &peerClosed,
                deadline: Clock.deadline(after: timeoutMilliseconds), goodbye: goodbyeReason)
            switch first {
            case .hello(let object):
                greeting = object
            case .error(let e):
                throw ClientError.protocolError(e)
            case .goodbye(let reason):
                throw ClientError.closed(reason: reason)
            default:
                throw ClientError.protocolError(ProtocolError(
                    code: .badFrame, message: "the server did not start with a hello frame; is \(path) a chorusd socket?"))
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        let helloObject = greeting!
        hello = helloObject
        maxFrameBytes = Int(helloObject["max_frame_bytes"]?.intValue ?? 1 << 20)
        if let version = helloObject["protocol"]?.intValue, version != Int64(protocolVersion) {
            Glibc.close(fd)
            fd = -1
            throw ClientError.protocolError(ProtocolError(
                code: .unsupported,
                message: "the daemon speaks protocol version \(version); this client speaks version \(protocolVersion)",
                field: "protocol"))
        }
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Closes the connection. Later calls throw ``ClientError/closed(reason:)``.
    public func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    /// Whether ``close()`` has not been called yet.
    public var isOpen: Bool { fd >= 0 }

    // MARK: Sending

    /// Sends one frame (no reply is awaited).
    public func send(_ frame: ClientFrame) throws(ClientError) {
        var line = frame.encode()
        line.append(0x0A)
        try writeAll(line)
    }

    /// Sends bytes as they are, adding the newline if missing (for tests of malformed input).
    public func sendRaw(_ line: [UInt8]) throws(ClientError) {
        var line = line
        if line.last != 0x0A { line.append(0x0A) }
        try writeAll(line)
    }

    // MARK: Receiving

    /// The next message from the server: queued ones first (events that arrived while
    /// ``request(_:)`` waited), then what the socket delivers.
    ///
    /// - Parameter timeoutMilliseconds: nil blocks until a message comes; otherwise
    ///   ``ClientError/timeout`` is thrown when none arrives in time.
    /// - Throws: ``ClientError/closed(reason:)`` at the end of the stream (after a goodbye,
    ///   which is itself returned as ``ServerMessage/goodbye(_:)`` first).
    public func nextMessage(timeoutMilliseconds: Int? = nil) throws(ClientError) -> ServerMessage {
        if let m = dequeue() { return m }
        return try receive(deadline: timeoutMilliseconds.map { Clock.deadline(after: $0) })
    }

    /// Sends a command with a fresh id and waits for the reply with that id; event frames that arrive
    /// meanwhile are queued and returned by ``nextMessage(timeoutMilliseconds:)`` later.
    ///
    /// An error reply is returned as ``ServerMessage/error(_:)``; use ``call(_:expecting:)`` to have it thrown.
    /// Waits at most ``timeoutMilliseconds``. Ids are strings `"req-1"`, `"req-2"`, … so they do not
    /// collide with the integer or other ids a caller gives frames sent with ``send(_:)``.
    public func request(_ command: ClientCommand) throws(ClientError) -> ServerMessage {
        let id = freshRequestId()
        try send(ClientFrame(id: id, command: command))
        let deadline = Clock.deadline(after: timeoutMilliseconds)
        while true {
            let m = try receive(deadline: deadline)
            if m.id == id { return m }
            if case .goodbye(let reason) = m { throw .closed(reason: reason) }
            enqueue(m)
        }
    }

    /// Like ``request(_:)`` but throws ``ClientError/protocolError(_:)`` for an error reply
    /// and returns the reply's body (its fields other than `type` and `id`).
    ///
    /// - Parameter expecting: when given, a reply of another type is a protocol error.
    @discardableResult
    public func call(_ command: ClientCommand, expecting: String? = nil) throws(ClientError) -> JSONObject {
        switch try request(command) {
        case .reply(let type, _, let body):
            if let expecting, type != expecting {
                throw .protocolError(ProtocolError(
                    code: .internal, message: "expected a '\(expecting)' reply to '\(command.op)', got '\(type)'"))
            }
            return body
        case .error(let e):
            throw .protocolError(e)
        case let other:
            throw .protocolError(ProtocolError(code: .internal, message: "unexpected reply to '\(command.op)': \(other)"))
        }
    }

    // MARK: Internals

    /// A request id not used before on this connection.
    func freshRequestId() -> JSONValue {
        defer { nextRequestId += 1 }
        return .string("req-\(nextRequestId)")
    }

    /// Puts a message back so that ``nextMessage(timeoutMilliseconds:)`` returns it later.
    func requeue(_ m: ServerMessage) {
        enqueue(m)
    }

    /// Takes the oldest queued message, if any.
    func takeQueued() -> ServerMessage? {
        dequeue()
    }

    /// Reads the next message from the socket, skipping the queue (for loops that wait for a specific reply).
    func receiveDirect(deadline: Int64?) throws(ClientError) -> ServerMessage {
        try receive(deadline: deadline)
    }

    private func dequeue() -> ServerMessage? {
        guard queueHead < queued.count else { return nil }
        let m = queued[queueHead]
        queueHead += 1
        if queueHead == queued.count {
            queued.removeAll(keepingCapacity: true)
            queueHead = 0
        }
        return m
    }

    private func enqueue(_ m: ServerMessage) {
        queued.append(m)
    }

    private func receive(deadline: Int64?) throws(ClientError) -> ServerMessage {
        guard fd >= 0 else { throw .closed(reason: "the connection was closed by this client") }
        let m = try ChorusConnection.readMessage(fd: fd, path: path, framer: &framer, buffer: &readBuffer,
                                                 peerClosed: &peerClosed, deadline: deadline, goodbye: goodbyeReason)
        if case .goodbye(let reason) = m { goodbyeReason = reason }
        return m
    }

    /// Reads until one complete server frame is available and parses it.
    private static func readMessage(fd: Int32, path: String, framer: inout LineFramer, buffer: inout [UInt8],
                                    peerClosed: inout Bool, deadline: Int64?, goodbye: String?) throws(ClientError)
        -> ServerMessage
    {
        while true {
            switch framer.next() {
            case .frame(let line)?:
                do {
                    return try ServerMessage.parse(line)
                } catch {
                    throw .protocolError(error)
                }
            case .oversized(let n)?:
                throw .protocolError(ProtocolError(
                    code: .frameTooLarge,
                    message: "the server sent a line of more than \(n) bytes (this client accepts \(maxServerFrameBytes))"))
            case nil:
                break
            }
            if peerClosed { throw .closed(reason: goodbye) }
            try waitFor(fd: fd, events: Int16(POLLIN), path: path, deadline: deadline)
            let n = buffer.withUnsafeMutableBytes { b in recv(fd, b.baseAddress, b.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                buffer.withUnsafeBytes { b in framer.append(UnsafeRawBufferPointer(rebasing: b[0..<n])) }
            } else if n == 0 {
                peerClosed = true
            } else {
                let e = errno
                switch e {
                case EINTR, EAGAIN, EWOULDBLOCK: continue
                case ECONNRESET, EPIPE: peerClosed = true
                default: throw .connectionFailed(path: path, errno: e)
                }
            }
        }
    }

    private func writeAll(_ bytes: [UInt8]) throws(ClientError) {
        guard fd >= 0 else { throw .closed(reason: "the connection was closed by this client") }
        let deadline = Clock.deadline(after: timeoutMilliseconds)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { b in
                Glibc.send(fd, b.baseAddress! + offset, b.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if n >= 0 {
                offset += n
                continue
            }
            let e = errno
            switch e {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK:
                try ChorusConnection.waitFor(fd: fd, events: Int16(POLLOUT), path: path, deadline: deadline)
            case EPIPE, ECONNRESET:
                peerClosed = true
                throw .closed(reason: goodbyeReason)
            default:
                throw .connectionFailed(path: path, errno: e)
            }
        }
    }

    /// Waits until `fd` is ready for `events` (or has hung up), or throws ``ClientError/timeout`` at `deadline`.
    private static func waitFor(fd: Int32, events: Int16, path: String, deadline: Int64?) throws(ClientError) {
        while true {
            var timeout: Int32 = -1
            if let deadline {
                let left = deadline - Clock.nowMilliseconds()
                if left <= 0 { throw .timeout }
                timeout = Int32(clamping: left)
            }
            var pfd = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&pfd, 1, timeout)
            if r > 0 { return }
            if r == 0 { throw .timeout }
            let e = errno
            if e == EINTR { continue }
            throw .connectionFailed(path: path, errno: e)
        }
    }

    private static func connect(path: String, timeoutMilliseconds: Int) throws(ClientError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !pathBytes.isEmpty, pathBytes.count < capacity else {
            throw .connectionFailed(path: path, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .connectionFailed(path: path, errno: errno) }

        // A blocking connect on a Unix socket only waits when the daemon's accept backlog is full;
        // SO_SNDTIMEO bounds that wait.
        var tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))

        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + 1)
        while true {
            let r = withUnsafePointer(to: &address) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
            }
            if r == 0 { break }
            let e = errno
            if e == EINTR { continue }
            Glibc.close(fd)
            switch e {
            case ENOENT, ECONNREFUSED, ENOTDIR: throw .daemonNotRunning(path: path)
            case EACCES, EPERM: throw .permissionDenied(path: path)
            case EAGAIN, EINPROGRESS, ETIMEDOUT: throw .timeout
            default: throw .connectionFailed(path: path, errno: e)
            }
        }
        // Writes use MSG_DONTWAIT and poll with their own deadline; clear the connect timeout.
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }
}

/// Monotonic milliseconds, for deadlines.
enum Clock {
    static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    static func deadline(after milliseconds: Int) -> Int64 {
        nowMilliseconds() + Int64(max(milliseconds, 0))
    }
}
