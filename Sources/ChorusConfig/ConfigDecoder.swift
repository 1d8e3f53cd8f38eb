import TOMLKit

/// Walks a parsed TOML document, builds the configuration and collects every validation error with its key
/// path and source line.
final class ConfigDecoder {
    private let locator: SourceLocator
    private let file: String?
    private let baseDirectory: String
    private(set) var errors: [ConfigError] = []

    /// - Parameter baseDirectory: absolute, normalized directory that relative paths resolve against.
    init(text: String, file: String?, baseDirectory: String) {
        self.locator = SourceLocator(text: text)
        self.file = file
        self.baseDirectory = baseDirectory
    }

    /// Records an error about `path`, placed on the line of `linePath` (default: `path` itself).
    func fail(_ path: ConfigPath, _ message: String, lineOf linePath: ConfigPath? = nil) {
        errors.append(ConfigError(key: path.isRoot ? nil : path.description,
                                  line: locator.line(for: linePath ?? path), message: message, file: file))
    }

    // MARK: - Document

    static let topLevelKeys = ["daemon", "http", "store", "socket", "access", "instance"]
    static let daemonKeys = ["state_dir", "plugin_dirs", "log_level", "shutdown_timeout_ms", "raw_payloads"]
    static let httpKeys = ["enabled", "listen", "max_body_bytes", "idle_timeout_ms"]
    static let storeKeys = ["fsync", "retention_hours", "retention_max_bytes", "subscriber_buffer_bytes"]
    static let socketKeys = ["path", "mode", "group", "max_frame_bytes"]
    static let accessKeys = ["uid", "user", "gid", "group", "read", "send", "admin", "instances"]
    static let instanceKeys = ["name", "plugin", "enabled", "settings", "send_queue_limit", "send_concurrency",
                               "max_send_attempts"]

    /// Decodes the whole document; the result is meaningful only when ``errors`` is empty.
    func decode(_ root: TOMLTable) -> ChorusConfiguration {
        let reader = TableReader(root, path: .root, context: "top-level", allowed: ConfigDecoder.topLevelKeys, decoder: self)
        let daemon = decodeDaemon(reader.section("daemon"))
        let http = decodeHTTP(reader.section("http"))
        let store = decodeStore(reader.section("store"))
        let socket = decodeSocket(reader.section("socket"), stateDirectory: daemon.stateDirectory)
        let instances = decodeInstances(reader.arrayOfTables("instance"))
        let access = decodeAccess(reader.arrayOfTables("access"), instances: instances)
        return ChorusConfiguration(daemon: daemon, http: http, store: store, socket: socket, access: access,
                                   instances: instances, sourcePath: file)
    }

    // MARK: - Sections

    private func decodeDaemon(_ table: TableReader?) -> DaemonSection {
        var section = DaemonSection(stateDirectory: ValueSyntax.resolve("chorus-state", against: baseDirectory))
        guard let table else { return section }
        table.checkKeys(ConfigDecoder.daemonKeys)
        if let stateDirectory = table.path("state_dir", against: baseDirectory) {
            section.stateDirectory = stateDirectory
        }
        if let directories = table.stringArray("plugin_dirs") {
            var resolved: [String] = []
            for (index, directory) in directories.enumerated() {
                let elementPath = table.path.appending("plugin_dirs").appending(index: index)
                if let message = ConfigDecoder.pathProblem(directory) {
                    fail(elementPath, message)
                } else {
                    resolved.append(ValueSyntax.resolve(directory, against: baseDirectory))
                }
            }
            section.pluginDirectories = resolved
        }
        if let level = table.choice("log_level", from: DaemonSection.logLevels) {
            section.logLevel = level
        }
        if let timeout = table.integer("shutdown_timeout_ms", in: 1...600_000) {
            section.shutdownTimeoutMs = timeout
        }
        if let raw = table.bool("raw_payloads") {
            section.rawPayloads = raw
        }
        return section
    }

    private func decodeHTTP(_ table: TableReader?) -> HTTPSection {
        var section = HTTPSection()
        guard let table else { return section }
        table.checkKeys(ConfigDecoder.httpKeys)
        if let enabled = table.bool("enabled") {
            section.enabled = enabled
        }
        if let listen = table.string("listen") {
            switch ValueSyntax.parseListen(listen) {
            case .success(let address):
                section.host = address.host
                section.port = address.port
            case .failure(.malformed):
                fail(table.path.appending("listen"), "expected \"host:port\", found \(ConfigPath.quoted(listen))")
            case .failure(.portOutOfRange(let port)):
                fail(table.path.appending("listen"), "port must be between 0 and 65535, found \(port)")
            }
        }
        if let bytes = table.byteSize("max_body_bytes", in: 1 << 10...64 << 20) {
            section.maxBodyBytes = Int(bytes)
        }
        if let timeout = table.integer("idle_timeout_ms", in: 100...86_400_000) {
            section.idleTimeoutMs = timeout
        }
        return section
    }

    private func decodeStore(_ table: TableReader?) -> StoreSection {
        var section = StoreSection()
        guard let table else { return section }
        table.checkKeys(ConfigDecoder.storeKeys)
        if let fsync = table.choice("fsync", from: StoreSection.fsyncModes) {
            section.fsync = fsync
        }
        if let hours = table.integer("retention_hours", in: 0...876_000) {
            section.retentionHours = hours == 0 ? nil : hours
        }
        if let bytes = table.byteSize("retention_max_bytes", in: 0...Int64.max) {
            section.retentionMaxBytes = bytes == 0 ? nil : bytes
        }
        if let bytes = table.byteSize("subscriber_buffer_bytes", in: 4 << 10...1 << 30) {
            section.subscriberBufferBytes = Int(bytes)
        }
        return section
    }

    /// Longest usable Unix socket path: `sun_path` holds 108 bytes including the terminating NUL.
    static let maxSocketPathBytes = 107

    private func decodeSocket(_ table: TableReader?, stateDirectory: String) -> SocketSection {
        var section = SocketSection(path: ValueSyntax.resolve("chorus.sock", against: stateDirectory))
        var pathWasSet = false
        if let table {
            table.checkKeys(ConfigDecoder.socketKeys)
            if let path = table.path("path", against: stateDirectory) {
                section.path = path
                pathWasSet = true
            }
            if let value = table.value("mode") {
                let key = table.path.appending("mode")
                if let text = value.string {
                    if let mode = ValueSyntax.parseOctalMode(text) {
                        section.mode = mode
                    } else {
                        fail(key, "expected octal permission bits such as \"0660\", found \(ConfigPath.quoted(text))")
                    }
                } else if let number = value.int {
                    if (0...0o777).contains(number) {
                        section.mode = number
                    } else {
                        fail(key, "permission bits must be between 0 and 0o777, found \(number); write them as a string "
                                + "such as \"0660\" or as an octal integer such as 0o660")
                    }
                } else {
                    fail(key, "expected string or integer, found \(ConfigDecoder.typeName(value.type))")
                }
            }
            if let value = table.value("group") {
                let key = table.path.appending("group")
                if let name = value.string {
                    if name.allSatisfy({ $0.isASCII && $0.isNumber }), !name.isEmpty {
                        if let gid = UInt32(name), gid != UInt32.max {
                            section.group = String(gid)
                        } else {
                            fail(key, "group id must be between 0 and \(UInt32.max - 1), found \(name)")
                        }
                    } else if ValueSyntax.isValidAccountName(name) {
                        section.group = name
                    } else {
                        fail(key, "invalid group name \(ConfigPath.quoted(name))")
                    }
                } else if let gid = value.int {
                    if (0...Int(UInt32.max - 1)).contains(gid) {
                        section.group = String(gid)
                    } else {
                        fail(key, "group id must be between 0 and \(UInt32.max - 1), found \(gid)")
                    }
                } else {
                    fail(key, "expected string or integer, found \(ConfigDecoder.typeName(value.type))")
                }
            }
            if let bytes = table.byteSize("max_frame_bytes", in: 1 << 10...64 << 20) {
                section.maxFrameBytes = Int(bytes)
            }
        }
        let length = section.path.utf8.count
        if length > ConfigDecoder.maxSocketPathBytes {
            if pathWasSet {
                fail(ConfigPath("socket", "path"), "socket path is \(length) bytes long; Unix socket paths are limited "
                        + "to \(ConfigDecoder.maxSocketPathBytes) bytes")
            } else {
                fail(ConfigPath("daemon", "state_dir"), "the default socket path \(section.path) would be \(length) bytes "
                        + "long; Unix socket paths are limited to \(ConfigDecoder.maxSocketPathBytes) bytes: set "
                        + "socket.path to a shorter path")
            }
        }
        return section
    }

    private func decodeInstances(_ tables: [TableReader]) -> [InstanceConfig] {
        var instances: [InstanceConfig] = []
        var firstDefinition: [String: ConfigPath] = [:]
        for table in tables {
            table.checkKeys(ConfigDecoder.instanceKeys)
            var instance = InstanceConfig(name: "", plugin: "")
            var valid = true
            if let name = table.requiredString("name") {
                let namePath = table.path.appending("name")
                if !ValueSyntax.isValidName(name) {
                    fail(namePath, "invalid instance name \(ConfigPath.quoted(name)): use 1 to 63 lowercase letters, "
                            + "digits, \"_\" or \"-\", starting with a letter or digit")
                    valid = false
                } else if let first = firstDefinition[name] {
                    let where_ = locator.line(for: first.appending("name")).map { " at line \($0)" } ?? ""
                    fail(namePath, "duplicate instance name \(ConfigPath.quoted(name)) (first defined in \(first)\(where_))")
                    valid = false
                } else {
                    firstDefinition[name] = table.path
                }
                instance.name = name
            } else {
                valid = false
            }
            if let plugin = table.requiredString("plugin") {
                let pluginPath = table.path.appending("plugin")
                if InstanceConfig.pluginValueIsPath(plugin) {
                    if let message = ConfigDecoder.pathProblem(plugin) {
                        fail(pluginPath, message)
                        valid = false
                    } else {
                        instance.plugin = ValueSyntax.resolve(plugin, against: baseDirectory)
                    }
                } else if ValueSyntax.isValidName(plugin) {
                    instance.plugin = plugin
                } else {
                    fail(pluginPath, "invalid plugin \(ConfigPath.quoted(plugin)): expected a plugin name such as "
                            + "\"sandbox\" (loaded as libchorus-sandbox.so from the plugin directories) or a path to "
                            + "a .so file")
                    valid = false
                }
            } else {
                valid = false
            }
            if let enabled = table.bool("enabled") {
                instance.enabled = enabled
            }
            if let settings = table.section("settings") {
                var flattened: [(key: String, value: String)] = []
                flatten(settings.table, prefix: "", path: settings.path, into: &flattened)
                flattened.sort { $0.key < $1.key }
                instance.settings = flattened
            }
            if let limit = table.integer("send_queue_limit", in: 1...10_000_000) {
                instance.sendQueueLimit = limit
            }
            if let concurrency = table.integer("send_concurrency", in: 1...1024) {
                instance.sendConcurrency = concurrency
            }
            if let attempts = table.integer("max_send_attempts", in: 1...100) {
                instance.maxSendAttempts = attempts
            }
            if valid {
                instances.append(instance)
            }
        }
        return instances
    }

    private func decodeAccess(_ tables: [TableReader], instances: [InstanceConfig]) -> [AccessRule] {
        let principals = ["uid", "user", "gid", "group"]
        let instanceNames = instances.map(\.name)
        var rules: [AccessRule] = []
        for table in tables {
            table.checkKeys(ConfigDecoder.accessKeys)
            var rule = AccessRule()
            let present = principals.filter { table.value($0) != nil }
            if present.isEmpty {
                fail(table.path, "an access rule needs one of uid, user, gid or group", lineOf: table.path)
            } else if present.count > 1 {
                fail(table.path.appending(present[1]), "an access rule takes only one of uid, user, gid or group "
                        + "(found \(present.joined(separator: " and ")))")
            }
            if let uid = table.integer("uid", in: 0...Int(UInt32.max - 1)) {
                rule.uid = UInt32(uid)
            }
            if let gid = table.integer("gid", in: 0...Int(UInt32.max - 1)) {
                rule.gid = UInt32(gid)
            }
            for key in ["user", "group"] {
                guard let name = table.string(key) else { continue }
                if ValueSyntax.isValidAccountName(name) {
                    if key == "user" { rule.user = name } else { rule.group = name }
                } else {
                    fail(table.path.appending(key), "invalid \(key) name \(ConfigPath.quoted(name))")
                }
            }
            if let read = table.bool("read") {
                rule.read = read
            }
            if let send = table.bool("send") {
                rule.send = send
            }
            if let admin = table.bool("admin") {
                rule.admin = admin
            }
            if let names = table.stringArray("instances") {
                let key = table.path.appending("instances")
                if names.isEmpty {
                    fail(key, "must name at least one instance (use [\"*\"] for all instances)")
                }
                for (index, name) in names.enumerated() where name != "*" && !instanceNames.contains(name) {
                    let defined = instanceNames.isEmpty ? "no instances are defined"
                        : "defined instances: " + instanceNames.joined(separator: ", ")
                    fail(key.appending(index: index), "unknown instance \(ConfigPath.quoted(name)) (\(defined))")
                }
                rule.instances = names
            }
            rules.append(rule)
        }
        return rules
    }

    // MARK: - Settings flattening

    /// Flattens `table` (at `path`) into dotted keys with string values (see ``InstanceConfig/settings``).
    /// String values of keys ending in `_file` are paths to secrets: they are made absolute against the
    /// configuration file's directory but not read.
    private func flatten(_ table: TOMLTable, prefix: String, path: ConfigPath,
                         into result: inout [(key: String, value: String)]) {
        for key in table.keys {
            guard let value = table[key] else { continue }
            let fullKey = prefix.isEmpty ? key : prefix + "." + key
            if let nested = value.table {
                flatten(nested, prefix: fullKey, path: path.appending(key), into: &result)
            } else if key.hasSuffix("_file"), let file = value.string {
                if let message = ConfigDecoder.pathProblem(file) {
                    fail(path.appending(key), message)
                } else {
                    result.append((fullKey, ValueSyntax.resolve(file, against: baseDirectory)))
                }
            } else {
                result.append((fullKey, ConfigDecoder.settingText(value)))
            }
        }
    }

    /// A scalar as its TOML text (strings unquoted), an array as JSON text.
    static func settingText(_ value: TOMLValueConvertible) -> String {
        switch value.type {
        case .string: return value.string ?? ""
        case .int: return value.int.map { String($0) } ?? ""
        case .double: return value.double.map(tomlDoubleText) ?? ""
        case .bool: return value.bool.map { $0 ? "true" : "false" } ?? ""
        case .date: return value.date?.debugDescription ?? ""
        case .time: return value.time?.debugDescription ?? ""
        case .dateTime: return value.dateTime?.debugDescription ?? ""
        case .array, .table: return jsonText(value)
        }
    }

    /// A float in TOML syntax: `1.5`, `1e+20`, `inf`, `-inf`, `nan`.
    static func tomlDoubleText(_ value: Double) -> String {
        if value.isNaN {
            return "nan"
        }
        if value.isInfinite {
            return value < 0 ? "-inf" : "inf"
        }
        return String(value)
    }

    /// A value as JSON text: tables become objects with sorted keys, dates and times become strings of their
    /// TOML text, and non-finite floats become the strings `"nan"`, `"inf"` and `"-inf"`.
    static func jsonText(_ value: TOMLValueConvertible) -> String {
        switch value.type {
        case .string: return ConfigPath.quoted(value.string ?? "")
        case .int: return value.int.map { String($0) } ?? "null"
        case .double:
            guard let number = value.double else { return "null" }
            return number.isFinite ? String(number) : ConfigPath.quoted(tomlDoubleText(number))
        case .bool: return value.bool.map { $0 ? "true" : "false" } ?? "null"
        case .date, .time, .dateTime: return ConfigPath.quoted(settingText(value))
        case .array:
            guard let array = value.array else { return "[]" }
            var parts: [String] = []
            for element in array {
                parts.append(jsonText(element))
            }
            return "[" + parts.joined(separator: ",") + "]"
        case .table:
            guard let table = value.table else { return "{}" }
            var parts: [String] = []
            for key in table.keys.sorted() {
                guard let member = table[key] else { continue }
                parts.append(ConfigPath.quoted(key) + ":" + jsonText(member))
            }
            return "{" + parts.joined(separator: ",") + "}"
        }
    }

    // MARK: - Helpers

    /// The name of a TOML type as used in messages ("expected integer, found string").
    static func typeName(_ type: TOMLType) -> String {
        switch type {
        case .table: return "table"
        case .array: return "array"
        case .string: return "string"
        case .int: return "integer"
        case .double: return "float"
        case .bool: return "boolean"
        case .date: return "date"
        case .time: return "time"
        case .dateTime: return "date-time"
        }
    }

    /// Why `path` is not usable as a path value, or `nil` if it is.
    static func pathProblem(_ path: String) -> String? {
        if path.isEmpty {
            return "must not be empty"
        }
        if path.hasPrefix("~") {
            return "\"~\" is not expanded: use an absolute path or one relative to the configuration file"
        }
        if path.utf8.contains(0) {
            return "must not contain a NUL character"
        }
        return nil
    }
}

/// Typed, error-reporting access to the members of one TOML table.
struct TableReader {
    let table: TOMLTable
    /// Path of this table in the document.
    let path: ConfigPath
    /// How the table is named in unknown-key messages, e.g. `[http]` or `[[instance]]`.
    let context: String
    let decoder: ConfigDecoder

    init(_ table: TOMLTable, path: ConfigPath, context: String, allowed: [String]? = nil, decoder: ConfigDecoder) {
        self.table = table
        self.path = path
        self.context = context
        self.decoder = decoder
        if let allowed {
            checkKeys(allowed)
        }
    }

    /// Reports every key of the table that is not in `allowed`.
    func checkKeys(_ allowed: [String]) {
        for key in table.keys where !allowed.contains(key) {
            decoder.fail(path.appending(key), "unknown key \(ConfigPath.quoted(key)); allowed keys in \(context): "
                            + allowed.joined(separator: ", "))
        }
    }

    func value(_ key: String) -> TOMLValueConvertible? {
        table[key]
    }

    private func typeMismatch(_ key: String, expected: String, found value: TOMLValueConvertible) {
        decoder.fail(path.appending(key), "expected \(expected), found \(ConfigDecoder.typeName(value.type))")
    }

    func string(_ key: String) -> String? {
        guard let value = value(key) else { return nil }
        guard let string = value.string else {
            typeMismatch(key, expected: "string", found: value)
            return nil
        }
        return string
    }

    /// A string that must be present; reports `missing required key` on the table's own line when absent.
    func requiredString(_ key: String) -> String? {
        guard value(key) != nil else {
            decoder.fail(path.appending(key), "missing required key \(ConfigPath.quoted(key))", lineOf: path)
            return nil
        }
        guard let text = string(key) else { return nil }
        if text.isEmpty {
            decoder.fail(path.appending(key), "must not be empty")
            return nil
        }
        return text
    }

    func bool(_ key: String) -> Bool? {
        guard let value = value(key) else { return nil }
        guard let bool = value.bool else {
            typeMismatch(key, expected: "boolean", found: value)
            return nil
        }
        return bool
    }

    func integer(_ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let value = value(key) else { return nil }
        guard let number = value.int else {
            typeMismatch(key, expected: "integer", found: value)
            return nil
        }
        guard range.contains(number) else {
            decoder.fail(path.appending(key), "must be between \(range.lowerBound) and \(range.upperBound), found \(number)")
            return nil
        }
        return number
    }

    /// A string that must be one of `choices`.
    func choice(_ key: String, from choices: [String]) -> String? {
        guard let text = string(key) else { return nil }
        guard choices.contains(text) else {
            decoder.fail(path.appending(key), "expected one of \(choices.joined(separator: ", ")), found "
                            + ConfigPath.quoted(text))
            return nil
        }
        return text
    }

    /// A byte count written as an integer or as a string with a unit (`"64MiB"`).
    func byteSize(_ key: String, in range: ClosedRange<Int64>) -> Int64? {
        guard let value = value(key) else { return nil }
        let bytes: Int64
        if let number = value.int {
            bytes = Int64(number)
        } else if let text = value.string {
            guard let parsed = ValueSyntax.parseSize(text) else {
                decoder.fail(path.appending(key), "expected a size such as 1048576, \"512KiB\", \"64MiB\" or \"10GB\", "
                                + "found \(ConfigPath.quoted(text))")
                return nil
            }
            bytes = parsed
        } else {
            typeMismatch(key, expected: "integer or size string", found: value)
            return nil
        }
        guard range.contains(bytes) else {
            if range.upperBound == Int64.max {
                decoder.fail(path.appending(key), "must be at least \(ValueSyntax.formatSize(range.lowerBound)), found "
                                + "\(bytes)")
            } else {
                decoder.fail(path.appending(key), "must be between \(ValueSyntax.formatSize(range.lowerBound)) and "
                                + "\(ValueSyntax.formatSize(range.upperBound)), found \(ValueSyntax.formatSize(bytes))")
            }
            return nil
        }
        return bytes
    }

    /// An array whose elements must all be strings.
    func stringArray(_ key: String) -> [String]? {
        guard let value = value(key) else { return nil }
        guard let array = value.array else {
            typeMismatch(key, expected: "array of strings", found: value)
            return nil
        }
        var strings: [String] = []
        var valid = true
        for (index, element) in array.enumerated() {
            if let string = element.string {
                strings.append(string)
            } else {
                decoder.fail(path.appending(key).appending(index: index),
                             "expected string, found \(ConfigDecoder.typeName(element.type))")
                valid = false
            }
        }
        return valid ? strings : nil
    }

    /// A path value: must be non-empty and not start with `~`; resolved against `base`.
    func path(_ key: String, against base: String) -> String? {
        guard let text = string(key) else { return nil }
        if let message = ConfigDecoder.pathProblem(text) {
            decoder.fail(path.appending(key), message)
            return nil
        }
        return ValueSyntax.resolve(text, against: base)
    }

    /// A sub-table (`[parent.key]`, `key = { … }` or dotted keys).
    func section(_ key: String) -> TableReader? {
        guard let value = value(key) else { return nil }
        guard let table = value.table else {
            typeMismatch(key, expected: "table", found: value)
            return nil
        }
        let childPath = path.appending(key)
        let childContext = path.isRoot ? "[\(ConfigPath.render(key: key))]" : "[\(childPath)]"
        return TableReader(table, path: childPath, context: childContext, decoder: decoder)
    }

    /// An array of tables (`[[key]]` or `key = [{ … }, …]`); an absent key is an empty array.
    func arrayOfTables(_ key: String) -> [TableReader] {
        guard let value = value(key) else { return [] }
        let arrayPath = path.appending(key)
        guard let array = value.array else {
            let hint = value.type == .table ? " (write [[\(ConfigPath.render(key: key))]] for each entry)" : ""
            decoder.fail(arrayPath, "expected array of tables, found \(ConfigDecoder.typeName(value.type))\(hint)")
            return []
        }
        var readers: [TableReader] = []
        for (index, element) in array.enumerated() {
            let elementPath = arrayPath.appending(index: index)
            guard let table = element.table else {
                decoder.fail(elementPath, "expected table, found \(ConfigDecoder.typeName(element.type))")
                continue
            }
            readers.append(TableReader(table, path: elementPath, context: "[[\(ConfigPath.render(key: key))]]",
                                       decoder: decoder))
        }
        return readers
    }
}
