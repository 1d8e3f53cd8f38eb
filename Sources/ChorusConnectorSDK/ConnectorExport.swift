import CChorusPlugin
import ChorusJSON
import ChorusToolchain
#if canImport(Glibc)
import Glibc
#endif

/// Bridges one `Connector` type to the C ABI. Call `entry` from your exported
/// `chorus_plugin_entry` (see `Connector`).
public enum ConnectorExport {
    /// The ABI versions this SDK can speak, lowest first. It picks the lowest the host offers.
    public static let supportedVersions: [UInt32] = [CHORUS_PLUGIN_ABI_V1]

    nonisolated(unsafe) static var factory: ((ConnectorHost, ConnectorSettings) throws -> any Connector)?
    nonisolated(unsafe) static var descriptorPtr: UnsafeMutablePointer<chorus_plugin_descriptor>?

    /// Implements `chorus_plugin_entry`: negotiates the version and returns the descriptor.
    public static func entry(offer: UnsafePointer<chorus_host_offer>?,
                             out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?,
                             descriptor: ConnectorDescriptor,
                             factory: @escaping (ConnectorHost, ConnectorSettings) throws -> any Connector) -> chorus_status
    {
        guard let offer, let out, offer.pointee.struct_size >= UInt32(MemoryLayout<chorus_host_offer>.offset(of: \.versions)! + 8),
              let versions = offer.pointee.versions
        else { return CHORUS_ERR_INVALID }
        let offered = Array(UnsafeBufferPointer(start: versions, count: Int(offer.pointee.version_count)))
        guard let picked = supportedVersions.first(where: { offered.contains($0) }) else { return CHORUS_ERR_VERSION }
        self.factory = factory
        if descriptorPtr == nil { descriptorPtr = makeDescriptor(descriptor) }
        descriptorPtr!.pointee.abi_version = picked
        out.pointee = UnsafePointer(descriptorPtr!)
        return CHORUS_OK
    }

    static func makeDescriptor(_ d: ConnectorDescriptor) -> UnsafeMutablePointer<chorus_plugin_descriptor> {
        let caps = UnsafeMutablePointer<chorus_capabilities>.allocate(capacity: 1)
        var c = chorus_capabilities()
        c.struct_size = UInt32(MemoryLayout<chorus_capabilities>.size)
        c.flags = d.capabilities.flags
        c.receive_parts = UnsafePointer(strdup(d.capabilities.receiveParts.joined(separator: ",")))
        c.send_parts = UnsafePointer(strdup(d.capabilities.sendParts.joined(separator: ",")))
        c.max_text_length = d.capabilities.maxTextLength
        c.rate_per_second = d.capabilities.ratePerSecond
        c.rate_per_chat_per_minute = d.capabilities.ratePerChatPerMinute
        c.max_media_bytes = d.capabilities.maxMediaBytes
        caps.initialize(to: c)

        let vt = UnsafeMutablePointer<chorus_plugin_vtable>.allocate(capacity: 1)
        var v = chorus_plugin_vtable()
        v.struct_size = UInt32(MemoryLayout<chorus_plugin_vtable>.size)
        v.create = { api, hinst, settings, out, err, cap in
            guard let api, let hinst, let settings, let out else { return CHORUS_ERR_INVALID }
            guard let factory = ConnectorExport.factory else { return CHORUS_ERR_INTERNAL }
            let host = ConnectorHost(api: api, handle: hinst)
            let s = ConnectorExport.readSettings(settings)
            do {
                let connector = try factory(host, s)
                out.pointee = Unmanaged.passRetained(InstanceBox(connector)).toOpaque()
                return CHORUS_OK
            } catch {
                ConnectorExport.writeError(error, err, cap)
                return (error as? ConnectorError)?.status ?? CHORUS_ERR_INVALID
            }
        }
        v.start = { inst, err, cap in
            guard let c = InstanceBox.connector(inst) else { return CHORUS_ERR_INVALID }
            do { try c.start(); return CHORUS_OK } catch { ConnectorExport.writeError(error, err, cap); return (error as? ConnectorError)?.status ?? CHORUS_ERR_INTERNAL }
        }
        v.reload = { inst, settings, err, cap in
            guard let c = InstanceBox.connector(inst), let settings else { return CHORUS_ERR_INVALID }
            let s = ConnectorExport.readSettings(settings)
            do { try c.reload(settings: s); return CHORUS_OK } catch { ConnectorExport.writeError(error, err, cap); return (error as? ConnectorError)?.status ?? CHORUS_ERR_INVALID }
        }
        v.send = { inst, id, json, length in
            guard let c = InstanceBox.connector(inst), let json else { return CHORUS_ERR_INVALID }
            let raw = Array(UnsafeRawBufferPointer(start: json, count: length))
            guard let value = try? JSONParser.parse(raw) else { return CHORUS_ERR_INVALID }
            do {
                try c.send(OutboundMessage(id: SendID(id), json: value, raw: raw))
                return CHORUS_OK
            } catch {
                c.host.log(.warning, "send \(id) refused: \(error)")
                return (error as? ConnectorError)?.status ?? CHORUS_ERR_INVALID
            }
        }
        v.stop = { inst in InstanceBox.connector(inst)?.stop() }
        v.destroy = { inst in
            guard let inst else { return }
            Unmanaged<InstanceBox>.fromOpaque(inst).release()
        }
        vt.initialize(to: v)

        let p = UnsafeMutablePointer<chorus_plugin_descriptor>.allocate(capacity: 1)
        var desc = chorus_plugin_descriptor()
        desc.struct_size = UInt32(MemoryLayout<chorus_plugin_descriptor>.size)
        desc.name = UnsafePointer(strdup(d.name))
        desc.version = UnsafePointer(strdup(d.version))
        desc.channel_kind = UnsafePointer(strdup(d.channel))
        desc.description = UnsafePointer(strdup(d.summary))
        desc.swift_toolchain = UnsafePointer(strdup(SwiftToolchain.identifier))
        desc.capabilities = UnsafePointer(caps)
        desc.vtable = UnsafePointer(vt)
        p.initialize(to: desc)
        return p
    }

    static func readSettings(_ settings: UnsafePointer<chorus_settings>) -> ConnectorSettings {
        var values: [(key: String, value: String)] = []
        if let items = settings.pointee.items {
            for i in 0..<Int(settings.pointee.count) {
                if let k = items[i].key, let val = items[i].value { values.append((String(cString: k), String(cString: val))) }
            }
        }
        return ConnectorSettings(
            instanceName: settings.pointee.instance_name.map { String(cString: $0) } ?? "",
            stateDirectory: settings.pointee.state_dir.map { String(cString: $0) } ?? "", values: values)
    }

    static func writeError(_ error: any Error, _ buf: UnsafeMutablePointer<CChar>?, _ cap: Int) {
        guard let buf, cap > 0 else { return }
        let msg = Array("\(error)".utf8.prefix(cap - 1))
        for (i, b) in msg.enumerated() { buf[i] = CChar(bitPattern: b) }
        buf[msg.count] = 0
    }
}

/// Holds a connector instance behind the ABI's `void *instance`.
final class InstanceBox {
    let connector: any Connector
    init(_ connector: any Connector) { self.connector = connector }
    static func connector(_ p: UnsafeMutableRawPointer?) -> (any Connector)? {
        guard let p else { return nil }
        return Unmanaged<InstanceBox>.fromOpaque(p).takeUnretainedValue().connector
    }
}
