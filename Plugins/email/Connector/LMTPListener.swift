import ChorusConnectorSDK
import EmailTransport
#if canImport(Glibc)
import Glibc
#endif

/// The LMTP listener (RFC 2033) an MTA such as Postfix delivers into: a non-blocking TCP socket
/// watched through the host's loop, one `LMTPSession` per connection. A delivered message is
/// handed to the connector and the per-recipient replies are written only once its event is
/// committed (or refused), so the MTA keeps the mail queued until Chorus holds it.
/// Loop thread only.
final class LMTPListener {
    typealias Results = [(recipient: String, accepted: Bool, message: String)]

    private let host: ConnectorHost
    private let hostname: String
    private let maxMessageBytes: Int
    private let acceptRecipient: (String) -> Bool
    private let deliver: (LMTPSession.Envelope, @escaping (Results) -> Void) -> Void
    private var fd: Int32 = -1
    private var watchID: UInt64 = 0
    private var connections: [Int32: Connection] = [:]
    /// The bound port (the configured one, or the one the kernel chose for port 0).
    private(set) var port: Int = 0
    /// Connections beyond this are closed at once (with a 421).
    static let maxConnections = 64
    /// Buffered output beyond this closes a connection that does not read its replies.
    static let maxPendingOutput = 1 << 20

    init(host: ConnectorHost, hostname: String, maxMessageBytes: Int, acceptRecipient: @escaping (String) -> Bool,
         deliver: @escaping (LMTPSession.Envelope, @escaping (Results) -> Void) -> Void) {
        self.host = host
        self.hostname = hostname
        self.maxMessageBytes = maxMessageBytes
        self.acceptRecipient = acceptRecipient
        self.deliver = deliver
    }

    /// Binds and listens; throws `ConnectorError` naming the address when it cannot.
    func start(address: String, port wanted: Int) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(address, String(wanted), &hints, &res)
        guard rc == 0, let ai = res else {
            throw ConnectorError("lmtp_listen \(address):\(wanted): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        let s = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw ConnectorError("lmtp_listen: socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(s, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
            let why = String(cString: strerror(errno))
            close(s)
            throw ConnectorError("lmtp_listen \(address):\(wanted): cannot bind: \(why)")
        }
        guard listen(s, 128) == 0 else {
            let why = String(cString: strerror(errno))
            close(s)
            throw ConnectorError("lmtp_listen \(address):\(wanted): cannot listen: \(why)")
        }
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &ss) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(s, $0, &len) }
        }
        if ss.ss_family == sa_family_t(AF_INET) {
            port = withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) } }
        } else {
            port = withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) } }
        }
        fd = s
        watchID = host.watch(fd: s, readable: true, writable: false) { [weak self] _, _, _ in self?.acceptAll() }
        guard watchID != 0 else {
            close(s)
            fd = -1
            throw ConnectorError("lmtp_listen: the host refused to watch the socket")
        }
    }

    /// Stops accepting and closes every connection (a transaction waiting for its commit is
    /// answered by nobody: the MTA keeps the mail and delivers it again; the store deduplicates).
    func stop() {
        if watchID != 0 { host.unwatch(watchID); watchID = 0 }
        if fd >= 0 { close(fd); fd = -1 }
        for c in connections.values { c.close() }
        connections.removeAll()
    }

    private func acceptAll() {
        while fd >= 0 {
            let c = accept(fd, nil, nil)
            if c >= 0 {
                // accept4 is not visible to Swift without _GNU_SOURCE: set the flags the two-step way.
                _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL, 0) | O_NONBLOCK)
                _ = fcntl(c, F_SETFD, FD_CLOEXEC)
            }
            if c < 0 {
                if errno == EINTR { continue }
                if errno != EAGAIN && errno != EWOULDBLOCK {
                    host.log(.warning, "lmtp accept failed", [("error", String(cString: strerror(errno)))])
                }
                return
            }
            if connections.count >= LMTPListener.maxConnections {
                let busy = Array("421 4.3.2 \(hostname) too many connections, try again later\r\n".utf8)
                _ = busy.withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
                Glibc.close(c)
                host.count("lmtp_refused_busy")
                continue
            }
            let session = LMTPSession(hostname: hostname, maxMessageBytes: maxMessageBytes, acceptRecipient: acceptRecipient)
            let conn = Connection(fd: c, session: session, listener: self)
            connections[c] = conn
            host.count("lmtp_connections")
            conn.begin()
        }
    }

    fileprivate func closed(_ c: Connection) { connections.removeValue(forKey: c.fd) }

    /// One MTA connection.
    fileprivate final class Connection {
        let fd: Int32
        let session: LMTPSession
        unowned let listener: LMTPListener
        private var watchID: UInt64 = 0
        private var watchingWrite = false
        private var output: [UInt8] = []
        private var closing = false
        private var isClosed = false

        init(fd: Int32, session: LMTPSession, listener: LMTPListener) {
            self.fd = fd
            self.session = session
            self.listener = listener
        }

        func begin() {
            queue(session.greeting())
            rewatch()
            flush()
        }

        private func rewatch() {
            let host = listener.host
            if watchID != 0 { host.unwatch(watchID) }
            let wantWrite = !output.isEmpty
            watchingWrite = wantWrite
            watchID = host.watch(fd: fd, readable: true, writable: wantWrite) { [weak self] status, r, w in
                guard let self else { return }
                if status < 0 { self.close(); return }
                if w { self.flush() }
                if r { self.readAvailable() }
            }
        }

        private func readAvailable() {
            var buf = [UInt8](repeating: 0, count: 65536)
            while !isClosed {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    perform(session.feed(Array(buf[0..<n])))
                    continue
                }
                if n == 0 { close(); return }
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                close()
                return
            }
        }

        private func perform(_ actions: [LMTPSession.Action]) {
            for a in actions {
                switch a {
                case .write(let bytes):
                    queue(bytes)
                case .close:
                    closing = true
                case .deliver(let envelope):
                    listener.host.count("lmtp_messages")
                    listener.deliver(envelope) { [weak self] results in
                        guard let self, !self.isClosed else { return }
                        self.perform(self.session.complete(results))
                    }
                }
            }
            flush()
        }

        private func queue(_ bytes: [UInt8]) {
            output.append(contentsOf: bytes)
            if output.count > LMTPListener.maxPendingOutput { close() }
        }

        private func flush() {
            while !output.isEmpty && !isClosed {
                let n = output.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n > 0 { output.removeFirst(n); continue }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
                close()
                return
            }
            if isClosed { return }
            if output.isEmpty && closing { close(); return }
            if output.isEmpty == watchingWrite { rewatch() }
        }

        func close() {
            guard !isClosed else { return }
            isClosed = true
            if watchID != 0 { listener.host.unwatch(watchID); watchID = 0 }
            Glibc.close(fd)
            listener.closed(self)
        }
    }
}
