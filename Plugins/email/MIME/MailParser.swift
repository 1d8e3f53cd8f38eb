import CGMime

/// Parses received RFC 5322 messages with GMime.
public enum MailParser {
    /// Parses one RFC 5322 message. Throws MailParseError for input that is not a mail at all (empty, no header section, binary garbage, over `maxBytes`); a mail with odd/broken MIME is parsed leniently as far as GMime goes.
    ///
    /// Safe to call from any thread, concurrently: every call has its own GMime objects.
    public static func parse(_ bytes: [UInt8], maxBytes: Int = 50 << 20) throws(MailParseError) -> ParsedMail {
        if bytes.count > maxBytes {
            throw MailParseError("mail is \(bytes.count) bytes, over the limit of \(maxBytes) bytes")
        }
        let start = try headerSectionStart(bytes)
        GMime.ensureInitialized()
        let options = GMime.lenientParserOptions()
        defer { g_mime_parser_options_free(options) }
        let stream = memStream(start == 0 ? bytes : Array(bytes[start...]))
        defer { cgmime_unref(stream) }
        let parser = g_mime_parser_new_with_stream(stream)
        defer { cgmime_unref(parser) }
        guard let message = g_mime_parser_construct_message(parser, options) else {
            throw MailParseError("not a mail: no RFC 5322 header section could be read")
        }
        defer { cgmime_unref(message) }
        let headerList = g_mime_object_get_header_list(cgmime_object(message))
        guard g_mime_header_list_get_count(headerList) > 0 else {
            throw MailParseError("not a mail: no RFC 5322 header section could be read")
        }
        return MessageReader(message: message, options: options).read()
    }

    /// Where the header section starts (after an mbox "From " line), or a clear error when the
    /// input does not begin with a header field or holds NUL bytes in its header section.
    static func headerSectionStart(_ bytes: [UInt8]) throws(MailParseError) -> Int {
        if bytes.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 10 || $0 == 13 }) {
            throw MailParseError("not a mail: the input is empty")
        }
        var start = 0
        if bytes.starts(with: Array("From ".utf8)), bytes.count > 5, bytes[5] != 58, bytes[5] != 32 {
            guard let newline = bytes.firstIndex(of: 10) else {
                throw MailParseError("not a mail: only an mbox \"From \" line, no header section")
            }
            start = newline + 1
        }
        // The first line must be a header field: ftext name (RFC 5322 §2.2), optional WSP, colon.
        var i = start
        while i < bytes.count, bytes[i] >= 33, bytes[i] <= 126, bytes[i] != 58 { i += 1 }
        let nameEnd = i
        while i < bytes.count, bytes[i] == 32 || bytes[i] == 9 { i += 1 }
        guard nameEnd > start, i < bytes.count, bytes[i] == 58 else {
            throw MailParseError("not a mail: the input does not start with a header field (\"Name: value\")")
        }
        // The header section (up to the first empty line) must be text.
        var previous: UInt8 = 10
        var j = start
        while j < bytes.count {
            let c = bytes[j]
            if c == 0 { throw MailParseError("not a mail: the header section holds a NUL byte at offset \(j)") }
            if c == 10 && previous == 10 { break }
            if c != 13 { previous = c }
            j += 1
        }
        return start
    }
}

/// Reads one parsed GMimeMessage into a ParsedMail.
struct MessageReader {
    let message: UnsafeMutablePointer<GMimeMessage>
    let options: OpaquePointer

    func read() -> ParsedMail {
        let object = cgmime_object(message)!
        let root = g_mime_message_get_mime_part(message)
        let headers = MessageReader.headers(of: object, root: root)
        var walker = PartWalker(options: options)
        if let root {
            walker.walk(root, context: .mixed)
        }

        let text: String? = walker.texts.isEmpty ? nil : walker.texts.joined(separator: "\n")
        let html = walker.html

        var newText = ""
        var quoted: String?
        if let text {
            let split = QuoteSplitter.split(text)
            newText = split.new
            quoted = split.quoted
        } else if let html {
            let plain = HTMLText.plainText(html)
            let split = QuoteSplitter.split(plain.text)
            newText = split.new
            let removed = [split.quoted, plain.quoted].compactMap { $0 }
            quoted = removed.isEmpty ? nil : removed.joined(separator: "\n\n")
        }

        let inReplyTo = MessageReader.messageIDs(g_mime_object_get_header(object, "In-Reply-To"), options: options)
        let references = MessageReader.messageIDs(g_mime_object_get_header(object, "References"), options: options)
        let from = MessageReader.addresses(g_mime_message_get_from(message)).first

        var report = walker.deliveryReport(options: options)
        if report == nil, walker.reportType == nil, let text {
            report = PlainTextBounce.parse(text: text, from: from, options: options)
        }
        if report != nil, report?.originalMessageID == nil {
            report?.originalMessageID = inReplyTo.first ?? references.last
        }

        var date: Int64?
        if let d = g_mime_message_get_date(message) { date = Int64(cgmime_date_to_unix(d)) }

        let fromDaemon = from?.address.asciiLowercased.hasPrefix("mailer-daemon@") ?? false
        let auto = MessageReader.isAutoSubmitted(headers) || walker.reportType != nil || report != nil || fromDaemon

        return ParsedMail(
            messageID: swiftString(g_mime_message_get_message_id(message)).flatMap { $0.isEmpty ? nil : $0 },
            inReplyTo: inReplyTo,
            references: references,
            subject: swiftString(g_mime_message_get_subject(message)) ?? "",
            from: from,
            replyTo: MessageReader.addresses(g_mime_message_get_reply_to(message)),
            to: MessageReader.addresses(g_mime_message_get_to(message)),
            cc: MessageReader.addresses(g_mime_message_get_cc(message)),
            date: date,
            text: text,
            html: html,
            newText: newText,
            quotedText: quoted,
            attachments: walker.attachments,
            autoSubmitted: auto,
            deliveryReport: report,
            headers: headers)
    }

    /// Every top-level header, in the order written, with decoded unfolded values. GMime keeps
    /// the Content-* headers on the root MIME part, so both lists are merged by stream offset.
    static func headers(of object: UnsafeMutablePointer<GMimeObject>, root: UnsafeMutablePointer<GMimeObject>?) -> [(name: String, value: String)] {
        var collected: [(offset: Int64, name: String, value: String)] = []
        for source in [object, root] {
            guard let source, let list = g_mime_object_get_header_list(source) else { continue }
            for i in 0..<g_mime_header_list_get_count(list) {
                guard let header = g_mime_header_list_get_header_at(list, i) else { continue }
                let name = swiftString(g_mime_header_get_name(header)) ?? ""
                let value = swiftString(g_mime_header_get_value(header)) ?? ""
                collected.append((Int64(g_mime_header_get_offset(header)), name, value.trimmedWhitespace))
            }
        }
        // A stable sort: headers without an offset (-1) keep their relative order at the front.
        let ordered = collected.enumerated().sorted { ($0.element.offset, $0.offset) < ($1.element.offset, $1.offset) }
        return ordered.map { (name: $0.element.name, value: $0.element.value) }
    }

    /// The msg-ids of a Message-ID list header (In-Reply-To, References), without <>, in order.
    static func messageIDs(_ value: UnsafePointer<CChar>?, options: OpaquePointer) -> [String] {
        guard let value, let refs = g_mime_references_parse(options, value) else { return [] }
        defer { g_mime_references_free(refs) }
        var ids: [String] = []
        for i in 0..<g_mime_references_length(refs) {
            if let id = swiftString(g_mime_references_get_message_id(refs, i)), !id.isEmpty, !ids.contains(id) {
                ids.append(id)
            }
        }
        return ids
    }

    /// The mailboxes of an address list; groups are expanded to their members.
    static func addresses(_ list: UnsafeMutablePointer<InternetAddressList>?) -> [MailAddress] {
        guard let list else { return [] }
        var result: [MailAddress] = []
        for i in 0..<internet_address_list_length(list) {
            guard let address = internet_address_list_get_address(list, i) else { continue }
            if cgmime_address_is_mailbox(address) != 0 {
                let addr = swiftString(internet_address_mailbox_get_addr(cgmime_mailbox(address))) ?? ""
                guard !addr.isEmpty else { continue }
                let name = swiftString(internet_address_get_name(address))?.trimmedWhitespace
                result.append(MailAddress(name: (name?.isEmpty ?? true) ? nil : name, address: addr))
            } else if cgmime_address_is_group(address) != 0 {
                result += addresses(internet_address_group_get_members(cgmime_group(address)))
            }
        }
        return result
    }

    /// Auto-Submitted other than "no" (RFC 3834), Precedence bulk/junk/list, X-Autoreply,
    /// X-Autorespond, or a null Return-Path (`<>`, the envelope sender of bounces and auto-replies).
    static func isAutoSubmitted(_ headers: [(name: String, value: String)]) -> Bool {
        for (name, value) in headers {
            let keyword = value.split(separator: ";", maxSplits: 1).first.map(String.init)?.trimmedWhitespace.asciiLowercased ?? ""
            switch name.asciiLowercased {
            case "auto-submitted":
                if !keyword.isEmpty && keyword != "no" { return true }
            case "precedence":
                if ["bulk", "junk", "list"].contains(keyword) { return true }
            case "x-autoreply", "x-autorespond":
                if keyword != "no" { return true }
            case "return-path":
                if keyword == "<>" { return true }
            default:
                break
            }
        }
        return false
    }
}
