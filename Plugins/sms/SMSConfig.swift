import ChorusConnectorSDK

/// The settings of one SMS instance (`[instance.settings]`), validated.
struct SMSConfig {
    /// The Twilio account (`AC…`), used in the API path and for HTTP Basic auth.
    var accountSid: String
    /// The account's auth token: HTTP Basic password and webhook signing key. Never logged.
    var authToken: String
    /// The sender number (E.164), when not sending through a Messaging Service.
    var fromNumber: String?
    /// A Messaging Service (`MG…`) to send through instead of `from_number`.
    var messagingServiceSid: String?
    /// The public base URL Twilio calls (scheme + host [+ port] [+ path prefix]), without a trailing slash.
    var publicBaseURL: String
    /// The API base URL, without a trailing slash (https://api.twilio.com; a fake in tests).
    var apiBaseURL: String
    /// Messages longer than this many segments are refused before any API call.
    var maxSegments: Int
    /// The whole-request timeout of API calls, in milliseconds.
    var requestTimeoutMs: Int

    static let known: Set<String> = [
        "account_sid", "auth_token", "auth_token_file", "auth_token_credential", "from_number", "messaging_service_sid",
        "public_base_url", "api_base_url", "max_segments", "request_timeout_ms", "account",
    ]

    init(_ s: ConnectorSettings) throws {
        for (key, _) in s.values where !SMSConfig.known.contains(key) {
            throw ConnectorError("unknown setting \"\(key)\" (known: \(SMSConfig.known.sorted().joined(separator: ", ")))")
        }
        accountSid = try s.string("account_sid")
        guard accountSid.utf8.allSatisfy({ isAlnum($0) }) else {
            throw ConnectorError("setting \"account_sid\": expected the account SID (AC followed by 32 hex digits), found \"\(accountSid)\"")
        }
        guard let token = s["auth_token"], !token.isEmpty else {
            throw ConnectorError("setting \"auth_token\" is required (or auth_token_file / auth_token_credential)")
        }
        authToken = token.trimmingNewlines()
        fromNumber = s["from_number"].flatMap { $0.isEmpty ? nil : $0 }
        messagingServiceSid = s["messaging_service_sid"].flatMap { $0.isEmpty ? nil : $0 }
        if fromNumber == nil && messagingServiceSid == nil {
            throw ConnectorError("give \"from_number\" (an E.164 number such as +15017122661) or \"messaging_service_sid\" (MG…)")
        }
        if let f = fromNumber, !SMSConfig.isSenderLike(f) {
            throw ConnectorError("setting \"from_number\": expected an E.164 number such as +15017122661 (or an alphanumeric sender id), found \"\(f)\"")
        }
        publicBaseURL = try SMSConfig.url(s, "public_base_url", default: nil)
        apiBaseURL = try SMSConfig.url(s, "api_base_url", default: "https://api.twilio.com")
        maxSegments = try s.int("max_segments", default: 10)
        guard (1...100).contains(maxSegments) else {
            throw ConnectorError("setting \"max_segments\": expected 1 to 100, found \(maxSegments)")
        }
        requestTimeoutMs = try s.int("request_timeout_ms", default: 15_000)
        guard requestTimeoutMs >= 100 else { throw ConnectorError("setting \"request_timeout_ms\": expected at least 100") }
    }

    /// The Messages resource of the account.
    var messagesURL: String { apiBaseURL + "/2010-04-01/Accounts/" + accountSid + "/Messages.json" }

    /// An http(s) URL setting, without its trailing slash.
    static func url(_ s: ConnectorSettings, _ key: String, default d: String?) throws -> String {
        var v: String
        if let given = s[key], !given.isEmpty { v = given } else if let d { v = d } else {
            throw ConnectorError("setting \"\(key)\" is required: the public https URL Twilio calls this daemon at (e.g. https://chorus.example.com)")
        }
        guard v.hasPrefix("https://") || v.hasPrefix("http://"), !v.contains("?"), !v.contains("#"), !v.contains(" ") else {
            throw ConnectorError("setting \"\(key)\": expected an http(s) URL without query, found \"\(v)\"")
        }
        while v.hasSuffix("/") { v.removeLast() }
        return v
    }

    /// An E.164 number (`+` and 7–15 digits) or an alphanumeric sender id (1–11 letters, digits, spaces).
    static func isSenderLike(_ s: String) -> Bool {
        if s.hasPrefix("+") {
            let digits = s.utf8.dropFirst()
            return (7...15).contains(digits.count) && digits.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        }
        return (1...11).contains(s.utf8.count) && s.utf8.allSatisfy { isAlnum($0) || $0 == 0x20 }
    }
}

func isAlnum(_ b: UInt8) -> Bool {
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
}

extension String {
    func trimmingNewlines() -> String {
        var s = Substring(self)
        while let l = s.last, l == "\n" || l == "\r" || l == " " { s.removeLast() }
        return String(s)
    }

    /// Trimmed of ASCII and Unicode whitespace at both ends.
    func trimmedWhitespace() -> String {
        let scalars = unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let end = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[start...end])
    }
}
