// SMTP submission (RFC 6409) with libcurl's easy interface: one blocking call per message.

import CCurl
import Glibc

/// Where and how to submit mail.
public struct SMTPSettings: Sendable {
    /// Server host name or IP address.
    public var host: String
    /// Server port (587 for submission with STARTTLS, 465 for implicit TLS).
    public var port: Int
    /// Transport protection.
    public var security: MailSecurity
    /// SMTP AUTH user; nil = no authentication.
    public var username: String?
    /// SMTP AUTH password (unused when `oauth2AccessToken` is set).
    public var password: String?
    /// An OAuth2 access token: when set, the submission authenticates as `username` with SASL XOAUTH2
    /// (`AUTH XOAUTH2`, as Gmail and Microsoft 365 require) instead of PLAIN/LOGIN; `username` is then required.
    /// Never logged.
    public var oauth2AccessToken: String?
    /// PEM bundle to verify the server with; nil = the system store.
    public var caFile: String?
    /// Verify the server's certificate and host name (default true).
    public var verifyPeer: Bool
    /// Name sent in EHLO; nil = this machine's host name.
    public var heloName: String?
    /// Limit for the whole submission, connection included, in seconds.
    public var timeoutSeconds: Int

    /// Creates settings.
    public init(host: String, port: Int, security: MailSecurity, username: String? = nil, password: String? = nil,
                caFile: String? = nil, verifyPeer: Bool = true, heloName: String? = nil, timeoutSeconds: Int = 60,
                oauth2AccessToken: String? = nil)
    {
        self.oauth2AccessToken = oauth2AccessToken
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.caFile = caFile
        self.verifyPeer = verifyPeer
        self.heloName = heloName
        self.timeoutSeconds = timeoutSeconds
    }
}

/// The outcome of one submission.
public enum SMTPResult: Sendable, Equatable {
    /// The server took the message; `response` is its final reply (e.g. "250 2.0.0 Ok: queued as 4Xyz").
    case accepted(response: String)
    /// The server refused the message or could not be reached. `code` is the SMTP reply code, 0 when no
    /// reply decided it (connection, TLS, timeout, bad input). `retryable`: 4xx replies and connection
    /// problems; 5xx replies, certificate failures and bad input are permanent. A 535 authentication failure
    /// is permanent with a password but retryable with an OAuth2 access token: the token has most likely
    /// expired or been revoked, and a fresh one may succeed (the caller refreshes it and tries again).
    case failed(code: Int, message: String, retryable: Bool)
}

/// Submits messages over SMTP with libcurl.
public enum SMTPSubmitter {
    /// Sends `message` (a complete RFC 5322 message; bare LF line ends are turned into CRLF) to `recipients`
    /// with envelope sender `from` ("" for the null sender).
    ///
    /// All or nothing: when the server refuses any recipient at RCPT, nothing is sent and the first refusal
    /// is reported. Blocking; callable from any thread (each call uses its own connection).
    public static func submit(_ settings: SMTPSettings, from: String, recipients: [String], message: [UInt8]) -> SMTPResult {
        if let problem = validate(settings, from: from, recipients: recipients, message: message) {
            return .failed(code: 0, message: problem, retryable: false)
        }
        guard curlReady == CURLE_OK else {
            return .failed(code: 0, message: "libcurl could not be initialised (code \(curlReady.rawValue))", retryable: false)
        }
        guard let easy = curl_easy_init() else {
            return .failed(code: 0, message: "curl_easy_init failed", retryable: true)
        }
        let transfer = SMTPTransfer(body: normalizeLineEnds(message))
        var recipientList: UnsafeMutablePointer<curl_slist>?
        defer {
            curl_easy_cleanup(easy)
            curl_slist_free_all(recipientList)
        }
        for recipient in recipients {
            recipientList = curl_slist_append(recipientList, "<\(recipient)>")
        }
        let target = "\(settings.host):\(settings.port)"
        if let problem = transfer.configure(easy, settings, from: from, recipients: recipientList) {
            return .failed(code: 0, message: "SMTP submission to \(target): \(problem)", retryable: false)
        }
        let rc = curl_easy_perform(easy)
        var code = 0
        _ = ccurl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &code)
        if rc == CURLE_OK {
            return .accepted(response: transfer.lastReply(code: code) ?? String(code))
        }
        if code >= 400, let reply = transfer.lastReply(code: code) {
            let tokenRefused = code == 535 && settings.oauth2AccessToken != nil
            return .failed(code: code, message: tokenRefused ? "\(reply) (XOAUTH2 as \(settings.username ?? ""): the access token was refused)" : reply,
                           retryable: code < 500 || tokenRefused)
        }
        if rc == CURLE_LOGIN_DENIED, settings.oauth2AccessToken != nil, code == 334,
           let challenge = transfer.serverLines.last(where: { $0.hasPrefix("334 ") }) {
            // The server answered the XOAUTH2 response with an error challenge (334 <base64 JSON>, as Gmail and
            // Dovecot do); curl gives up there, before the 535 that would follow.
            return .failed(code: 535, message: "SMTP server \(target) refused the XOAUTH2 access token for \(settings.username ?? "") ("
                + SMTPSubmitter.challengeText(String(challenge.dropFirst(4))) + ")", retryable: true)
        }
        if rc == CURLE_LOGIN_DENIED, settings.oauth2AccessToken != nil {
            // The EHLO answer's AUTH line, when XOAUTH2 is missing from it.
            let offered = transfer.serverLines.last { $0.hasPrefix("250-AUTH") || $0.hasPrefix("250 AUTH") }
                .map { $0.dropFirst(8).split(separator: " ").map(String.init) } ?? []
            if !offered.contains(where: { $0.uppercased() == "XOAUTH2" }) {
                return .failed(code: 0, message: "SMTP server \(target) does not offer AUTH XOAUTH2 (it offers "
                    + (offered.isEmpty ? "no AUTH" : offered.joined(separator: " ")) + ")", retryable: false)
            }
        }
        let detail = transfer.errorText.isEmpty ? String(cString: curl_easy_strerror(rc)) : transfer.errorText
        return .failed(code: 0, message: "SMTP submission to \(target) failed: \(detail)", retryable: !isPermanent(rc))
    }

    /// A server's SASL challenge, base64-decoded when it is printable text (the XOAUTH2 error JSON), else as sent.
    static func challengeText(_ base64: String) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var bits: UInt32 = 0, count = 0
        var bytes: [UInt8] = []
        for c in base64.utf8 where c != UInt8(ascii: "=") {
            guard let v = alphabet.firstIndex(of: c) else { return String(base64.prefix(200)) }
            bits = (bits << 6) | UInt32(v)
            count += 6
            if count >= 8 {
                count -= 8
                bytes.append(UInt8((bits >> UInt32(count)) & 0xFF))
            }
        }
        guard !bytes.isEmpty, bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return String(base64.prefix(200)) }
        return String(decoding: bytes.prefix(200), as: UTF8.self)
    }

    /// Curl failures that retrying cannot fix: the server's certificate, a missing STARTTLS, a bad CA file.
    private static func isPermanent(_ rc: CURLcode) -> Bool {
        [CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_USE_SSL_FAILED, CURLE_SSL_CERTPROBLEM,
         CURLE_LOGIN_DENIED, CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL, CURLE_SSL_ISSUER_ERROR,
         CURLE_SSL_PINNEDPUBKEYNOTMATCH].contains(rc)
    }

    /// Input checks, so bad input fails clearly instead of as a protocol error.
    static func validate(_ settings: SMTPSettings, from: String, recipients: [String], message: [UInt8]) -> String? {
        func badAddress(_ address: String) -> Bool {
            address.unicodeScalars.contains { $0.value < 33 || $0.value == 127 || $0 == "<" || $0 == ">" }
        }
        if settings.host.isEmpty || settings.host.unicodeScalars.contains(where: { !isHostScalar($0) }) {
            return "invalid SMTP host \"\(settings.host)\""
        }
        if !(1...65535).contains(settings.port) { return "invalid SMTP port \(settings.port)" }
        if let helo = settings.heloName, helo.isEmpty || helo.unicodeScalars.contains(where: { !isHostScalar($0) }) {
            return "invalid EHLO name \"\(helo)\""
        }
        if settings.timeoutSeconds <= 0 { return "the SMTP timeout must be positive" }
        if let token = settings.oauth2AccessToken {
            if settings.username?.isEmpty ?? true { return "XOAUTH2 needs a user name (SMTPSettings.username)" }
            if token.isEmpty || token.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value > 0x7E }) {
                return "the OAuth2 access token is empty or not printable ASCII"
            }
        }
        if badAddress(from) { return "invalid envelope sender \"\(from)\"" }
        if recipients.isEmpty { return "no recipients" }
        if let bad = recipients.first(where: { $0.isEmpty || badAddress($0) }) { return "invalid recipient \"\(bad)\"" }
        if message.isEmpty { return "empty message" }
        return nil
    }

    private static func isHostScalar(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9", ".", "-", ":", "_": return true
        default: return false
        }
    }

    /// `message` with every bare LF turned into CRLF (SMTP requires CRLF; curl sends bytes as they are).
    static func normalizeLineEnds(_ message: [UInt8]) -> [UInt8] {
        guard message.contains(10) else { return message }
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 32)
        var previous: UInt8 = 0
        for byte in message {
            if byte == 10 && previous != 13 { out.append(13) }
            out.append(byte)
            previous = byte
        }
        return out
    }
}

/// libcurl's process-wide initialisation, done once (thread-safe lazy global).
private let curlReady: CURLcode = ccurl_global_init_default()

/// The state of one submission: the upload body, the server's replies and curl's error text.
private final class SMTPTransfer {
    let body: [UInt8]
    var offset = 0
    /// Server reply lines, most recent last (bounded).
    var serverLines: [String] = []
    let errorBuffer: UnsafeMutablePointer<CChar>

    init(body: [UInt8]) {
        self.body = body
        let size = ccurl_error_size()
        errorBuffer = .allocate(capacity: size)
        errorBuffer.initialize(repeating: 0, count: size)
    }

    deinit { errorBuffer.deallocate() }

    var errorText: String { String(cString: errorBuffer) }

    /// Sets the options; returns a problem description on failure.
    func configure(_ easy: UnsafeMutableRawPointer, _ settings: SMTPSettings, from: String,
                   recipients: UnsafeMutablePointer<curl_slist>?) -> String?
    {
        var failures: [String] = []
        func check(_ rc: CURLcode, _ what: String) {
            if rc != CURLE_OK { failures.append("\(what): \(String(cString: curl_easy_strerror(rc)))") }
        }
        let me = Unmanaged.passUnretained(self).toOpaque()
        let scheme = settings.security == .tls ? "smtps" : "smtp"
        let host = settings.host.contains(":") ? "[\(settings.host)]" : settings.host
        let helo = settings.heloName ?? localHostName()
        check(ccurl_easy_setopt_string(easy, CURLOPT_URL, "\(scheme)://\(host):\(settings.port)/\(helo)"), "URL")
        check(ccurl_easy_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "smtp,smtps"), "protocols")
        check(ccurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1), "nosignal")
        check(ccurl_easy_setopt_long(easy, CURLOPT_USE_SSL,
                                     settings.security == .starttls ? ccurl_usessl_all() : ccurl_usessl_none()), "use SSL")
        if let caFile = settings.caFile { check(ccurl_easy_setopt_string(easy, CURLOPT_CAINFO, caFile), "CA file") }
        check(ccurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, settings.verifyPeer ? 1 : 0), "verify peer")
        check(ccurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, settings.verifyPeer ? 2 : 0), "verify host")
        if let token = settings.oauth2AccessToken, let username = settings.username {
            // SASL XOAUTH2 only: never fall back to sending a password-like secret with PLAIN.
            check(ccurl_easy_setopt_string(easy, CURLOPT_USERNAME, username), "user name")
            check(ccurl_easy_setopt_string(easy, CURLOPT_XOAUTH2_BEARER, token), "XOAUTH2 bearer token")
            check(ccurl_easy_setopt_string(easy, CURLOPT_LOGIN_OPTIONS, "AUTH=XOAUTH2"), "login options")
        } else if let username = settings.username {
            check(ccurl_easy_setopt_string(easy, CURLOPT_USERNAME, username), "user name")
            check(ccurl_easy_setopt_string(easy, CURLOPT_PASSWORD, settings.password ?? ""), "password")
        }
        check(ccurl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT, min(settings.timeoutSeconds, 30)), "connect timeout")
        check(ccurl_easy_setopt_long(easy, CURLOPT_TIMEOUT, settings.timeoutSeconds), "timeout")
        check(ccurl_easy_setopt_ptr(easy, CURLOPT_ERRORBUFFER, errorBuffer), "error buffer")
        check(ccurl_easy_setopt_string(easy, CURLOPT_MAIL_FROM, "<\(from)>"), "MAIL FROM")
        check(ccurl_easy_setopt_slist(easy, CURLOPT_MAIL_RCPT, recipients), "RCPT TO")
        check(ccurl_easy_setopt_long(easy, CURLOPT_UPLOAD, 1), "upload")
        check(ccurl_easy_setopt_off(easy, CURLOPT_INFILESIZE_LARGE, curl_off_t(body.count)), "size")
        check(ccurl_easy_setopt_datacb(easy, CURLOPT_READFUNCTION, smtpRead), "read function")
        check(ccurl_easy_setopt_ptr(easy, CURLOPT_READDATA, me), "read data")
        // The debug callback is the only place curl shows the server's reply text; VERBOSE turns it on.
        check(ccurl_easy_setopt_debugcb(easy, smtpDebug), "debug function")
        check(ccurl_easy_setopt_ptr(easy, CURLOPT_DEBUGDATA, me), "debug data")
        check(ccurl_easy_setopt_long(easy, CURLOPT_VERBOSE, 1), "verbose")
        return failures.isEmpty ? nil : failures.joined(separator: "; ")
    }

    /// Fills curl's upload buffer.
    func read(into buffer: UnsafeMutablePointer<CChar>, capacity: Int) -> Int {
        let count = min(capacity, body.count - offset)
        guard count > 0 else { return 0 }
        body.withUnsafeBytes { raw in
            UnsafeMutableRawPointer(buffer).copyMemory(from: raw.baseAddress! + offset, byteCount: count)
        }
        offset += count
        return count
    }

    /// Records server reply lines (curl hands them over one line at a time, with CRLF).
    func received(_ data: UnsafeRawBufferPointer) {
        var text = String(decoding: data, as: UTF8.self)
        while text.last == "\n" || text.last == "\r" { text.removeLast() }
        for line in text.split(separator: "\r\n", omittingEmptySubsequences: true) {
            serverLines.append(String(line))
        }
        if serverLines.count > 64 { serverLines.removeFirst(serverLines.count - 64) }
    }

    /// The server's most recent reply with this code (all lines of a multi-line reply, joined by a space).
    /// Looking for the code skips what follows the deciding reply (the "221 Bye" to curl's QUIT).
    func lastReply(code: Int) -> String? {
        let prefix = String(code)
        guard let end = serverLines.lastIndex(where: { $0.hasPrefix(prefix + " ") || $0 == prefix }) else { return nil }
        var lines = [serverLines[end]]
        var index = end - 1
        while index >= 0, serverLines[index].hasPrefix(prefix + "-") {
            lines.insert(serverLines[index], at: 0)
            index -= 1
        }
        return lines.joined(separator: " ")
    }
}

private func smtpRead(_ buffer: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?) -> Int {
    guard let buffer, let context else { return 0 }
    let transfer = Unmanaged<SMTPTransfer>.fromOpaque(context).takeUnretainedValue()
    return transfer.read(into: buffer, capacity: size * count)
}

private func smtpDebug(_ handle: UnsafeMutableRawPointer?, _ type: curl_infotype, _ data: UnsafeMutablePointer<CChar>?,
                       _ size: Int, _ context: UnsafeMutableRawPointer?) -> Int32
{
    guard type == CURLINFO_HEADER_IN, let data, let context else { return 0 }
    let transfer = Unmanaged<SMTPTransfer>.fromOpaque(context).takeUnretainedValue()
    transfer.received(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// This machine's host name, for EHLO.
private func localHostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
    let name = String(cString: buffer)
    return name.isEmpty ? "localhost" : name
}
