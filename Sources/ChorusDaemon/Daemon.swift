import CChorusPlugin
import CLibUV
import ChorusConfig
import ChorusJSON
import ChorusLoop
import ChorusModel
import ChorusPluginHost
import ChorusProtocol
import ChorusStore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Options that come from the command line rather than the config file.
public struct DaemonOptions: Sendable {
    /// The config file, re-read on SIGHUP; nil for the embedded default.
    public var configPath: String?
    /// Plugin directories searched after the configured ones (the build or install directory).
    public var defaultPluginDirectories: [String]
    public init(configPath: String?, defaultPluginDirectories: [String]) {
        self.configPath = configPath
        self.defaultPluginDirectories = defaultPluginDirectories
    }
}

/// A fatal startup error, with the sentence the operator needs.
public struct DaemonError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// chorusd: one libuv loop that owns the HTTP ingress, the consumer socket,
/// the plugin instances and their I/O; the store's writer runs on its own
/// thread and the log is read on the thread pool.
public final class Daemon {
    public static let version = "0.1.0"
    var config: ChorusConfiguration
    let options: DaemonOptions
    let logger: Logger
    let loop: EventLoop
    let worker: SerialWorker
    let writer: StoreWriter
    let loopReader: StoreReader
    let readers: ReaderPool
    let committer: Committer
    let hub: SubscriptionHub
    var ids = IdentifierGenerator()
    let startedAtMs: Int64
    var httpServer: HTTPServer?
    var unixServer: UnixServer?
    var httpClient: HTTPClient?
    var sessions: [ObjectIdentifier: ConsumerSession] = [:]
    var instances: [String: InstanceRuntime] = [:]
    /// Instances between stop() and their stopped() report.
    var stopping: [InstanceRuntime] = []
    var pluginErrors: [(reference: String, error: String)] = []
    var routes = RouteTable()
    var signals: [SignalWatcher] = []
    var timers: [LoopTimer] = []
    var shuttingDown = false
    var exitCode: Int32 = 0
    /// channel message id → send, for status events about recent sends (bounded).
    var recentSends = BoundedMap<String, SendRef>(capacity: 200_000)
    /// kv_put_async writes queued and not yet committed (instance 0x1F key → value, write number), so kv_get reads its own writes.
    var pendingKV: [String: (value: [UInt8]?, number: UInt64)] = [:]
    var kvWrites: UInt64 = 0
    /// conversation id → route, for sends (bounded; the store is the fallback).
    var conversations = BoundedMap<String, ConversationRecord>(capacity: 200_000)
    var conversationByChat = BoundedMap<String, String>(capacity: 200_000)
    var counters = DaemonCounters()
    var nextSendNumber: UInt64 = 1
    /// systemd's notification socket (READY, RELOADING, STOPPING, STATUS, WATCHDOG).
    let notifier: ServiceNotifier
    var watchdog: ServiceWatchdog?
    /// `$WATCHDOG_USEC` when systemd expects pings from this process (read early, before plugins start).
    var watchdogIntervalUsec: UInt64?
    /// Loop time of the last STATUS= sent by the periodic refresh.
    var statusSentAtMs: UInt64 = 0
    /// Shown at the end of STATUS= until the next successful reload (why the last one failed).
    var statusNote: String?
    /// A SIGHUP reload is waiting for instances to stop or restart; READY=1 follows when it is done.
    var reloadInProgress = false
    /// A SIGHUP arrived during a reload: reload again once it is done.
    var reloadRequestedAgain = false

    public init(configuration: ChorusConfiguration, options: DaemonOptions, logger: Logger) throws {
        self.config = configuration
        self.options = options
        self.logger = logger
        notifier = ServiceNotifier(logger: logger)
        ignoreSIGPIPE()
        let state = configuration.daemon.stateDirectory
        try Daemon.makeDirectories(state)
        let dbPath = state + "/chorus.db"
        guard let fsync = FsyncPolicy(rawValue: configuration.store.fsync) else {
            throw DaemonError("store.fsync: unknown policy \(configuration.store.fsync)")
        }
        do {
            writer = try StoreWriter(path: dbPath, fsync: fsync)
            loopReader = try StoreReader(path: dbPath)
        } catch {
            throw DaemonError("cannot open the store at \(dbPath): \(error)")
        }
        readers = ReaderPool(path: dbPath)
        loop = try EventLoop()
        worker = SerialWorker(name: "chorus-store")
        committer = Committer(loop: loop, worker: worker, writer: writer)
        let lastSeq = (try? loopReader.lastSeq()) ?? 0
        hub = SubscriptionHub(loop: loop, ring: EventRing(capacityBytes: 64 << 20), readers: readers, lastSeq: lastSeq,
                              bufferLimit: configuration.store.subscriberBufferBytes, logger: logger)
        startedAtMs = Daemon.nowMs()
        committer.onCommitted = { [unowned self] events in self.hub.publish(events) }
        committer.onHealthChange = { [unowned self] error in
            if let error {
                self.logger.error("the store cannot commit: \(error); webhooks get 503 and sends are refused until it can")
            } else {
                self.logger.notice("the store commits again")
            }
        }
    }

    static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for comp in path.split(separator: "/") {
            current += "/" + comp
            if mkdir(current, 0o750) != 0 && errno != EEXIST {
                throw DaemonError("cannot create directory \(current): \(String(cString: strerror(errno)))")
            }
        }
    }

    // MARK: Running

    /// Starts everything, runs the loop until shutdown, and returns the exit code.
    public func run() -> Int32 {
        do {
            try startServices()
        } catch {
            logger.critical("\(error)")
            notifier.send([("STATUS", "failed to start: \(ServiceStatus.clip("\(error)"))")])
            return 1
        }
        loop.run()
        finalShutdown()
        return exitCode
    }

    /// Listens (on the sockets systemd passed, or binds them), starts every enabled instance, installs the
    /// signal handlers and timers, and then tells systemd READY=1: at that point every instance's `start`
    /// has returned (ABI v1 has no later "started" notion) and both sockets accept. Instances that failed are
    /// named in STATUS= and the log; the daemon is ready with the others (one broken connector never keeps
    /// the gateway down).
    func startServices() throws {
        notifier.send([("STATUS", "starting")])
        // Read (and remove from the environment) what systemd passed, before any plugin can start a process.
        let activated = try ActivatedSockets.take(logger: logger)
        watchdogIntervalUsec = ServiceWatchdog.intervalFromEnvironment()
        httpClient = try HTTPClient(loop: loop)
        // Consumer socket.
        let sock = config.socket
        if let fd = activated.consumer {
            do {
                unixServer = try UnixServer(loop: loop, adoptingListeningDescriptor: fd) { [unowned self] conn in self.accept(conn) }
            } catch {
                throw DaemonError("cannot listen on the consumer socket passed by systemd (fd \(fd)): \(error)")
            }
            let path = unixServer!.path
            logger.info("consumer socket passed by systemd (socket activation)", metadata: ["socket": .string(path)])
            if path != sock.path {
                logger.notice("socket.path \(sock.path) in the config is not used: systemd passed the consumer socket \(path)")
            }
        } else {
            let groupId: gid_t? = try sock.group.map { g in
                if let n = gid_t(g) { return n }
                guard let gr = getgrnam(g) else { throw DaemonError("socket.group: no group named \"\(g)\"") }
                return gr.pointee.gr_gid
            }
            do {
                if let slash = sock.path.lastIndex(of: "/"), slash != sock.path.startIndex {
                    try Daemon.makeDirectories(String(sock.path[..<slash]))
                }
                unixServer = try UnixServer(loop: loop, path: sock.path, mode: mode_t(sock.mode), group: groupId) { [unowned self] conn in
                    self.accept(conn)
                }
            } catch {
                throw DaemonError("cannot listen on the consumer socket \(sock.path): \(error)")
            }
        }
        // HTTP ingress.
        var opts = HTTPServer.Options()
        opts.maxBodyBytes = config.http.maxBodyBytes
        opts.idleTimeoutMilliseconds = UInt64(config.http.idleTimeoutMs)
        let handler: (HTTPRequest, HTTPResponder) -> Void = { [unowned self] req, res in self.route(req, res) }
        if let fd = activated.http {
            if config.http.enabled {
                do {
                    httpServer = try HTTPServer(loop: loop, adoptingListeningDescriptor: fd, options: opts, logger: logger, handler: handler)
                } catch {
                    throw DaemonError("cannot listen for HTTP on the socket passed by systemd (fd \(fd)): \(error)")
                }
                logger.info("HTTP ingress socket passed by systemd (socket activation)",
                            metadata: ["http": .string("\(httpServer!.host):\(httpServer!.boundPort)")])
            } else {
                logger.warning("systemd passed an HTTP socket but [http] enabled = false: closing it (remove it from chorus.socket)")
                close(fd)
            }
        } else if config.http.enabled {
            do {
                httpServer = try HTTPServer(loop: loop, host: config.http.host, port: config.http.port, options: opts, logger: logger, handler: handler)
            } catch {
                throw DaemonError("cannot listen for HTTP on \(config.http.host):\(config.http.port): \(error)")
            }
        }
        // Durable subscriptions are restored lazily (when a consumer subscribes by name).
        // Plugins: each start returns before the next one begins.
        let enabled = config.instances.filter(\.enabled)
        if !enabled.isEmpty { notifier.send([("STATUS", "starting \(enabled.count) instance\(enabled.count == 1 ? "" : "s")")]) }
        for ic in enabled { startInstance(ic) }
        resumeUnfinishedSends()
        // Signals.
        signals.append(try SignalWatcher(loop: loop, signal: SIGTERM) { [unowned self] _ in self.beginShutdown(reason: "SIGTERM") })
        signals.append(try SignalWatcher(loop: loop, signal: SIGINT) { [unowned self] _ in self.beginShutdown(reason: "SIGINT") })
        signals.append(try SignalWatcher(loop: loop, signal: SIGHUP) { [unowned self] _ in self.reload() })
        // Retention, every 10 minutes and shortly after start.
        let retention = LoopTimer(loop: loop)
        retention.start(timeoutMilliseconds: 5_000, repeatMilliseconds: 600_000) { [unowned self] in self.applyRetention() }
        timers.append(retention)
        let host = httpServer.map { $0.host } ?? config.http.host
        let port = httpServer.map { String($0.boundPort) } ?? "off"
        let failed = instances.values.filter { $0.error != nil }.map(\.config.name).sorted()
        logger.notice("chorusd \(Daemon.version) ready", metadata: [
            "socket": .string(unixServer?.path ?? config.socket.path), "http": .string(httpServer != nil ? "\(host):\(port)" : "off"),
            "state_dir": .string(config.daemon.stateDirectory), "instances": .string(instances.keys.sorted().joined(separator: ",")),
            "fsync": .string(config.store.fsync),
        ])
        if !failed.isEmpty {
            logger.warning("ready without \(failed.count) of \(enabled.count) instances (see their errors above): \(failed.joined(separator: ", "))")
        }
        startServiceReporting()
    }

    // MARK: Consumers

    func accept(_ conn: StreamConnection) {
        if shuttingDown { conn.write(ServerFrame.goodbye(reason: "shutting down")); conn.closeAfterFlush(); return }
        let rights = AccessRights.resolve(
            peer: conn.peer, rules: config.access, daemonUid: UInt32(getuid()),
            resolveUser: { name in getpwnam(name).map { $0.pointee.pw_uid } },
            resolveGroup: { name in getgrnam(name).map { $0.pointee.gr_gid } },
            supplementaryGroups: { uid in Daemon.groups(of: uid) })
        guard rights.read || rights.send || rights.admin else {
            let who = conn.peer.map { "uid \($0.uid) gid \($0.gid)" } ?? "unknown peer"
            logger.warning("refused a consumer connection from \(who): no [[access]] rule matches")
            conn.write(ServerFrame.error(ProtocolError(code: .forbidden, message: "\(who) has no access to this chorusd (see [[access]] in the config)")))
            conn.closeAfterFlush()
            return
        }
        let session = ConsumerSession(connection: conn, rights: rights, daemon: self, maxFrameBytes: config.socket.maxFrameBytes)
        sessions[ObjectIdentifier(session)] = session
        session.start()
        let peer = conn.peer.map { (uid: $0.uid, gid: $0.gid, pid: $0.pid) }
        session.write(ServerFrame.hello(server: "chorusd \(Daemon.version)", maxFrameBytes: config.socket.maxFrameBytes,
                                        ops: ClientCommand.allOps, peer: peer,
                                        access: (read: rights.read, send: rights.send, admin: rights.admin)))
        counters.connections += 1
    }

    static func groups(of uid: UInt32) -> [UInt32] {
        guard let pw = getpwuid(uid) else { return [] }
        var n: Int32 = 64
        var list = [gid_t](repeating: 0, count: 64)
        if getgrouplist(pw.pointee.pw_name, pw.pointee.pw_gid, &list, &n) < 0 { return [] }
        return Array(list.prefix(Int(n)))
    }

    func sessionClosed(_ s: ConsumerSession) {
        s.dropSubscriptions()
        sessions.removeValue(forKey: ObjectIdentifier(s))
    }
}

/// A bounded map that forgets the oldest entries first.
struct BoundedMap<K: Hashable, V> {
    private var dict: [K: V] = [:]
    private var order: [K] = []
    private var head = 0
    let capacity: Int
    init(capacity: Int) { self.capacity = capacity }
    subscript(key: K) -> V? {
        get { dict[key] }
        set {
            if let v = newValue {
                if dict.updateValue(v, forKey: key) == nil {
                    order.append(key)
                    if dict.count > capacity {
                        dict.removeValue(forKey: order[head]); head += 1
                        if head > capacity { order.removeFirst(head); head = 0 }
                    }
                }
            } else {
                dict.removeValue(forKey: key)
            }
        }
    }
    var count: Int { dict.count }
}

/// Which send a channel message id belongs to.
struct SendRef {
    let messageId: String
    let conversationId: String
}

/// Daemon-wide counters (shown by `stats`).
struct DaemonCounters {
    var connections: Int64 = 0
    var eventsAccepted: Int64 = 0
    var eventsDuplicate: Int64 = 0
    var eventsInvalid: Int64 = 0
    var eventsRefused: Int64 = 0
    var sendsAccepted: Int64 = 0
    var sendsRefused: Int64 = 0
    var httpRequests: Int64 = 0
}
