import ChorusConnectorSDK
import ChorusJSON

#if canImport(Glibc)
import Glibc
#endif

/// The settings of one Teams (Bot Framework) instance, validated.
///
/// | key | meaning |
/// |---|---|
/// | `app_id` | the bot's Microsoft App ID (the audience of inbound tokens, the client id of outbound ones), required |
/// | `app_password` | the bot's client secret, required; or `app_password_file` / `app_password_credential` |
/// | `openid_metadata_url` | where the signing keys are announced, default `https://login.botframework.com/v1/.well-known/openidconfiguration` |
/// | `issuer` | the accepted `iss` of inbound tokens, default `https://api.botframework.com` |
/// | `token_url` | the client-credentials token endpoint, default `https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token` |
/// | `scope` | the scope asked for, default `https://api.botframework.com/.default` |
/// | `service_url` | the serviceUrl used for a conversation the bot has not heard from yet (optional) |
/// | `account` | `channel_ids.account` of emitted events (default: the bot id from the activity's recipient) |
/// | `request_timeout_ms` | timeout of each HTTP call, default 15000 |
public struct TeamsConfig: Sendable {
    /// Every key the connector accepts (the `_file` / `_credential` originals are resolved by chorusd).
    public static let knownKeys: [String] = [
        "app_id", "app_password", "app_password_file", "app_password_credential", "openid_metadata_url", "issuer",
        "token_url", "scope", "service_url", "account", "request_timeout_ms",
    ]
    public static let defaultOpenIDMetadataURL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    public static let defaultIssuer = "https://api.botframework.com"
    public static let defaultTokenURL = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
    public static let defaultScope = "https://api.botframework.com/.default"

    public var appId: String
    public var appPassword: String
    public var openIDMetadataURL: String
    public var issuer: String
    public var tokenURL: String
    public var scope: String
    /// Without a trailing slash; nil when not set.
    public var defaultServiceURL: String?
    public var account: String?
    public var requestTimeoutMs: UInt32

    public init(_ s: ConnectorSettings) throws {
        let known = Set(TeamsConfig.knownKeys)
        for (key, _) in s.values where !known.contains(key) {
            throw ConnectorError("unknown setting \"\(key)\" (known: \(TeamsConfig.knownKeys.joined(separator: ", ")))")
        }
        guard let id = s["app_id"], !id.isEmpty else { throw ConnectorError("setting \"app_id\" is required (the bot's Microsoft App ID)") }
        guard let pw = s["app_password"], !pw.isEmpty else {
            throw ConnectorError("setting \"app_password\" is required (or app_password_file / app_password_credential)")
        }
        appId = id
        appPassword = pw
        func url(_ key: String, _ d: String) throws -> String {
            let v = s[key] ?? d
            guard v.hasPrefix("https://") || v.hasPrefix("http://"), v.utf8.count > 8 else {
                throw ConnectorError("setting \"\(key)\": expected an http(s) URL, found \"\(v)\"")
            }
            return v
        }
        openIDMetadataURL = try url("openid_metadata_url", TeamsConfig.defaultOpenIDMetadataURL)
        tokenURL = try url("token_url", TeamsConfig.defaultTokenURL)
        issuer = s["issuer"].flatMap { $0.isEmpty ? nil : $0 } ?? TeamsConfig.defaultIssuer
        scope = s["scope"].flatMap { $0.isEmpty ? nil : $0 } ?? TeamsConfig.defaultScope
        if s["service_url"] != nil {
            var v = try url("service_url", "")
            while v.hasSuffix("/") { v.removeLast() }
            defaultServiceURL = v
        }
        account = s["account"].flatMap { $0.isEmpty ? nil : $0 }
        let timeout = try s.int("request_timeout_ms", default: 15_000)
        guard (100...300_000).contains(timeout) else {
            throw ConnectorError("setting \"request_timeout_ms\": expected 100…300000, found \(timeout)")
        }
        requestTimeoutMs = UInt32(timeout)
    }
}

/// Clocks.
public enum TeamsClock {
    /// Unix time in seconds.
    public static func nowSeconds() -> Int64 { Int64(time(nil)) }

    /// A monotonic clock in milliseconds.
    static func monotonicMs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }
}

enum TeamsText {
    private static let upperHex = Array("0123456789ABCDEF".utf8)

    /// Percent-encoding of everything but unreserved characters (for form fields and URL path segments).
    static func percentEncode(_ s: String) -> String {
        var out = [UInt8]()
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
        return String(decoding: out, as: UTF8.self)
    }

    static func formEncode(_ fields: [(String, String)]) -> [UInt8] {
        Array(fields.map { "\(percentEncode($0.0))=\(percentEncode($0.1))" }.joined(separator: "&").utf8)
    }

    /// `11499` `EUR` → `"114.99 EUR"`.
    static func formatAmount(_ amount: Int64, _ currency: String) -> String {
        let zero: Set<String> = ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"]
        let three: Set<String> = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]
        let digits = zero.contains(currency) ? 0 : three.contains(currency) ? 3 : 2
        guard digits > 0 else { return "\(amount) \(currency)" }
        var div: Int64 = 1
        for _ in 0..<digits { div *= 10 }
        let frac = String(amount % div)
        return "\(amount / div).\(String(repeating: "0", count: digits - frac.count))\(frac) \(currency)"
    }
}
