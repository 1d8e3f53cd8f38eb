// An IMAP client for one mailbox with libetpan's mailimap API: blocking calls from one worker thread,
// TLS (implicit or STARTTLS) verified against a CA bundle, IDLE with a thread-safe interrupt.

import CEtPan
import Glibc
import Synchronization

/// Where and how to read mail.
public struct IMAPSettings: Sendable {
    /// Server host name or IP address (also the name the certificate must carry).
    public var host: String
    /// Server port (993 for implicit TLS, 143 for STARTTLS).
    public var port: Int
    /// Transport protection.
    public var security: MailSecurity
    /// Login name.
    public var username: String
    /// Password (unused when `oauth2AccessToken` is set).
    public var password: String
    /// An OAuth2 access token: when set, the client authenticates with SASL XOAUTH2 (`user=<username>`,
    /// `auth=Bearer <token>`) instead of LOGIN, as Gmail and Microsoft 365 require. Never logged.
    public var oauth2AccessToken: String?
    /// The mailbox to select, e.g. "INBOX" (UTF-8; sent in IMAP's modified UTF-7).
    public var mailbox: String
    /// PEM bundle to verify the server with; nil = the system store.
    public var caFile: String?
    /// Verify the server's certificate chain and host name (default true).
    public var verifyPeer: Bool
    /// Socket timeout for each command, the connection and the TLS handshake, in seconds.
    public var timeoutSeconds: Int

    /// Creates settings.
    public init(host: String, port: Int, security: MailSecurity, username: String, password: String,
                mailbox: String = "INBOX", caFile: String? = nil, verifyPeer: Bool = true, timeoutSeconds: Int = 30,
                oauth2AccessToken: String? = nil)
    {
        self.oauth2AccessToken = oauth2AccessToken
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.mailbox = mailbox
        self.caFile = caFile
        self.verifyPeer = verifyPeer
        self.timeoutSeconds = timeoutSeconds
    }
}

/// An IMAP failure, with a message naming the server and what was refused.
public struct IMAPError: Error, CustomStringConvertible, Sendable {
    /// The kind of failure.
    public enum Kind: Sendable {
        /// The server cannot be reached, refused the connection, or the connection was lost.
        case connect
        /// The TLS handshake failed or the certificate does not verify.
        case tls
        /// The login was refused (with an OAuth2 access token: the token is expired, revoked, or for another
        /// user — a fresh token may succeed; see `IMAPClient.connect()`).
        case auth
        /// The mailbox does not exist (or cannot be selected).
        case mailboxMissing
        /// The server refused a command or answered something unexpected; also bad arguments.
        case protocolError
        /// The server did not answer within the timeout.
        case timeout
        /// `interrupt()` was called; the client stays unusable until `connect()`.
        case interrupted
    }

    /// The kind of failure.
    public var kind: Kind
    /// What happened, e.g. "IMAP login to mail.example.com:993 as support@example.com refused: Authentication failed."
    public var description: String

    /// Creates an error.
    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}

/// An IMAP session on one selected mailbox.
///
/// All calls but `interrupt()` block and must come from one thread at a time (the connector's IMAP worker).
/// Like every socket user in chorusd, it relies on SIGPIPE being ignored in the process (the daemon does that).
/// After an error of kind `.connect`, `.timeout`, `.tls` or `.interrupted` the session is closed; call
/// `connect()` again.
public final class IMAPClient: @unchecked Sendable {
    private let settings: IMAPSettings
    private var imap: UnsafeMutablePointer<mailimap>?
    private let interruptPipe: (read: Int32, write: Int32)
    private let interruptedFlag = Mutex(false)

    /// The UIDVALIDITY of the selected mailbox.
    public private(set) var uidValidity: UInt32 = 0
    /// The UIDNEXT of the selected mailbox (refreshed by `idle` and `noop`).
    public private(set) var uidNext: UInt32 = 0
    /// The server's capabilities after login, upper-cased ("IDLE", "MOVE", "UIDPLUS", "AUTH=PLAIN").
    public private(set) var capabilities: Set<String> = []

    /// Creates a client; nothing is sent until `connect()`.
    public init(_ settings: IMAPSettings) {
        self.settings = settings
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            }
        } else {
            fds = [-1, -1]
        }
        interruptPipe = (fds[0], fds[1])
    }

    deinit {
        closeSession()
        if interruptPipe.read >= 0 { close(interruptPipe.read) }
        if interruptPipe.write >= 0 { close(interruptPipe.write) }
    }

    private var target: String { "\(settings.host):\(settings.port)" }

    // MARK: - Connection

    /// Connects, upgrades with STARTTLS when asked, verifies the certificate, logs in and selects the mailbox.
    /// Clears an earlier `interrupt()`. Any previous session is dropped first.
    ///
    /// Logs in with LOGIN, or with SASL XOAUTH2 when `oauth2AccessToken` is set. A refused login is `.auth`;
    /// with a token that usually means it expired or was revoked, so the caller should get a fresh token and
    /// connect again once (the email connector does) before treating it as a configuration problem.
    public func connect() throws(IMAPError) {
        closeSession()
        interruptedFlag.withLock { $0 = false }
        drainInterruptPipe()
        capabilities = []
        uidValidity = 0
        uidNext = 0
        guard interruptPipe.read >= 0 else { throw IMAPError(.connect, "IMAP client for \(target): cannot create its wake-up pipe") }
        guard (1...65535).contains(settings.port) else { throw IMAPError(.connect, "invalid IMAP port \(settings.port)") }
        guard settings.timeoutSeconds > 0 else { throw IMAPError(.connect, "the IMAP timeout must be positive") }
        guard !settings.host.isEmpty, !settings.host.contains(where: { $0.isWhitespace || $0 == "/" }) else {
            throw IMAPError(.connect, "invalid IMAP host \"\(settings.host)\"")
        }
        guard let session = mailimap_new(0, nil) else { throw IMAPError(.connect, "IMAP client for \(target): out of memory") }
        imap = session
        mailimap_set_timeout(session, time_t(settings.timeoutSeconds))
        do {
            try open(session)
            try authenticate(session)
            try select(session)
        } catch {
            closeSession()
            throw error
        }
    }

    /// TCP, TLS and the greeting.
    private func open(_ session: UnsafeMutablePointer<mailimap>) throws(IMAPError) {
        let timeout = time_t(settings.timeoutSeconds)
        var message = [CChar](repeating: 0, count: 512)
        let fd = cetpan_tcp_connect(settings.host, UInt16(settings.port), Int32(clamping: settings.timeoutSeconds * 1000),
                                    &message, message.count)
        guard fd >= 0 else {
            throw IMAPError(.connect, "IMAP connection to \(target) failed: \(cText(message))")
        }
        // The SNI name must outlive the handshake: keep it in a C string until the end of this function.
        let sni = isIPAddress(settings.host) ? nil : strdup(settings.host)
        defer { free(sni) }
        let stream: UnsafeMutablePointer<mailstream>?
        if settings.security == .tls {
            let handshake = now()
            stream = cetpan_ssl_open(fd, timeout, sni)
            guard stream != nil else {
                close(fd)
                throw handshakeFailure(since: handshake, "TLS handshake with \(target) failed (is it an implicit-TLS port?)")
            }
            do {
                try verifyPeer(stream)
            } catch {
                mailstream_close(stream)  // not handed to the session yet: closes the socket too
                throw error
            }
        } else {
            stream = mailstream_socket_open_timeout(fd, timeout)
            guard stream != nil else {
                close(fd)
                throw IMAPError(.connect, "IMAP connection to \(target): out of memory")
            }
        }
        let started = now()
        let rc = Int(mailimap_connect(session, stream))  // takes the stream, even on failure
        guard rc == MAILIMAP_NO_ERROR_AUTHENTICATED || rc == MAILIMAP_NO_ERROR_NON_AUTHENTICATED else {
            if rc == MAILIMAP_ERROR_DONT_ACCEPT_CONNECTION {
                throw IMAPError(.connect, "IMAP server \(target) refused the connection: \(responseText(session))")
            }
            throw failure(rc, "greeting", since: started)
        }
        guard settings.security == .starttls else { return }
        let starttls = Int(mailimap_starttls(session))
        guard starttls == MAILIMAP_NO_ERROR else {
            if starttls == MAILIMAP_ERROR_STREAM || starttls == MAILIMAP_ERROR_PARSE {
                throw failure(starttls, "STARTTLS", since: started)
            }
            throw IMAPError(.tls, "IMAP server \(target) refused STARTTLS: \(responseText(session))")
        }
        let handshake = now()
        guard cetpan_starttls_upgrade(session.pointee.imap_stream, timeout, sni) == 0 else {
            throw handshakeFailure(since: handshake, "TLS handshake with \(target) after STARTTLS failed")
        }
        try verifyPeer(session.pointee.imap_stream)
    }

    /// A failed TLS handshake: `.timeout` when it used up the timeout, else `.tls`.
    private func handshakeFailure(since started: Double, _ message: String) -> IMAPError {
        if now() - started >= Double(settings.timeoutSeconds) - 0.5 {
            return IMAPError(.timeout, "IMAP server \(target) did not complete the TLS handshake within \(settings.timeoutSeconds) s")
        }
        return IMAPError(.tls, message)
    }

    private func verifyPeer(_ stream: UnsafeMutablePointer<mailstream>?) throws(IMAPError) {
        guard let stream else { return }
        cetpan_stream_set_timeout(stream, time_t(settings.timeoutSeconds))
        guard settings.verifyPeer else { return }
        var message = [CChar](repeating: 0, count: 1024)
        if cetpan_verify_peer(stream, settings.caFile, settings.host, &message, message.count) != 0 {
            throw IMAPError(.tls, "the TLS certificate of IMAP server \(target) does not verify: \(cText(message).trimmingSpaces)")
        }
    }

    private func authenticate(_ session: UnsafeMutablePointer<mailimap>) throws(IMAPError) {
        try loadCapabilities(session)
        if let token = settings.oauth2AccessToken {
            try authenticateXOAUTH2(session, token: token)
            return
        }
        if capabilities.contains("LOGINDISABLED") {
            throw IMAPError(.auth, "IMAP server \(target) disables LOGIN on this connection (use security \"tls\" or \"starttls\")")
        }
        let started = now()
        let rc = Int(mailimap_login(session, settings.username, settings.password))
        guard rc == MAILIMAP_NO_ERROR else {
            if rc == MAILIMAP_ERROR_LOGIN {
                throw IMAPError(.auth, "IMAP login to \(target) as \(settings.username) refused: \(responseText(session))")
            }
            throw failure(rc, "login", since: started)
        }
        // The capabilities change after login (MOVE, UIDPLUS, IDLE…).
        try loadCapabilities(session)
    }

    /// SASL XOAUTH2 (Google's and Microsoft's IMAP OAuth2): `AUTHENTICATE XOAUTH2 <base64 of user=…^Aauth=Bearer …^A^A>`.
    /// libetpan answers the server's error challenge with an empty line, so a refusal ends in a tagged NO.
    private func authenticateXOAUTH2(_ session: UnsafeMutablePointer<mailimap>, token: String) throws(IMAPError) {
        guard !token.isEmpty, !token.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value > 0x7E }) else {
            throw IMAPError(.auth, "the OAuth2 access token for IMAP server \(target) is empty or not printable ASCII")
        }
        guard capabilities.contains("AUTH=XOAUTH2") else {
            let offered = capabilities.filter { $0.hasPrefix("AUTH=") }.sorted().joined(separator: " ")
            throw IMAPError(.auth, "IMAP server \(target) does not offer AUTH=XOAUTH2 (it offers "
                + "\(offered.isEmpty ? "no SASL mechanism" : offered))")
        }
        let started = now()
        let rc = Int(mailimap_oauth2_authenticate(session, settings.username, token))
        guard rc == MAILIMAP_NO_ERROR else {
            if rc == MAILIMAP_ERROR_LOGIN {
                throw IMAPError(.auth, "IMAP XOAUTH2 login to \(target) as \(settings.username) refused "
                    + "(the access token is expired, revoked or not for this user): \(responseText(session))")
            }
            throw failure(rc, "AUTHENTICATE XOAUTH2", since: started)
        }
        try loadCapabilities(session)
    }

    private func loadCapabilities(_ session: UnsafeMutablePointer<mailimap>) throws(IMAPError) {
        var data: UnsafeMutablePointer<mailimap_capability_data>?
        let started = now()
        let rc = Int(mailimap_capability(session, &data))
        guard rc == MAILIMAP_NO_ERROR, let data else { throw failure(rc, "CAPABILITY", since: started) }
        defer { mailimap_capability_data_free(data) }
        var names: Set<String> = []
        var iter = cetpan_clist_begin(data.pointee.cap_list)
        while let node = iter {
            if let cap = cetpan_clist_content(node)?.assumingMemoryBound(to: mailimap_capability.self) {
                var isAuth: Int32 = 0
                if let name = cetpan_capability_name(cap, &isAuth) {
                    names.insert((isAuth != 0 ? "AUTH=" : "") + String(cString: name).uppercased())
                }
            }
            iter = cetpan_clist_next(node)
        }
        capabilities = names
    }

    private func select(_ session: UnsafeMutablePointer<mailimap>) throws(IMAPError) {
        let started = now()
        let rc = Int(mailimap_select(session, IMAPMailboxName.encode(settings.mailbox)))
        guard rc == MAILIMAP_NO_ERROR else {
            if rc == MAILIMAP_ERROR_SELECT {
                throw IMAPError(.mailboxMissing,
                                "IMAP mailbox \"\(settings.mailbox)\" on \(target) cannot be selected: \(responseText(session))")
            }
            throw failure(rc, "SELECT \(settings.mailbox)", since: started)
        }
        uidValidity = cetpan_selection_uidvalidity(session)
        uidNext = cetpan_selection_uidnext(session)
        if uidNext == 0 {
            // No UIDNEXT in the SELECT answer (allowed before IMAP4rev2): the highest UID + 1.
            uidNext = (try uidsMatching(uidRangeFrom: 1).last).map { $0 &+ 1 } ?? 1
        }
    }

    /// Logs out (best effort) and closes the connection. The client can `connect()` again.
    public func logout() {
        if let session = imap, !interruptedFlag.withLock({ $0 }) {
            _ = mailimap_logout(session)
        }
        closeSession()
    }

    private func closeSession() {
        if let session = imap {
            mailimap_free(session)
            imap = nil
        }
    }

    // MARK: - Interrupt

    /// Wakes a blocked `idle()` (it returns `.interrupted`) and makes every later call fail with `.interrupted`
    /// until `connect()`. Safe from any thread; a command other than IDLE in progress finishes (or times out) first.
    public func interrupt() {
        interruptedFlag.withLock { $0 = true }
        if interruptPipe.write >= 0 {
            var byte: UInt8 = 1
            _ = write(interruptPipe.write, &byte, 1)
        }
    }

    private func drainInterruptPipe() {
        guard interruptPipe.read >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(interruptPipe.read, &buffer, buffer.count) > 0 {}
    }

    /// The live session, or the error that says why there is none.
    private func ready() throws(IMAPError) -> UnsafeMutablePointer<mailimap> {
        if interruptedFlag.withLock({ $0 }) {
            closeSession()
            throw IMAPError(.interrupted, "IMAP client for \(target) was interrupted")
        }
        guard let session = imap else { throw IMAPError(.connect, "IMAP client for \(target) is not connected") }
        return session
    }

    // MARK: - Searching

    /// The UIDs greater than `uid`, sorted (UID SEARCH UID <uid+1>:*, without the last message that "*"
    /// always matches).
    public func uids(after uid: UInt32) throws(IMAPError) -> [UInt32] {
        guard uid < UInt32.max else { return [] }
        return try uidsMatching(uidRangeFrom: uid + 1)
    }

    private func uidsMatching(uidRangeFrom first: UInt32) throws(IMAPError) -> [UInt32] {
        guard let set = mailimap_set_new_interval(first, 0) else { throw IMAPError(.protocolError, "out of memory") }
        guard let key = mailimap_search_key_new_uid(set) else {
            mailimap_set_free(set)
            throw IMAPError(.protocolError, "out of memory")
        }
        return try search(key, "UID SEARCH UID \(first):*").filter { $0 >= first }
    }

    /// The UIDs of the messages without `flag` and not marked \Deleted, sorted. `flag` is a system flag
    /// ("\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted") or a keyword ("$Chorus").
    public func uidsWithout(flag: String) throws(IMAPError) -> [UInt32] {
        let key: UnsafeMutablePointer<mailimap_search_key>?
        switch flag.lowercased() {
        case "\\seen": key = cetpan_search_key_simple(Int32(MAILIMAP_SEARCH_KEY_UNSEEN))
        case "\\answered": key = cetpan_search_key_simple(Int32(MAILIMAP_SEARCH_KEY_UNANSWERED))
        case "\\flagged": key = cetpan_search_key_simple(Int32(MAILIMAP_SEARCH_KEY_UNFLAGGED))
        case "\\draft": key = cetpan_search_key_simple(Int32(MAILIMAP_SEARCH_KEY_UNDRAFT))
        case "\\deleted": key = cetpan_search_key_simple(Int32(MAILIMAP_SEARCH_KEY_UNDELETED))
        default:
            guard IMAPMailboxName.isValidKeyword(flag) else {
                throw IMAPError(.protocolError, "invalid IMAP keyword \"\(flag)\"")
            }
            key = mailimap_search_key_new_unkeyword(strdup(flag))
        }
        guard let key, let all = mailimap_search_key_new_multiple_empty() else {
            throw IMAPError(.protocolError, "out of memory")
        }
        mailimap_search_key_multiple_add(all, key)
        if flag.lowercased() != "\\deleted", let undeleted = cetpan_search_key_simple(Int32(MAILIMAP_SEARCH_KEY_UNDELETED)) {
            mailimap_search_key_multiple_add(all, undeleted)
        }
        return try search(all, "UID SEARCH UN\(flag)")
    }

    /// Runs UID SEARCH with `key` (freed here); sorted UIDs.
    private func search(_ key: UnsafeMutablePointer<mailimap_search_key>, _ what: String) throws(IMAPError) -> [UInt32] {
        defer { mailimap_search_key_free(key) }
        let session = try ready()
        var result: UnsafeMutablePointer<clist>?
        let started = now()
        let rc = Int(mailimap_uid_search(session, nil, key, &result))
        guard rc == MAILIMAP_NO_ERROR else { throw failure(rc, what, since: started) }
        defer { if let result { mailimap_search_result_free(result) } }
        var uids: [UInt32] = []
        var iter = cetpan_clist_begin(result)
        while let node = iter {
            if let value = cetpan_clist_content(node)?.assumingMemoryBound(to: UInt32.self) { uids.append(value.pointee) }
            iter = cetpan_clist_next(node)
        }
        return uids.sorted()
    }

    // MARK: - Fetching

    /// The RFC822.SIZE of a message; nil when no message has this UID.
    public func size(uid: UInt32) throws(IMAPError) -> Int? {
        try fetchAttributes(uid: uid, body: false).size
    }

    /// The raw message (BODY.PEEK[]: exact bytes, \Seen not set); nil when no message has this UID.
    public func fetch(uid: UInt32) throws(IMAPError) -> [UInt8]? {
        try fetchAttributes(uid: uid, body: true).body
    }

    private func fetchAttributes(uid: UInt32, body: Bool) throws(IMAPError) -> (size: Int?, body: [UInt8]?) {
        let session = try ready()
        guard let set = mailimap_set_new_single(uid), let type = mailimap_fetch_type_new_fetch_att_list_empty() else {
            throw IMAPError(.protocolError, "out of memory")
        }
        defer {
            mailimap_set_free(set)
            mailimap_fetch_type_free(type)
        }
        mailimap_fetch_type_new_fetch_att_list_add(type, mailimap_fetch_att_new_uid())
        if body {
            mailimap_fetch_type_new_fetch_att_list_add(type, mailimap_fetch_att_new_body_peek_section(mailimap_section_new(nil)))
        } else {
            mailimap_fetch_type_new_fetch_att_list_add(type, mailimap_fetch_att_new_rfc822_size())
        }
        var result: UnsafeMutablePointer<clist>?
        let started = now()
        let rc = Int(mailimap_uid_fetch(session, set, type, &result))
        guard rc == MAILIMAP_NO_ERROR else { throw failure(rc, "UID FETCH \(uid)", since: started) }
        defer { if let result { mailimap_fetch_list_free(result) } }
        // The answer may carry unsolicited FETCH responses for other messages: take the one with our UID.
        var iter = cetpan_clist_begin(result)
        while let node = iter {
            iter = cetpan_clist_next(node)
            guard let att = cetpan_clist_content(node)?.assumingMemoryBound(to: mailimap_msg_att.self) else { continue }
            var foundUID: UInt32 = 0, size: UInt32 = 0, length = 0
            var hasUID: Int32 = 0, hasSize: Int32 = 0, hasBody: Int32 = 0
            var bytes: UnsafePointer<CChar>?
            cetpan_msg_att_info(att, &foundUID, &hasUID, &size, &hasSize, &bytes, &length, &hasBody)
            guard hasUID != 0, foundUID == uid else { continue }
            if body {
                guard hasBody != 0 else { continue }
                guard let bytes, length > 0 else { return (nil, []) }
                return (nil, Array(UnsafeRawBufferPointer(start: bytes, count: length)))
            }
            guard hasSize != 0 else { continue }
            return (Int(size), nil)
        }
        return (nil, nil)
    }

    // MARK: - Changing messages

    /// Adds flags (UID STORE +FLAGS.SILENT): system flags ("\\Seen", "\\Flagged"…) or keywords ("$Chorus").
    /// Storing on a UID that no longer exists is not an error.
    public func addFlags(uid: UInt32, _ flags: [String]) throws(IMAPError) {
        guard !flags.isEmpty else { return }
        let session = try ready()
        guard let list = mailimap_flag_list_new_empty() else { throw IMAPError(.protocolError, "out of memory") }
        for name in flags {
            guard let flag = Self.makeFlag(name) else {
                mailimap_flag_list_free(list)
                throw IMAPError(.protocolError, "invalid IMAP flag \"\(name)\"")
            }
            mailimap_flag_list_add(list, flag)
        }
        guard let store = mailimap_store_att_flags_new_add_flags_silent(list) else {
            mailimap_flag_list_free(list)
            throw IMAPError(.protocolError, "out of memory")
        }
        guard let set = mailimap_set_new_single(uid) else {
            mailimap_store_att_flags_free(store)
            throw IMAPError(.protocolError, "out of memory")
        }
        defer {
            mailimap_store_att_flags_free(store)
            mailimap_set_free(set)
        }
        let started = now()
        let rc = Int(mailimap_uid_store(session, set, store))
        guard rc == MAILIMAP_NO_ERROR else { throw failure(rc, "UID STORE \(uid) +FLAGS \(flags)", since: started) }
    }

    private static func makeFlag(_ name: String) -> UnsafeMutablePointer<mailimap_flag>? {
        switch name.lowercased() {
        case "\\seen": return mailimap_flag_new_seen()
        case "\\answered": return mailimap_flag_new_answered()
        case "\\flagged": return mailimap_flag_new_flagged()
        case "\\deleted": return mailimap_flag_new_deleted()
        case "\\draft": return mailimap_flag_new_draft()
        default:
            if name.hasPrefix("\\") {
                let atom = String(name.dropFirst())
                guard IMAPMailboxName.isValidKeyword(atom) else { return nil }
                return mailimap_flag_new_flag_extension(strdup(atom))
            }
            guard IMAPMailboxName.isValidKeyword(name) else { return nil }
            return mailimap_flag_new_flag_keyword(strdup(name))
        }
    }

    /// Moves a message to another mailbox: UID MOVE when the server has MOVE, else UID COPY, \Deleted and
    /// UID EXPUNGE (UIDPLUS) or, without UIDPLUS, EXPUNGE (which also removes other messages marked \Deleted).
    /// A missing target mailbox fails with `.mailboxMissing`.
    public func move(uid: UInt32, to mailbox: String) throws(IMAPError) {
        let session = try ready()
        guard let set = mailimap_set_new_single(uid) else { throw IMAPError(.protocolError, "out of memory") }
        defer { mailimap_set_free(set) }
        let name = IMAPMailboxName.encode(mailbox)
        var started = now()
        if capabilities.contains("MOVE") {
            let rc = Int(mailimap_uid_move(session, set, name))
            guard rc == MAILIMAP_NO_ERROR else { throw moveFailure(rc, session, "UID MOVE \(uid) to \(mailbox)", mailbox, started) }
            return
        }
        let rc = Int(mailimap_uid_copy(session, set, name))
        guard rc == MAILIMAP_NO_ERROR else { throw moveFailure(rc, session, "UID COPY \(uid) to \(mailbox)", mailbox, started) }
        try addFlags(uid: uid, ["\\Deleted"])
        started = now()
        let expunge = Int(capabilities.contains("UIDPLUS") ? mailimap_uid_expunge(session, set) : mailimap_expunge(session))
        guard expunge == MAILIMAP_NO_ERROR else { throw failure(expunge, "EXPUNGE", since: started) }
    }

    private func moveFailure(_ rc: Int, _ session: UnsafeMutablePointer<mailimap>, _ what: String, _ mailbox: String,
                             _ started: Double) -> IMAPError
    {
        if (rc == MAILIMAP_ERROR_UID_MOVE || rc == MAILIMAP_ERROR_UID_COPY) && cetpan_response_trycreate(session) != 0 {
            return IMAPError(.mailboxMissing, "IMAP mailbox \"\(mailbox)\" on \(target) does not exist: \(responseText(session))")
        }
        return failure(rc, what, since: started)
    }

    /// Creates the mailbox (and subscribes to it) unless it exists.
    public func ensureMailbox(_ name: String) throws(IMAPError) {
        let session = try ready()
        let encoded = IMAPMailboxName.encode(name)
        if !encoded.contains(where: { $0 == "*" || $0 == "%" }) {
            var list: UnsafeMutablePointer<clist>?
            let started = now()
            let rc = Int(mailimap_list(session, "", encoded, &list))
            guard rc == MAILIMAP_NO_ERROR else { throw failure(rc, "LIST \(name)", since: started) }
            let found = cetpan_clist_count(list) > 0
            if let list { mailimap_list_result_free(list) }
            if found { return }
        }
        let started = now()
        let rc = Int(mailimap_create(session, encoded))
        guard rc == MAILIMAP_NO_ERROR else { throw failure(rc, "CREATE \(name)", since: started) }
        _ = mailimap_subscribe(session, encoded)
    }

    // MARK: - Waiting for mail

    /// What ended an `idle()`.
    public enum IdleResult: Sendable {
        /// The server reported new, removed or changed-count messages; `uidNext` is fresh.
        case changed
        /// Nothing happened within the timeout.
        case timeout
        /// `interrupt()` was called.
        case interrupted
    }

    /// Waits with IDLE until the mailbox changes (EXISTS, EXPUNGE, RECENT), `timeoutSeconds` pass (DONE is sent)
    /// or `interrupt()` is called. Keep-alive chatter ("* OK Still here") does not end the wait. Fails with
    /// `.protocolError` when the server has no IDLE (use `noop()` to poll).
    public func idle(timeoutSeconds: Int) throws(IMAPError) -> IdleResult {
        let session = try ready()
        guard capabilities.contains("IDLE") else {
            throw IMAPError(.protocolError, "IMAP server \(target) does not support IDLE")
        }
        let deadline = now() + Double(max(0, timeoutSeconds))
        let fd = mailimap_idle_get_fd(session)
        while true {
            let exists = cetpan_selection_exists(session)
            let recent = cetpan_selection_recent(session)
            var started = now()
            var rc = Int(mailimap_idle(session))
            guard rc == MAILIMAP_NO_ERROR else { throw failure(rc, "IDLE", since: started) }
            var woken = false
            while !woken {
                if cetpan_stream_buffered(session.pointee.imap_stream) > 0 { break }
                let remaining = deadline - now()
                if remaining <= 0 { break }
                var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: interruptPipe.read, events: Int16(POLLIN), revents: 0)]
                let ready = poll(&fds, 2, Int32(min(remaining * 1000 + 1, Double(Int32.max))))
                if ready < 0 && errno != EINTR {
                    closeSession()
                    throw IMAPError(.connect, "IMAP IDLE on \(target): poll failed: \(String(cString: strerror(errno)))")
                }
                if fds[1].revents != 0 || interruptedFlag.withLock({ $0 }) {
                    // Leave without DONE: the session is dropped, so shutting down never waits on the server.
                    closeSession()
                    return .interrupted
                }
                if fds[0].revents != 0 { woken = true }
            }
            started = now()
            rc = Int(mailimap_idle_done(session))
            guard rc == MAILIMAP_NO_ERROR else { throw failure(rc, "IDLE DONE", since: started) }
            let changed = cetpan_selection_exists(session) != exists || cetpan_selection_recent(session) != recent
                || cetpan_response_expunged_count(session) > 0
            if changed {
                try refreshSelection(session)
                return .changed
            }
            if now() >= deadline { return .timeout }
        }
    }

    /// NOOP (keeps the connection alive and collects pending updates), then refreshes `uidNext`.
    public func noop() throws(IMAPError) {
        let session = try ready()
        let started = now()
        let rc = Int(mailimap_noop(session))
        guard rc == MAILIMAP_NO_ERROR else { throw failure(rc, "NOOP", since: started) }
        try refreshSelection(session)
    }

    /// SELECT again: the only portable way to learn the current UIDNEXT (STATUS on the selected mailbox is
    /// discouraged by RFC 3501).
    private func refreshSelection(_ session: UnsafeMutablePointer<mailimap>) throws(IMAPError) {
        try select(session)
    }

    // MARK: - Errors

    /// The text of the server's last tagged response.
    private func responseText(_ session: UnsafeMutablePointer<mailimap>) -> String {
        guard let text = session.pointee.imap_response else { return "(no reason given)" }
        let value = String(cString: text)
        return value.isEmpty ? "(no reason given)" : value
    }

    /// Maps a libetpan result to an error; drops the session when the connection is no longer usable.
    private func failure(_ rc: Int, _ what: String, since started: Double) -> IMAPError {
        if interruptedFlag.withLock({ $0 }) {
            closeSession()
            return IMAPError(.interrupted, "IMAP client for \(target) was interrupted during \(what)")
        }
        switch rc {
        case MAILIMAP_ERROR_STREAM, MAILIMAP_ERROR_CONNECTION_REFUSED:
            let elapsed = now() - started
            closeSession()
            if elapsed >= Double(settings.timeoutSeconds) - 0.5 {
                return IMAPError(.timeout, "IMAP server \(target) did not answer \(what) within \(settings.timeoutSeconds) s")
            }
            return IMAPError(.connect, "IMAP connection to \(target) lost during \(what)")
        case MAILIMAP_ERROR_PARSE:
            closeSession()
            return IMAPError(.protocolError, "IMAP server \(target) sent an answer to \(what) that cannot be parsed")
        case MAILIMAP_ERROR_SSL:
            closeSession()
            return IMAPError(.tls, "TLS failure with IMAP server \(target) during \(what)")
        case MAILIMAP_ERROR_MEMORY:
            return IMAPError(.protocolError, "out of memory during IMAP \(what)")
        case MAILIMAP_ERROR_BAD_STATE:
            return IMAPError(.protocolError, "IMAP \(what) is not allowed in the session's state")
        default:
            guard let session = imap else { return IMAPError(.protocolError, "IMAP \(what) on \(target) failed") }
            return IMAPError(.protocolError, "IMAP \(what) on \(target) refused: \(responseText(session))")
        }
    }
}

extension String {
    /// Without leading and trailing white space (GnuTLS ends its messages with a space).
    fileprivate var trimmingSpaces: String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}

/// The text in a NUL-terminated C buffer.
private func cText(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// Seconds on the monotonic clock.
private func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// True for an IPv4 or IPv6 literal (no SNI for those).
private func isIPAddress(_ host: String) -> Bool {
    var v4 = in_addr()
    var v6 = in6_addr()
    return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
}

/// Mailbox names and keywords on the wire.
enum IMAPMailboxName {
    /// `name` in IMAP's modified UTF-7 (RFC 3501 section 5.1.3): printable ASCII as is ("&" as "&-"),
    /// everything else as modified base64 of UTF-16 between "&" and "-".
    static func encode(_ name: String) -> String {
        var out = ""
        var pending: [UInt16] = []
        func flush() {
            guard !pending.isEmpty else { return }
            var bytes: [UInt8] = []
            for unit in pending { bytes += [UInt8(unit >> 8), UInt8(unit & 0xFF)] }
            out += "&" + modifiedBase64(bytes) + "-"
            pending = []
        }
        for scalar in name.unicodeScalars {
            if scalar.value >= 0x20 && scalar.value <= 0x7E {
                flush()
                out += scalar == "&" ? "&-" : String(scalar)
            } else {
                pending += Array(String(scalar).utf16)
            }
        }
        flush()
        return out
    }

    private static func modifiedBase64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")
        var out = ""
        var index = 0
        while index < bytes.count {
            let chunk = Array(bytes[index..<min(index + 3, bytes.count)])
            let value = (UInt32(chunk[0]) << 16) | (UInt32(chunk.count > 1 ? chunk[1] : 0) << 8) | UInt32(chunk.count > 2 ? chunk[2] : 0)
            let characters = chunk.count + 1  // no padding
            for position in 0..<characters {
                out.append(alphabet[Int((value >> (18 - 6 * UInt32(position))) & 0x3F)])
            }
            index += 3
        }
        return out
    }

    /// An IMAP atom usable as a keyword: printable ASCII without atom-specials.
    static func isValidKeyword(_ keyword: String) -> Bool {
        !keyword.isEmpty && keyword.unicodeScalars.allSatisfy { scalar in
            scalar.value > 0x20 && scalar.value < 0x7F && !"(){%*\"\\]".unicodeScalars.contains(scalar)
        }
    }
}
