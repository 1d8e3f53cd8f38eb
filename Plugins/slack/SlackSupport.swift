import ChorusConnectorSDK
import ChorusJSON

/// The settings of one Slack instance, validated.
///
/// | key | meaning |
/// |---|---|
/// | `bot_token` | the bot token (`xoxb-…`), required; or `bot_token_file` / `bot_token_credential` |
/// | `signing_secret` | the app's signing secret, required; or `signing_secret_file` / `signing_secret_credential` |
/// | `api_base_url` | the Web API base, default `https://slack.com/api` (tests point it at a fake) |
/// | `account` | `channel_ids.account` of emitted events (default: the instance name) |
/// | `request_timeout_ms` | timeout of each Web API call, default 15000 |
public struct SlackConfig: Sendable {
    /// Every key the connector accepts (the `_file` / `_credential` originals are resolved by chorusd).
    public static let knownKeys: [String] = [
        "bot_token", "bot_token_file", "bot_token_credential",
        "signing_secret", "signing_secret_file", "signing_secret_credential",
        "api_base_url", "account", "request_timeout_ms",
    ]
    public static let defaultAPIBaseURL = "https://slack.com/api"

    public var botToken: String
    public var signingSecret: String
    /// Without a trailing slash.
    public var apiBaseURL: String
    public var account: String
    public var requestTimeoutMs: UInt32

    public init(_ s: ConnectorSettings) throws {
        let known = Set(SlackConfig.knownKeys)
        for (key, _) in s.values where !known.contains(key) {
            throw ConnectorError("unknown setting \"\(key)\" (known: \(SlackConfig.knownKeys.joined(separator: ", ")))")
        }
        guard let token = s["bot_token"], !token.isEmpty else {
            throw ConnectorError("setting \"bot_token\" is required (or bot_token_file / bot_token_credential)")
        }
        guard token.hasPrefix("xox"), token.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
            // Never echo the value: it is a secret.
            throw ConnectorError("setting \"bot_token\": expected a Slack token (xoxb-…) without spaces")
        }
        guard let secret = s["signing_secret"], !secret.isEmpty else {
            throw ConnectorError("setting \"signing_secret\" is required (or signing_secret_file / signing_secret_credential)")
        }
        botToken = token
        signingSecret = secret
        var base = s["api_base_url"] ?? SlackConfig.defaultAPIBaseURL
        while base.hasSuffix("/") { base.removeLast() }
        guard base.hasPrefix("https://") || base.hasPrefix("http://"), base.utf8.count > 8 else {
            throw ConnectorError("setting \"api_base_url\": expected an http(s) URL, found \"\(base)\"")
        }
        apiBaseURL = base
        account = s["account"].flatMap { $0.isEmpty ? nil : $0 } ?? s.instanceName
        let timeout = try s.int("request_timeout_ms", default: 15_000)
        guard (100...300_000).contains(timeout) else {
            throw ConnectorError("setting \"request_timeout_ms\": expected 100…300000, found \(timeout)")
        }
        requestTimeoutMs = UInt32(timeout)
    }
}

/// Small helpers shared by inbound and outbound code.
enum SlackText {
    /// `application/x-www-form-urlencoded` decoding of a body into (name, value) pairs.
    static func formFields(_ body: [UInt8]) -> [(String, String)] {
        body.split(separator: UInt8(ascii: "&")).map { item in
            let kv = item.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            return (percentDecode(kv[0]), kv.count > 1 ? percentDecode(kv[1]) : "")
        }
    }

    static func percentDecode(_ b: ArraySlice<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(b.count)
        var i = b.startIndex
        while i < b.endIndex {
            let c = b[i]
            if c == UInt8(ascii: "+") { out.append(0x20); i += 1; continue }
            if c == UInt8(ascii: "%"), i + 2 < b.endIndex, let v = SlackHex.decode(b[(i + 1)...(i + 2)]) {
                out.append(v[0]); i += 3; continue
            }
            out.append(c); i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `application/x-www-form-urlencoded` encoding.
    static func formEncode(_ fields: [(String, String)]) -> [UInt8] {
        var out = [UInt8]()
        for (i, (k, v)) in fields.enumerated() {
            if i > 0 { out.append(UInt8(ascii: "&")) }
            percentEncode(k, into: &out)
            out.append(UInt8(ascii: "="))
            percentEncode(v, into: &out)
        }
        return out
    }

    private static let upperHex = Array("0123456789ABCDEF".utf8)

    private static func percentEncode(_ s: String, into out: inout [UInt8]) {
        for c in s.utf8 {
            switch c {
            case 48...57, 65...90, 97...122, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(c)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(upperHex[Int(c >> 4)])
                out.append(upperHex[Int(c & 15)])
            }
        }
    }

    /// A Slack timestamp (`"1355517523.000005"`, seconds and microseconds) as RFC 3339 UTC with milliseconds.
    static func rfc3339(slackTs: String) -> String? {
        let pieces = slackTs.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let secs = Int64(pieces[0]), secs >= 0, secs < 253_402_300_800 else { return nil }
        var ms: Int64 = 0
        if pieces.count == 2 {
            let frac = pieces[1]
            guard frac.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            let three = String((frac + "000").prefix(3))
            ms = Int64(three) ?? 0
        }
        return rfc3339(unixSeconds: secs, milliseconds: ms)
    }

    /// Unix time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    static func rfc3339(unixSeconds: Int64, milliseconds: Int64 = 0) -> String {
        let days = unixSeconds >= 0 ? unixSeconds / 86400 : (unixSeconds - 86399) / 86400
        let rem = unixSeconds - days * 86400
        // Civil-from-days (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func pad(_ v: Int64, _ n: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(rem / 3600, 2)):\(pad(rem / 60 % 60, 2)):\(pad(rem % 60, 2)).\(pad(milliseconds, 3))Z"
    }

    /// Splits a channel message id `"<channel>:<ts>"` into its channel and ts.
    static func splitMessageId(_ id: String) -> (channel: String, ts: String)? {
        guard let colon = id.firstIndex(of: ":") else { return nil }
        let channel = String(id[..<colon]), ts = String(id[id.index(after: colon)...])
        guard !channel.isEmpty, !ts.isEmpty else { return nil }
        return (channel, ts)
    }
}

/// Slack names reactions by short name (`thumbsup`); Chorus carries emoji. The common ones are mapped
/// both ways; any other name travels as `:name:` (and `:name:` or a bare name is sent as the name).
enum SlackEmoji {
    static let table: [(name: String, emoji: String)] = [
        ("thumbsup", "👍"), ("+1", "👍"), ("thumbsdown", "👎"), ("-1", "👎"), ("heart", "❤️"), ("smile", "😄"),
        ("joy", "😂"), ("tada", "🎉"), ("eyes", "👀"), ("white_check_mark", "✅"), ("x", "❌"), ("fire", "🔥"),
        ("pray", "🙏"), ("clap", "👏"), ("rocket", "🚀"), ("thinking_face", "🤔"), ("ok_hand", "👌"), ("wave", "👋"),
        ("slightly_smiling_face", "🙂"), ("cry", "😢"), ("100", "💯"), ("raised_hands", "🙌"), ("heavy_check_mark", "✔️"),
    ]

    /// The emoji for a Slack reaction name (skin-tone suffixes such as `::skin-tone-2` are dropped for the lookup).
    static func emoji(forName name: String) -> String {
        let base = name.split(separator: ":", omittingEmptySubsequences: true).first.map(String.init) ?? name
        if let hit = table.first(where: { $0.name == base }) { return hit.emoji }
        return ":\(name):"
    }

    /// The Slack reaction name for an emoji or a `:name:` string.
    static func name(forEmoji emoji: String) -> String {
        if let hit = table.first(where: { $0.emoji == emoji }) { return hit.name }
        if emoji.hasSuffix("\u{FE0F}") == false, let hit = table.first(where: { $0.emoji == emoji + "\u{FE0F}" }) { return hit.name }
        var s = Substring(emoji)
        if s.hasPrefix(":") { s = s.dropFirst() }
        if s.hasSuffix(":") { s = s.dropLast() }
        return String(s)
    }
}
