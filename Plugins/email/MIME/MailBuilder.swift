import CGMime

/// Builds outgoing RFC 5322 messages with GMime.
public enum MailBuilder {
    /// A correct RFC 5322 message with CRLF line ends: Message-ID, Date (RFC 5322 format, +0000), From/To/Cc/Reply-To (encoded words for non-ASCII display names), Subject (RFC 2047 when non-ASCII), MIME-Version, In-Reply-To and References for replies; body text/plain alone, or multipart/alternative (text + html), wrapped in multipart/mixed with attachments (filename encoded per RFC 2231 when non-ASCII, base64); quoted-printable or base64 for non-ASCII text, lines ≤ 998.
    ///
    /// Structure: the body is text/plain, text/html, or multipart/alternative of both (an empty
    /// text/plain when there is neither); inline attachments with a contentID are put with the
    /// html in a multipart/related (type="text/html"), or among the other attachments when there
    /// is no html; any other attachment makes a multipart/mixed around the body. Text parts are
    /// `charset=utf-8`, 7bit when ASCII with short lines, else quoted-printable or base64
    /// (GMime's best encoding), with line ends normalised and a final line break added when
    /// missing; attachments are base64. Line breaks in the subject become spaces.
    ///
    /// Throws for what cannot be written correctly: an address that is empty, not ASCII or not
    /// `local@domain`; a Message-ID / In-Reply-To / References id that is not `left@right`; a line
    /// break in a display name or an extra header; an extra header whose name is not a field name
    /// or that would duplicate one the builder writes; a content type that is not `type/subtype`.
    public static func build(_ mail: OutgoingMail) throws(MailParseError) -> [UInt8] {
        try validate(mail)
        GMime.ensureInitialized()
        guard let message = g_mime_message_new(1) else { throw MailParseError("GMime could not create a message") }
        defer { cgmime_unref(message) }
        let object = cgmime_object(message)!

        addMailboxes([mail.from], to: message, type: GMIME_ADDRESS_TYPE_FROM)
        addMailboxes(mail.replyTo, to: message, type: GMIME_ADDRESS_TYPE_REPLY_TO)
        addMailboxes(mail.to, to: message, type: GMIME_ADDRESS_TYPE_TO)
        addMailboxes(mail.cc, to: message, type: GMIME_ADDRESS_TYPE_CC)
        let subject = String(String.UnicodeScalarView(mail.subject.unicodeScalars.map { ($0 == "\r" || $0 == "\n" || $0 == "\t") ? " " : $0 }))
        g_mime_message_set_subject(message, subject, "utf-8")
        let date = cgmime_date_new_utc(gint64(mail.date))
        g_mime_message_set_date(message, date)
        cgmime_date_unref(date)
        g_mime_message_set_message_id(message, mail.messageID)
        if let inReplyTo = mail.inReplyTo {
            g_mime_object_set_header(object, "In-Reply-To", "<\(inReplyTo)>", nil)
        }
        if !mail.references.isEmpty {
            g_mime_object_set_header(object, "References", mail.references.map { "<\($0)>" }.joined(separator: " "), nil)
        }
        for header in mail.extraHeaders {
            g_mime_object_append_header(object, header.name, header.value, "utf-8")
        }

        let body = bodyPart(mail)
        g_mime_message_set_mime_part(message, body)
        cgmime_unref(body)

        let options = g_mime_format_options_new()
        defer { g_mime_format_options_free(options) }
        g_mime_format_options_set_newline_format(options, GMIME_NEWLINE_FORMAT_DOS)
        g_mime_format_options_set_param_encoding_method(options, GMIME_PARAM_ENCODING_METHOD_RFC2231)
        let out = g_mime_stream_mem_new()!
        defer { cgmime_unref(out) }
        guard g_mime_object_write_to_stream(object, options, out) >= 0 else {
            throw MailParseError("GMime could not write the message")
        }
        return memStreamBytes(out)
    }

    /// "<random>@<domain>" without <>, unique (random 128 bits, hex or base32).
    ///
    /// The random part is 32 lowercase hex digits from the system CSPRNG.
    public static func newMessageID(domain: String) -> String {
        var rng = SystemRandomNumberGenerator()
        let hi = rng.next() as UInt64, lo = rng.next() as UInt64
        return hex(hi) + hex(lo) + "@" + domain
    }

    private static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    // MARK: Body

    /// The MIME tree of the body (a new reference the caller owns).
    private static func bodyPart(_ mail: OutgoingMail) -> UnsafeMutablePointer<GMimeObject> {
        let inlineResources = mail.html == nil ? [] : mail.attachments.filter { $0.inline && $0.contentID != nil }
        let files = mail.html == nil ? mail.attachments : mail.attachments.filter { !($0.inline && $0.contentID != nil) }

        var htmlNode: UnsafeMutablePointer<GMimeObject>?
        if let html = mail.html {
            let htmlPart = textPart("html", html)
            if inlineResources.isEmpty {
                htmlNode = htmlPart
            } else {
                let related = g_mime_multipart_new_with_subtype("related")!
                let relatedObject = cgmime_object(related)!
                g_mime_object_set_content_type_parameter(relatedObject, "type", "text/html")
                add(htmlPart, to: related)
                for attachment in inlineResources { add(attachmentPart(attachment), to: related) }
                htmlNode = relatedObject
            }
        }

        var body: UnsafeMutablePointer<GMimeObject>
        if let text = mail.text, let htmlNode {
            let alternative = g_mime_multipart_new_with_subtype("alternative")!
            add(textPart("plain", text), to: alternative)
            add(htmlNode, to: alternative)
            body = cgmime_object(alternative)
        } else if let htmlNode {
            body = htmlNode
        } else {
            body = textPart("plain", mail.text ?? "")
        }

        if !files.isEmpty {
            let mixed = g_mime_multipart_new_with_subtype("mixed")!
            add(body, to: mixed)
            for attachment in files { add(attachmentPart(attachment), to: mixed) }
            body = cgmime_object(mixed)
        }
        return body
    }

    /// Adds `child` to `multipart` and drops the caller's reference to it.
    private static func add(_ child: UnsafeMutablePointer<GMimeObject>, to multipart: UnsafeMutablePointer<GMimeMultipart>) {
        g_mime_multipart_add(multipart, child)
        cgmime_unref(child)
    }

    /// A `text/<subtype>; charset=utf-8` part with the best transfer encoding for its content.
    private static func textPart(_ subtype: String, _ text: String) -> UnsafeMutablePointer<GMimeObject> {
        let part = g_mime_part_new_with_type("text", subtype)!
        let object = cgmime_object(part)!
        g_mime_object_set_content_type_parameter(object, "charset", "utf-8")
        var bytes = TextDecoding.normalizeNewlines(Array(text.utf8))
        if bytes.last != 10 { bytes.append(10) }
        setContent(part, bytes)
        g_mime_part_set_content_encoding(part, g_mime_part_get_best_content_encoding(part, GMIME_ENCODING_CONSTRAINT_7BIT))
        return object
    }

    /// A base64 attachment part with its filename (RFC 2231, UTF-8), disposition and Content-ID.
    private static func attachmentPart(_ attachment: MailAttachment) -> UnsafeMutablePointer<GMimeObject> {
        let (type, subtype) = splitContentType(attachment.contentType) ?? ("application", "octet-stream")
        let part = g_mime_part_new_with_type(type, subtype)!
        let object = cgmime_object(part)!
        setContent(part, attachment.data)
        g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_BASE64)
        g_mime_object_set_disposition(object, attachment.inline ? "inline" : "attachment")
        if let filename = attachment.filename, !filename.isEmpty {
            g_mime_part_set_filename(part, filename)
            cgmime_part_set_filename_charset(part, "utf-8")
        }
        if let contentID = attachment.contentID {
            g_mime_object_set_content_id(object, contentID)
        }
        return object
    }

    private static func setContent(_ part: UnsafeMutablePointer<GMimePart>, _ bytes: [UInt8]) {
        let stream = memStream(bytes)
        defer { cgmime_unref(stream) }
        let wrapper = g_mime_data_wrapper_new_with_stream(stream, GMIME_CONTENT_ENCODING_DEFAULT)
        defer { cgmime_unref(wrapper) }
        g_mime_part_set_content(part, wrapper)
    }

    private static func addMailboxes(_ mailboxes: [MailAddress], to message: UnsafeMutablePointer<GMimeMessage>, type: GMimeAddressType) {
        guard !mailboxes.isEmpty, let list = g_mime_message_get_addresses(message, type) else { return }
        for mailbox in mailboxes {
            let name = mailbox.name.flatMap { $0.isEmpty ? nil : $0 }
            guard let address = internet_address_mailbox_new(name, mailbox.address) else { continue }
            internet_address_set_charset(address, "utf-8")
            internet_address_list_add(list, address)
            cgmime_unref(address)
        }
    }

    // MARK: Validation

    /// RFC 2045 token characters.
    private static func isToken(_ s: Substring) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { c in c > 32 && c < 127 && !"()<>@,;:\\\"/[]?=".utf8.contains(c) }
    }

    /// `type/subtype` split and lowercased (parameters after ";" are ignored), or nil when it is not two tokens.
    static func splitContentType(_ contentType: String) -> (String, String)? {
        let bare = contentType.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let pieces = bare.trimmedWhitespace.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count == 2, isToken(pieces[0]), isToken(pieces[1]) else { return nil }
        return (String(pieces[0]).asciiLowercased, String(pieces[1]).asciiLowercased)
    }

    /// The header names the builder writes itself (lowercased).
    static let builderHeaders: Set<String> = ["from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "in-reply-to",
                                              "references", "mime-version", "content-type", "content-transfer-encoding",
                                              "content-disposition", "content-id", "sender"]

    static func validate(_ mail: OutgoingMail) throws(MailParseError) {
        try validateAddress(mail.from, role: "From")
        for a in mail.to { try validateAddress(a, role: "To") }
        for a in mail.cc { try validateAddress(a, role: "Cc") }
        for a in mail.replyTo { try validateAddress(a, role: "Reply-To") }
        try validateMessageID(mail.messageID, role: "Message-ID")
        if let id = mail.inReplyTo { try validateMessageID(id, role: "In-Reply-To") }
        for id in mail.references { try validateMessageID(id, role: "References") }
        for header in mail.extraHeaders {
            let nameOK = !header.name.isEmpty && header.name.utf8.allSatisfy { $0 >= 33 && $0 <= 126 && $0 != 58 }
            guard nameOK else { throw MailParseError("extra header name \"\(header.name)\" is not a valid field name") }
            guard !builderHeaders.contains(header.name.asciiLowercased) else {
                throw MailParseError("extra header \(header.name) would duplicate a header the builder writes")
            }
            guard !header.value.utf8.contains(where: { $0 == 10 || $0 == 13 }) else {
                throw MailParseError("extra header \(header.name) holds a line break")
            }
        }
        for attachment in mail.attachments {
            guard splitContentType(attachment.contentType) != nil else {
                throw MailParseError("attachment content type \"\(attachment.contentType)\" is not type/subtype")
            }
            if let name = attachment.filename, name.utf8.contains(where: { $0 < 32 || $0 == 127 }) {
                throw MailParseError("attachment filename \"\(name)\" holds control characters")
            }
            if let id = attachment.contentID { try validateMessageID(id, role: "Content-ID") }
        }
    }

    private static func validateAddress(_ mailbox: MailAddress, role: String) throws(MailParseError) {
        let a = mailbox.address
        guard !a.isEmpty else { throw MailParseError("\(role) address is empty") }
        guard a.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
            throw MailParseError("\(role) address \"\(a)\" is not printable ASCII (internationalized addresses are not supported)")
        }
        let at = a.utf8.lastIndex(of: 64)
        guard let at, at != a.utf8.startIndex, a.utf8.index(after: at) != a.utf8.endIndex,
              !a.utf8.contains(where: { "<>(),;:\\\"[]".utf8.contains($0) }) || a.hasPrefix("\"") else {
            throw MailParseError("\(role) address \"\(a)\" is not local@domain")
        }
        if let name = mailbox.name, name.utf8.contains(where: { $0 == 10 || $0 == 13 }) {
            throw MailParseError("\(role) display name holds a line break")
        }
    }

    private static func validateMessageID(_ id: String, role: String) throws(MailParseError) {
        let ok = id.utf8.allSatisfy { $0 > 32 && $0 < 127 && $0 != 60 && $0 != 62 } && id.utf8.contains(64)
            && !id.hasPrefix("@") && !id.hasSuffix("@")
        guard ok else { throw MailParseError("\(role) \"\(id)\" is not an id of the form left@right (without <>)") }
    }
}
