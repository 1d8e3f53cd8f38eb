import CChorusPlugin
import ChorusLoop
#if canImport(Glibc)
import Glibc
#endif

/// The `chorus_host_api` table handed to every plugin at create time.
///
/// Each entry is a non-capturing trampoline that recovers the `PluginInstance`
/// from the opaque `chorus_host_instance *` and forwards to it.
enum HostAPI {
    nonisolated(unsafe) static let table: UnsafePointer<chorus_host_api> = {
        let p = UnsafeMutablePointer<chorus_host_api>.allocate(capacity: 1)
        var api = chorus_host_api()
        api.struct_size = UInt32(MemoryLayout<chorus_host_api>.size)
        api.abi_version = CHORUS_PLUGIN_ABI_V1
        api.host_version = UnsafePointer(strdup(PluginLoader.hostVersion))
        api.log = { inst, level, message, fields, count in
            guard let i = PluginInstance.from(inst) else { return }
            var f: [(String, String)] = []
            if let fields {
                for n in 0..<count {
                    guard let k = fields[n].key else { continue }
                    f.append((String(cString: k), fields[n].value.map { String(cString: $0) } ?? ""))
                }
            }
            i.hostLog(level: level, message: message.map { String(cString: $0) } ?? "", fields: f)
        }
        api.emit_event = { inst, json, length, cb, ud in
            guard let i = PluginInstance.from(inst), let json else { return CHORUS_ERR_INVALID }
            let bytes = Array(UnsafeRawBufferPointer(start: json, count: length))
            return i.hostEmit(bytes, cb: cb, userData: ud)
        }
        api.send_result = { inst, id, result in
            guard let i = PluginInstance.from(inst), let result else { return CHORUS_ERR_INVALID }
            return i.hostSendResult(id, result)
        }
        api.http_route = { inst, method, path, handler, ud in
            guard let i = PluginInstance.from(inst), let method, let path else { return CHORUS_ERR_INVALID }
            return i.hostRoute(method: String(cString: method), path: String(cString: path), handler: handler, userData: ud)
        }
        api.http_respond = { ex, status, headers, count, body, length in
            guard let ex else { return CHORUS_ERR_INVALID }
            let box = Unmanaged<ExchangeBox>.fromOpaque(UnsafeRawPointer(ex)).takeRetainedValue()
            var h: [(String, String)] = []
            if let headers {
                for n in 0..<count {
                    guard let k = headers[n].key, let v = headers[n].value else { continue }
                    h.append((String(cString: k), String(cString: v)))
                }
            }
            let b = body.map { Array(UnsafeBufferPointer(start: $0, count: length)) } ?? []
            box.responder.respond(status: Int(status), headers: h, body: b)
            return CHORUS_OK
        }
        api.http_request = { inst, req, cb, ud in
            guard let i = PluginInstance.from(inst), let req else { return CHORUS_ERR_INVALID }
            return i.hostHTTPRequest(req, cb: cb, userData: ud)
        }
        api.timer_start = { inst, timeout, rep, cb, ud in
            PluginInstance.from(inst)?.hostTimerStart(timeout: timeout, repeatMs: rep, cb: cb, userData: ud) ?? 0
        }
        api.timer_stop = { inst, id in PluginInstance.from(inst)?.hostTimerStop(id) }
        api.fd_watch = { inst, fd, events, cb, ud in
            PluginInstance.from(inst)?.hostFDWatch(fd: fd, events: events, cb: cb, userData: ud) ?? 0
        }
        api.fd_update = { inst, id, events in
            PluginInstance.from(inst)?.hostFDUpdate(id, events: events) ?? CHORUS_ERR_INVALID
        }
        api.fd_unwatch = { inst, id in PluginInstance.from(inst)?.hostFDUnwatch(id) }
        api.post = { inst, cb, ud in
            // Any thread: only the poster (thread-safe) is touched here.
            guard let inst, let cb else { return CHORUS_ERR_INVALID }
            let i = Unmanaged<PluginInstance>.fromOpaque(UnsafeRawPointer(inst)).takeUnretainedValue()
            let call = PostedCall(cb: cb, userData: ud)
            i.poster.post { call.cb(call.userData) }
            return CHORUS_OK
        }
        api.kv_get = { inst, key, buffer, capacity, length in
            guard let i = PluginInstance.from(inst), let key else { return CHORUS_ERR_INVALID }
            return i.hostKVGet(String(cString: key), buffer: buffer, capacity: capacity, length: length)
        }
        api.kv_put = { inst, key, value, length in
            guard let i = PluginInstance.from(inst), let key else { return CHORUS_ERR_INVALID }
            return i.hostKVPut(String(cString: key), value: value.map { Array(UnsafeBufferPointer(start: $0, count: length)) })
        }
        api.setting = { inst, key in
            guard let i = PluginInstance.from(inst), let key else { return nil }
            return i.settingsCValue(String(cString: key))
        }
        api.counter_add = { inst, name, delta in
            guard let i = PluginInstance.from(inst), let name else { return }
            i.hostCounterAdd(String(cString: name), delta)
        }
        api.stopped = { inst in PluginInstance.from(inst)?.hostStopped() }
        api.kv_put_async = { inst, key, value, length, cb, ud in
            guard let i = PluginInstance.from(inst), let key else { return CHORUS_ERR_INVALID }
            return i.hostKVPutAsync(String(cString: key), value: value.map { Array(UnsafeBufferPointer(start: $0, count: length)) },
                                    cb: cb, userData: ud)
        }
        p.initialize(to: api)
        return UnsafePointer(p)
    }()
}

/// A C callback posted from another thread; the plugin vouches for its thread safety.
struct PostedCall: @unchecked Sendable {
    let cb: chorus_post_cb
    let userData: UnsafeMutableRawPointer?
}
