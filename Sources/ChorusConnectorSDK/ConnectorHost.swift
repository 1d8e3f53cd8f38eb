import CChorusPlugin
import ChorusJSON
#if canImport(Glibc)
import Glibc
#endif

/// The outcome of `ConnectorHost.emit`.
public enum EmitResult: Sendable, Equatable {
    /// Durably committed under this Chorus id: acknowledge the channel.
    case committed(String)
    /// Seen before (a channel retry): acknowledge the channel too.
    case duplicate
    /// The event does not follow the schema: a connector bug.
    case invalid(String)
    /// Could not commit (disk full, shutting down): make the channel retry.
    case unavailable(String)
}

/// The outcome of a send, reported with `ConnectorHost.sendResult`.
public enum SendOutcome: Sendable, Equatable {
    case sent(channelMessageId: String?)
    case retryable(code: String?, message: String, retryAfterMs: UInt32 = 0)
    case permanent(code: String?, message: String)
}

/// An inbound HTTP request on one of the connector's routes.
public struct IncomingRequest: Sendable {
    public let method: String
    public let path: String
    public let query: String
    public let headers: [(name: String, value: String)]
    public let body: [UInt8]
    public let remoteAddress: String
    /// First header with this (lower-case) name.
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name == n }?.value
    }
    /// Query parameters, percent-decoded.
    public var queryItems: [(String, String)] {
        query.split(separator: "&").map { item in
            let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
            return (percentDecode(kv[0]), kv.count > 1 ? percentDecode(kv[1]) : "")
        }
    }
}

func percentDecode(_ s: String) -> String {
    var out = [UInt8]()
    let b = Array(s.utf8)
    var i = 0
    while i < b.count {
        if b[i] == UInt8(ascii: "+") { out.append(0x20); i += 1; continue }
        if b[i] == UInt8(ascii: "%"), i + 2 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) {
            out.append(v); i += 3; continue
        }
        out.append(b[i]); i += 1
    }
    return String(decoding: out, as: UTF8.self)
}

/// Answers an `IncomingRequest` exactly once.
public final class Responder {
    private var exchange: OpaquePointer?
    private let api: UnsafePointer<chorus_host_api>
    init(exchange: OpaquePointer, api: UnsafePointer<chorus_host_api>) { self.exchange = exchange; self.api = api }

    public var isAnswered: Bool { exchange == nil }

    public func respond(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        guard let ex = exchange else { return }
        exchange = nil
        withKV(headers) { kv, n in
            body.withUnsafeBufferPointer { b in
                _ = api.pointee.http_respond(ex, Int32(status), kv, n, b.baseAddress, b.count)
            }
        }
    }

    public func respond(status: Int, json: JSONValue) {
        respond(status: status, headers: [("Content-Type", "application/json")], body: JSONWriter.encode(json))
    }

    deinit {
        // A connector that forgot to answer: answer for it so the client is not left hanging.
        if exchange != nil { respond(status: 500, headers: [("Content-Type", "text/plain")], body: Array("connector did not answer\n".utf8)) }
    }
}

/// A response from `ConnectorHost.request`.
public struct HTTPResult: Sendable {
    public let status: Int
    public let error: String?
    public let headers: [(name: String, value: String)]
    public let body: [UInt8]
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name == n }?.value
    }
}

/// Log levels for `ConnectorHost.log`.
public enum LogLevel: Sendable {
    case trace, debug, info, notice, warning, error, critical
    var c: chorus_log_level {
        switch self {
        case .trace: return CHORUS_LOG_TRACE
        case .debug: return CHORUS_LOG_DEBUG
        case .info: return CHORUS_LOG_INFO
        case .notice: return CHORUS_LOG_NOTICE
        case .warning: return CHORUS_LOG_WARNING
        case .error: return CHORUS_LOG_ERROR
        case .critical: return CHORUS_LOG_CRITICAL
        }
    }
}

/// The host API as Swift: what a connector can ask of chorusd.
///
/// Loop-thread only, except `post`.
public final class ConnectorHost: @unchecked Sendable {
    let api: UnsafePointer<chorus_host_api>
    let handle: OpaquePointer

    init(api: UnsafePointer<chorus_host_api>, handle: OpaquePointer) {
        self.api = api
        self.handle = handle
    }

    public func log(_ level: LogLevel, _ message: String, _ fields: [(String, String)] = []) {
        withKV(fields) { kv, n in
            message.withCString { m in api.pointee.log(handle, level.c, m, kv, n) }
        }
    }

    /// Commits an inbound event (normalized schema JSON); `completion` runs once, on the loop.
    public func emit(_ event: JSONValue, completion: @escaping (EmitResult) -> Void) {
        emit(json: JSONWriter.encode(event), completion: completion)
    }

    public func emit(json: [UInt8], completion: @escaping (EmitResult) -> Void) {
        let box = Unmanaged.passRetained(Box(completion)).toOpaque()
        let status = json.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { c in
                api.pointee.emit_event(handle, c.baseAddress, c.count, { ud, status, id, detail in
                    let done = Unmanaged<Box<(EmitResult) -> Void>>.fromOpaque(ud!).takeRetainedValue().value
                    let d = detail.map { String(cString: $0) } ?? ""
                    switch status {
                    case CHORUS_OK: done(.committed(id.map { String(cString: $0) } ?? ""))
                    case CHORUS_ERR_DUPLICATE: done(.duplicate)
                    case CHORUS_ERR_INVALID: done(.invalid(d))
                    default: done(.unavailable(d.isEmpty ? "status \(status.rawValue)" : d))
                    }
                }, box)
            }
        }
        if status != CHORUS_OK {
            let done = Unmanaged<Box<(EmitResult) -> Void>>.fromOpaque(box).takeRetainedValue().value
            done(status == CHORUS_ERR_INVALID ? .invalid("refused by host") : .unavailable("host refused the event (status \(status.rawValue))"))
        }
    }

    /// Reports the outcome of a send. Exactly once per `SendID`.
    public func sendResult(_ id: SendID, _ outcome: SendOutcome) {
        var r = chorus_send_result()
        r.struct_size = UInt32(MemoryLayout<chorus_send_result>.size)
        let cmid: String?, code: String?, message: String?
        switch outcome {
        case .sent(let m):
            r.outcome = CHORUS_SEND_SENT.rawValue; cmid = m; code = nil; message = nil
        case .retryable(let c, let m, let after):
            r.outcome = CHORUS_SEND_FAILED_RETRYABLE.rawValue; cmid = nil; code = c; message = m; r.retry_after_ms = after
        case .permanent(let c, let m):
            r.outcome = CHORUS_SEND_FAILED_PERMANENT.rawValue; cmid = nil; code = c; message = m
        }
        withCString(cmid) { a in
            withCString(code) { b in
                withCString(message) { c in
                    r.channel_message_id = a; r.error_code = b; r.error_message = c
                    _ = api.pointee.send_result(handle, id.rawValue, &r)
                }
            }
        }
    }

    /// Registers a route, mounted at `/webhooks/<instance><path>`. `path` ending in `*` matches a prefix.
    public func route(_ method: String, _ path: String, _ handler: @escaping (IncomingRequest, Responder) -> Void) throws {
        let box = Unmanaged.passRetained(RouteBox(handler: handler, api: api)).toOpaque()
        let status = api.pointee.http_route(handle, method, path, { ud, ex, req in
            let rb = Unmanaged<RouteBox>.fromOpaque(ud!).takeUnretainedValue()
            guard let ex, let req else { return }
            var headers: [(name: String, value: String)] = []
            if let h = req.pointee.headers {
                for i in 0..<Int(req.pointee.header_count) {
                    if let k = h[i].key, let v = h[i].value { headers.append((String(cString: k), String(cString: v))) }
                }
            }
            let body = req.pointee.body.map { Array(UnsafeBufferPointer(start: $0, count: req.pointee.body_length)) } ?? []
            let incoming = IncomingRequest(
                method: String(cString: req.pointee.method), path: String(cString: req.pointee.path),
                query: req.pointee.query.map { String(cString: $0) } ?? "", headers: headers, body: body,
                remoteAddress: req.pointee.remote_address.map { String(cString: $0) } ?? "")
            rb.handler(incoming, Responder(exchange: ex, api: rb.api))
        }, box)
        if status != CHORUS_OK {
            Unmanaged<RouteBox>.fromOpaque(box).release()
            throw ConnectorError("cannot register route \(method) \(path) (status \(status.rawValue))", status: status)
        }
    }

    /// An outbound HTTP request (TLS, timeouts) run by the host's libcurl; `completion` runs once on the loop.
    public func request(method: String = "GET", url: String, headers: [(String, String)] = [], body: [UInt8] = [],
                        timeoutMs: UInt32 = 0, completion: @escaping (HTTPResult) -> Void)
    {
        let box = Unmanaged.passRetained(Box(completion)).toOpaque()
        let status: chorus_status = withKV(headers) { kv, n in
            method.withCString { m in
                url.withCString { u in
                    body.withUnsafeBufferPointer { b in
                        var r = chorus_http_client_request()
                        r.struct_size = UInt32(MemoryLayout<chorus_http_client_request>.size)
                        r.method = m; r.url = u; r.headers = kv; r.header_count = UInt32(n)
                        r.body = b.baseAddress; r.body_length = b.count; r.timeout_ms = timeoutMs
                        return api.pointee.http_request(handle, &r, { ud, resp in
                            let done = Unmanaged<Box<(HTTPResult) -> Void>>.fromOpaque(ud!).takeRetainedValue().value
                            guard let resp else { done(HTTPResult(status: 0, error: "no response", headers: [], body: [])); return }
                            var headers: [(name: String, value: String)] = []
                            if let h = resp.pointee.headers {
                                for i in 0..<Int(resp.pointee.header_count) {
                                    if let k = h[i].key, let v = h[i].value { headers.append((String(cString: k), String(cString: v))) }
                                }
                            }
                            let body = resp.pointee.body.map { Array(UnsafeBufferPointer(start: $0, count: resp.pointee.body_length)) } ?? []
                            done(HTTPResult(status: Int(resp.pointee.status), error: resp.pointee.error.map { String(cString: $0) },
                                            headers: headers, body: body))
                        }, box)
                    }
                }
            }
        }
        if status != CHORUS_OK {
            let done = Unmanaged<Box<(HTTPResult) -> Void>>.fromOpaque(box).takeRetainedValue().value
            done(HTTPResult(status: 0, error: "host refused the request (status \(status.rawValue))", headers: [], body: []))
        }
    }

    /// A timer; returns its id (for `cancelTimer`). `repeatMs` 0 = one shot.
    @discardableResult
    public func timer(afterMs: UInt64, repeatMs: UInt64 = 0, _ callback: @escaping () -> Void) -> UInt64 {
        let tb = TimerBox(callback: callback, oneShot: repeatMs == 0, host: self)
        let box = Unmanaged.passUnretained(tb).toOpaque()
        let id = api.pointee.timer_start(handle, afterMs, repeatMs, { ud in
            let tb = Unmanaged<TimerBox>.fromOpaque(ud!).takeUnretainedValue()
            let callback = tb.callback
            if tb.oneShot, let host = tb.host { host.timers.removeValue(forKey: tb.id) }
            callback()
        }, box)
        if id != 0 { tb.id = id; timers[id] = tb }
        return id
    }

    public func cancelTimer(_ id: UInt64) {
        guard timers.removeValue(forKey: id) != nil else { return }
        api.pointee.timer_stop(handle, id)
    }

    private var timers: [UInt64: TimerBox] = [:]

    /// Watches a file descriptor the connector owns; returns the watch id or 0.
    @discardableResult
    public func watch(fd: Int32, readable: Bool, writable: Bool, _ callback: @escaping (_ status: Int32, _ readable: Bool, _ writable: Bool) -> Void) -> UInt64 {
        let box = Unmanaged.passRetained(Box(callback)).toOpaque()
        let ev = (readable ? CHORUS_FD_READABLE : 0) | (writable ? CHORUS_FD_WRITABLE : 0)
        let id = api.pointee.fd_watch(handle, fd, ev, { ud, status, events in
            Unmanaged<Box<(Int32, Bool, Bool) -> Void>>.fromOpaque(ud!).takeUnretainedValue()
                .value(status, events & CHORUS_FD_READABLE != 0, events & CHORUS_FD_WRITABLE != 0)
        }, box)
        if id == 0 { Unmanaged<Box<(Int32, Bool, Bool) -> Void>>.fromOpaque(box).release() } else { watchBoxes[id] = box }
        return id
    }

    public func unwatch(_ id: UInt64) {
        api.pointee.fd_unwatch(handle, id)
        if let b = watchBoxes.removeValue(forKey: id) { Unmanaged<Box<(Int32, Bool, Bool) -> Void>>.fromOpaque(b).release() }
    }

    private var watchBoxes: [UInt64: UnsafeMutableRawPointer] = [:]

    /// Runs `body` on the loop thread. Safe from any thread.
    public func post(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let status = api.pointee.post(handle, { ud in
            Unmanaged<Box<@Sendable () -> Void>>.fromOpaque(ud!).takeRetainedValue().value()
        }, box)
        if status != CHORUS_OK { Unmanaged<Box<@Sendable () -> Void>>.fromOpaque(box).release() }
    }

    /// Durable per-instance state.
    public func kvGet(_ key: String) -> [UInt8]? {
        var length = 0
        var status = api.pointee.kv_get(handle, key, nil, 0, &length)
        guard status == CHORUS_OK else { return nil }
        var buf = [UInt8](repeating: 0, count: length)
        status = buf.withUnsafeMutableBufferPointer { b in api.pointee.kv_get(handle, key, b.baseAddress, b.count, &length) }
        return status == CHORUS_OK ? Array(buf.prefix(length)) : nil
    }

    public func kvGetString(_ key: String) -> String? { kvGet(key).map { String(decoding: $0, as: UTF8.self) } }

    /// Stores (or, with nil, deletes) a value; durable when it returns true.
    @discardableResult
    public func kvPut(_ key: String, _ value: [UInt8]?) -> Bool {
        guard let value else { return api.pointee.kv_put(handle, key, nil, 0) == CHORUS_OK }
        return value.withUnsafeBufferPointer { b in api.pointee.kv_put(handle, key, b.baseAddress ?? UnsafePointer(bitPattern: 1), b.count) } == CHORUS_OK
    }

    /// Whether the host offers `kv_put_async` (ABI 1.1); without it `kvPut(_:_:completion:)` writes synchronously.
    public var hasAsyncKV: Bool { api.pointee.kv_put_async != nil }

    /// Stores (or, with nil, deletes) a value without waiting for the commit: `kvGet` sees it at once, the write
    /// joins the host's next group commit, and `completion(durable)` runs on the loop thread afterwards. Writes
    /// and emitted events of one instance become durable in call order, so an event emitted after this call is
    /// never durable before the write. On a host without `kv_put_async` this is `kvPut(_:_:)` followed by
    /// `completion` (still after the call returns).
    public func kvPut(_ key: String, _ value: [UInt8]?, completion: @escaping (Bool) -> Void) {
        guard let putAsync = api.pointee.kv_put_async else {
            let durable = kvPut(key, value)
            post { [box = UncheckedSendableBox(completion)] in box.value(durable) }
            return
        }
        let box = Unmanaged.passRetained(Box(completion)).toOpaque()
        let callback: chorus_kv_cb = { ud, status in
            Unmanaged<Box<(Bool) -> Void>>.fromOpaque(ud!).takeRetainedValue().value(status == CHORUS_OK)
        }
        let status: chorus_status
        if let value {
            status = value.withUnsafeBufferPointer { b in putAsync(handle, key, b.baseAddress ?? UnsafePointer(bitPattern: 1), b.count, callback, box) }
        } else {
            status = putAsync(handle, key, nil, 0, callback, box)
        }
        if status != CHORUS_OK {
            let done = Unmanaged<Box<(Bool) -> Void>>.fromOpaque(box).takeRetainedValue().value
            post { [box = UncheckedSendableBox(done)] in box.value(false) }
        }
    }

    public func setting(_ key: String) -> String? { api.pointee.setting(handle, key).map { String(cString: $0) } }

    public func count(_ name: String, _ delta: Int64 = 1) { api.pointee.counter_add(handle, name, delta) }

    /// Tells the host that `stop` has finished.
    public func stopped() { api.pointee.stopped(handle) }
}

final class Box<T> {
    let value: T
    init(_ value: T) { self.value = value }
}

final class TimerBox {
    let callback: () -> Void
    let oneShot: Bool
    weak var host: ConnectorHost?
    var id: UInt64 = 0
    init(callback: @escaping () -> Void, oneShot: Bool, host: ConnectorHost) {
        self.callback = callback; self.oneShot = oneShot; self.host = host
    }
}

final class RouteBox {
    let handler: (IncomingRequest, Responder) -> Void
    let api: UnsafePointer<chorus_host_api>
    init(handler: @escaping (IncomingRequest, Responder) -> Void, api: UnsafePointer<chorus_host_api>) {
        self.handler = handler; self.api = api
    }
}

func withCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}

func withKV<R>(_ pairs: [(String, String)], _ body: (UnsafePointer<chorus_kv>?, Int) -> R) -> R {
    var owned: [UnsafeMutablePointer<CChar>] = []
    var kvs: [chorus_kv] = []
    for (k, v) in pairs {
        let kp = strdup(k)!, vp = strdup(v)!
        owned.append(kp); owned.append(vp)
        kvs.append(chorus_kv(key: kp, value: vp))
    }
    defer { for p in owned { free(p) } }
    return kvs.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
}

/// Carries a loop-thread closure through `post`, whose body must be Sendable; it runs on the loop thread again.
final class UncheckedSendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
