/// The `[daemon]` table: process-wide settings of `chorusd`.
public struct DaemonSection: Sendable, Equatable {
    /// Key `state_dir`: directory holding the event store and, by default, the control socket.
    /// Default `"./chorus-state"`; always an absolute, normalized path after parsing.
    public var stateDirectory: String
    /// Key `plugin_dirs`: extra directories searched for connector plugins, absolute. Default `[]`
    /// (the daemon adds its own built-in search directories after these).
    public var pluginDirectories: [String]
    /// Key `log_level`: one of `trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`. Default `"info"`.
    public var logLevel: String
    /// Key `shutdown_timeout_ms`: how long a graceful shutdown may take before it is forced. Default 10000.
    public var shutdownTimeoutMs: Int
    /// Key `raw_payloads`: keep each channel's raw payload in stored events. Default `false`.
    public var rawPayloads: Bool

    /// The log levels accepted by `log_level`, from most to least verbose.
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Creates a daemon section; parameters default to the documented defaults except the state directory.
    public init(stateDirectory: String, pluginDirectories: [String] = [], logLevel: String = "info",
                shutdownTimeoutMs: Int = 10_000, rawPayloads: Bool = false) {
        self.stateDirectory = stateDirectory
        self.pluginDirectories = pluginDirectories
        self.logLevel = logLevel
        self.shutdownTimeoutMs = shutdownTimeoutMs
        self.rawPayloads = rawPayloads
    }
}

/// The `[http]` table: the HTTP ingress that receives webhooks for connector plugins.
public struct HTTPSection: Sendable, Equatable {
    /// Key `enabled`: whether the HTTP listener runs at all. Default `true`.
    public var enabled: Bool
    /// Host part of key `listen`: an IPv4 address, an IPv6 address (without brackets) or a host name.
    /// `":8780"` listens on `0.0.0.0`. Default `"127.0.0.1"`.
    public var host: String
    /// Port part of key `listen`, 0...65535 (0 asks the kernel for a free port). Default 8780.
    public var port: Int
    /// Key `max_body_bytes`: largest accepted request body, 1 KiB...64 MiB. Default 1 MiB.
    public var maxBodyBytes: Int
    /// Key `idle_timeout_ms`: an idle keep-alive connection is closed after this long. Default 60000.
    public var idleTimeoutMs: Int

    /// Creates an HTTP section; parameters default to the documented defaults.
    public init(enabled: Bool = true, host: String = "127.0.0.1", port: Int = 8780,
                maxBodyBytes: Int = 1 << 20, idleTimeoutMs: Int = 60_000) {
        self.enabled = enabled
        self.host = host
        self.port = port
        self.maxBodyBytes = maxBodyBytes
        self.idleTimeoutMs = idleTimeoutMs
    }

    /// The listen address in `listen` syntax: `127.0.0.1:8780`, or `[::1]:8780` for IPv6 hosts.
    public var listenAddress: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// The `[store]` table: durability and retention of the event log.
public struct StoreSection: Sendable, Equatable {
    /// Key `fsync`: `"always"` (every commit is synced), `"grouped"` (commits are synced in groups),
    /// or `"off"` (left to the OS). Default `"grouped"`.
    public var fsync: String
    /// Key `retention_hours`: events older than this are deleted. Default 720 (30 days); `0` in the file
    /// means keep forever and is represented as `nil`.
    public var retentionHours: Int?
    /// Key `retention_max_bytes`: oldest events are deleted once the store exceeds this size.
    /// Integer bytes or a string with a unit (`"10GiB"`, `"500MB"`); default and `0` mean no limit (`nil`).
    public var retentionMaxBytes: Int64?
    /// Key `subscriber_buffer_bytes`: per-subscriber in-memory buffer; a subscriber that falls further behind
    /// is fed from the log instead. Default 4 MiB.
    public var subscriberBufferBytes: Int

    /// The values accepted by `fsync`.
    public static let fsyncModes = ["always", "grouped", "off"]

    /// Creates a store section; parameters default to the documented defaults.
    public init(fsync: String = "grouped", retentionHours: Int? = 720, retentionMaxBytes: Int64? = nil,
                subscriberBufferBytes: Int = 4 << 20) {
        self.fsync = fsync
        self.retentionHours = retentionHours
        self.retentionMaxBytes = retentionMaxBytes
        self.subscriberBufferBytes = subscriberBufferBytes
    }
}

/// The `[socket]` table: the Unix socket consumers connect to.
public struct SocketSection: Sendable, Equatable {
    /// Key `path`: absolute socket path. Default `<state_dir>/chorus.sock`; relative paths resolve against
    /// the state directory.
    public var path: String
    /// Key `mode`: permission bits of the socket file, e.g. `0o660`. Written as an octal string `"0660"` or
    /// a TOML integer (`0o660`). Default `0o660`.
    public var mode: Int
    /// Key `group`: group owning the socket file, as a name or a decimal gid; `nil` keeps the daemon's group.
    public var group: String?
    /// Key `max_frame_bytes`: largest accepted request line, 1 KiB...64 MiB. Default 1 MiB.
    public var maxFrameBytes: Int

    /// Creates a socket section; parameters other than the path default to the documented defaults.
    public init(path: String, mode: Int = 0o660, group: String? = nil, maxFrameBytes: Int = 1 << 20) {
        self.path = path
        self.mode = mode
        self.group = group
        self.maxFrameBytes = maxFrameBytes
    }
}

/// One `[[access]]` table: what peers matching a uid, user, gid or group may do on the socket.
///
/// Exactly one of ``uid``, ``user``, ``gid`` and ``group`` is set. User and group names are resolved by the
/// daemon, not by the configuration parser. A peer whose uid is 0 or the daemon's own uid always has full
/// access; any other peer gets the union of the rights of all rules matching its uid or one of its gids, and
/// is refused when no rule matches.
public struct AccessRule: Sendable, Equatable {
    /// Key `uid`: numeric user id the rule applies to.
    public var uid: UInt32?
    /// Key `user`: user name the rule applies to.
    public var user: String?
    /// Key `gid`: numeric group id the rule applies to.
    public var gid: UInt32?
    /// Key `group`: group name the rule applies to.
    public var group: String?
    /// Key `read`: may subscribe, replay and list. Default `true`.
    public var read: Bool
    /// Key `send`: may send messages. Default `false`.
    public var send: Bool
    /// Key `admin`: may reset cursors and perform other administrative requests. Default `false`.
    public var admin: Bool
    /// Key `instances`: instance names the rule covers, or `["*"]` for all (the default).
    public var instances: [String]

    /// Creates a rule; set exactly one of `uid`, `user`, `gid`, `group`.
    public init(uid: UInt32? = nil, user: String? = nil, gid: UInt32? = nil, group: String? = nil,
                read: Bool = true, send: Bool = false, admin: Bool = false, instances: [String] = ["*"]) {
        self.uid = uid
        self.user = user
        self.gid = gid
        self.group = group
        self.read = read
        self.send = send
        self.admin = admin
        self.instances = instances
    }

    /// Whether the rule covers the instance named `name` (directly or through `"*"`).
    public func covers(instance name: String) -> Bool {
        instances.contains("*") || instances.contains(name)
    }
}

/// One `[[instance]]` table: a connector plugin instance.
public struct InstanceConfig: Sendable, Equatable {
    /// Key `name` (required): unique instance name matching `[a-z0-9][a-z0-9_-]{0,62}`.
    public var name: String
    /// Key `plugin` (required): a plugin name (`"sandbox"` is loaded as `libchorus-sandbox.so` from the plugin
    /// directories), or a path to a shared object — any value containing `/` or ending in `.so`, made absolute
    /// against the configuration file's directory.
    public var plugin: String
    /// Key `enabled`: whether the daemon starts this instance. Default `true`.
    public var enabled: Bool
    /// Table `[instance.settings]`, handed to the plugin. Nested tables are flattened to dotted keys; strings
    /// are kept as is, integers, floats, booleans and dates become their TOML text, arrays become JSON text.
    /// Sorted by key. A string setting whose key ends in `_file` names a file holding a secret: it is made
    /// absolute against the configuration file's directory but not read — the plugin host resolves secrets.
    public var settings: [(key: String, value: String)]
    /// Key `send_queue_limit`: maximum pending sends for this instance. Default 10000.
    public var sendQueueLimit: Int
    /// Key `send_concurrency`: maximum sends handed to the plugin at once. Default 16.
    public var sendConcurrency: Int
    /// Key `max_send_attempts`: attempts for a send that fails with a retryable error (exponential backoff).
    /// Default 8.
    public var maxSendAttempts: Int

    /// Creates an instance configuration; parameters default to the documented defaults.
    public init(name: String, plugin: String, enabled: Bool = true, settings: [(key: String, value: String)] = [],
                sendQueueLimit: Int = 10_000, sendConcurrency: Int = 16, maxSendAttempts: Int = 8) {
        self.name = name
        self.plugin = plugin
        self.enabled = enabled
        self.settings = settings
        self.sendQueueLimit = sendQueueLimit
        self.sendConcurrency = sendConcurrency
        self.maxSendAttempts = maxSendAttempts
    }

    /// Whether ``plugin`` is a path to a shared object rather than a plugin name.
    public var pluginIsPath: Bool {
        InstanceConfig.pluginValueIsPath(plugin)
    }

    /// The value of the flattened setting `key`, or `nil` if it is not set.
    public func setting(_ key: String) -> String? {
        settings.first(where: { $0.key == key })?.value
    }

    static func pluginValueIsPath(_ value: String) -> Bool {
        value.contains("/") || value.hasSuffix(".so")
    }

    /// Compares all fields; settings are compared pairwise in order.
    public static func == (lhs: InstanceConfig, rhs: InstanceConfig) -> Bool {
        lhs.name == rhs.name && lhs.plugin == rhs.plugin && lhs.enabled == rhs.enabled
            && lhs.sendQueueLimit == rhs.sendQueueLimit && lhs.sendConcurrency == rhs.sendConcurrency
            && lhs.maxSendAttempts == rhs.maxSendAttempts
            && lhs.settings.count == rhs.settings.count
            && zip(lhs.settings, rhs.settings).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}
