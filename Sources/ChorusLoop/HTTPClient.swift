// HTTPClient.swift — outbound HTTP(S) through libcurl's multi_socket API, driven by the event loop.
//
// curl tells us which sockets to watch (socket callback) and when it next needs a timeout (timer callback).
// Each curl socket gets one `uv_poll_t`, attached to curl's socket with `curl_multi_assign`; the timer callback
// only arms a `uv_timer_t` (calling back into curl from inside it is not allowed). Readiness and timer
// expiry call `curl_multi_socket_action`, after which finished transfers are drained with
// `curl_multi_info_read` and their completions run — after curl returned, never from inside a curl callback.
// TLS comes from libcurl's OpenSSL backend. Only http and https URLs are allowed.

import CCurl
import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// An outbound HTTP request.
public struct HTTPClientRequest: Sendable {
    /// `"GET"`, `"POST"`, `"PUT"`, `"DELETE"`, `"HEAD"`, ...
    public var method: String
    /// An `http://` or `https://` URL.
    public var url: String
    /// Header fields to send (curl adds Host, Content-Length and the like).
    public var headers: [(String, String)]
    /// The request body (sent for any method when non-empty; always for POST, PUT and PATCH).
    public var body: [UInt8]
    /// Whole-transfer timeout, connect included.
    public var timeoutMilliseconds: UInt64 = 30_000
    /// Largest accepted response body; a larger one fails the request.
    public var maxResponseBytes: Int = 16 << 20

    public init(method: String = "GET", url: String, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// The outcome of an `HTTPClientRequest`.
public struct HTTPClientResponse: Sendable {
    /// The HTTP status code; 0 on transport error.
    public let status: Int
    /// The transport error (curl's message), nil on success. An HTTP error status is not a transport error.
    public let error: String?
    /// Response header fields in order; names lower-cased.
    public let headers: [(name: String, value: String)]
    /// The response body.
    public let body: [UInt8]

    public init(status: Int, error: String?, headers: [(name: String, value: String)], body: [UInt8]) {
        self.status = status
        self.error = error
        self.headers = headers
        self.body = body
    }

    /// A transport failure.
    static func failure(_ message: String) -> HTTPClientResponse {
        HTTPClientResponse(status: 0, error: message, headers: [], body: [])
    }

    /// The value of the first header named `name` (case-insensitive), or nil.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name == wanted }?.value
    }
}

/// Error creating an `HTTPClient` (libcurl could not be initialised).
public struct CurlError: Error, CustomStringConvertible, Sendable {
    /// The `CURLcode` / `CURLMcode` value.
    public let code: Int32
    /// What failed.
    public let operation: String

    public var description: String { "\(operation) failed (curl code \(code))" }
}

/// libcurl's process-wide initialisation, done once (thread-safe lazy global).
private let curlGlobalInitResult: CURLcode = ccurl_global_init_default()

/// Outbound HTTP on the event loop. Loop thread only.
public final class HTTPClient: LoopHandleOwner {
    private let loop: EventLoop
    private var multi: UnsafeMutableRawPointer?
    private let timer: UnsafeMutablePointer<uv_timer_t>
    private var state: HandleState = .open
    private var transfers: [UnsafeMutableRawPointer: HTTPTransfer] = [:]
    private var sockets: [ObjectIdentifier: CurlSocket] = [:]

    /// Creates a client. `maxConnectionsPerHost` caps parallel connections to one host (further requests
    /// queue inside curl); `maxTotalConnections` caps them overall (0 = no limit).
    public init(loop: EventLoop, maxConnectionsPerHost: Int = 64, maxTotalConnections: Int = 0) throws {
        precondition(loop.isOpen, "HTTPClient created on a shut-down EventLoop")
        guard curlGlobalInitResult == CURLE_OK else {
            throw CurlError(code: Int32(curlGlobalInitResult.rawValue), operation: "curl_global_init")
        }
        guard let multi = curl_multi_init() else {
            throw CurlError(code: Int32(CURLM_OUT_OF_MEMORY.rawValue), operation: "curl_multi_init")
        }
        self.loop = loop
        self.multi = multi
        timer = allocateUV(uv_timer_t.self)
        uv_timer_init(loop.uvLoop, timer)
        attachOwner(self, to: uvHandle(timer))
        let context = Unmanaged.passUnretained(self).toOpaque()
        ccurl_multi_setopt_socketcb(multi, curlSocketCallback)
        ccurl_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, context)
        ccurl_multi_setopt_timercb(multi, curlTimerCallback)
        ccurl_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, context)
        ccurl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, maxConnectionsPerHost)
        ccurl_multi_setopt_long(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, maxTotalConnections)
    }

    /// Number of requests started and not completed yet.
    public var inFlight: Int { transfers.count }

    /// Starts `request`. `completion` runs exactly once, on the loop thread, never synchronously inside this call.
    public func execute(_ request: HTTPClientRequest, completion: @escaping (HTTPClientResponse) -> Void) {
        guard state == .open, let multi else {
            failLater(completion, "client closed")
            return
        }
        guard let easy = curl_easy_init() else {
            failLater(completion, "curl_easy_init failed")
            return
        }
        let transfer = HTTPTransfer(easy: easy, request: request, completion: completion)
        if let problem = transfer.configure() {
            transfer.cleanup()
            failLater(completion, problem)
            return
        }
        let rc = curl_multi_add_handle(multi, easy)
        if rc != CURLM_OK {
            transfer.cleanup()
            failLater(completion, "curl_multi_add_handle: \(String(cString: curl_multi_strerror(rc)))")
            return
        }
        transfers[easy] = transfer
    }

    private func failLater(_ completion: @escaping (HTTPClientResponse) -> Void, _ message: String) {
        loop.execute { completion(.failure(message)) }
    }

    /// Aborts every request in flight (their completions run now with error `"client closed"`), closes all
    /// connections and releases curl and the loop handles. Idempotent.
    public func close() {
        guard state == .open else { return }
        state = .closing
        let aborted = Array(transfers.values)
        transfers.removeAll()
        if let multi {
            for transfer in aborted {
                curl_multi_remove_handle(multi, transfer.easy)
                transfer.cleanup()
            }
            // May report sockets being removed through the socket callback; handled while `multi` is still set.
            curl_multi_cleanup(multi)
            self.multi = nil
        }
        for socket in sockets.values { socket.close() }
        sockets.removeAll()
        closeUVHandle(uvHandle(timer))
        for transfer in aborted {
            transfer.completion(.failure("client closed"))
        }
    }

    // MARK: curl callbacks (called from inside curl)

    fileprivate func socketCallback(fd: curl_socket_t, what: Int32, socketp: UnsafeMutableRawPointer?) {
        guard let multi else { return }
        if what == ccurl_poll_remove() {
            if let socketp {
                let socket = Unmanaged<CurlSocket>.fromOpaque(socketp).takeUnretainedValue()
                sockets.removeValue(forKey: ObjectIdentifier(socket))
                socket.close()
                curl_multi_assign(multi, fd, nil)
            }
            return
        }
        let socket: CurlSocket
        if let socketp {
            socket = Unmanaged<CurlSocket>.fromOpaque(socketp).takeUnretainedValue()
        } else {
            guard state == .open else { return }
            guard let created = CurlSocket(loop: loop, fd: fd, client: self) else {
                // Cannot watch this socket; the transfer ends through its timeout.
                return
            }
            socket = created
            sockets[ObjectIdentifier(socket)] = socket
            curl_multi_assign(multi, fd, Unmanaged.passUnretained(socket).toOpaque())
        }
        var events: Int32 = 0
        if what == ccurl_poll_in() || what == ccurl_poll_inout() { events |= Int32(UV_READABLE.rawValue) }
        if what == ccurl_poll_out() || what == ccurl_poll_inout() { events |= Int32(UV_WRITABLE.rawValue) }
        socket.watch(events: events)
    }

    fileprivate func timerCallback(timeoutMilliseconds: Int) {
        guard state == .open else { return }
        if timeoutMilliseconds < 0 {
            uv_timer_stop(timer)
        } else {
            uv_timer_start(timer, curlTimerExpired, UInt64(timeoutMilliseconds), 0)
        }
    }

    // MARK: Loop events

    fileprivate func timerExpired() {
        guard state == .open, let multi else { return }
        var running: Int32 = 0
        curl_multi_socket_action(multi, ccurl_socket_timeout(), 0, &running)
        completeFinishedTransfers()
    }

    fileprivate func socketReady(fd: curl_socket_t, status: Int32, events: Int32) {
        guard state == .open, let multi else { return }
        var flags: Int32 = 0
        if status < 0 {
            flags = ccurl_cselect_err()
        } else {
            if events & Int32(UV_READABLE.rawValue) != 0 { flags |= ccurl_cselect_in() }
            if events & Int32(UV_WRITABLE.rawValue) != 0 { flags |= ccurl_cselect_out() }
        }
        var running: Int32 = 0
        curl_multi_socket_action(multi, fd, flags, &running)
        completeFinishedTransfers()
    }

    /// Drains `curl_multi_info_read`, releases finished transfers, then runs their completions.
    private func completeFinishedTransfers() {
        guard let multi else { return }
        var finished: [(HTTPTransfer, HTTPClientResponse)] = []
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(multi, &remaining) {
            guard ccurl_msg_is_done(message) != 0, let easy = ccurl_msg_easy(message) else { continue }
            let result = ccurl_msg_result(message)
            guard let transfer = transfers.removeValue(forKey: easy) else { continue }
            let response = transfer.response(result: result)
            curl_multi_remove_handle(multi, easy)
            transfer.cleanup()
            finished.append((transfer, response))
        }
        for (transfer, response) in finished {
            transfer.completion(response)
        }
    }

    // MARK: LoopHandleOwner (the timer)

    func closeForShutdown() { close() }

    func handleDidClose(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        state = .closed
    }

    fileprivate func socketClosedForShutdown() { close() }
}

// MARK: - Sockets

/// One curl socket watched with a `uv_poll_t`.
private final class CurlSocket: LoopHandleOwner {
    let fd: curl_socket_t
    private let handle: UnsafeMutablePointer<uv_poll_t>
    private var state: HandleState = .open
    private weak var client: HTTPClient?

    init?(loop: EventLoop, fd: curl_socket_t, client: HTTPClient) {
        self.fd = fd
        self.client = client
        handle = allocateUV(uv_poll_t.self)
        if uv_poll_init_socket(loop.uvLoop, handle, fd) < 0 {
            free(handle)
            return nil
        }
        attachOwner(self, to: uvHandle(handle))
    }

    func watch(events: Int32) {
        guard state == .open else { return }
        if events == 0 {
            uv_poll_stop(handle)
        } else {
            uv_poll_start(handle, events, curlSocketReady)
        }
    }

    func close() {
        guard state == .open else { return }
        state = .closing
        closeUVHandle(uvHandle(handle))
    }

    fileprivate func ready(status: Int32, events: Int32) {
        guard state == .open else { return }
        client?.socketReady(fd: fd, status: status, events: events)
    }

    func closeForShutdown() {
        client?.socketClosedForShutdown()
        close()
    }

    func handleDidClose(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        state = .closed
    }
}

// MARK: - Transfers

/// One easy handle and the state of its response.
private final class HTTPTransfer {
    let easy: UnsafeMutableRawPointer
    let request: HTTPClientRequest
    let completion: (HTTPClientResponse) -> Void
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer: UnsafeMutablePointer<CChar>
    private var body: [UInt8] = []
    private var headers: [(name: String, value: String)] = []
    private var exceededLimit = false
    private var cleanedUp = false

    init(easy: UnsafeMutableRawPointer, request: HTTPClientRequest, completion: @escaping (HTTPClientResponse) -> Void) {
        self.easy = easy
        self.request = request
        self.completion = completion
        let size = ccurl_error_size()
        errorBuffer = .allocate(capacity: size)
        errorBuffer.initialize(repeating: 0, count: size)
    }

    deinit {
        errorBuffer.deallocate()
    }

    /// Sets the curl options; returns a problem description on failure.
    func configure() -> String? {
        let me = Unmanaged.passUnretained(self).toOpaque()
        var failures: [String] = []
        func check(_ rc: CURLcode, _ what: String) {
            if rc != CURLE_OK { failures.append("\(what): \(String(cString: curl_easy_strerror(rc)))") }
        }
        check(ccurl_easy_setopt_string(easy, CURLOPT_URL, request.url), "URL")
        check(ccurl_easy_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "http,https"), "protocols")
        check(ccurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1), "nosignal")
        check(ccurl_easy_setopt_ptr(easy, CURLOPT_PRIVATE, me), "private")
        check(ccurl_easy_setopt_ptr(easy, CURLOPT_ERRORBUFFER, errorBuffer), "error buffer")
        check(ccurl_easy_setopt_datacb(easy, CURLOPT_WRITEFUNCTION, curlWriteBody), "write function")
        check(ccurl_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, me), "write data")
        check(ccurl_easy_setopt_datacb(easy, CURLOPT_HEADERFUNCTION, curlWriteHeader), "header function")
        check(ccurl_easy_setopt_ptr(easy, CURLOPT_HEADERDATA, me), "header data")
        let timeout = Int(clamping: request.timeoutMilliseconds)
        check(ccurl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, timeout), "timeout")
        check(ccurl_easy_setopt_off(easy, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(request.maxResponseBytes)), "max size")

        let method = request.method.uppercased()
        let sendsBody = !request.body.isEmpty || ["POST", "PUT", "PATCH"].contains(method)
        switch method {
        case "GET" where !sendsBody:
            check(ccurl_easy_setopt_long(easy, CURLOPT_HTTPGET, 1), "GET")
        case "HEAD":
            check(ccurl_easy_setopt_long(easy, CURLOPT_NOBODY, 1), "HEAD")
        case "POST":
            break
        default:
            check(ccurl_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, method), "method")
        }
        if sendsBody && method != "HEAD" {
            check(ccurl_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)), "body size")
            if request.body.isEmpty {
                check(ccurl_easy_setopt_string(easy, CURLOPT_COPYPOSTFIELDS, ""), "body")
            } else {
                request.body.withUnsafeBytes { raw in
                    check(ccurl_easy_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: raw.baseAddress)), "body")
                }
            }
        }

        var hasExpect = false
        for (name, value) in request.headers {
            guard HTTPResponseSerializer.isValidHeaderName(name), HTTPResponseSerializer.isValidHeaderValue(value) else {
                failures.append("invalid request header \(name)")
                continue
            }
            if name.lowercased() == "expect" { hasExpect = true }
            // "Name;" is curl's spelling of a header with an empty value ("Name:" would remove the header).
            headerList = curl_slist_append(headerList, value.isEmpty ? "\(name);" : "\(name): \(value)")
        }
        if !hasExpect {
            // Never wait for "100 Continue" before sending a body.
            headerList = curl_slist_append(headerList, "Expect:")
        }
        check(ccurl_easy_setopt_ptr(easy, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headerList)), "headers")
        return failures.isEmpty ? nil : failures.joined(separator: "; ")
    }

    fileprivate func appendBody(_ data: UnsafeRawBufferPointer) -> Bool {
        if body.count + data.count > request.maxResponseBytes {
            exceededLimit = true
            return false
        }
        body.append(contentsOf: data)
        return true
    }

    fileprivate func appendHeaderLine(_ data: UnsafeRawBufferPointer) {
        // Trim the line ending on bytes: in Swift "\r\n" is a single Character.
        var end = data.count
        while end > 0 && (data[end - 1] == 13 || data[end - 1] == 10) { end -= 1 }
        let line = String(decoding: UnsafeRawBufferPointer(rebasing: data[0..<end]), as: UTF8.self)
        if line.hasPrefix("HTTP/") {
            // A new response starts (after 1xx or a redirect): forget the previous headers.
            headers.removeAll()
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].lowercased()
        let value = String(line[line.index(after: colon)...]).trimmingASCIIWhitespace
        headers.append((name: name, value: String(value)))
    }

    func response(result: CURLcode) -> HTTPClientResponse {
        if result == CURLE_OK {
            var status = 0
            _ = ccurl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            return HTTPClientResponse(status: status, error: nil, headers: headers, body: body)
        }
        if exceededLimit || result == CURLE_FILESIZE_EXCEEDED {
            return .failure("response body exceeds \(request.maxResponseBytes) bytes")
        }
        let detail = String(cString: errorBuffer)
        return .failure(detail.isEmpty ? String(cString: curl_easy_strerror(result)) : detail)
    }

    func cleanup() {
        guard !cleanedUp else { return }
        cleanedUp = true
        curl_easy_cleanup(easy)
        curl_slist_free_all(headerList)
        headerList = nil
    }
}

// MARK: - C callbacks

private func curlSocketCallback(_ easy: UnsafeMutableRawPointer?, _ fd: curl_socket_t, _ what: Int32,
                                _ userp: UnsafeMutableRawPointer?, _ socketp: UnsafeMutableRawPointer?) -> Int32 {
    guard let userp else { return 0 }
    Unmanaged<HTTPClient>.fromOpaque(userp).takeUnretainedValue().socketCallback(fd: fd, what: what, socketp: socketp)
    return 0
}

private func curlTimerCallback(_ multi: UnsafeMutableRawPointer?, _ timeoutMilliseconds: Int,
                               _ userp: UnsafeMutableRawPointer?) -> Int32 {
    guard let userp else { return 0 }
    Unmanaged<HTTPClient>.fromOpaque(userp).takeUnretainedValue().timerCallback(timeoutMilliseconds: timeoutMilliseconds)
    return 0
}

private func curlTimerExpired(_ handle: UnsafeMutablePointer<uv_timer_t>?) {
    handleOwner(handle, as: HTTPClient.self).timerExpired()
}

private func curlSocketReady(_ handle: UnsafeMutablePointer<uv_poll_t>?, _ status: Int32, _ events: Int32) {
    handleOwner(handle, as: CurlSocket.self).ready(status: status, events: events)
}

private func curlWriteBody(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int,
                           _ userdata: UnsafeMutableRawPointer?) -> Int {
    guard let userdata else { return 0 }
    let length = size * count
    let transfer = Unmanaged<HTTPTransfer>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.appendBody(UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
}

private func curlWriteHeader(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int,
                             _ userdata: UnsafeMutableRawPointer?) -> Int {
    guard let userdata else { return 0 }
    let length = size * count
    Unmanaged<HTTPTransfer>.fromOpaque(userdata).takeUnretainedValue()
        .appendHeaderLine(UnsafeRawBufferPointer(start: data, count: length))
    return length
}
