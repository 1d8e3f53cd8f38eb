import ChorusConnectorSDK
import EmailMIME
import EmailTransport

/// The settings of one email instance (`[instance.settings]`), validated (docs/connectors/email.md, "Settings").
struct EmailConfig {
    /// What happens to a message in the watched IMAP mailbox once its event is committed.
    enum Processed: String {
        /// Adds `\Seen` and the `$Chorus` keyword.
        case flag
        /// Moves it to `imap_processed_folder`.
        case move
        /// Leaves it alone (the durable last UID alone keeps it from being read twice).
        case none
    }

    /// How IMAP and SMTP authenticate.
    enum Auth: String {
        /// LOGIN / AUTH PLAIN with `imap_password` and `smtp_password`.
        case password
        /// SASL XOAUTH2 with access tokens from the `oauth2_*` settings (Gmail, Microsoft 365).
        case oauth2
    }

    /// The business mailbox: the From of replies and `channel_ids.account` of every event.
    var address: String
    /// Display name for the From header of replies.
    var displayName: String?
    /// Domain part of generated Message-IDs.
    var messageIDDomain: String
    /// Mail bigger than this is refused (LMTP 552) or left in the mailbox and flagged (IMAP).
    var maxMessageBytes: Int
    /// Public base URL of chorusd (media parts get absolute URLs when set).
    var publicBaseURL: String?

    /// IMAP inbound, when configured.
    var imap: IMAPSettings?
    var imapIdle: Bool
    var imapPollSeconds: Int
    var imapProcessed: Processed
    var imapProcessedFolder: String
    /// Where mail that cannot be read at all is moved (nil: it stays, flagged `$ChorusError`).
    var imapErrorFolder: String?
    /// What a first run does with mail already in the mailbox.
    var imapInitial: IMAPWatcher.Initial

    /// LMTP listener address, when configured (`host:port`).
    var lmtpHost: String?
    var lmtpPort: Int
    /// Recipient addresses the LMTP listener accepts (empty: any).
    var lmtpRecipients: Set<String>

    /// SMTP submission, when configured (without it the instance only receives).
    var smtp: SMTPSettings?

    /// How IMAP and SMTP authenticate.
    var auth: Auth
    /// The token endpoint and credentials, with `auth = "oauth2"`.
    var oauth2: OAuth2Settings?

    static let known: Set<String> = [
        "address", "display_name", "message_id_domain", "max_message_bytes", "public_base_url", "account",
        "imap_host", "imap_port", "imap_security", "imap_username", "imap_password", "imap_password_file",
        "imap_password_credential", "imap_mailbox", "imap_ca_bundle", "imap_verify_certificate", "imap_idle",
        "imap_poll_interval_s", "imap_processed", "imap_processed_folder", "imap_error_folder", "imap_timeout_s", "imap_initial",
        "lmtp_listen", "lmtp_recipients",
        "smtp_host", "smtp_port", "smtp_security", "smtp_username", "smtp_password", "smtp_password_file",
        "smtp_password_credential", "smtp_ca_bundle", "smtp_verify_certificate", "smtp_helo", "smtp_timeout_s",
        "auth", "oauth2_token_url", "oauth2_client_id", "oauth2_client_secret", "oauth2_client_secret_file",
        "oauth2_client_secret_credential", "oauth2_refresh_token", "oauth2_refresh_token_file",
        "oauth2_refresh_token_credential", "oauth2_scope",
    ]

    init(_ s: ConnectorSettings) throws {
        for (key, _) in s.values where !EmailConfig.known.contains(key) {
            throw ConnectorError("unknown setting \"\(key)\" (known: \(EmailConfig.known.sorted().joined(separator: ", ")))")
        }
        address = try s.string("address").lowercased()
        guard EmailConfig.isAddress(address) else {
            throw ConnectorError("setting \"address\": expected the mailbox's email address (support@example.com), found \"\(address)\"")
        }
        displayName = s["display_name"].flatMap { $0.isEmpty ? nil : $0 }
        let domain = String(address.split(separator: "@").last ?? "localhost")
        messageIDDomain = s["message_id_domain"].flatMap { $0.isEmpty ? nil : $0 } ?? domain
        guard messageIDDomain.utf8.allSatisfy({ isAtext($0) || $0 == UInt8(ascii: ".") }) else {
            throw ConnectorError("setting \"message_id_domain\": expected a domain name, found \"\(messageIDDomain)\"")
        }
        maxMessageBytes = try s.int("max_message_bytes", default: 25 << 20)
        guard (1024...(200 << 20)).contains(maxMessageBytes) else {
            throw ConnectorError("setting \"max_message_bytes\": expected 1024 to 209715200, found \(maxMessageBytes)")
        }
        if let u = s["public_base_url"], !u.isEmpty {
            guard u.hasPrefix("https://") || u.hasPrefix("http://") else {
                throw ConnectorError("setting \"public_base_url\": expected an http(s) URL, found \"\(u)\"")
            }
            var v = u
            while v.hasSuffix("/") { v.removeLast() }
            publicBaseURL = v
        }

        // Authentication
        let authName = s["auth"].flatMap { $0.isEmpty ? nil : $0 } ?? "password"
        guard let auth = Auth(rawValue: authName) else {
            throw ConnectorError("setting \"auth\": expected password or oauth2, found \"\(authName)\"")
        }
        self.auth = auth
        oauth2 = try EmailConfig.oauth2Settings(s, auth)

        // IMAP
        if let host = s["imap_host"], !host.isEmpty {
            let security = try EmailConfig.security(s, "imap_security")
            let port = try s.int("imap_port", default: security == .tls ? 993 : 143)
            guard (1...65535).contains(port) else { throw ConnectorError("setting \"imap_port\": expected 1 to 65535, found \(port)") }
            let password = s["imap_password"] ?? ""
            if auth == .password && password.isEmpty {
                throw ConnectorError("setting \"imap_password\" is required with imap_host (or imap_password_file / imap_password_credential)")
            }
            let timeout = try s.int("imap_timeout_s", default: 60)
            guard (1...3600).contains(timeout) else { throw ConnectorError("setting \"imap_timeout_s\": expected 1 to 3600, found \(timeout)") }
            imap = IMAPSettings(host: host, port: port, security: security,
                                username: s["imap_username"].flatMap { $0.isEmpty ? nil : $0 } ?? address,
                                password: password.trimmingNewlines(),
                                mailbox: s["imap_mailbox"].flatMap { $0.isEmpty ? nil : $0 } ?? "INBOX",
                                caFile: s["imap_ca_bundle"].flatMap { $0.isEmpty ? nil : $0 },
                                verifyPeer: try s.bool("imap_verify_certificate", default: true),
                                timeoutSeconds: timeout)
        }
        imapIdle = try s.bool("imap_idle", default: true)
        imapPollSeconds = try s.int("imap_poll_interval_s", default: 60)
        guard (1...86400).contains(imapPollSeconds) else {
            throw ConnectorError("setting \"imap_poll_interval_s\": expected 1 to 86400, found \(imapPollSeconds)")
        }
        let processed = s["imap_processed"] ?? "flag"
        guard let p = Processed(rawValue: processed) else {
            throw ConnectorError("setting \"imap_processed\": expected flag, move or none, found \"\(processed)\"")
        }
        imapProcessed = p
        imapProcessedFolder = s["imap_processed_folder"].flatMap { $0.isEmpty ? nil : $0 } ?? "Chorus/Processed"
        imapErrorFolder = s["imap_error_folder"].flatMap { $0.isEmpty ? nil : $0 }
        let initial = s["imap_initial"] ?? "unseen"
        guard let i = IMAPWatcher.Initial(rawValue: initial) else {
            throw ConnectorError("setting \"imap_initial\": expected unseen, all or new, found \"\(initial)\"")
        }
        imapInitial = i

        // LMTP
        lmtpPort = 0
        if let listen = s["lmtp_listen"], !listen.isEmpty {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
                throw ConnectorError("setting \"lmtp_listen\": expected host:port (127.0.0.1:2424), found \"\(listen)\"")
            }
            var h = String(listen[..<colon])
            if h.hasPrefix("["), h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
            lmtpHost = h.isEmpty ? "127.0.0.1" : h
            lmtpPort = port
        }
        lmtpRecipients = Set(s.list("lmtp_recipients").map { $0.lowercased() })
        for r in lmtpRecipients where !EmailConfig.isAddress(r) {
            throw ConnectorError("setting \"lmtp_recipients\": \"\(r)\" is not an email address")
        }

        // SMTP
        if let host = s["smtp_host"], !host.isEmpty {
            let security = try EmailConfig.security(s, "smtp_security")
            let port = try s.int("smtp_port", default: security == .tls ? 465 : 587)
            guard (1...65535).contains(port) else { throw ConnectorError("setting \"smtp_port\": expected 1 to 65535, found \(port)") }
            let timeout = try s.int("smtp_timeout_s", default: 60)
            guard (1...3600).contains(timeout) else { throw ConnectorError("setting \"smtp_timeout_s\": expected 1 to 3600, found \(timeout)") }
            // XOAUTH2 names the mailbox: the user defaults to the address.
            let user = s["smtp_username"].flatMap { $0.isEmpty ? nil : $0 } ?? (auth == .oauth2 ? address : nil)
            let password = s["smtp_password"].flatMap { $0.isEmpty ? nil : $0.trimmingNewlines() }
            if auth == .password && user != nil && password == nil {
                throw ConnectorError("setting \"smtp_password\" is required with smtp_username (or smtp_password_file / smtp_password_credential)")
            }
            smtp = SMTPSettings(host: host, port: port, security: security, username: user, password: password,
                                caFile: s["smtp_ca_bundle"].flatMap { $0.isEmpty ? nil : $0 },
                                verifyPeer: try s.bool("smtp_verify_certificate", default: true),
                                heloName: s["smtp_helo"].flatMap { $0.isEmpty ? nil : $0 }, timeoutSeconds: timeout)
        }
        if imap == nil && lmtpHost == nil && smtp == nil {
            throw ConnectorError("configure at least one of imap_host (read a mailbox), lmtp_listen (receive from an MTA) or smtp_host (send)")
        }
    }

    /// The `oauth2_*` settings: required with `auth = "oauth2"`, refused without it; passwords are refused with it.
    static func oauth2Settings(_ s: ConnectorSettings, _ auth: Auth) throws -> OAuth2Settings? {
        func value(_ key: String) -> String? { s[key].flatMap { $0.isEmpty ? nil : $0.trimmingNewlines() } }
        let oauthKeys = ["oauth2_token_url", "oauth2_client_id", "oauth2_client_secret", "oauth2_refresh_token", "oauth2_scope"]
        guard auth == .oauth2 else {
            if let key = oauthKeys.first(where: { value($0) != nil }) {
                throw ConnectorError("setting \"\(key)\" needs auth = \"oauth2\" (auth is \"password\")")
            }
            return nil
        }
        for key in ["imap_password", "smtp_password"] where value(key) != nil {
            throw ConnectorError("setting \"\(key)\" is not used with auth = \"oauth2\": remove it (the access tokens come from oauth2_refresh_token)")
        }
        guard let url = value("oauth2_token_url") else {
            throw ConnectorError("setting \"oauth2_token_url\" is required with auth = \"oauth2\" "
                + "(Google: https://oauth2.googleapis.com/token, Microsoft: https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token)")
        }
        guard isTokenURL(url) else {
            throw ConnectorError("setting \"oauth2_token_url\": expected an https URL (http only for a loopback host), found \"\(url)\"")
        }
        guard let clientID = value("oauth2_client_id") else {
            throw ConnectorError("setting \"oauth2_client_id\" is required with auth = \"oauth2\"")
        }
        guard let refresh = value("oauth2_refresh_token") else {
            throw ConnectorError("setting \"oauth2_refresh_token\" is required with auth = \"oauth2\" "
                + "(give it as oauth2_refresh_token_file or oauth2_refresh_token_credential)")
        }
        return OAuth2Settings(tokenURL: url, clientID: clientID, clientSecret: value("oauth2_client_secret"),
                              refreshToken: refresh, scope: value("oauth2_scope"))
    }

    /// An https URL, or http to 127.0.0.1 / ::1 / localhost (the secrets travel in the body).
    static func isTokenURL(_ url: String) -> Bool {
        guard !url.contains(where: { $0.isWhitespace }) else { return false }
        let rest: Substring
        if url.lowercased().hasPrefix("https://") {
            rest = url.dropFirst(8)
        } else if url.lowercased().hasPrefix("http://") {
            rest = url.dropFirst(7)
            let authority = rest.prefix { $0 != "/" && $0 != "?" }
            let host: Substring
            if authority.hasPrefix("[") {
                host = authority.dropFirst().prefix { $0 != "]" }
            } else {
                host = authority.prefix { $0 != ":" }
            }
            guard host == "localhost" || host == "::1" || host.hasPrefix("127.") else { return false }
        } else {
            return false
        }
        return !rest.isEmpty && !rest.hasPrefix("/")
    }

    /// `tls` (implicit TLS, the default), `starttls`, or `none` (plain text: only for a server on loopback).
    static func security(_ s: ConnectorSettings, _ key: String) throws -> MailSecurity {
        let v = s[key] ?? "tls"
        guard let m = MailSecurity(rawValue: v) else {
            throw ConnectorError("setting \"\(key)\": expected tls, starttls or none, found \"\(v)\"")
        }
        return m
    }

    /// A plausible addr-spec: one `@`, a non-empty local part and a domain without spaces.
    static func isAddress(_ s: String) -> Bool {
        let halves = s.split(separator: "@", omittingEmptySubsequences: false)
        guard halves.count == 2, !halves[0].isEmpty, !halves[1].isEmpty else { return false }
        return !s.contains(" ") && !s.contains("<") && !s.contains(">") && !s.contains(",")
    }

    /// The From of outgoing mail.
    var fromAddress: MailAddress { MailAddress(name: displayName, address: address) }
}

/// RFC 5322 atext (letters, digits and the allowed specials), for Message-ID domains.
func isAtext(_ b: UInt8) -> Bool {
    if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) { return true }
    return "!#$%&'*+-/=?^_`{|}~".utf8.contains(b)
}

extension String {
    func trimmingNewlines() -> String {
        var s = Substring(self)
        while let l = s.last, l == "\n" || l == "\r" || l == " " { s.removeLast() }
        return String(s)
    }
}
