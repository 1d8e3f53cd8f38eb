import ChorusClient
import ChorusJSON
#if canImport(Glibc)
import Glibc
#endif

/// Writing to the terminal without Foundation.
enum Terminal {
    /// Writes `error: <message>` to stderr.
    static func error(_ message: String) {
        writeStderr("error: " + message + "\n")
    }

    /// Writes an informational line to stderr (kept off stdout so output stays pipeable).
    static func note(_ message: String) {
        writeStderr(message + "\n")
    }

    /// Pushes buffered stdout to the terminal or pipe (after each tailed event).
    static func flush() {
        fflush(nil)
    }

    private static func writeStderr(_ s: String) {
        flush()
        var bytes = Array(s.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
            if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
        }
        bytes.removeAll()
    }

    struct ReadError: Error, CustomStringConvertible {
        var description: String
    }

    /// The whole content of a file, or of stdin for "-".
    static func readFile(_ path: String) throws -> [UInt8] {
        let fd: Int32 = path == "-" ? 0 : open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(description: String(cString: strerror(errno))) }
        defer { if fd != 0 { close(fd) } }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                out.append(contentsOf: chunk[0..<n])
            } else if n == 0 {
                return out
            } else if errno != EINTR {
                throw ReadError(description: String(cString: strerror(errno)))
            }
        }
    }
}

/// Human formatting of values.
enum Human {
    /// A JSON value as table text: "-" for missing or null.
    static func text(_ v: JSONValue?) -> String {
        guard let v else { return "-" }
        switch v {
        case .null: return "-"
        case .string(let s): return s
        case .bool(let b): return b ? "yes" : "no"
        case .number(.int(let i)): return String(i)
        case .number(.double(let d)): return decimal(d, places: 2)
        default: return JSONWriter.encodeString(v)
        }
    }

    /// "3d 04h", "2h 03m", "5m 12s", "12s".
    static func duration(ms: Int64) -> String {
        let s = max(ms, 0) / 1000
        let d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60
        if d > 0 { return "\(d)d \(pad(h))h" }
        if h > 0 { return "\(h)h \(pad(m))m" }
        if m > 0 { return "\(m)m \(pad(sec))s" }
        return "\(sec)s"
    }

    /// "512 B", "1.5 KiB", "2.3 MiB", …
    static func bytes(_ n: Int64) -> String {
        if n < 1024 { return "\(n) B" }
        var value = Double(n)
        for unit in ["KiB", "MiB", "GiB", "TiB"] {
            value /= 1024
            if value < 1024 || unit == "TiB" { return decimal(value, places: 1) + " " + unit }
        }
        return "\(n) B"
    }

    /// A count with thousands separators: 1,234,567.
    static func count(_ n: Int64) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return n < 0 ? "-" + out : out
    }

    static func decimal(_ d: Double, places: Int) -> String {
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        let scaled = Int64((abs(d) * scale).rounded())
        let whole = scaled / Int64(scale)
        var frac = String(scaled % Int64(scale))
        while frac.count < places { frac = "0" + frac }
        return (d < 0 && scaled != 0 ? "-" : "") + String(whole) + (places > 0 ? "." + frac : "")
    }

    private static func pad(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }

    /// Flattens an object to `key=value` pairs (nested keys joined with dots).
    static func pairs(_ object: JSONObject, prefix: String = "") -> [String] {
        var out: [String] = []
        for (k, v) in object {
            if case .object(let inner) = v {
                out += pairs(inner, prefix: prefix + k + ".")
            } else {
                out.append("\(prefix)\(k)=\(text(v))")
            }
        }
        return out
    }

    /// Left-aligned columns separated by two spaces; the last column is not padded.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func render(_ row: [String]) -> String {
            var line = ""
            for (i, cell) in row.enumerated() {
                if i == row.count - 1 {
                    line += cell
                } else {
                    line += cell + String(repeating: " ", count: widths[i] - cell.count + 2)
                }
            }
            return line
        }
        return ([render(header)] + rows.map(render)).joined(separator: "\n") + "\n"
    }
}

/// Reports for `status`, `plugins` and `subscriptions list`.
enum Report {
    static func status(hello: JSONObject, stats: JSONObject) -> String {
        var out = ""
        let server = hello["server"]?.stringValue ?? "chorusd"
        let uptime = stats["uptime_ms"]?.intValue.map { Human.duration(ms: $0) } ?? "?"
        out += "\(server), protocol \(Human.text(hello["protocol"])), schema \(Human.text(hello["schema"])), up \(uptime)\n"
        if let access = hello["access"]?.objectValue {
            let rights = ["read", "send", "admin"].filter { access[$0]?.boolValue == true }
            out += Report.row("access", rights.isEmpty ? "none" : rights.joined(separator: ", "))
        }
        if let log = stats["log"]?.objectValue {
            let events = log["events"]?.intValue.map(Human.count) ?? "?"
            let size = log["bytes"]?.intValue.map(Human.bytes) ?? "?"
            let first = Human.text(log["first_cursor"]), last = Human.text(log["last_cursor"])
            var line = "\(events) events, cursors \(first)…\(last), \(size)"
            if let db = log["database_bytes"]?.intValue {
                line += " (database \(Human.bytes(db))\(log["wal_bytes"]?.intValue.map { ", WAL " + Human.bytes($0) } ?? ""))"
            }
            out += Report.row("log", line)
            if log["healthy"]?.boolValue == false {
                out += Report.row("", "UNHEALTHY: \(log["error"]?.stringValue ?? "the event log cannot be written")")
            }
        }
        // Every other section, as key=value pairs, in the order the daemon sent them.
        let shown: Set<String> = ["uptime_ms", "version", "log", "subscriptions", "instances"]
        for (key, value) in stats where !shown.contains(key) {
            if case .object(let o) = value {
                if !o.isEmpty { out += Report.row(key, Human.pairs(o).joined(separator: "  ")) }
            } else {
                out += Report.row(key, Human.text(value))
            }
        }

        let instances = stats["instances"]?.arrayValue ?? []
        out += "\nINSTANCES (\(instances.count))\n"
        if instances.isEmpty {
            out += "  none configured\n"
        } else {
            var rows: [[String]] = []
            var errors: [String] = []
            for i in instances {
                let counters = i["counters"]?.objectValue.map { Human.pairs($0).joined(separator: " ") } ?? ""
                rows.append([Human.text(i["name"]), Human.text(i["plugin"]), Human.text(i["channel"]),
                             Human.text(i["state"]), Human.text(i["pending_sends"]), counters.isEmpty ? "-" : counters])
                if let e = i["error"]?.stringValue { errors.append("  \(Human.text(i["name"])): \(e)") }
            }
            out += Human.table(["NAME", "PLUGIN", "CHANNEL", "STATE", "PENDING", "COUNTERS"], rows)
            if !errors.isEmpty { out += "errors:\n" + errors.joined(separator: "\n") + "\n" }
        }

        let subs = stats["subscriptions"]?.arrayValue ?? []
        out += "\nSUBSCRIPTIONS (\(subs.count))\n"
        if subs.isEmpty {
            out += "  none\n"
        } else {
            let rows = subs.map { s -> [String] in
                [Human.text(s["name"]), s["durable"]?.boolValue == true ? "durable" : "ephemeral",
                 s["connected"]?.boolValue == true ? "yes" : "no", Human.text(s["mode"]), Human.text(s["cursor"]),
                 Human.text(s["acked"]), Human.text(s["lag"]),
                 s["buffered_bytes"]?.intValue.map(Human.bytes) ?? "-", Human.text(s["delivered"])]
            }
            out += Human.table(["NAME", "KIND", "CONNECTED", "MODE", "CURSOR", "ACKED", "LAG", "BUFFERED", "DELIVERED"], rows)
        }
        return out
    }

    /// `label` padded to a fixed column, then the text.
    static func row(_ label: String, _ text: String) -> String {
        label + String(repeating: " ", count: max(1, 11 - label.count)) + text + "\n"
    }

    static func plugins(_ plugins: [JSONValue]) -> String {
        if plugins.isEmpty { return "no plugins loaded\n" }
        let rows = plugins.map { p -> [String] in
            [Human.text(p["name"]), Human.text(p["version"]), Human.text(p["channel"]), Human.text(p["abi_version"]),
             p["loaded"]?.boolValue == true ? "yes" : "no", Human.text(p["path"])]
        }
        var out = Human.table(["NAME", "VERSION", "CHANNEL", "ABI", "LOADED", "PATH"], rows)
        for p in plugins {
            var lines: [String] = []
            if let caps = p["capabilities"]?.objectValue, !caps.isEmpty {
                lines.append("  capabilities: " + capabilities(caps))
            }
            if let toolchain = p["swift_toolchain"]?.stringValue { lines.append("  swift toolchain: \(toolchain)") }
            if let e = p["error"]?.stringValue { lines.append("  error: \(e)") }
            if !lines.isEmpty { out += "\n\(Human.text(p["name"])):\n" + lines.joined(separator: "\n") + "\n" }
        }
        return out
    }

    /// Capabilities as `key=value` with `true` flags shown by name only and lists joined by commas.
    static func capabilities(_ caps: JSONObject) -> String {
        var items: [String] = []
        for (k, v) in caps {
            switch v {
            case .bool(true): items.append(k)
            case .bool(false): continue
            case .array(let a): items.append("\(k)=\(a.map { Human.text($0) }.joined(separator: ","))")
            case .object(let o): items.append("\(k)={\(capabilities(o))}")
            default: items.append("\(k)=\(Human.text(v))")
            }
        }
        return items.joined(separator: " ")
    }

    static func subscriptionList(_ subs: [JSONValue]) -> String {
        if subs.isEmpty { return "no durable subscriptions\n" }
        let rows = subs.map { s -> [String] in
            let filter = s["filter"]?.objectValue.map { f -> String in
                f.isEmpty ? "all" : f.entries.map { "\($0.key)=\(($0.value.arrayValue ?? []).map { Human.text($0) }.joined(separator: ","))" }
                    .joined(separator: " ")
            } ?? "all"
            return [Human.text(s["name"]), s["connected"]?.boolValue == true ? "yes" : "no", Human.text(s["acked"]),
                    Human.text(s["lag"]), filter]
        }
        return Human.table(["NAME", "CONNECTED", "ACKED", "LAG", "FILTER"], rows)
    }
}

/// One-line renderings of normalized events (docs/schema.md).
enum EventText {
    static let maxSummary = 160

    /// `#cursor  time  instance  ←/→  conversation  sender: summary`
    static func line(cursor: Int64, event: JSONValue) -> String {
        let time = shortTime(event["timestamp"]?.stringValue ?? event["received_at"]?.stringValue)
        let arrow = event["direction"]?.stringValue == "outbound" ? "→" : "←"
        let instance = event["instance"]?.stringValue ?? "-"
        let conversation = event["conversation_id"]?.stringValue ?? "-"
        var text = summary(event)
        if let sender = event["sender"], let who = sender["name"]?.stringValue ?? sender["id"]?.stringValue {
            text = "\(who): \(text)"
        }
        return "#\(cursor)  \(time)  \(instance) \(arrow) \(conversation)  \(clip(text))"
    }

    /// `2026-11-23 10:00:00.123` from an RFC 3339 time (shown in UTC).
    static func shortTime(_ s: String?) -> String {
        guard let s, let ms = parseTimestamp(s) else { return s ?? "-" }
        var t = formatTimestamp(ms)  // 2026-11-23T10:00:00.123Z
        t.removeLast()
        return String(t.map { $0 == "T" ? " " : $0 })
    }

    /// What happened, in a few words.
    static func summary(_ event: JSONValue) -> String {
        let type = event["type"]?.stringValue ?? "event"
        switch type {
        case "message":
            return parts(event["parts"]) + replySuffix(event)
        case "edit":
            return "edited \(target(event)): " + parts(event["parts"])
        case "delete":
            return "deleted \(target(event))"
        case "reaction":
            let r = event["reaction"]
            if r?["action"]?.stringValue == "remove" { return "removed a reaction from \(target(event))" }
            return "reacted \(r?["emoji"]?.stringValue ?? "?") to \(target(event))"
        case "status":
            return statusText(event["status"])
        case "typing":
            return event["typing"]?["state"]?.stringValue == "off" ? "stopped typing" : "typing…"
        case "read":
            let upTo = event["read"]?["up_to_channel_message_id"]?.stringValue
            return upTo.map { "read up to \($0)" } ?? "read the conversation"
        case "conversation":
            return "conversation \(event["conversation"]?["action"]?.stringValue ?? "changed")"
        default:
            return type
        }
    }

    /// `status: delivered msg_… (channel id …)` with the error for a failure.
    static func statusText(_ status: JSONValue?) -> String {
        guard let status else { return "status" }
        var s = "status \(status["state"]?.stringValue ?? "?")"
        if let id = status["message_id"]?.stringValue ?? status["channel_message_id"]?.stringValue { s += " \(id)" }
        if let e = status["error"] {
            let text = [e["code"]?.stringValue, e["message"]?.stringValue].compactMap { $0 }.joined(separator: ": ")
            if !text.isEmpty { s += " (\(text))" }
        }
        return s
    }

    /// The line `send --wait` prints: state, time and error.
    static func statusLine(_ event: JSONValue) -> String {
        let time = shortTime(event["received_at"]?.stringValue ?? event["timestamp"]?.stringValue)
        return "\(time)  \(statusText(event["status"]))"
    }

    /// A one-line summary of message parts.
    static func parts(_ value: JSONValue?) -> String {
        guard let parts = value?.arrayValue, !parts.isEmpty else { return "(no content)" }
        return parts.map(part).joined(separator: " ")
    }

    static func part(_ p: JSONValue) -> String {
        switch p["type"]?.stringValue ?? "" {
        case "text":
            return oneLine(p["text"]?.stringValue ?? "")
        case "media":
            let kind = p["kind"]?.stringValue ?? "media"
            let label = p["caption"]?.stringValue ?? p["file_name"]?.stringValue
            return "[\(kind)\(label.map { ": " + oneLine($0) } ?? "")]"
        case "location":
            let name = p["name"]?.stringValue ?? p["address"]?.stringValue
            let coords = "\(Human.text(p["latitude"])),\(Human.text(p["longitude"]))"
            return "[location \(name.map { $0 + " " } ?? "")\(coords)]"
        case "contact":
            return "[contact \(p["name"]?["formatted"]?.stringValue ?? "?")]"
        case "interactive":
            let style = p["style"]?.stringValue ?? "interactive"
            let body = p["body"]?.stringValue.map { oneLine($0) + " " } ?? ""
            let choices = (p["buttons"]?.arrayValue ?? []).compactMap { $0["title"]?.stringValue }
            return "\(body)[\(style)\(choices.isEmpty ? "" : ": " + choices.joined(separator: " | "))]"
        case "interactive_reply":
            return "[chose \(p["title"]?.stringValue ?? p["choice_id"]?.stringValue ?? "?")]"
        case "template":
            return "[template \(p["name"]?.stringValue ?? "?")]"
        case "product":
            return "[product \(p["title"]?.stringValue ?? p["product_id"]?.stringValue ?? "?")]"
        case "order":
            return "[order of \((p["items"]?.arrayValue ?? []).count) item(s)]"
        case "payment_request":
            return "[payment request \(money(p["amount"]?.intValue, p["currency"]?.stringValue))]"
        case "unsupported":
            return "[unsupported \(p["channel_type"]?.stringValue ?? "content")]"
        case let other:
            return "[\(other.isEmpty ? "part" : other)]"
        }
    }

    /// Amounts are in minor units: 1250 EUR → "12.50 EUR".
    static func money(_ amount: Int64?, _ currency: String?) -> String {
        guard let amount else { return currency ?? "?" }
        let whole = amount / 100, cents = amount % 100
        return "\(whole).\(cents < 10 ? "0" : "")\(cents) \(currency ?? "")"
    }

    private static func target(_ event: JSONValue) -> String {
        event["target"]?["message_id"]?.stringValue ?? event["target"]?["channel_message_id"]?.stringValue ?? "a message"
    }

    private static func replySuffix(_ event: JSONValue) -> String {
        guard let r = event["reply_to"], let id = r["message_id"]?.stringValue ?? r["channel_message_id"]?.stringValue else {
            return ""
        }
        return " (reply to \(id))"
    }

    static func oneLine(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for ch in s {
            if ch == "\n" || ch == "\r\n" || ch == "\r" { out += " ⏎ " } else if ch == "\t" { out += " " } else { out.append(ch) }
        }
        return out
    }

    static func clip(_ s: String) -> String {
        guard s.count > maxSummary else { return s }
        return String(s.prefix(maxSummary - 1)) + "…"
    }
}
