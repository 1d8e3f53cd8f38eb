import CChorusPlugin
import ChorusJSON
import ChorusLoop
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// What the daemon provides to plugin instances. Every method is called on the loop thread.
public protocol PluginInstanceDelegate: AnyObject {
    /// Commit an inbound event; `completion` runs once on the loop after the commit or refusal.
    func instance(_ instance: PluginInstance, emit json: [UInt8],
                  completion: @escaping (_ status: chorus_status, _ chorusId: String?, _ detail: String?) -> Void)
    /// The outcome of a send (exactly once per send id; the instance already checked that).
    func instance(_ instance: PluginInstance, sendId: UInt64, outcome: chorus_send_outcome, channelMessageId: String?,
                  errorCode: String?, errorMessage: String?, retryAfterMs: UInt32)
    /// Mount an HTTP route for this instance. Returns false if the route is taken.
    func instance(_ instance: PluginInstance, route method: String, path: String,
                  handler: @escaping (HTTPRequest, HTTPResponder) -> Void) -> Bool
    func instance(_ instance: PluginInstance, kvGet key: String) -> [UInt8]?
    /// Durable when it returns true.
    func instance(_ instance: PluginInstance, kvPut key: String, value: [UInt8]?) -> Bool
    /// Queues the write into the next commit; `kvGet` sees it at once; `completion(durable)` runs later
    /// on the loop, and writes of one instance (with its events) become durable in call order.
    func instance(_ instance: PluginInstance, kvPutAsync key: String, value: [UInt8]?, completion: @escaping (Bool) -> Void)
    /// All pending sends have been reported after `stop`.
    func instanceStopped(_ instance: PluginInstance)
}

/// Lifecycle states of an instance.
public enum InstanceState: String, Sendable {
    case created, running, stopping, stopped, failed
}

/// Errors from an instance's lifecycle callbacks, with the plugin's own reason.
public struct PluginInstanceError: Error, CustomStringConvertible, Sendable {
    public let instance: String
    public let stage: String
    public let status: Int32
    public let reason: String
    public var description: String {
        "instance \"\(instance)\": \(stage) failed (status \(status))\(reason.isEmpty ? "" : ": \(reason)")"
    }
}

/// One running instance of a plugin, bridging the C host API to the daemon.
///
/// The `chorus_host_instance *` the plugin sees is this object (unretained);
/// the daemon keeps it alive until after `destroy`.
public final class PluginInstance {
    public let name: String
    public let plugin: LoadedPlugin
    public private(set) var state: InstanceState = .created
    public private(set) var lastError: String?
    public weak var delegate: PluginInstanceDelegate?
    public let logger: Logger
    let loop: EventLoop
    /// Thread-safe: the only thing `post` touches.
    let poster: LoopPoster
    let httpClient: HTTPClient?
    private var instancePtr: UnsafeMutableRawPointer?
    private var settings: SettingsStorage
    private var timers: [UInt64: LoopTimer] = [:]
    private var watchers: [UInt64: FDWatcher] = [:]
    private var nextHandleId: UInt64 = 1
    /// Sends handed to the plugin and not yet reported.
    public private(set) var pendingSends: Set<UInt64> = []
    /// Counters the plugin maintains with counter_add.
    public private(set) var counters: [String: Int64] = [:]
    let stateDirectory: String

    public init(name: String, plugin: LoadedPlugin, settings: [(String, String)], stateDirectory: String,
                loop: EventLoop, httpClient: HTTPClient?, logger: Logger)
    {
        self.name = name
        self.plugin = plugin
        self.loop = loop
        self.poster = loop.poster
        self.httpClient = httpClient
        self.stateDirectory = stateDirectory
        var l = logger
        l[metadataKey: "instance"] = .string(name)
        l[metadataKey: "plugin"] = .string(plugin.name)
        self.logger = l
        self.settings = SettingsStorage(settings, instance: name, stateDirectory: stateDirectory)
    }

    deinit {
        for t in timers.values { t.close() }
        for w in watchers.values { w.close() }
    }

    var hostHandle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ p: OpaquePointer?) -> PluginInstance? {
        guard let p else { return nil }
        return Unmanaged<PluginInstance>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    }

    /// The setting value for `key`, as given to the plugin.
    public func setting(_ key: String) -> String? { settings.value(key) }

    func settingsCValue(_ key: String) -> UnsafePointer<CChar>? { settings.cValue(key) }

    // MARK: Lifecycle

    /// Calls the plugin's create with the host API and the settings.
    public func create() throws(PluginInstanceError) {
        var error = [CChar](repeating: 0, count: 1024)
        var out: UnsafeMutableRawPointer?
        let status = error.withUnsafeMutableBufferPointer { e in
            settings.withCSettings { s in
                plugin.vtable.pointee.create(HostAPI.table, hostHandle, s, &out, e.baseAddress, e.count)
            }
        }
        guard status == CHORUS_OK, let out else {
            state = .failed
            let reason = String(cString: error)
            lastError = "create failed: \(reason)"
            throw PluginInstanceError(instance: name, stage: "create", status: Int32(status.rawValue), reason: reason)
        }
        instancePtr = out
    }

    public func start() throws(PluginInstanceError) {
        guard let instancePtr else { throw PluginInstanceError(instance: name, stage: "start", status: -1, reason: "not created") }
        var error = [CChar](repeating: 0, count: 1024)
        let status = error.withUnsafeMutableBufferPointer { e in
            plugin.vtable.pointee.start(instancePtr, e.baseAddress, e.count)
        }
        guard status == CHORUS_OK else {
            state = .failed
            let reason = String(cString: error)
            lastError = "start failed: \(reason)"
            throw PluginInstanceError(instance: name, stage: "start", status: Int32(status.rawValue), reason: reason)
        }
        state = .running
    }

    /// New settings; on refusal the old ones stay in force.
    public func reload(settings new: [(String, String)]) throws(PluginInstanceError) {
        guard let instancePtr else { return }
        let storage = SettingsStorage(new, instance: name, stateDirectory: stateDirectory)
        guard let reload = plugin.vtable.pointee.reload else {
            throw PluginInstanceError(instance: name, stage: "reload", status: Int32(CHORUS_ERR_UNSUPPORTED.rawValue),
                                      reason: "the plugin cannot reload; restart the instance")
        }
        var error = [CChar](repeating: 0, count: 1024)
        let status = error.withUnsafeMutableBufferPointer { e in
            storage.withCSettings { s in reload(instancePtr, s, e.baseAddress, e.count) }
        }
        guard status == CHORUS_OK else {
            throw PluginInstanceError(instance: name, stage: "reload", status: Int32(status.rawValue), reason: String(cString: error))
        }
        settings = storage
    }

    /// Hands an outbound message to the plugin. A non-OK return is a synchronous permanent failure.
    public func send(id: UInt64, json: [UInt8]) -> chorus_status {
        guard state == .running, let instancePtr else { return CHORUS_ERR_UNAVAILABLE }
        pendingSends.insert(id)
        let status = json.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { c in plugin.vtable.pointee.send(instancePtr, id, c.baseAddress, c.count) }
        }
        if status != CHORUS_OK { pendingSends.remove(id) }
        return status
    }

    /// Asks the plugin to stop; `delegate.instanceStopped` follows when it reports back.
    public func stop() {
        guard state == .running || state == .created, let instancePtr else {
            if state != .stopped { state = .stopped; delegate?.instanceStopped(self) }
            return
        }
        state = .stopping
        plugin.vtable.pointee.stop(instancePtr)
    }

    /// Frees the plugin's instance. No callback from the plugin is accepted afterwards.
    public func destroy() {
        for t in timers.values { t.close() }
        timers.removeAll()
        for w in watchers.values { w.close() }
        watchers.removeAll()
        if let instancePtr { plugin.vtable.pointee.destroy(instancePtr) }
        instancePtr = nil
        state = .stopped
    }

    /// The daemon gave up waiting for the plugin to stop.
    public func forceStopped() {
        if state == .stopping { state = .stopped }
    }

    // MARK: Host API implementation (called from HostAPI trampolines)

    func hostEmit(_ bytes: [UInt8], cb: chorus_emit_cb?, userData: UnsafeMutableRawPointer?) -> chorus_status {
        guard state == .running || state == .stopping else { return CHORUS_ERR_UNAVAILABLE }
        guard let delegate else { return CHORUS_ERR_UNAVAILABLE }
        counters["events_emitted", default: 0] += 1
        let ud = UnsafeMutableRawPointer(userData)
        delegate.instance(self, emit: bytes) { status, id, detail in
            guard let cb else { return }
            withOptionalCString(id) { idp in withOptionalCString(detail) { dp in cb(ud, status, idp, dp) } }
        }
        return CHORUS_OK
    }

    func hostSendResult(_ id: UInt64, _ r: UnsafePointer<chorus_send_result>) -> chorus_status {
        guard pendingSends.remove(id) != nil else {
            logger.error("plugin reported a result for send \(id), which is not pending (unknown or already reported); ignored")
            return CHORUS_ERR_NOT_FOUND
        }
        let outcome = chorus_send_outcome(rawValue: r.pointee.outcome)
        guard outcome == CHORUS_SEND_SENT || outcome == CHORUS_SEND_FAILED_RETRYABLE || outcome == CHORUS_SEND_FAILED_PERMANENT else {
            pendingSends.insert(id)
            return CHORUS_ERR_INVALID
        }
        delegate?.instance(self, sendId: id, outcome: outcome,
                           channelMessageId: r.pointee.channel_message_id.map { String(cString: $0) },
                           errorCode: r.pointee.error_code.map { String(cString: $0) },
                           errorMessage: r.pointee.error_message.map { String(cString: $0) },
                           retryAfterMs: r.pointee.retry_after_ms)
        if state == .stopping && pendingSends.isEmpty {
            // Some plugins report their last send from stop and call stopped() too; both paths are fine.
        }
        return CHORUS_OK
    }

    func hostRoute(method: String, path: String, handler: chorus_http_handler?, userData: UnsafeMutableRawPointer?) -> chorus_status {
        guard let handler, let delegate else { return CHORUS_ERR_INVALID }
        guard path.hasPrefix("/") else { return CHORUS_ERR_INVALID }
        let ud = userData
        let ok = delegate.instance(self, route: method.uppercased(), path: path) { [weak self] request, responder in
            guard let self, self.state == .running || self.state == .stopping else {
                responder.respond(status: 503, headers: [("Content-Type", "text/plain")], body: Array("instance not running\n".utf8))
                return
            }
            let exchange = ExchangeBox(responder: responder)
            let ex = OpaquePointer(Unmanaged.passRetained(exchange).toOpaque())
            withCRequest(request) { creq in handler(ud, ex, creq) }
        }
        return ok ? CHORUS_OK : CHORUS_ERR_DUPLICATE
    }

    func hostHTTPRequest(_ r: UnsafePointer<chorus_http_client_request>, cb: chorus_http_client_cb?,
                         userData: UnsafeMutableRawPointer?) -> chorus_status
    {
        guard let httpClient, let cb else { return CHORUS_ERR_UNAVAILABLE }
        guard let urlp = r.pointee.url else { return CHORUS_ERR_INVALID }
        var req = HTTPClientRequest(method: r.pointee.method.map { String(cString: $0) } ?? "GET", url: String(cString: urlp))
        if let h = r.pointee.headers {
            for i in 0..<Int(r.pointee.header_count) {
                guard let k = h[i].key, let v = h[i].value else { continue }
                req.headers.append((String(cString: k), String(cString: v)))
            }
        }
        if let b = r.pointee.body, r.pointee.body_length > 0 {
            req.body = Array(UnsafeBufferPointer(start: b, count: r.pointee.body_length))
        }
        if r.pointee.timeout_ms > 0 { req.timeoutMilliseconds = UInt64(r.pointee.timeout_ms) }
        if r.pointee.max_response_bytes > 0 { req.maxResponseBytes = Int(r.pointee.max_response_bytes) }
        counters["http_requests", default: 0] += 1
        let ud = userData
        httpClient.execute(req) { response in
            withCResponse(response) { cr in cb(ud, cr) }
        }
        return CHORUS_OK
    }

    func hostTimerStart(timeout: UInt64, repeatMs: UInt64, cb: chorus_timer_cb?, userData: UnsafeMutableRawPointer?) -> UInt64 {
        guard let cb else { return 0 }
        let id = nextHandleId; nextHandleId += 1
        let t = LoopTimer(loop: loop)
        timers[id] = t
        let ud = userData
        t.start(timeoutMilliseconds: timeout, repeatMilliseconds: repeatMs) { [weak self] in
            if repeatMs == 0 { self?.timers.removeValue(forKey: id)?.close() }
            cb(ud)
        }
        return id
    }

    func hostTimerStop(_ id: UInt64) { timers.removeValue(forKey: id)?.close() }

    func hostFDWatch(fd: Int32, events: Int32, cb: chorus_fd_cb?, userData: UnsafeMutableRawPointer?) -> UInt64 {
        guard let cb else { return 0 }
        let id = nextHandleId; nextHandleId += 1
        let ud = userData
        do {
            let w = try FDWatcher(loop: loop, fd: fd, events: FDEvents(cEvents: events)) { status, ev in
                cb(ud, status, ev.cEvents)
            }
            watchers[id] = w
            return id
        } catch {
            logger.error("fd_watch(\(fd)) failed: \(error)")
            return 0
        }
    }

    func hostFDUpdate(_ id: UInt64, events: Int32) -> chorus_status {
        guard let w = watchers[id] else { return CHORUS_ERR_NOT_FOUND }
        do { try w.update(events: FDEvents(cEvents: events)); return CHORUS_OK } catch { return CHORUS_ERR_INTERNAL }
    }

    func hostFDUnwatch(_ id: UInt64) { watchers.removeValue(forKey: id)?.close() }

    func hostKVGet(_ key: String, buffer: UnsafeMutablePointer<UInt8>?, capacity: Int, length: UnsafeMutablePointer<Int>?) -> chorus_status {
        guard let value = delegate?.instance(self, kvGet: key) else { return CHORUS_ERR_NOT_FOUND }
        length?.pointee = value.count
        if let buffer, capacity > 0 {
            value.withUnsafeBufferPointer { v in buffer.update(from: v.baseAddress!, count: min(capacity, v.count)) }
        }
        return CHORUS_OK
    }

    func hostKVPut(_ key: String, value: [UInt8]?) -> chorus_status {
        guard let delegate else { return CHORUS_ERR_UNAVAILABLE }
        return delegate.instance(self, kvPut: key, value: value) ? CHORUS_OK : CHORUS_ERR_UNAVAILABLE
    }

    func hostKVPutAsync(_ key: String, value: [UInt8]?, cb: chorus_kv_cb?, userData: UnsafeMutableRawPointer?) -> chorus_status {
        guard let delegate else { return CHORUS_ERR_UNAVAILABLE }
        let call = KVCallback(cb: cb, userData: userData)
        delegate.instance(self, kvPutAsync: key, value: value) { durable in
            call.cb?(call.userData, durable ? CHORUS_OK : CHORUS_ERR_UNAVAILABLE)
        }
        return CHORUS_OK
    }

    func hostCounterAdd(_ name: String, _ delta: Int64) { counters[name, default: 0] += delta }

    func hostStopped() {
        guard state == .stopping || state == .running else { return }
        state = .stopped
        delegate?.instanceStopped(self)
    }

    func hostLog(level: chorus_log_level, message: String, fields: [(String, String)]) {
        var metadata = Logger.Metadata()
        for (k, v) in fields { metadata[k] = .string(v) }
        let l: Logger.Level
        switch level {
        case CHORUS_LOG_TRACE: l = .trace
        case CHORUS_LOG_DEBUG: l = .debug
        case CHORUS_LOG_INFO: l = .info
        case CHORUS_LOG_NOTICE: l = .notice
        case CHORUS_LOG_WARNING: l = .warning
        case CHORUS_LOG_ERROR: l = .error
        default: l = .critical
        }
        logger.log(level: l, "\(message)", metadata: metadata)
    }
}

/// An inbound HTTP request handed to a plugin, answered exactly once.
final class ExchangeBox {
    let responder: HTTPResponder
    init(responder: HTTPResponder) { self.responder = responder }
}

extension FDEvents {
    init(cEvents: Int32) {
        var e: FDEvents = []
        if cEvents & CHORUS_FD_READABLE != 0 { e.insert(.readable) }
        if cEvents & CHORUS_FD_WRITABLE != 0 { e.insert(.writable) }
        self = e
    }
    var cEvents: Int32 {
        (contains(.readable) ? CHORUS_FD_READABLE : 0) | (contains(.writable) ? CHORUS_FD_WRITABLE : 0)
    }
}

/// Keeps the C copies of an instance's settings alive while the plugin may read them.
final class SettingsStorage {
    let pairs: [(String, String)]
    private var keys: [UnsafeMutablePointer<CChar>] = []
    private var values: [UnsafeMutablePointer<CChar>] = []
    private let items: UnsafeMutablePointer<chorus_kv>
    private let instanceName: UnsafeMutablePointer<CChar>
    private let stateDir: UnsafeMutablePointer<CChar>

    init(_ pairs: [(String, String)], instance: String, stateDirectory: String) {
        self.pairs = pairs
        items = .allocate(capacity: max(pairs.count, 1))
        for (i, (k, v)) in pairs.enumerated() {
            let kp = strdup(k)!, vp = strdup(v)!
            keys.append(kp); values.append(vp)
            items[i] = chorus_kv(key: kp, value: vp)
        }
        instanceName = strdup(instance)!
        stateDir = strdup(stateDirectory)!
    }

    deinit {
        for p in keys { free(p) }
        for p in values { free(p) }
        items.deallocate()
        free(instanceName)
        free(stateDir)
    }

    func value(_ key: String) -> String? { pairs.last { $0.0 == key }?.1 }

    func cValue(_ key: String) -> UnsafePointer<CChar>? {
        guard let i = pairs.lastIndex(where: { $0.0 == key }) else { return nil }
        return UnsafePointer(values[i])
    }

    func withCSettings<R>(_ body: (UnsafePointer<chorus_settings>) -> R) -> R {
        var s = chorus_settings()
        s.struct_size = UInt32(MemoryLayout<chorus_settings>.size)
        s.count = UInt32(pairs.count)
        s.items = UnsafePointer(items)
        s.instance_name = UnsafePointer(instanceName)
        s.state_dir = UnsafePointer(stateDir)
        return withUnsafePointer(to: &s) { body($0) }
    }
}

func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}

/// Builds a C array of key/value pairs that lives for the duration of `body`.
func withCKV<R>(_ pairs: [(name: String, value: String)], _ body: (UnsafePointer<chorus_kv>?, Int) -> R) -> R {
    var owned: [UnsafeMutablePointer<CChar>] = []
    owned.reserveCapacity(pairs.count * 2)
    var kvs: [chorus_kv] = []
    kvs.reserveCapacity(pairs.count)
    for p in pairs {
        let k = strdup(p.name)!, v = strdup(p.value)!
        owned.append(k); owned.append(v)
        kvs.append(chorus_kv(key: k, value: v))
    }
    defer { for p in owned { free(p) } }
    return kvs.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
}

func withCRequest(_ r: HTTPRequest, _ body: (UnsafePointer<chorus_http_request>) -> Void) {
    withCKV(r.headers) { headers, count in
        r.method.withCString { m in
            r.path.withCString { p in
                r.query.withCString { q in
                    r.remoteAddress.withCString { ra in
                        r.body.withUnsafeBufferPointer { b in
                            var c = chorus_http_request()
                            c.struct_size = UInt32(MemoryLayout<chorus_http_request>.size)
                            c.header_count = UInt32(count)
                            c.method = m; c.path = p; c.query = q; c.headers = headers
                            c.body = b.baseAddress; c.body_length = b.count; c.remote_address = ra
                            withUnsafePointer(to: &c) { body($0) }
                        }
                    }
                }
            }
        }
    }
}

func withCResponse(_ r: HTTPClientResponse, _ body: (UnsafePointer<chorus_http_client_response>) -> Void) {
    withCKV(r.headers) { headers, count in
        withOptionalCString(r.error) { err in
            r.body.withUnsafeBufferPointer { b in
                var c = chorus_http_client_response()
                c.struct_size = UInt32(MemoryLayout<chorus_http_client_response>.size)
                c.status = Int32(r.status)
                c.error = err
                c.headers = headers
                c.header_count = UInt32(count)
                c.body = b.baseAddress
                c.body_length = b.count
                withUnsafePointer(to: &c) { body($0) }
            }
        }
    }
}

/// A plugin's kv_put_async callback, called back on the loop thread.
struct KVCallback: @unchecked Sendable {
    let cb: chorus_kv_cb?
    let userData: UnsafeMutableRawPointer?
}
