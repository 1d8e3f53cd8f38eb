// HTTPServer.swift — an HTTP/1.1 server on TCP for webhooks and health/metrics endpoints.
//
// Each connection feeds its reads to Node's http_parser (Debian libhttp-parser-dev). Requests complete in
// the parser callbacks and are dispatched to the handler after the parser returns. Every request gets an
// `HTTPResponder` slot in a per-connection queue; responses are serialized when answered but written strictly
// in request order, so pipelined requests may be answered out of order. Limits: header section
// (`maxHeaderBytes`, 431), body (`maxBodyBytes`, 413, checked against Content-Length before the body is read),
// malformed input (400); each of these answers after the earlier responses and closes. Keep-alive follows
// `http_should_keep_alive` (HTTP/1.0 and `Connection: close` are honoured), `Expect: 100-continue` is answered,
// and a connection with no request in progress is closed after `idleTimeoutMilliseconds`. Reading pauses
// while too many responses are outstanding or the client is not reading its responses.

import CHTTPParser
import CLibUV
import Logging
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Request

/// A complete HTTP request as received by `HTTPServer`.
public struct HTTPRequest: Sendable {
    /// `"GET"`, `"POST"`, ...
    public let method: String
    /// The request target's path, without query or fragment (not percent-decoded).
    public let path: String
    /// The raw query, without `?`; `""` if none.
    public let query: String
    /// Header fields in the order received; names lower-cased, values with surrounding whitespace trimmed.
    public let headers: [(name: String, value: String)]
    /// The body (de-chunked).
    public let body: [UInt8]
    /// The client's address, `"ip:port"` (`"[ip]:port"` for IPv6).
    public let remoteAddress: String

    /// Creates a request (for handlers' tests; the server builds requests itself).
    public init(method: String, path: String, query: String = "", headers: [(name: String, value: String)] = [],
                body: [UInt8] = [], remoteAddress: String = "") {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers.map { (name: $0.name.lowercased(), value: $0.value) }
        self.body = body
        self.remoteAddress = remoteAddress
    }

    /// The value of the first header named `name` (case-insensitive), or nil.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name == wanted }?.value
    }

    /// The query split into decoded name/value pairs (`+` is a space, `%XX` escapes decoded).
    public var queryItems: [(name: String, value: String)] {
        guard !query.isEmpty else { return [] }
        return query.split(separator: "&", omittingEmptySubsequences: true).map { part in
            if let eq = part.firstIndex(of: "=") {
                return (HTTPRequest.formDecode(part[..<eq]), HTTPRequest.formDecode(part[part.index(after: eq)...]))
            }
            return (HTTPRequest.formDecode(part), "")
        }
    }

    static func formDecode(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), iterator.count >= 2,
                      let high = hexValue(iterator[iterator.startIndex]),
                      let low = hexValue(iterator[iterator.startIndex + 1]) {
                bytes.append(high << 4 | low)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

// MARK: - Responder

/// Answers one request. Loop thread only.
///
/// `respond` may be called after the handler returned (for example once a durable commit finished). The
/// response is written after the responses to earlier requests on the same connection. If the client has
/// gone away, `respond` does nothing.
public final class HTTPResponder {
    weak var connection: HTTPConnection?
    private let requestKeepAlive: Bool
    private let isHeadRequest: Bool
    private let requestLine: String
    private let logger: Logger
    /// The serialized response while it waits for earlier responses.
    var serialized: [UInt8]?
    /// Whether the connection closes after this response.
    private(set) var closesConnection = false
    /// A server-side rejection (400/413/431): the connection lingers after it so the client can read it.
    private(set) var isRejection = false

    /// True once `respond` was called.
    public private(set) var isAnswered = false

    init(connection: HTTPConnection, keepAlive: Bool, isHead: Bool, requestLine: String, logger: Logger) {
        self.connection = connection
        self.requestKeepAlive = keepAlive
        self.isHeadRequest = isHead
        self.requestLine = requestLine
        self.logger = logger
    }

    /// True while the client connection is open (a response can still be delivered).
    public var isConnectionOpen: Bool { connection?.isOpen ?? false }

    /// Answers the request exactly once (later calls are ignored and logged). Adds `Content-Length`, `Date` and
    /// `Connection`; any of those given in `headers` are replaced, except that `Connection: close` is honoured.
    /// Header fields with invalid names or values containing CR/LF are dropped and logged.
    public func respond(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        guard !isAnswered else {
            logger.warning("HTTP request answered twice; ignoring the second response",
                           metadata: ["request": "\(requestLine)", "status": "\(status)"])
            return
        }
        isAnswered = true
        guard let connection, connection.isOpen else {
            logger.debug("HTTP client went away before the response", metadata: ["request": "\(requestLine)"])
            return
        }
        assert(connection.context.loop.isOnLoopThread, "HTTPResponder.respond called off the loop thread")
        let handlerWantsClose = headers.contains {
            $0.0.lowercased() == "connection" && $0.1.lowercased().contains("close")
        }
        closesConnection = !requestKeepAlive || handlerWantsClose || connection.isLastBeforeClosing(self)
        serialized = HTTPResponseSerializer.serialize(
            status: status, headers: headers, body: body, omitBody: isHeadRequest,
            keepAlive: !closesConnection, date: connection.context.httpDate(), logger: logger)
        connection.responderAnswered()
    }

    /// A responder for a request the server rejects itself (400/413/431): answered, closes the connection.
    static func rejection(connection: HTTPConnection, status: Int, logger: Logger) -> HTTPResponder {
        let responder = HTTPResponder(connection: connection, keepAlive: false, isHead: false,
                                      requestLine: "(rejected)", logger: logger)
        responder.isAnswered = true
        responder.closesConnection = true
        responder.isRejection = true
        let body = Array("\(HTTPResponseSerializer.reasonPhrase(status))\n".utf8)
        responder.serialized = HTTPResponseSerializer.serialize(
            status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: body, omitBody: false,
            keepAlive: false, date: connection.context.httpDate(), logger: logger)
        return responder
    }
}

// MARK: - Response serialization

enum HTTPResponseSerializer {
    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 101: return "Switching Protocols"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 206: return "Partial Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 304: return "Not Modified"
        case 307: return "Temporary Redirect"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 406: return "Not Acceptable"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 410: return "Gone"
        case 411: return "Length Required"
        case 412: return "Precondition Failed"
        case 413: return "Payload Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 416: return "Range Not Satisfiable"
        case 417: return "Expectation Failed"
        case 422: return "Unprocessable Entity"
        case 425: return "Too Early"
        case 426: return "Upgrade Required"
        case 428: return "Precondition Required"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default:
            switch status {
            case 100..<200: return "Informational"
            case 200..<300: return "Success"
            case 300..<400: return "Redirection"
            case 400..<500: return "Client Error"
            default: return "Server Error"
            }
        }
    }

    private static let managedHeaders: Set<String> = ["content-length", "transfer-encoding", "connection", "date"]

    static func isValidHeaderName(_ name: String) -> Bool {
        guard !name.isEmpty else { return false }
        return name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"):
                return true
            default:
                return "!#$%&'*+-.^_`|~".utf8.contains(byte)
            }
        }
    }

    static func isValidHeaderValue(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 != 13 && $0 != 10 && $0 != 0 }
    }

    static func serialize(status: Int, headers: [(String, String)], body: [UInt8], omitBody: Bool,
                          keepAlive: Bool, date: String, logger: Logger) -> [UInt8] {
        let status = (100...999).contains(status) ? status : 500
        var head = "HTTP/1.1 \(status) \(reasonPhrase(status))\r\n"
        for (name, value) in headers {
            guard isValidHeaderName(name), isValidHeaderValue(value) else {
                logger.warning("dropping invalid HTTP response header", metadata: ["header": "\(name)"])
                continue
            }
            if managedHeaders.contains(name.lowercased()) { continue }
            head += "\(name): \(value)\r\n"
        }
        // RFC 9110 §8.6: no Content-Length in 1xx and 204 responses; 304 carries no body.
        let bodyless = (100..<200).contains(status) || status == 204 || status == 304
        if !bodyless {
            head += "Content-Length: \(body.count)\r\n"
        }
        head += "Date: \(date)\r\n"
        head += keepAlive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n"
        var bytes = Array(head.utf8)
        if !omitBody && !bodyless {
            bytes.append(contentsOf: body)
        }
        return bytes
    }

    private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func imfDate(_ seconds: time_t) -> String {
        var t = seconds
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let weekday = weekdays[Int(parts.tm_wday) % 7]
        let month = months[Int(parts.tm_mon) % 12]
        return "\(weekday), \(two(parts.tm_mday)) \(month) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}

// MARK: - Server

/// HTTP/1.1 server on TCP. Loop thread only.
///
/// The handler runs on the loop thread for each complete request; it must answer through the responder,
/// now or later. Requests on one connection are answered in order.
public final class HTTPServer: LoopHandleOwner {
    /// Limits and timeouts.
    public struct Options: Sendable {
        /// Largest accepted request body; larger requests are answered 413 and the connection closed.
        public var maxBodyBytes: Int = 1 << 20
        /// A connection with no request in progress is closed after this long without activity.
        public var idleTimeoutMilliseconds: UInt64 = 60_000
        /// Largest accepted request line plus header section; larger ones are answered 431.
        public var maxHeaderBytes: Int = 64 << 10
        /// Requests received but not yet answered on one connection before reading pauses.
        public var maxPipelinedRequests: Int = 32
        /// Buffered response bytes on one connection before reading pauses (the client is not reading).
        public var maxBufferedResponseBytes: Int = 4 << 20
        /// `listen(2)` backlog.
        public var backlog: Int32 = 511

        public init() {}
    }

    private let context: HTTPServerContext
    private let handle: UnsafeMutablePointer<uv_tcp_t>
    private var state: HandleState = .open

    /// The actual listening port (useful with port 0, which picks an ephemeral port).
    public let boundPort: Int
    /// The address the server listens on.
    public let host: String

    /// Binds `host:port` (numeric IPv4 or IPv6 address, or `localhost`) and listens.
    /// Throws `UVError` if the address is invalid or bind/listen fails.
    public init(loop: EventLoop, host: String, port: Int, options: Options = .init(), logger: Logger,
                handler: @escaping (HTTPRequest, HTTPResponder) -> Void) throws {
        precondition(loop.isOpen, "HTTPServer created on a shut-down EventLoop")
        self.host = host
        context = HTTPServerContext(loop: loop, options: options, logger: logger, handler: handler)
        let tcp = allocateUV(uv_tcp_t.self)
        uv_tcp_init(loop.uvLoop, tcp)
        handle = tcp
        do {
            boundPort = try HTTPServer.bindAndListen(tcp, host: host, port: port, backlog: options.backlog)
        } catch {
            closeUVHandle(uvHandle(tcp))  // no owner attached yet: the close callback only frees it
            throw error
        }
        attachOwner(self, to: uvHandle(handle))
        let bound = boundPort
        logger.debug("HTTP server listening", metadata: ["address": "\(host):\(bound)"])
    }

    /// Adopts `descriptor`, a TCP socket that is already bound and listening (for example one passed by
    /// systemd's socket activation); `host` and `boundPort` are read from the socket. Connections that were
    /// queued on it before the call (clients that connected early) are accepted as soon as the loop runs.
    ///
    /// The server owns `descriptor` from this call on, also when it throws (it is then closed). Throws
    /// `UVError` when libuv cannot take the descriptor or listen on it.
    public init(loop: EventLoop, adoptingListeningDescriptor descriptor: Int32, options: Options = .init(), logger: Logger,
                handler: @escaping (HTTPRequest, HTTPResponder) -> Void) throws {
        precondition(loop.isOpen, "HTTPServer created on a shut-down EventLoop")
        context = HTTPServerContext(loop: loop, options: options, logger: logger, handler: handler)
        let tcp = allocateUV(uv_tcp_t.self)
        uv_tcp_init(loop.uvLoop, tcp)
        handle = tcp
        let opened = uv_tcp_open(tcp, descriptor)
        if opened < 0 { try? Syscall.close(descriptor) }
        do {
            try UVError.check(opened, "adopt listening socket fd \(descriptor)")
            try UVError.check(uv_listen(uvStream(tcp), options.backlog, httpServerAccept), "listen(fd \(descriptor))")
            var local = sockaddr_storage()
            var length = Int32(MemoryLayout<sockaddr_storage>.size)
            let rc = withUnsafeMutablePointer(to: &local) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getsockname(tcp, $0, &length) }
            }
            try UVError.check(rc, "getsockname(fd \(descriptor))")
            let formatted = formatSocketAddress(&local)
            boundPort = Int(formatted.port)
            var address = formatted.text
            if let colon = address.lastIndex(of: ":") { address = String(address[..<colon]) }
            if address.hasPrefix("[") && address.hasSuffix("]") { address = String(address.dropFirst().dropLast()) }
            host = address
        } catch {
            closeUVHandle(uvHandle(tcp))  // no owner attached yet: the close callback only frees it (and closes the fd)
            throw error
        }
        attachOwner(self, to: uvHandle(handle))
        logger.debug("HTTP server listening on an adopted socket", metadata: ["address": "\(host):\(boundPort)"])
    }

    /// Binds and listens; returns the bound port.
    private static func bindAndListen(_ tcp: UnsafeMutablePointer<uv_tcp_t>, host: String, port: Int,
                                      backlog: Int32) throws -> Int {
        var address = try socketAddress(host: host, port: port)
        try withUnsafePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                try UVError.check(uv_tcp_bind(tcp, sa, 0), "bind(\(host):\(port))")
            }
        }
        try UVError.check(uv_listen(uvStream(tcp), backlog, httpServerAccept), "listen(\(host):\(port))")
        var local = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &local) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getsockname(tcp, $0, &length) }
        }
        try UVError.check(rc, "getsockname(\(host):\(port))")
        return Int(formatSocketAddress(&local).port)
    }

    /// Number of open client connections (a connection counts as closed as soon as its close began).
    public var openConnections: Int { context.connections.values.reduce(0) { $0 + ($1.stream.isClosed ? 0 : 1) } }

    /// True until `stopAccepting()` or `close()`.
    public var isListening: Bool { state == .open }

    /// Stops listening. Idle connections close now; connections with requests in flight finish them
    /// (their last response carries `Connection: close`) and then close.
    public func stopAccepting() {
        closeListener()
        context.draining = true
        for connection in Array(context.connections.values) {
            connection.beginDraining()
        }
        context.releaseHandlerIfDrained()
    }

    /// Stops listening and closes every connection immediately (unanswered requests are dropped).
    public func close() {
        closeListener()
        for connection in Array(context.connections.values) {
            connection.closeNow()
        }
        context.handler = nil
    }

    private func closeListener() {
        guard state == .open else { return }
        state = .closing
        closeUVHandle(uvHandle(handle))
    }

    fileprivate func accept(status: Int32) {
        guard state == .open else { return }
        if status < 0 {
            context.logger.warning("HTTP accept failed", metadata: ["error": "\(UVError(code: status, operation: "accept"))"])
            return
        }
        let client = allocateUV(uv_tcp_t.self)
        uv_tcp_init(context.loop.uvLoop, client)
        let rc = uv_accept(uvStream(handle), uvStream(client))
        if rc < 0 {
            closeUVHandle(uvHandle(client))
            context.logger.warning("HTTP accept failed", metadata: ["error": "\(UVError(code: rc, operation: "accept"))"])
            return
        }
        uv_tcp_nodelay(client, 1)
        var peer = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let peerRC = withUnsafeMutablePointer(to: &peer) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getpeername(client, $0, &length) }
        }
        let remote = peerRC == 0 ? formatSocketAddress(&peer).text : "unknown"
        let stream = StreamConnection(loop: context.loop, handle: uvStream(client), peer: nil)
        let connection = HTTPConnection(context: context, stream: stream, remoteAddress: remote)
        context.connections[ObjectIdentifier(connection)] = connection
    }

    func closeForShutdown() { close() }

    func handleDidClose(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        state = .closed
    }
}

private func httpServerAccept(_ server: UnsafeMutablePointer<uv_stream_t>?, _ status: Int32) {
    handleOwner(server, as: HTTPServer.self).accept(status: status)
}

/// Parses a numeric IPv4/IPv6 address (or `localhost`) into a socket address.
func socketAddress(host: String, port: Int) throws -> sockaddr_storage {
    guard (0...65535).contains(port) else {
        throw UVError(code: Int32(UV_EINVAL.rawValue), operation: "port \(port)")
    }
    let numeric = host == "localhost" ? "127.0.0.1" : host
    var storage = sockaddr_storage()
    let rc: Int32 = withUnsafeMutablePointer(to: &storage) { pointer in
        if numeric.contains(":") {
            return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_addr(numeric, Int32(port), $0) }
        }
        return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_addr(numeric, Int32(port), $0) }
    }
    try UVError.check(rc, "address \(host) (a numeric IPv4/IPv6 address is required)")
    return storage
}

/// `"ip:port"` and the port of an AF_INET/AF_INET6 address.
func formatSocketAddress(_ storage: inout sockaddr_storage) -> (text: String, port: Int32) {
    var buffer = [CChar](repeating: 0, count: 80)
    let port = cuv_sockaddr_format(&storage, &buffer, buffer.count)
    let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return (text, port)
}

// MARK: - Shared server state

final class HTTPServerContext {
    let loop: EventLoop
    let options: HTTPServer.Options
    let logger: Logger
    /// The request handler; released once the server is closed (or has drained), which breaks reference
    /// cycles through handlers that capture the server.
    var handler: ((HTTPRequest, HTTPResponder) -> Void)?
    var connections: [ObjectIdentifier: HTTPConnection] = [:]
    var draining = false
    private var cachedDateSecond: time_t = 0
    private var cachedDate = ""

    init(loop: EventLoop, options: HTTPServer.Options, logger: Logger,
         handler: @escaping (HTTPRequest, HTTPResponder) -> Void) {
        self.loop = loop
        self.options = options
        self.logger = logger
        self.handler = handler
    }

    /// Drops the handler once a draining server has no connection left.
    func releaseHandlerIfDrained() {
        if draining && connections.isEmpty { handler = nil }
    }

    /// The current date in IMF-fixdate form, computed at most once per second.
    func httpDate() -> String {
        let now = time(nil)
        if now != cachedDateSecond {
            cachedDateSecond = now
            cachedDate = HTTPResponseSerializer.imfDate(now)
        }
        return cachedDate
    }
}

// MARK: - Connection

/// Why the server rejects a request itself.
private enum HTTPRejection {
    case badRequest
    case payloadTooLarge
    case headersTooLarge

    var status: Int {
        switch self {
        case .badRequest: return 400
        case .payloadTooLarge: return 413
        case .headersTooLarge: return 431
        }
    }
}

/// One client connection of an `HTTPServer`.
final class HTTPConnection {
    let context: HTTPServerContext
    let stream: StreamConnection
    let remoteAddress: String
    private let parser: UnsafeMutablePointer<http_parser>
    private let idleTimer: LoopTimer
    private(set) var isOpen = true

    // The message being parsed.
    private var messageInProgress = false
    private var urlBytes: [UInt8] = []
    private var headerFields: [(name: String, value: String)] = []
    private var fieldBytes: [UInt8] = []
    private var valueBytes: [UInt8] = []
    private var lastCallbackWasValue = false
    private var headerBytes = 0
    private var body: [UInt8] = []
    private var rejection: HTTPRejection?

    /// Requests completed during the current `http_parser_execute`, dispatched after it returns.
    private var completed: [(request: HTTPRequest, keepAlive: Bool)] = []
    /// Requests of the current batch not handed to the handler yet.
    private var undispatched = 0
    /// Responders in request order whose responses have not been written yet.
    private var responders: [HTTPResponder] = []
    /// No further requests will be parsed (end of input, `Connection: close`, error, draining).
    private var inputClosed = false
    private var draining = false
    private var pausedForBackpressure = false
    /// After a rejection: the response is written, the sending side shut down, and input discarded until the
    /// client closes or `lingerMilliseconds` pass (closing with unread input would reset the connection and
    /// could destroy the response before the client reads it).
    private var lingering = false
    private static let lingerMilliseconds: UInt64 = 2_000
    private var pendingAtLastIdleCheck = -1

    init(context: HTTPServerContext, stream: StreamConnection, remoteAddress: String) {
        self.context = context
        self.stream = stream
        self.remoteAddress = remoteAddress
        parser = .allocate(capacity: 1)
        http_parser_init(parser, HTTP_REQUEST)
        idleTimer = LoopTimer(loop: context.loop)
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        // The stream's callbacks hold this connection; they are dropped when the stream closes.
        stream.onRead = { [self] chunk in received(chunk) }
        stream.onEOF = { [self] in receivedEOF() }
        stream.onDrain = { [self] in updateReading() }
        stream.onClose = { [self] error in streamClosed(error) }
        draining = context.draining
        armIdleTimer()
    }

    deinit {
        parser.deallocate()
    }

    // MARK: Input

    private func received(_ chunk: [UInt8]) {
        guard isOpen, !inputClosed else { return }
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let parsed = chunk.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                http_parser_execute(parser, httpParserSettings, chars.baseAddress, chars.count)
            }
        }
        let code = chttp_errno(parser)
        var failed: HTTPRejection?
        if code != HPE_OK.rawValue && code != HPE_PAUSED.rawValue {
            let reason = rejection ?? (code == HPE_HEADER_OVERFLOW.rawValue ? .headersTooLarge : .badRequest)
            failed = reason
            let name = String(cString: http_errno_name(http_errno(rawValue: code)))
            context.logger.debug("rejecting HTTP request", metadata: [
                "remote": "\(remoteAddress)", "status": "\(reason.status)", "parser": "\(name)", "offset": "\(parsed)",
            ])
        } else if chttp_upgrade(parser) != 0 {
            // Protocol upgrades are not supported: answer the request normally, then close.
            inputClosed = true
            if !completed.isEmpty { completed[completed.count - 1].keepAlive = false }
        }
        dispatchCompleted()
        guard isOpen else { return }
        if let failed {
            inputClosed = true
            responders.append(.rejection(connection: self, status: failed.status, logger: context.logger))
            flushResponses()
        }
        guard isOpen, !lingering else { return }
        if inputClosed { stream.pauseReading() }
        updateReading()
        armIdleTimer()
    }

    private func dispatchCompleted() {
        guard !completed.isEmpty else { return }
        var batch: [(request: HTTPRequest, keepAlive: Bool)] = []
        swap(&batch, &completed)
        defer { undispatched = 0 }
        for (index, item) in batch.enumerated() {
            guard isOpen else { return }
            undispatched = batch.count - index - 1
            let responder = HTTPResponder(connection: self, keepAlive: item.keepAlive,
                                          isHead: item.request.method == "HEAD",
                                          requestLine: "\(item.request.method) \(item.request.path)",
                                          logger: context.logger)
            responders.append(responder)
            context.handler?(item.request, responder)
        }
    }

    /// End of input. With requests still unanswered the client is treated as gone (as nginx does): an HTTP/1.1
    /// client waits for its responses with the connection open, so a close means it no longer wants them.
    private func receivedEOF() {
        inputClosed = true
        if lingering || !responders.isEmpty {
            closeNow()
        } else {
            stream.closeAfterFlush()
        }
    }

    // MARK: Output

    /// Whether `responder` will be the last response before the connection closes (draining or end of input).
    func isLastBeforeClosing(_ responder: HTTPResponder) -> Bool {
        (draining || inputClosed) && !messageInProgress && undispatched == 0 && completed.isEmpty
            && responders.last === responder
    }

    func responderAnswered() {
        flushResponses()
    }

    private func flushResponses() {
        guard isOpen else { return }
        while let head = responders.first, let bytes = head.serialized {
            responders.removeFirst()
            head.serialized = nil
            stream.write(bytes)
            if head.closesConnection {
                inputClosed = true
                responders.removeAll()
                if head.isRejection {
                    beginLingering()
                } else {
                    stream.closeAfterFlush()
                }
                return
            }
        }
        if responders.isEmpty && (inputClosed || (draining && !messageInProgress)) {
            stream.closeAfterFlush()
            return
        }
        updateReading()
        armIdleTimer()
    }

    /// Pauses reading while too many responses are outstanding or the client is not reading them.
    private func updateReading() {
        guard isOpen, !inputClosed else { return }
        let overloaded = responders.count >= context.options.maxPipelinedRequests
            || stream.pendingWriteBytes > context.options.maxBufferedResponseBytes
        if overloaded && !pausedForBackpressure {
            pausedForBackpressure = true
            stream.pauseReading()
        } else if !overloaded && pausedForBackpressure {
            pausedForBackpressure = false
            stream.resumeReading()
        }
    }

    private func beginLingering() {
        lingering = true
        stream.shutdownWriteAfterFlush()
        stream.resumeReading()
        idleTimer.start(timeoutMilliseconds: HTTPConnection.lingerMilliseconds) { [weak self] in
            self?.closeNow()
        }
    }

    // MARK: Idle timeout

    private func armIdleTimer() {
        guard isOpen, !lingering else { return }
        if responders.isEmpty {
            idleTimer.start(timeoutMilliseconds: context.options.idleTimeoutMilliseconds) { [weak self] in
                self?.idleTimeout()
            }
        } else {
            idleTimer.stop()
        }
    }

    private func idleTimeout() {
        guard isOpen, !lingering, responders.isEmpty else { return }
        let pending = stream.pendingWriteBytes
        if pending > 0 && pending != pendingAtLastIdleCheck {
            // Still delivering a response to a slow client that is making progress.
            pendingAtLastIdleCheck = pending
            armIdleTimer()
            return
        }
        context.logger.debug("closing idle HTTP connection", metadata: ["remote": "\(remoteAddress)"])
        closeNow()
    }

    // MARK: Lifecycle

    func beginDraining() {
        draining = true
        guard isOpen else { return }
        if responders.isEmpty && !messageInProgress {
            stream.closeAfterFlush()
        }
    }

    func closeNow() {
        stream.close()
    }

    private func streamClosed(_ error: UVError?) {
        isOpen = false
        idleTimer.close()
        responders.removeAll()
        completed.removeAll()
        context.connections.removeValue(forKey: ObjectIdentifier(self))
        context.releaseHandlerIfDrained()
        if let error {
            context.logger.debug("HTTP connection closed", metadata: ["remote": "\(remoteAddress)", "error": "\(error)"])
        }
    }

    // MARK: Parser callbacks

    fileprivate func parserMessageBegin() -> Int32 {
        messageInProgress = true
        urlBytes.removeAll(keepingCapacity: true)
        headerFields = []
        fieldBytes.removeAll(keepingCapacity: true)
        valueBytes.removeAll(keepingCapacity: true)
        lastCallbackWasValue = false
        headerBytes = 0
        body = []
        rejection = nil
        return 0
    }

    private func countHeaderBytes(_ count: Int) -> Bool {
        headerBytes += count
        if headerBytes > context.options.maxHeaderBytes {
            rejection = .headersTooLarge
            return false
        }
        return true
    }

    fileprivate func parserURL(_ data: UnsafeRawBufferPointer) -> Int32 {
        guard countHeaderBytes(data.count) else { return 1 }
        urlBytes.append(contentsOf: data)
        return 0
    }

    fileprivate func parserHeaderField(_ data: UnsafeRawBufferPointer) -> Int32 {
        guard countHeaderBytes(data.count) else { return 1 }
        if lastCallbackWasValue { commitHeader() }
        fieldBytes.append(contentsOf: data)
        return 0
    }

    fileprivate func parserHeaderValue(_ data: UnsafeRawBufferPointer) -> Int32 {
        guard countHeaderBytes(data.count) else { return 1 }
        valueBytes.append(contentsOf: data)
        lastCallbackWasValue = true
        return 0
    }

    private func commitHeader() {
        let name = String(decoding: fieldBytes, as: UTF8.self).lowercased()
        var value = String(decoding: valueBytes, as: UTF8.self)
        while let last = value.last, last == " " || last == "\t" { value.removeLast() }
        headerFields.append((name: name, value: value))
        fieldBytes.removeAll(keepingCapacity: true)
        valueBytes.removeAll(keepingCapacity: true)
        lastCallbackWasValue = false
    }

    fileprivate func parserHeadersComplete() -> Int32 {
        if lastCallbackWasValue || !fieldBytes.isEmpty { commitHeader() }
        let maxBody = context.options.maxBodyBytes
        if let lengthText = headerFields.first(where: { $0.name == "content-length" })?.value,
           let length = UInt64(lengthText.trimmingASCIIWhitespace), length > UInt64(maxBody) {
            rejection = .payloadTooLarge
            return 3  // any value other than 0, 1, 2 makes http_parser stop with an error
        }
        if let expect = headerFields.first(where: { $0.name == "expect" })?.value,
           expect.lowercased() == "100-continue",
           parser.pointee.http_major == 1, parser.pointee.http_minor >= 1,
           responders.isEmpty, completed.isEmpty {
            stream.write("HTTP/1.1 100 Continue\r\n\r\n")
        }
        return 0
    }

    fileprivate func parserBody(_ data: UnsafeRawBufferPointer) -> Int32 {
        if body.count + data.count > context.options.maxBodyBytes {
            rejection = .payloadTooLarge
            return 1
        }
        body.append(contentsOf: data)
        return 0
    }

    fileprivate func parserMessageComplete() -> Int32 {
        messageInProgress = false
        let method = String(cString: http_method_str(http_method(rawValue: chttp_method(parser))))
        let (path, query) = HTTPConnection.splitTarget(String(decoding: urlBytes, as: UTF8.self))
        let request = HTTPRequest(method: method, path: path, query: query, headers: headerFields,
                                  body: body, remoteAddress: remoteAddress)
        let keepAlive = http_should_keep_alive(parser) != 0
        completed.append((request: request, keepAlive: keepAlive))
        body = []
        headerFields = []
        if !keepAlive || draining {
            // Nothing after this request is read: stop the parser here without an error.
            inputClosed = true
            http_parser_pause(parser, 1)
        }
        return 0
    }

    /// The index just past `://` in an absolute-form target, if any.
    static func endOfScheme(_ target: Substring) -> Substring.Index? {
        let separator = Array("://".utf8)
        let bytes = Array(target.utf8)
        guard bytes.count >= separator.count else { return nil }
        for start in 0...(bytes.count - separator.count) where Array(bytes[start..<start + separator.count]) == separator {
            return target.utf8.index(target.startIndex, offsetBy: start + separator.count)
        }
        return nil
    }

    /// Splits a request target into path and raw query (origin-form or absolute-form).
    static func splitTarget(_ target: String) -> (path: String, query: String) {
        var rest = Substring(target)
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        if !rest.hasPrefix("/"), let schemeEnd = HTTPConnection.endOfScheme(rest) {
            let authorityAndPath = rest[schemeEnd...]
            if let slash = authorityAndPath.firstIndex(where: { $0 == "/" || $0 == "?" }) {
                rest = authorityAndPath[slash...]
            } else {
                rest = "/"
            }
            if rest.hasPrefix("?") { rest = "/" + rest }
        }
        if let question = rest.firstIndex(of: "?") {
            return (String(rest[..<question]), String(rest[rest.index(after: question)...]))
        }
        return (String(rest), "")
    }
}

extension String {
    /// The string without leading and trailing spaces and tabs.
    var trimmingASCIIWhitespace: Substring {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" { view = view.dropFirst() }
        while let last = view.last, last == " " || last == "\t" { view = view.dropLast() }
        return view
    }
}

// MARK: - http_parser settings

@inline(__always)
private func parserConnection(_ parser: UnsafeMutablePointer<http_parser>?) -> HTTPConnection {
    Unmanaged<HTTPConnection>.fromOpaque(parser!.pointee.data).takeUnretainedValue()
}

@inline(__always)
private func parserBytes(_ data: UnsafePointer<CChar>?, _ length: Int) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : length)
}

/// The callbacks shared by every connection (http_parser keeps no state in the settings).
nonisolated(unsafe) private let httpParserSettings: UnsafeMutablePointer<http_parser_settings> = {
    let settings = UnsafeMutablePointer<http_parser_settings>.allocate(capacity: 1)
    settings.initialize(to: http_parser_settings())
    settings.pointee.on_message_begin = { parserConnection($0).parserMessageBegin() }
    settings.pointee.on_url = { parserConnection($0).parserURL(parserBytes($1, $2)) }
    settings.pointee.on_header_field = { parserConnection($0).parserHeaderField(parserBytes($1, $2)) }
    settings.pointee.on_header_value = { parserConnection($0).parserHeaderValue(parserBytes($1, $2)) }
    settings.pointee.on_headers_complete = { parserConnection($0).parserHeadersComplete() }
    settings.pointee.on_body = { parserConnection($0).parserBody(parserBytes($1, $2)) }
    settings.pointee.on_message_complete = { parserConnection($0).parserMessageComplete() }
    return settings
}()
