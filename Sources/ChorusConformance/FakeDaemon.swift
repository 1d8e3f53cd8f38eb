// FakeDaemon.swift — an in-process stand-in for chorusd behind the plugin host API.
//
// `FakeDaemon` implements `PluginInstanceDelegate` the way the daemon does (asynchronous commits with
// deduplication by channel message id, routes mounted under /webhooks/<instance>, a durable-looking
// key/value store), records everything a plugin instance asks of it, and drives the event loop until a
// condition holds. `ConformanceKit` uses it; plugin authors can use it to test their plugin in-process.

import CChorusPlugin
import ChorusJSON
import ChorusLoop
import ChorusPluginHost
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// An in-process fake of the daemon side of the plugin host API, on a real `EventLoop`.
///
/// Attach it to one or more `PluginInstance`s (`instance.delegate = fake`) and keep it alive as long as
/// they are. Loop thread only.
public final class FakeDaemon: PluginInstanceDelegate {
    /// How the fake answers an emitted event.
    public enum EmitAnswer: Sendable, Equatable {
        /// Committed: the plugin's callback gets `CHORUS_OK` and a fresh Chorus id.
        case commit
        /// A channel retry: `CHORUS_ERR_DUPLICATE`.
        case duplicate
        /// Refused as not following the schema: `CHORUS_ERR_INVALID` with this detail.
        case invalid(String)
        /// Cannot commit now: `CHORUS_ERR_UNAVAILABLE` with this detail.
        case unavailable(String)
    }

    /// One event an instance emitted, with the answer it got (once the asynchronous commit completed).
    public struct EmittedEvent: Sendable {
        /// The emitting instance's name.
        public let instance: String
        /// The JSON exactly as the plugin passed it.
        public let json: [UInt8]
        /// The parsed JSON, or nil when it is not valid JSON.
        public let value: JSONValue?
        /// The status handed to the plugin's callback; nil while the commit is still pending.
        public internal(set) var status: chorus_status?
        /// The Chorus id of a committed event.
        public internal(set) var chorusId: String?
    }

    /// One `send_result` the host accepted.
    public struct SendReport: Sendable, Equatable {
        /// The reporting instance's name.
        public let instance: String
        /// The send id the result is for.
        public let sendId: UInt64
        /// SENT, FAILED_RETRYABLE or FAILED_PERMANENT.
        public let outcome: chorus_send_outcome
        /// The channel's id of the message (SENT).
        public let channelMessageId: String?
        /// The channel's reason code (failures).
        public let errorCode: String?
        /// The human readable reason (failures).
        public let errorMessage: String?
        /// For FAILED_RETRYABLE: the delay the channel asked for, 0 = host decides.
        public let retryAfterMs: UInt32
    }

    /// A route an instance registered.
    public struct Route {
        /// The registering instance's name.
        public let instance: String
        /// Upper-cased method.
        public let method: String
        /// The path as the plugin registered it (may end in `*`).
        public let path: String
        /// Where chorusd mounts it: `/webhooks/<instance><path>`.
        public var mountedPath: String { "/webhooks/\(instance)\(path)" }
        let handler: (HTTPRequest, HTTPResponder) -> Void
        let owner: ObjectIdentifier

        func matches(method m: String, instancePath: String) -> Bool {
            guard m == method || (m == "HEAD" && method == "GET") else { return false }
            if path.hasSuffix("*") { return instancePath.hasPrefix(String(path.dropLast())) }
            return instancePath == path
        }
    }

    /// The loop every instance attached to this fake runs on.
    public let loop: EventLoop
    /// Decides the answer to each emitted event (after deduplication). Default: commit.
    public var emitAnswer: (JSONValue?) -> EmitAnswer = { _ in .commit }
    /// Answer `CHORUS_ERR_DUPLICATE` for an event whose `type` and `channel_ids.message` were committed
    /// before, like chorusd does. Default true.
    public var deduplicates = true
    /// When false, `kv_put` fails (`CHORUS_ERR_UNAVAILABLE`) as if the store could not commit.
    public var kvWritable = true
    /// While true, commits are held back: emitted events are recorded but their callbacks wait for
    /// `releaseCommits()`, like a daemon whose disk is slow. Default false.
    public var holdsCommits = false
    /// Called after every recorded change (emit, commit, send result, route, stop); used by `runLoop(until:)`.
    public var onChange: (() -> Void)?

    /// Every event emitted, in order.
    public private(set) var events: [EmittedEvent] = []
    /// Every send result the host accepted, in order.
    public private(set) var sendReports: [SendReport] = []
    /// Every route registered, in order.
    public private(set) var routes: [Route] = []
    /// Names of instances that called `stopped`, in order (one entry per call).
    public private(set) var stoppedInstances: [String] = []
    /// The key/value store, per instance name. Survives instances: create a new instance with the same
    /// name on the same fake to simulate a restart.
    public var store: [String: [String: [UInt8]]] = [:]
    /// Host calls that arrived from an instance after `markDestroyed` (a contract violation).
    public private(set) var callsAfterDestroy: [String] = []

    private var heldCommits: [() -> Void] = []
    private var committedKeys: Set<String> = []
    private var nextEventNumber = 1
    private var destroyed: Set<ObjectIdentifier> = []

    /// Creates a fake daemon on `loop`.
    public init(loop: EventLoop) {
        self.loop = loop
    }

    // MARK: Observing

    /// Send reports for one send id.
    public func reports(forSend id: UInt64, instance: String? = nil) -> [SendReport] {
        sendReports.filter { $0.sendId == id && (instance == nil || $0.instance == instance) }
    }

    /// Routes of one instance.
    public func routes(of instance: String) -> [Route] { routes.filter { $0.instance == instance } }

    /// Records that `instance` is being destroyed: its routes are removed (as chorusd does), and host calls
    /// it makes from now on are listed in `callsAfterDestroy`. Call it right before `PluginInstance.destroy()`.
    public func markDestroyed(_ instance: PluginInstance) {
        let id = ObjectIdentifier(instance)
        destroyed.insert(id)
        routes.removeAll { $0.owner == id }
    }

    private func note(_ instance: PluginInstance, _ call: String) {
        if destroyed.contains(ObjectIdentifier(instance)) { callsAfterDestroy.append("\(instance.name): \(call)") }
    }

    private func changed() { onChange?() }

    // MARK: Driving the loop

    /// Runs the loop until `condition` holds or `timeoutMilliseconds` passed. Returns whether the condition
    /// holds. The condition is evaluated after each recorded change and every 5 ms. Call it from outside the
    /// loop (not from a loop callback): it runs `EventLoop.run()`.
    @discardableResult
    public func runLoop(until condition: @escaping () -> Bool, timeoutMilliseconds: UInt64) -> Bool {
        if condition() { return true }
        let loop = self.loop
        let previous = onChange
        onChange = {
            previous?()
            if condition() { loop.stop() }
        }
        defer { onChange = previous }
        loop.updateTime()
        let deadline = loop.nowMilliseconds + timeoutMilliseconds
        let ticker = LoopTimer(loop: loop)
        ticker.start(timeoutMilliseconds: 5, repeatMilliseconds: 5) {
            if condition() || loop.nowMilliseconds >= deadline { loop.stop() }
        }
        while !condition() {
            loop.updateTime()
            if loop.nowMilliseconds >= deadline { break }
            loop.run()
        }
        ticker.close()
        return condition()
    }

    /// Runs the loop for `milliseconds`, letting timers and callbacks of the instances fire.
    public func runLoop(forMilliseconds milliseconds: UInt64) {
        loop.updateTime()
        let deadline = loop.nowMilliseconds + milliseconds
        let loop = self.loop
        _ = runLoop(until: { loop.nowMilliseconds >= deadline }, timeoutMilliseconds: milliseconds + 1000)
    }

    // MARK: HTTP ingress

    /// Dispatches a request for `/webhooks/<instance><path>` to the registered route, like chorusd's ingress:
    /// 404 for no such route, 405 when only other methods are registered.
    public func dispatch(_ request: HTTPRequest, _ responder: HTTPResponder) {
        let prefix = "/webhooks/"
        guard request.path.hasPrefix(prefix) else {
            responder.respond(status: 404, headers: [("Content-Type", "text/plain")], body: Array("no such route\n".utf8))
            return
        }
        let rest = request.path.dropFirst(prefix.count)
        let name: String, sub: String
        if let slash = rest.firstIndex(of: "/") {
            name = String(rest[..<slash]); sub = String(rest[slash...])
        } else {
            name = String(rest); sub = "/"
        }
        let candidates = routes.filter { $0.instance == name }
        if let route = candidates.first(where: { $0.matches(method: request.method, instancePath: sub) }) {
            route.handler(request, responder)
            return
        }
        let allowed = candidates.filter { $0.matches(method: $0.method, instancePath: sub) }.map(\.method)
        if allowed.isEmpty {
            responder.respond(status: 404, headers: [("Content-Type", "text/plain")], body: Array("no such route\n".utf8))
        } else {
            responder.respond(status: 405, headers: [("Allow", allowed.joined(separator: ", ")), ("Content-Type", "text/plain")],
                              body: Array("method not allowed\n".utf8))
        }
    }

    /// Starts an HTTP server on `host:port` (port 0 picks a free one) that serves the instances' routes
    /// with `dispatch`. Close it before shutting the loop down.
    public func startIngress(host: String = "127.0.0.1", port: Int = 0, logger: Logger) throws -> HTTPServer {
        try HTTPServer(loop: loop, host: host, port: port, logger: logger) { [weak self] request, responder in
            guard let self else {
                responder.respond(status: 503)
                return
            }
            self.dispatch(request, responder)
        }
    }

    // MARK: PluginInstanceDelegate

    /// Records the event and answers it asynchronously (on a later loop iteration), as chorusd does after
    /// the durable commit.
    public func instance(_ instance: PluginInstance, emit json: [UInt8],
                         completion: @escaping (_ status: chorus_status, _ chorusId: String?, _ detail: String?) -> Void)
    {
        note(instance, "emit_event")
        let value = try? JSONParser.parse(json)
        let index = events.count
        events.append(EmittedEvent(instance: instance.name, json: json, value: value, status: nil, chorusId: nil))
        changed()
        var answer = emitAnswer(value)
        var dedupKey: String?
        if answer == .commit, let value, let type = value["type"]?.stringValue,
           let message = value["channel_ids"]?["message"]?.stringValue
        {
            dedupKey = "\(instance.name)\u{0}\(type)\u{0}\(message)"
            if deduplicates, committedKeys.contains(dedupKey!) { answer = .duplicate }
        }
        if value == nil, case .commit = answer { answer = .invalid("the event is not valid JSON") }
        let status: chorus_status, id: String?, detail: String?
        switch answer {
        case .commit:
            status = CHORUS_OK
            id = "evt_fake_\(nextEventNumber)"
            nextEventNumber += 1
            detail = nil
            if let dedupKey { committedKeys.insert(dedupKey) }
        case .duplicate: status = CHORUS_ERR_DUPLICATE; id = nil; detail = "already committed"
        case .invalid(let why): status = CHORUS_ERR_INVALID; id = nil; detail = why
        case .unavailable(let why): status = CHORUS_ERR_UNAVAILABLE; id = nil; detail = why
        }
        let complete = { [weak self] in
            if let self {
                self.events[index].status = status
                self.events[index].chorusId = id
            }
            completion(status, id, detail)
            self?.changed()
        }
        if holdsCommits { heldCommits.append(complete) } else { loop.execute(complete) }
    }

    /// Number of emitted events whose commit is held back by `holdsCommits`.
    public var heldCommitCount: Int { heldCommits.count }

    /// Completes every held commit (on a later loop iteration), in emit order.
    public func releaseCommits() {
        let held = heldCommits
        heldCommits.removeAll()
        for complete in held { loop.execute(complete) }
    }

    /// Records an accepted send result.
    public func instance(_ instance: PluginInstance, sendId: UInt64, outcome: chorus_send_outcome, channelMessageId: String?,
                         errorCode: String?, errorMessage: String?, retryAfterMs: UInt32)
    {
        note(instance, "send_result(\(sendId))")
        sendReports.append(SendReport(instance: instance.name, sendId: sendId, outcome: outcome, channelMessageId: channelMessageId,
                                      errorCode: errorCode, errorMessage: errorMessage, retryAfterMs: retryAfterMs))
        changed()
    }

    /// Records a route; refuses the same method and path twice for one instance, like chorusd.
    public func instance(_ instance: PluginInstance, route method: String, path: String,
                         handler: @escaping (HTTPRequest, HTTPResponder) -> Void) -> Bool
    {
        note(instance, "http_route(\(method) \(path))")
        if routes.contains(where: { $0.instance == instance.name && $0.method == method && $0.path == path }) { return false }
        routes.append(Route(instance: instance.name, method: method, path: path, handler: handler, owner: ObjectIdentifier(instance)))
        changed()
        return true
    }

    /// Reads from the in-memory store.
    public func instance(_ instance: PluginInstance, kvGet key: String) -> [UInt8]? {
        note(instance, "kv_get(\(key))")
        return store[instance.name]?[key]
    }

    /// Writes to the in-memory store (nil deletes); fails when `kvWritable` is false.
    public func instance(_ instance: PluginInstance, kvPut key: String, value: [UInt8]?) -> Bool {
        note(instance, "kv_put(\(key))")
        guard kvWritable else { return false }
        store[instance.name, default: [:]][key] = value
        return true
    }

    /// Writes to the in-memory store at once and reports the outcome on a later loop turn, as the daemon does.
    public func instance(_ instance: PluginInstance, kvPutAsync key: String, value: [UInt8]?, completion: @escaping (Bool) -> Void) {
        note(instance, "kv_put_async(\(key))")
        let ok = kvWritable
        if ok { store[instance.name, default: [:]][key] = value }
        loop.execute { completion(ok) }
    }

    /// Records that the instance reported `stopped`.
    public func instanceStopped(_ instance: PluginInstance) {
        note(instance, "stopped")
        stoppedInstances.append(instance.name)
        changed()
    }
}
