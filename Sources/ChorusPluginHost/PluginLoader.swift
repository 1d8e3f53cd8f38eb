import CChorusPlugin
import ChorusJSON
import ChorusToolchain
#if canImport(Glibc)
import Glibc
#endif

/// Why a plugin was refused. Every case names the file.
public enum PluginLoadError: Error, CustomStringConvertible, Sendable {
    case notFound(name: String, searched: [String])
    case dlopen(path: String, message: String)
    case missingSymbol(path: String, symbol: String)
    case noCommonVersion(path: String, offered: [UInt32])
    case versionMismatch(path: String, offered: [UInt32], picked: UInt32)
    case toolchainMismatch(path: String, plugin: String, host: String)
    case invalidDescriptor(path: String, reason: String)

    public var description: String {
        switch self {
        case .notFound(let name, let searched):
            return "plugin \"\(name)\" not found (searched: \(searched.joined(separator: ", ")))"
        case .dlopen(let path, let message):
            return "\(path): cannot load: \(message)"
        case .missingSymbol(let path, let symbol):
            return "\(path): not a Chorus plugin: it does not export \(symbol)"
        case .noCommonVersion(let path, let offered):
            return "\(path): the plugin accepts none of the ABI versions this chorusd offers (\(offered.map(String.init).joined(separator: ", "))); rebuild it against this chorus_plugin.h"
        case .versionMismatch(let path, let offered, let picked):
            return "\(path): the plugin picked ABI version \(picked), but this chorusd offers only \(offered.map(String.init).joined(separator: ", "))"
        case .toolchainMismatch(let path, let plugin, let host):
            return "\(path): Swift plugin built with \(plugin), but chorusd runs on \(host); Swift has no stable ABI on Linux, rebuild the plugin with \(host)"
        case .invalidDescriptor(let path, let reason):
            return "\(path): invalid plugin descriptor: \(reason)"
        }
    }
}

/// What a plugin declares it can do (from `chorus_capabilities`).
public struct PluginCapabilities: Sendable, Equatable {
    public var flags: UInt64
    public var receiveParts: [String]
    public var sendParts: [String]
    public var maxTextLength: Int
    public var ratePerSecond: Int
    public var ratePerChatPerMinute: Int
    public var maxMediaBytes: Int64

    public init(flags: UInt64 = 0, receiveParts: [String] = [], sendParts: [String] = [], maxTextLength: Int = 0,
                ratePerSecond: Int = 0, ratePerChatPerMinute: Int = 0, maxMediaBytes: Int64 = 0)
    {
        self.flags = flags; self.receiveParts = receiveParts; self.sendParts = sendParts
        self.maxTextLength = maxTextLength; self.ratePerSecond = ratePerSecond
        self.ratePerChatPerMinute = ratePerChatPerMinute; self.maxMediaBytes = maxMediaBytes
    }

    static let flagNames: [(UInt64, String)] = [
        (UInt64(CHORUS_CAP_EDIT), "edit"), (UInt64(CHORUS_CAP_DELETE), "delete"),
        (UInt64(CHORUS_CAP_REACTIONS), "reactions"), (UInt64(CHORUS_CAP_THREADS), "threads"),
        (UInt64(CHORUS_CAP_TYPING), "typing"), (UInt64(CHORUS_CAP_READ_RECEIPTS), "read_receipts"),
        (UInt64(CHORUS_CAP_TEMPLATES), "templates"), (UInt64(CHORUS_CAP_PAYMENTS), "payments"),
        (UInt64(CHORUS_CAP_DELIVERY_STATUS), "delivery_status"), (UInt64(CHORUS_CAP_MEDIA_UPLOAD), "media_upload"),
    ]

    public func has(_ name: String) -> Bool {
        PluginCapabilities.flagNames.contains { $0.1 == name && flags & $0.0 != 0 }
    }

    /// The capabilities as shown to consumers (`plugins` on the socket).
    public var json: JSONValue {
        var o = JSONObject()
        o["receive"] = .array(receiveParts.map { .string($0) })
        o["send"] = .array(sendParts.map { .string($0) })
        for (bit, name) in PluginCapabilities.flagNames { o[name] = .bool(flags & bit != 0) }
        o["max_text_length"] = .int(maxTextLength)
        o["max_media_bytes"] = .int(maxMediaBytes)
        o["rate_per_second"] = .int(ratePerSecond)
        o["rate_per_chat_per_minute"] = .int(ratePerChatPerMinute)
        return .object(o)
    }
}

/// A plugin image that passed the checks.
public final class LoadedPlugin: @unchecked Sendable {
    public let path: String
    public let name: String
    public let version: String
    public let channel: String
    public let summary: String
    public let abiVersion: UInt32
    public let swiftToolchain: String?
    public let capabilities: PluginCapabilities
    let vtable: UnsafePointer<chorus_plugin_vtable>
    let handle: UnsafeMutableRawPointer

    init(path: String, descriptor d: UnsafePointer<chorus_plugin_descriptor>, handle: UnsafeMutableRawPointer,
         vtable: UnsafePointer<chorus_plugin_vtable>, capabilities: PluginCapabilities)
    {
        self.path = path
        self.name = String(cString: d.pointee.name)
        self.version = d.pointee.version.map { String(cString: $0) } ?? "0"
        self.channel = String(cString: d.pointee.channel_kind)
        self.summary = d.pointee.description.map { String(cString: $0) } ?? ""
        self.abiVersion = d.pointee.abi_version
        self.swiftToolchain = d.pointee.swift_toolchain.map { String(cString: $0) }
        self.capabilities = capabilities
        self.handle = handle
        self.vtable = vtable
    }

    /// The plugin as shown to consumers.
    public var json: JSONValue {
        [
            "name": .string(name), "version": .string(version), "path": .string(path), "channel": .string(channel),
            "description": .string(summary), "abi_version": .int(Int64(abiVersion)),
            "swift_toolchain": swiftToolchain.map { .string($0) } ?? .null,
            "capabilities": capabilities.json, "loaded": true, "error": .null,
        ]
    }
}

/// Finds, loads and checks plugin images.
///
/// Images are never `dlclose`d: a Swift plugin's image has no NODELETE flag and
/// the Swift runtime keeps pointers into it, so a reload creates new instances
/// from the same image.
public enum PluginLoader {
    /// ABI versions this host implements, ascending.
    public static let offeredVersions: [UInt32] = [CHORUS_PLUGIN_ABI_V1]
    public static let hostVersion = "chorusd 0.1.0"

    /// File names tried for a plugin name, in order.
    public static func candidateFileNames(_ name: String) -> [String] {
        ["libchorus-\(name).so", "chorus-\(name).so", "lib\(name).so", "\(name).so"]
    }

    /// Resolves a plugin reference (a name or a path) against the plugin directories.
    public static func resolve(_ reference: String, directories: [String]) throws(PluginLoadError) -> String {
        if reference.contains("/") {
            guard access(reference, R_OK) == 0 else { throw .notFound(name: reference, searched: [reference]) }
            return reference
        }
        var searched: [String] = []
        for dir in directories {
            for file in candidateFileNames(reference) {
                let p = dir.hasSuffix("/") ? dir + file : dir + "/" + file
                searched.append(p)
                if access(p, R_OK) == 0 { return p }
            }
        }
        throw .notFound(name: reference, searched: searched)
    }

    nonisolated(unsafe) private static var cache: [String: LoadedPlugin] = [:]
    private static let cacheLock = Mutex()

    /// Loads (or returns the already loaded) plugin image at `path`.
    public static func load(path: String) throws(PluginLoadError) -> LoadedPlugin {
        cacheLock.lock(); defer { cacheLock.unlock() }
        if let p = cache[path] { return p }
        let p = try loadUncached(path: path)
        cache[path] = p
        return p
    }

    private static func loadUncached(path: String) throws(PluginLoadError) -> LoadedPlugin {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw .dlopen(path: path, message: dlerror().map { String(cString: $0) } ?? "unknown error")
        }
        guard let sym = dlsym(handle, CHORUS_PLUGIN_ENTRY_SYMBOL) else {
            // Not a plugin — but never dlclose it: a Swift image registered its metadata and
            // conformances with the runtime when it was opened, and unloading it leaves the
            // runtime pointing into unmapped memory (a later conformance lookup crashes).
            throw .missingSymbol(path: path, symbol: CHORUS_PLUGIN_ENTRY_SYMBOL)
        }
        let entry = unsafeBitCast(sym, to: chorus_plugin_entry_fn.self)
        var descriptorPtr: UnsafePointer<chorus_plugin_descriptor>?
        let status: chorus_status = offeredVersions.withUnsafeBufferPointer { versions in
            hostVersion.withCString { hv in
                var offer = chorus_host_offer()
                offer.struct_size = UInt32(MemoryLayout<chorus_host_offer>.size)
                offer.version_count = UInt32(versions.count)
                offer.versions = versions.baseAddress
                offer.host_version = hv
                return entry(&offer, &descriptorPtr)
            }
        }
        if status == CHORUS_ERR_VERSION { throw .noCommonVersion(path: path, offered: offeredVersions) }
        guard status == CHORUS_OK else {
            throw .invalidDescriptor(path: path, reason: "chorus_plugin_entry returned status \(status.rawValue)")
        }
        guard let d = descriptorPtr else { throw .invalidDescriptor(path: path, reason: "no descriptor returned") }
        let minSize = MemoryLayout<chorus_plugin_descriptor>.offset(of: \.vtable)! + MemoryLayout<UnsafeRawPointer>.size
        guard d.pointee.struct_size >= UInt32(minSize) else {
            throw .invalidDescriptor(path: path, reason: "struct_size \(d.pointee.struct_size) is smaller than the v1 descriptor (\(minSize))")
        }
        guard offeredVersions.contains(d.pointee.abi_version) else {
            throw .versionMismatch(path: path, offered: offeredVersions, picked: d.pointee.abi_version)
        }
        if let tc = d.pointee.swift_toolchain {
            let pluginTC = String(cString: tc)
            if pluginTC != SwiftToolchain.identifier {
                throw .toolchainMismatch(path: path, plugin: pluginTC, host: SwiftToolchain.identifier)
            }
        }
        guard d.pointee.name != nil, d.pointee.channel_kind != nil else {
            throw .invalidDescriptor(path: path, reason: "name and channel_kind are required")
        }
        guard let vt = d.pointee.vtable else { throw .invalidDescriptor(path: path, reason: "no vtable") }
        let vtMin = MemoryLayout<chorus_plugin_vtable>.offset(of: \.destroy)! + MemoryLayout<UnsafeRawPointer>.size
        guard vt.pointee.struct_size >= UInt32(vtMin) else {
            throw .invalidDescriptor(path: path, reason: "vtable struct_size \(vt.pointee.struct_size) is smaller than v1 (\(vtMin))")
        }
        guard vt.pointee.create != nil, vt.pointee.start != nil, vt.pointee.send != nil, vt.pointee.stop != nil,
              vt.pointee.destroy != nil
        else {
            throw .invalidDescriptor(path: path, reason: "vtable lacks one of create, start, send, stop, destroy")
        }
        var caps = PluginCapabilities()
        if let c = d.pointee.capabilities {
            let capMin = MemoryLayout<chorus_capabilities>.offset(of: \.max_media_bytes)! + 8
            guard c.pointee.struct_size >= UInt32(capMin) else {
                throw .invalidDescriptor(path: path, reason: "capabilities struct_size \(c.pointee.struct_size) is smaller than v1 (\(capMin))")
            }
            func list(_ p: UnsafePointer<CChar>?) -> [String] {
                guard let p else { return [] }
                return String(cString: p).split(separator: ",").map { $0.trimmingCharacters(in: " ") }.filter { !$0.isEmpty }
            }
            caps = PluginCapabilities(
                flags: c.pointee.flags, receiveParts: list(c.pointee.receive_parts), sendParts: list(c.pointee.send_parts),
                maxTextLength: Int(c.pointee.max_text_length), ratePerSecond: Int(c.pointee.rate_per_second),
                ratePerChatPerMinute: Int(c.pointee.rate_per_chat_per_minute), maxMediaBytes: Int64(c.pointee.max_media_bytes))
        }
        return LoadedPlugin(path: path, descriptor: d, handle: handle, vtable: vt, capabilities: caps)
    }
}

extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        var s = self
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}

/// A small pthread mutex (no Foundation).
final class Mutex: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>
    init() {
        m = .allocate(capacity: 1)
        pthread_mutex_init(m, nil)
    }
    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }
    func lock() { pthread_mutex_lock(m) }
    func unlock() { pthread_mutex_unlock(m) }
}
