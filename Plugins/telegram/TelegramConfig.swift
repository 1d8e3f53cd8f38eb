import ChorusConnectorSDK

/// The settings of one Telegram instance (`[instance.settings]`), validated.
///
/// Secrets (`bot_token`, `webhook_secret`, `payment_provider_token`) may be given directly or as
/// `<name>_file` / `<name>_credential`, which chorusd resolves before the plugin sees them. No
/// error message ever contains a secret's value.
struct TelegramConfig {
    enum Mode: String {
        case webhook, polling
    }

    var token: String
    /// The numeric bot id: the part of the token before the colon.
    var botId: String
    var mode: Mode
    var webhookSecret: String?
    var webhookURL: String?
    var apiBase: String
    var pollTimeoutS: Int
    var paymentProviderToken: String?
    var approveCheckout: Bool
    var account: String
    var limits: Pacer.Limits
    var requestTimeoutMs: UInt32
    /// Bearer token for the media download route; nil = no route.
    var mediaToken: String?

    static let known: [String] = [
        "account", "api_base_url", "approve_checkout", "bot_token", "bot_token_credential", "bot_token_file",
        "chat_interval_ms", "group_per_minute", "media_token", "media_token_credential", "media_token_file", "mode", "payment_provider_token", "payment_provider_token_credential",
        "payment_provider_token_file", "poll_timeout_s", "rate_per_second", "request_timeout_ms", "webhook_secret",
        "webhook_secret_credential", "webhook_secret_file", "webhook_url",
    ]

    init(_ s: ConnectorSettings) throws {
        let known = Set(Self.known)
        for (k, _) in s.values where !known.contains(k) {
            throw ConnectorError("unknown setting \"\(k)\" (known: \(Self.known.joined(separator: ", ")))")
        }
        guard let token = s["bot_token"], !token.isEmpty else {
            throw ConnectorError("setting \"bot_token\" is required (or bot_token_file / bot_token_credential)")
        }
        // "<bot id>:<secret>", as BotFather issues them. The value is never echoed.
        let pieces = token.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard pieces.count == 2, !pieces[0].isEmpty, pieces[0].allSatisfy({ $0.isASCII && $0.isNumber }), !pieces[1].isEmpty,
              pieces[1].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
        else {
            throw ConnectorError("setting \"bot_token\": expected a token of the form <bot id>:<secret> as issued by @BotFather (value not shown)")
        }
        self.token = token
        self.botId = String(pieces[0])

        let modeText = s["mode"] ?? "polling"
        guard let mode = Mode(rawValue: modeText) else {
            throw ConnectorError("setting \"mode\": expected \"webhook\" or \"polling\", found \"\(modeText)\"")
        }
        self.mode = mode

        if let secret = s["webhook_secret"], !secret.isEmpty {
            // Telegram: 1–256 characters, A-Z, a-z, 0-9, _ and -.
            guard secret.utf8.count <= 256, secret.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else {
                throw ConnectorError("setting \"webhook_secret\": Telegram allows 1–256 characters A-Z, a-z, 0-9, _ and - (value not shown)")
            }
            webhookSecret = secret
        } else {
            webhookSecret = nil
        }
        if mode == .webhook && webhookSecret == nil {
            throw ConnectorError("setting \"webhook_secret\" is required in webhook mode (or webhook_secret_file / webhook_secret_credential)")
        }
        webhookURL = s["webhook_url"].flatMap { $0.isEmpty ? nil : $0 }
        if let u = webhookURL, !u.hasPrefix("https://") && !u.hasPrefix("http://") {
            throw ConnectorError("setting \"webhook_url\": expected an https URL, found \"\(u)\"")
        }

        var base = s["api_base_url"] ?? "https://api.telegram.org"
        while base.hasSuffix("/") { base.removeLast() }
        guard base.hasPrefix("https://") || base.hasPrefix("http://") else {
            throw ConnectorError("setting \"api_base_url\": expected an http(s) URL, found \"\(base)\"")
        }
        apiBase = base

        pollTimeoutS = try s.int("poll_timeout_s", default: 30)
        guard (0...50).contains(pollTimeoutS) else { throw ConnectorError("setting \"poll_timeout_s\": expected 0…50 seconds, found \(pollTimeoutS)") }
        paymentProviderToken = s["payment_provider_token"].flatMap { $0.isEmpty ? nil : $0 }
        approveCheckout = try s.bool("approve_checkout", default: true)
        account = s["account"].flatMap { $0.isEmpty ? nil : $0 } ?? s.instanceName

        let perSecond = try s.int("rate_per_second", default: 30)
        let interval = try s.int("chat_interval_ms", default: 1000)
        let perMinute = try s.int("group_per_minute", default: 20)
        guard (1...1000).contains(perSecond) else { throw ConnectorError("setting \"rate_per_second\": expected 1…1000, found \(perSecond)") }
        guard (0...60_000).contains(interval) else { throw ConnectorError("setting \"chat_interval_ms\": expected 0…60000, found \(interval)") }
        guard (1...1000).contains(perMinute) else { throw ConnectorError("setting \"group_per_minute\": expected 1…1000, found \(perMinute)") }
        limits = Pacer.Limits(globalPerSecond: perSecond, chatIntervalMs: UInt64(interval), groupPerMinute: perMinute)

        mediaToken = s["media_token"].flatMap { $0.isEmpty ? nil : $0 }
        if let m = mediaToken, m.utf8.count < 16 {
            throw ConnectorError("setting \"media_token\": use at least 16 characters (value not shown)")
        }

        let timeout = try s.int("request_timeout_ms", default: 15_000)
        guard (100...300_000).contains(timeout) else { throw ConnectorError("setting \"request_timeout_ms\": expected 100…300000, found \(timeout)") }
        requestTimeoutMs = UInt32(timeout)
    }
}
