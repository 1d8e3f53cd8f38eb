// ConformanceKit.swift — checks a connector plugin against the plugin ABI contract.
//
// The kit loads a plugin the way chorusd does (ChorusPluginHost's PluginLoader), runs one instance on a
// real EventLoop with a `FakeDaemon` behind the host API, and reports a checklist: descriptor fields and
// struct sizes, version negotiation, create/start, routes, exactly-once send results, well-formed events,
// stop → stopped, destroy. `chorus-conformance` prints the checklist; plugin authors call
// `ConformanceKit.run(pluginPath:settings:)` from their own XCTest (docs/connector-sdk.md).

import CChorusPlugin
import ChorusJSON
import ChorusLoop
import ChorusPluginHost
#if canImport(Glibc)
import Glibc
#endif

/// The outcome of one conformance check.
public struct ConformanceResult: Sendable, Equatable, CustomStringConvertible {
    /// The check's name, stable across runs (see `ConformanceKit.Check`).
    public let check: String
    /// Whether the plugin passed it.
    public let passed: Bool
    /// What was observed (on success) or what is wrong and how to fix it (on failure).
    public let detail: String

    /// Creates a result.
    public init(check: String, passed: Bool, detail: String) {
        self.check = check
        self.passed = passed
        self.detail = detail
    }

    /// The checklist line: `"PASS  <check>: <detail>"` or `"FAIL  <check>: <detail>"`.
    public var description: String {
        "\(passed ? "PASS" : "FAIL")  \(check)\(detail.isEmpty ? "" : ": \(detail)")"
    }
}

/// Tuning of a conformance run.
public struct ConformanceOptions: Sendable {
    /// The outbound message handed to `send` (JSON bytes); nil uses `ConformanceKit.defaultTestMessage`.
    public var sendJSON: [UInt8]?
    /// Longest wait for a send result and for `stopped`, in milliseconds.
    public var timeoutMilliseconds: UInt64
    /// How long the loop keeps running after the send result, to let timers and late (duplicate) reports
    /// arrive, in milliseconds.
    public var graceMilliseconds: UInt64
    /// The instance name the plugin is created under (routes mount at `/webhooks/<instanceName>`).
    public var instanceName: String
    /// Receives every log entry as it is written (for example to print it); entries are also in the report.
    public var logSink: (@Sendable (ConformanceLogEntry) -> Void)?

    /// Creates options; the defaults suit most plugins.
    public init(sendJSON: [UInt8]? = nil, timeoutMilliseconds: UInt64 = ConformanceKit.defaultTimeoutMilliseconds,
                graceMilliseconds: UInt64 = 250, instanceName: String = "conformance",
                logSink: (@Sendable (ConformanceLogEntry) -> Void)? = nil)
    {
        self.sendJSON = sendJSON
        self.timeoutMilliseconds = timeoutMilliseconds
        self.graceMilliseconds = graceMilliseconds
        self.instanceName = instanceName
        self.logSink = logSink
    }
}

/// Everything a conformance run produced.
public struct ConformanceReport: Sendable {
    /// The plugin checked.
    public let pluginPath: String
    /// The checklist, in the order the checks ran.
    public let results: [ConformanceResult]
    /// What the host logged for the instance during the run.
    public let log: [ConformanceLogEntry]

    /// Number of checks passed.
    public var passedCount: Int { results.filter(\.passed).count }
    /// Number of checks failed.
    public var failedCount: Int { results.count - passedCount }
    /// True when at least one check ran and none failed.
    public var allPassed: Bool { !results.isEmpty && failedCount == 0 }
    /// `"N passed, M failed"`.
    public var summary: String { ConformanceKit.summary(of: results) }
}

/// Checks a connector plugin (`.so`) against the Chorus plugin ABI contract.
///
/// ```swift
/// let results = ConformanceKit.run(pluginPath: "/path/to/libchorus-mine.so", settings: [("api_base", "http://127.0.0.1:9")])
/// for r in results where !r.passed { XCTFail(r.description) }
/// ```
///
/// The run is synchronous: it creates its own `EventLoop` on the calling thread and shuts it down before
/// returning. The plugin image stays loaded afterwards (plugins are never unloaded; see docs/plugin-abi.md).
/// A plugin that crashes takes the calling process with it.
public enum ConformanceKit {
    /// The default for `ConformanceOptions.timeoutMilliseconds`.
    public static let defaultTimeoutMilliseconds: UInt64 = 5000

    /// The names of the checks, in the order they run.
    public enum Check {
        /// The file loads with `dlopen(RTLD_NOW | RTLD_LOCAL)`.
        public static let dlopen = "loads with dlopen"
        /// The image exports `chorus_plugin_entry`.
        public static let entrySymbol = "exports chorus_plugin_entry"
        /// Offered only a version that does not exist, the entry point returns `CHORUS_ERR_VERSION`.
        public static let declinesUnknownVersion = "negotiation: declines an offer without a version it knows"
        /// Offered only v1, the entry point returns a descriptor with `abi_version` 1.
        public static let picksV1 = "negotiation: picks ABI v1 when offered only v1"
        /// The descriptor's `struct_size` is at least `sizeof(chorus_plugin_descriptor)` of v1.
        public static let descriptorSize = "descriptor: struct_size covers ABI v1"
        /// `name`, `version` and `channel_kind` are set, non-empty UTF-8; `channel_kind` is a lowercase token.
        public static let descriptorFields = "descriptor: name, version, channel_kind, description"
        /// The descriptor's reserved fields are zero.
        public static let descriptorReserved = "descriptor: reserved fields are zero"
        /// The vtable has its v1 size, every required function and zeroed reserved fields.
        public static let vtable = "vtable: size, required functions, reserved fields"
        /// Capabilities are present with their v1 size, known flags, valid part lists and zeroed reserved fields.
        public static let capabilities = "capabilities: size, flags, part lists"
        /// `PluginLoader.load(path:)` accepts the plugin.
        public static let loader = "accepted by PluginLoader"
        /// A Swift plugin was built with this host's Swift toolchain (C plugins declare none).
        public static let toolchain = "Swift toolchain matches chorusd"
        /// `create` succeeds with the given settings and registers no routes.
        public static let create = "create with the given settings"
        /// `start` succeeds.
        public static let start = "start"
        /// The routes registered in `start` (listed as mounted under `/webhooks/<instance>`).
        public static let routes = "routes registered under the instance"
        /// A text message handed to `send` ends in a `send_result` within the timeout.
        public static let sendOnce = "send: a text message ends in exactly one send_result"
        /// No second `send_result` follows for the same send.
        public static let noSecondResult = "send: no second send_result for the same send"
        /// Every event emitted during the run is a well-formed schema object without host-assigned fields.
        public static let events = "emitted events are well-formed"
        /// `stop` leads to `stopped` within the timeout, with no send left pending.
        public static let stop = "stop: stopped is called within the timeout"
        /// No host call arrives during or after `destroy`.
        public static let destroy = "destroy: no host calls afterwards"
    }

    /// Runs every check with default options and returns the checklist.
    ///
    /// - Parameters:
    ///   - pluginPath: the plugin's shared object.
    ///   - settings: the instance settings handed to `create`, as the daemon would (flattened dotted keys,
    ///     secrets already resolved).
    public static func run(pluginPath: String, settings: [(String, String)] = []) -> [ConformanceResult] {
        run(pluginPath: pluginPath, settings: settings, options: ConformanceOptions()).results
    }

    /// Runs every check and returns the checklist together with what the host logged.
    public static func run(pluginPath: String, settings: [(String, String)], options: ConformanceOptions) -> ConformanceReport {
        let runner = ConformanceRunner(pluginPath: pluginPath, settings: settings, options: options)
        runner.runAll()
        return ConformanceReport(pluginPath: pluginPath, results: runner.results, log: runner.capture.entries)
    }

    /// `"N passed, M failed"`.
    public static func summary(of results: [ConformanceResult]) -> String {
        let passed = results.filter(\.passed).count
        return "\(passed) passed, \(results.count - passed) failed"
    }

    /// The outbound message `send` receives when no other is given: one text part, in the form chorusd
    /// hands to plugins (docs/schema.md, "What a plugin receives").
    public static func defaultTestMessage(instance: String = "conformance") -> [UInt8] {
        let message: JSONValue = [
            "schema": 1,
            "message_id": "msg_conformance_0001",
            "type": "message",
            "instance": .string(instance),
            "conversation_id": "conv_conformance_0001",
            "to": "conformance-chat",
            "channel_ids": ["chat": "conformance-chat", "account": .string(instance)],
            "parts": [["type": "text", "text": "Hello from chorus-conformance"]],
        ]
        return JSONWriter.encode(message)
    }

    /// Reads an outbound message for `ConformanceOptions.sendJSON` from a file and checks that it is a JSON object.
    public static func readMessageFile(_ path: String) throws(ConformanceFileError) -> [UInt8] {
        let bytes = try FileSupport.readFile(path)
        let value: JSONValue
        do { value = try JSONParser.parse(bytes) } catch {
            throw ConformanceFileError(path: path, reason: "not valid JSON: \(error)")
        }
        guard value.objectValue != nil else {
            throw ConformanceFileError(path: path, reason: "expected a JSON object (an outbound message), found \(value.typeName)")
        }
        return bytes
    }

    /// The directory of the running executable: for `swift test` the build products directory
    /// (`.build/debug`), where SwiftPM also puts the package's dynamic library products.
    public static var productsDirectory: String? {
        guard let exe = FileSupport.executablePath(), let slash = exe.lastIndex(of: "/") else { return nil }
        let dir = String(exe[..<slash])
        return dir.isEmpty ? "/" : dir
    }

    /// The path of a dynamic library product built next to the running executable, e.g.
    /// `builtPlugin(product: "chorus-sandbox")` → `<products>/libchorus-sandbox.so`; nil when it is not there.
    public static func builtPlugin(product: String) -> String? {
        guard let dir = productsDirectory else { return nil }
        let path = "\(dir)/lib\(product).so"
        return FileSupport.isReadableFile(path) ? path : nil
    }
}

// MARK: - The run

/// Carries one conformance run; loop thread (the caller's) only.
final class ConformanceRunner {
    let pluginPath: String
    let settings: [(String, String)]
    let options: ConformanceOptions
    let capture: LogCapture
    private(set) var results: [ConformanceResult] = []

    /// Top-level keys chorusd accepts in an emitted event (docs/schema.md, "What a plugin emits").
    static let eventKeys: Set<String> = [
        "type", "direction", "channel_ids", "sender", "participants", "timestamp", "reply_to", "thread_id",
        "parts", "status", "reaction", "target", "typing", "read", "conversation", "context", "raw", "dedup_key",
    ]
    /// Keys the host assigns; a plugin must not emit them.
    static let hostAssignedKeys: [String] = ["id", "conversation_id", "received_at", "instance", "channel"]
    /// Offered in the negotiation check that the plugin must decline.
    static let unknownVersion: UInt32 = 1_000_000
    static let sendId: UInt64 = 1

    init(pluginPath: String, settings: [(String, String)], options: ConformanceOptions) {
        self.pluginPath = pluginPath
        self.settings = settings
        self.options = options
        self.capture = LogCapture(sink: options.logSink)
    }

    private func pass(_ check: String, _ detail: String = "") {
        results.append(ConformanceResult(check: check, passed: true, detail: detail))
    }

    private func fail(_ check: String, _ detail: String) {
        results.append(ConformanceResult(check: check, passed: false, detail: detail))
    }

    func runAll() {
        guard inspectImage() else { return }
        guard let plugin = loadWithHost() else { return }
        runInstance(plugin)
    }

    // MARK: Raw image checks

    /// Calls the entry point directly with chosen offers and reads the descriptor field by field.
    /// Returns false when the file cannot even be loaded (nothing else can be checked then).
    private func inspectImage() -> Bool {
        guard let handle = dlopen(pluginPath, RTLD_NOW | RTLD_LOCAL) else {
            fail(ConformanceKit.Check.dlopen, dlerror().map { String(cString: $0) } ?? "dlopen failed")
            return false
        }
        pass(ConformanceKit.Check.dlopen, pluginPath)
        // The image is never dlclose'd once its code ran (docs/plugin-abi.md §12).
        guard let symbol = dlsym(handle, CHORUS_PLUGIN_ENTRY_SYMBOL) else {
            fail(ConformanceKit.Check.entrySymbol,
                 "\(CHORUS_PLUGIN_ENTRY_SYMBOL) is not exported; mark it CHORUS_EXPORT (C) or @_cdecl (Swift)")
            return true
        }
        pass(ConformanceKit.Check.entrySymbol)
        let entry = unsafeBitCast(symbol, to: chorus_plugin_entry_fn.self)

        // 1. An offer with only a version that does not exist must be declined.
        let (unknownStatus, unknownDescriptor) = callEntry(entry, offering: [ConformanceRunner.unknownVersion])
        if unknownStatus == CHORUS_ERR_VERSION {
            pass(ConformanceKit.Check.declinesUnknownVersion, "offered [\(ConformanceRunner.unknownVersion)], got CHORUS_ERR_VERSION")
        } else if unknownStatus == CHORUS_OK {
            let picked = unknownDescriptor.map { "picked \($0.pointee.abi_version)" } ?? "returned no descriptor"
            fail(ConformanceKit.Check.declinesUnknownVersion,
                 "offered only version \(ConformanceRunner.unknownVersion), the plugin returned CHORUS_OK and \(picked); "
                    + "it must pick from the offer (never stamp CHORUS_PLUGIN_ABI_VERSION blindly) and return CHORUS_ERR_VERSION when none fits")
        } else {
            fail(ConformanceKit.Check.declinesUnknownVersion,
                 "offered only version \(ConformanceRunner.unknownVersion), the plugin returned status \(unknownStatus.rawValue); expected CHORUS_ERR_VERSION (\(CHORUS_ERR_VERSION.rawValue))")
        }

        // 2. An offer of only v1 must be accepted, picking v1.
        let (status, descriptor) = callEntry(entry, offering: [CHORUS_PLUGIN_ABI_V1])
        guard status == CHORUS_OK, let d = descriptor else {
            fail(ConformanceKit.Check.picksV1,
                 status == CHORUS_OK ? "returned CHORUS_OK but no descriptor" : "returned status \(status.rawValue) for an offer of [1]")
            return true
        }
        guard d.pointee.struct_size >= UInt32(MemoryLayout<chorus_plugin_descriptor>.offset(of: \.abi_version)! + 4) else {
            fail(ConformanceKit.Check.picksV1, "the descriptor's struct_size (\(d.pointee.struct_size)) does not even cover abi_version")
            fail(ConformanceKit.Check.descriptorSize, "struct_size \(d.pointee.struct_size) < \(MemoryLayout<chorus_plugin_descriptor>.size)")
            return true
        }
        if d.pointee.abi_version == CHORUS_PLUGIN_ABI_V1 {
            pass(ConformanceKit.Check.picksV1, "abi_version = 1")
        } else {
            fail(ConformanceKit.Check.picksV1, "offered only [1], the plugin picked \(d.pointee.abi_version)")
        }

        // 3. The descriptor.
        let descriptorSize = MemoryLayout<chorus_plugin_descriptor>.size
        guard d.pointee.struct_size >= UInt32(descriptorSize) else {
            fail(ConformanceKit.Check.descriptorSize,
                 "struct_size is \(d.pointee.struct_size); a v1 descriptor is \(descriptorSize) bytes: set it to sizeof(chorus_plugin_descriptor)")
            return true
        }
        pass(ConformanceKit.Check.descriptorSize, "\(d.pointee.struct_size) bytes (v1: \(descriptorSize))")
        checkDescriptorFields(d)
        if isZero(d.pointee.reserved) {
            pass(ConformanceKit.Check.descriptorReserved)
        } else {
            fail(ConformanceKit.Check.descriptorReserved, "reserved[] holds non-zero values; later ABI revisions give them meaning")
        }
        checkVtable(d.pointee.vtable)
        checkCapabilities(d.pointee.capabilities)
        return true
    }

    private func callEntry(_ entry: chorus_plugin_entry_fn, offering versions: [UInt32])
        -> (chorus_status, UnsafePointer<chorus_plugin_descriptor>?)
    {
        var out: UnsafePointer<chorus_plugin_descriptor>?
        let status: chorus_status = versions.withUnsafeBufferPointer { v in
            "chorus-conformance".withCString { hv in
                var offer = chorus_host_offer()
                offer.struct_size = UInt32(MemoryLayout<chorus_host_offer>.size)
                offer.version_count = UInt32(v.count)
                offer.versions = v.baseAddress
                offer.host_version = hv
                return entry(&offer, &out)
            }
        }
        return (status, out)
    }

    private func checkDescriptorFields(_ d: UnsafePointer<chorus_plugin_descriptor>) {
        var problems: [String] = []
        func text(_ p: UnsafePointer<CChar>?, _ field: String, required: Bool) -> String? {
            guard let p else {
                if required { problems.append("\(field) is NULL") }
                return nil
            }
            guard let s = String(validatingCString: p) else {
                problems.append("\(field) is not valid UTF-8")
                return nil
            }
            if s.isEmpty && required { problems.append("\(field) is empty") }
            return s
        }
        let name = text(d.pointee.name, "name", required: true)
        let version = text(d.pointee.version, "version", required: true)
        let channel = text(d.pointee.channel_kind, "channel_kind", required: true)
        let summary = text(d.pointee.description, "description", required: false)
        if let channel, !channel.isEmpty, !channel.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f || $0 == 0x2d }) {
            problems.append("channel_kind \"\(channel)\" should use only lowercase letters, digits, \"_\" and \"-\" (consumers filter on it)")
        }
        if problems.isEmpty {
            var detail = "\(name ?? "") \(version ?? ""), channel \"\(channel ?? "")\""
            if summary == nil || summary!.isEmpty { detail += " (no description)" }
            pass(ConformanceKit.Check.descriptorFields, detail)
        } else {
            fail(ConformanceKit.Check.descriptorFields, problems.joined(separator: "; "))
        }
    }

    private func checkVtable(_ vt: UnsafePointer<chorus_plugin_vtable>?) {
        guard let vt else {
            fail(ConformanceKit.Check.vtable, "the descriptor has no vtable")
            return
        }
        let size = MemoryLayout<chorus_plugin_vtable>.size
        guard vt.pointee.struct_size >= UInt32(size) else {
            fail(ConformanceKit.Check.vtable, "struct_size is \(vt.pointee.struct_size); a v1 vtable is \(size) bytes")
            return
        }
        var missing: [String] = []
        if vt.pointee.create == nil { missing.append("create") }
        if vt.pointee.start == nil { missing.append("start") }
        if vt.pointee.send == nil { missing.append("send") }
        if vt.pointee.stop == nil { missing.append("stop") }
        if vt.pointee.destroy == nil { missing.append("destroy") }
        if !missing.isEmpty {
            fail(ConformanceKit.Check.vtable, "missing required functions: \(missing.joined(separator: ", "))")
        } else if vt.pointee.reserved0 != 0 || !isZero(vt.pointee.reserved) {
            fail(ConformanceKit.Check.vtable, "reserved fields hold non-zero values")
        } else {
            pass(ConformanceKit.Check.vtable, "\(vt.pointee.struct_size) bytes; reload \(vt.pointee.reload == nil ? "not implemented" : "implemented")")
        }
    }

    private func checkCapabilities(_ caps: UnsafePointer<chorus_capabilities>?) {
        guard let c = caps else {
            fail(ConformanceKit.Check.capabilities,
                 "no capabilities: declare them truthfully (at least the part types the channel receives and sends)")
            return
        }
        let size = MemoryLayout<chorus_capabilities>.size
        guard c.pointee.struct_size >= UInt32(size) else {
            fail(ConformanceKit.Check.capabilities, "struct_size is \(c.pointee.struct_size); v1 capabilities are \(size) bytes")
            return
        }
        var problems: [String] = []
        let knownFlags: UInt64 = (UInt64(CHORUS_CAP_MEDIA_UPLOAD) << 1) - 1
        if c.pointee.flags & ~knownFlags != 0 {
            problems.append(String(format16: c.pointee.flags & ~knownFlags, prefix: "unknown flag bits "))
        }
        if c.pointee.reserved0 != 0 || c.pointee.reserved1 != 0 || !isZero(c.pointee.reserved) {
            problems.append("reserved fields hold non-zero values")
        }
        func parts(_ p: UnsafePointer<CChar>?, _ field: String) -> [String] {
            guard let p else { return [] }
            guard let s = String(validatingCString: p) else { problems.append("\(field) is not valid UTF-8"); return [] }
            let items = s.split(separator: ",").map { $0.trimmingSpaces() }
            for item in items where item.isEmpty || !item.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x5f }) {
                problems.append("\(field) has an invalid part type \"\(item)\" (comma-separated lowercase names such as \"text,media\")")
            }
            return items
        }
        let receive = parts(c.pointee.receive_parts, "receive_parts")
        let send = parts(c.pointee.send_parts, "send_parts")
        if receive.isEmpty && send.isEmpty { problems.append("receive_parts and send_parts are both empty") }
        if problems.isEmpty {
            pass(ConformanceKit.Check.capabilities,
                 "receive [\(receive.joined(separator: ","))], send [\(send.joined(separator: ","))], flags 0x\(String(c.pointee.flags, radix: 16))")
        } else {
            fail(ConformanceKit.Check.capabilities, problems.joined(separator: "; "))
        }
    }

    private func isZero<T>(_ value: T) -> Bool {
        withUnsafeBytes(of: value) { $0.allSatisfy { $0 == 0 } }
    }

    // MARK: Loading through the host

    private func loadWithHost() -> LoadedPlugin? {
        do {
            let plugin = try PluginLoader.load(path: pluginPath)
            pass(ConformanceKit.Check.loader, "\(plugin.name) \(plugin.version), ABI v\(plugin.abiVersion)")
            if let tc = plugin.swiftToolchain {
                pass(ConformanceKit.Check.toolchain, "built with \(tc), as this host")
            } else {
                pass(ConformanceKit.Check.toolchain, "not a Swift plugin (swift_toolchain is NULL)")
            }
            return plugin
        } catch {
            if case .toolchainMismatch = error {
                fail(ConformanceKit.Check.toolchain, error.description)
            } else {
                fail(ConformanceKit.Check.loader, error.description)
            }
            return nil
        }
    }

    // MARK: One instance on a real loop

    private func runInstance(_ plugin: LoadedPlugin) {
        let loop: EventLoop
        do { loop = try EventLoop() } catch {
            fail(ConformanceKit.Check.create, "cannot create an event loop: \(error)")
            return
        }
        let stateDirectory: String
        do { stateDirectory = try FileSupport.makeTemporaryDirectory(prefix: "chorus-conformance") } catch {
            fail(ConformanceKit.Check.create, error.description)
            loop.shutdown()
            return
        }
        defer { FileSupport.removeTree(stateDirectory) }
        let httpClient = try? HTTPClient(loop: loop)
        let fake = FakeDaemon(loop: loop)
        let instance = PluginInstance(name: options.instanceName, plugin: plugin, settings: settings,
                                      stateDirectory: stateDirectory, loop: loop, httpClient: httpClient,
                                      logger: capture.logger(label: "chorus-conformance"))
        instance.delegate = fake
        withExtendedLifetime((fake, instance)) {
            exercise(instance, fake)
            httpClient?.close()
            fake.runLoop(forMilliseconds: 10)
            loop.shutdown()
        }
    }

    private func exercise(_ instance: PluginInstance, _ fake: FakeDaemon) {
        let name = instance.name
        // create
        do {
            try instance.create()
        } catch {
            fail(ConformanceKit.Check.create, error.description)
            return
        }
        if fake.routes(of: name).isEmpty {
            pass(ConformanceKit.Check.create, settings.isEmpty ? "no settings" : "\(settings.count) setting(s)")
        } else {
            fail(ConformanceKit.Check.create, "create registered routes; register them in start, so a failed create leaves nothing behind")
        }

        // start
        do {
            try instance.start()
            pass(ConformanceKit.Check.start)
        } catch {
            fail(ConformanceKit.Check.start, error.description)
            fake.markDestroyed(instance)
            instance.destroy()
            return
        }

        checkRoutes(fake.routes(of: name))
        checkSend(instance, fake)
        checkEvents(fake.events.filter { $0.instance == name })
        checkStop(instance, fake)
        checkDestroy(instance, fake)
    }

    private func checkRoutes(_ routes: [FakeDaemon.Route]) {
        let methods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        let odd = routes.filter { !methods.contains($0.method) }
        if !odd.isEmpty {
            fail(ConformanceKit.Check.routes, "unusual HTTP methods: \(odd.map { "\($0.method) \($0.path)" }.joined(separator: ", "))")
        } else if routes.isEmpty {
            pass(ConformanceKit.Check.routes, "none (the plugin takes no webhooks)")
        } else {
            pass(ConformanceKit.Check.routes, routes.map { "\($0.method) \($0.mountedPath)" }.joined(separator: ", "))
        }
    }

    private func checkSend(_ instance: PluginInstance, _ fake: FakeDaemon) {
        let id = ConformanceRunner.sendId
        let message = options.sendJSON ?? ConformanceKit.defaultTestMessage(instance: instance.name)
        let status = instance.send(id: id, json: message)
        if status != CHORUS_OK {
            var detail = "send returned status \(status.rawValue) (a synchronous permanent failure) for a plain text message"
            fake.runLoop(forMilliseconds: options.graceMilliseconds)
            if !fake.reports(forSend: id).isEmpty || refusedReports(for: id) > 0 {
                detail += ", and then called send_result as well, which it must not"
            }
            fail(ConformanceKit.Check.sendOnce, detail)
            return
        }
        let reported = fake.runLoop(until: { !fake.reports(forSend: id).isEmpty }, timeoutMilliseconds: options.timeoutMilliseconds)
        guard reported else {
            fail(ConformanceKit.Check.sendOnce,
                 "no send_result within \(options.timeoutMilliseconds) ms; every send that returns CHORUS_OK must end in exactly one send_result")
            fail(ConformanceKit.Check.noSecondResult, "no first send_result to compare with")
            return
        }
        // Let late duplicates, timers and commits happen.
        fake.runLoop(forMilliseconds: options.graceMilliseconds)
        let reports = fake.reports(forSend: id)
        let first = reports[0]
        pass(ConformanceKit.Check.sendOnce, describe(first))
        let refused = refusedReports(for: id)
        if reports.count == 1 && refused == 0 {
            pass(ConformanceKit.Check.noSecondResult, "a second one would be refused by the host")
        } else {
            fail(ConformanceKit.Check.noSecondResult,
                 "send_result was called \(reports.count + refused) times for send \(id); the host accepts only the first")
        }
    }

    private func describe(_ r: FakeDaemon.SendReport) -> String {
        switch r.outcome {
        case CHORUS_SEND_SENT:
            return "SENT" + (r.channelMessageId.map { ", channel message id \"\($0)\"" } ?? " (no channel message id)")
        case CHORUS_SEND_FAILED_RETRYABLE:
            return "FAILED_RETRYABLE \(r.errorCode ?? "-"): \(r.errorMessage ?? "")"
        default:
            return "FAILED_PERMANENT \(r.errorCode ?? "-"): \(r.errorMessage ?? "")"
        }
    }

    /// Send results the host refused (logged by `PluginInstance` as "not pending") for `id`.
    private func refusedReports(for id: UInt64) -> Int {
        capture.entries.filter { $0.level == "error" && $0.message.contains("result for send \(id),") && $0.message.contains("not pending") }.count
    }

    private func checkEvents(_ events: [FakeDaemon.EmittedEvent]) {
        guard !events.isEmpty else {
            pass(ConformanceKit.Check.events, "no events emitted during the run")
            return
        }
        var problems: [String] = []
        for (i, event) in events.enumerated() {
            let label = "event #\(i + 1)"
            guard let value = event.value else { problems.append("\(label) is not valid JSON"); continue }
            guard let object = value.objectValue else { problems.append("\(label) is a JSON \(value.typeName), not an object"); continue }
            guard let type = object["type"]?.stringValue, !type.isEmpty else { problems.append("\(label) has no \"type\""); continue }
            let assigned = ConformanceRunner.hostAssignedKeys.filter { object[$0] != nil }
            if !assigned.isEmpty {
                problems.append("\(label) (\(type)) sets \(assigned.joined(separator: ", ")), which the host assigns")
            }
            let unknown = object.keys.filter { !ConformanceRunner.eventKeys.contains($0) && !ConformanceRunner.hostAssignedKeys.contains($0) }
            if !unknown.isEmpty {
                problems.append("\(label) (\(type)) has keys the schema does not know: \(unknown.joined(separator: ", "))")
            }
            if type == "message" {
                if object["channel_ids"]?["chat"]?.stringValue == nil {
                    problems.append("\(label) (message) has no channel_ids.chat")
                }
                if (object["parts"]?.arrayValue ?? []).isEmpty {
                    problems.append("\(label) (message) has no parts")
                }
            }
            if event.status == CHORUS_ERR_INVALID {
                problems.append("\(label) (\(type)) was refused as invalid")
            }
        }
        if problems.isEmpty {
            let types = events.compactMap { $0.value?["type"]?.stringValue }
            pass(ConformanceKit.Check.events, "\(events.count) event(s): \(types.joined(separator: ", "))")
        } else {
            fail(ConformanceKit.Check.events, problems.joined(separator: "; "))
        }
    }

    private func checkStop(_ instance: PluginInstance, _ fake: FakeDaemon) {
        let name = instance.name
        let before = fake.stoppedInstances.filter { $0 == name }.count
        instance.stop()
        let stopped = fake.runLoop(until: { fake.stoppedInstances.filter { $0 == name }.count > before },
                                   timeoutMilliseconds: options.timeoutMilliseconds)
        if !stopped {
            fail(ConformanceKit.Check.stop, "stopped was not called within \(options.timeoutMilliseconds) ms of stop")
            instance.forceStopped()
        } else if !instance.pendingSends.isEmpty {
            fail(ConformanceKit.Check.stop, "stopped was called with \(instance.pendingSends.count) send(s) not reported")
        } else {
            pass(ConformanceKit.Check.stop)
        }
    }

    private func checkDestroy(_ instance: PluginInstance, _ fake: FakeDaemon) {
        let errorsBefore = capture.entries.filter { $0.level == "error" }.count
        fake.markDestroyed(instance)
        instance.destroy()
        fake.runLoop(forMilliseconds: options.graceMilliseconds)
        let lateErrors = capture.entries.filter { $0.level == "error" }.dropFirst(errorsBefore).map(\.message)
        if fake.callsAfterDestroy.isEmpty && lateErrors.isEmpty {
            pass(ConformanceKit.Check.destroy)
        } else {
            fail(ConformanceKit.Check.destroy,
                 "host calls during or after destroy: \((fake.callsAfterDestroy + lateErrors).joined(separator: "; "))")
        }
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

extension String {
    /// `prefix` followed by `value` in hexadecimal ("0x…").
    init(format16 value: UInt64, prefix: String) {
        self = prefix + "0x" + String(value, radix: 16)
    }
}
