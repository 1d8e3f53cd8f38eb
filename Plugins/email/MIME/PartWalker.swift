import CGMime

/// Walks a parsed MIME tree and sorts its leaves into body text, body html and attachments,
/// collecting the pieces of a delivery report on the way.
struct PartWalker {
    /// Where a part sits, which decides whether a text part may be (or extend) the body.
    enum Context {
        /// In a multipart/mixed (or any multipart other than alternative/related), or the message root.
        case mixed
        /// A direct child of a multipart/alternative.
        case alternative
        /// A non-root child of a multipart/related: a resource the root refers to.
        case relatedResource
    }

    let options: OpaquePointer
    /// The body text parts: the first text/plain, then further inline text/plain parts of a multipart/mixed.
    var texts: [String] = []
    /// The first inline text/html part.
    var html: String?
    /// Every other leaf part.
    var attachments: [MailAttachment] = []
    /// The report-type of the first multipart/report met (lowercased).
    var reportType: String?
    /// The content of the first message/delivery-status (or message/global-delivery-status) part.
    var deliveryStatus: [UInt8]?
    /// The Message-ID of the first text/rfc822-headers part.
    var rfc822HeadersMessageID: String?
    /// The Message-ID of the first message/rfc822 part.
    var enclosedMessageID: String?
    /// How many multipart/alternative parts enclose the part being walked.
    private var alternativeDepth = 0
    /// How many multiparts enclose the part being walked.
    private var depth = 0
    /// How many boundary recoveries enclose the part being walked (bounded against pathological input).
    private var recoveryDepth = 0

    init(options: OpaquePointer) {
        self.options = options
    }

    /// Multiparts nested deeper than this are kept whole as one attachment (real mail nests a
    /// handful of levels; this bounds the recursion on hostile input).
    static let maxDepth = 64

    /// Sorts `object` and everything under it.
    mutating func walk(_ object: UnsafeMutablePointer<GMimeObject>, context: Context) {
        if cgmime_is_multipart(object) != 0 {
            guard depth < PartWalker.maxDepth else {
                let out = g_mime_stream_mem_new()!
                defer { cgmime_unref(out) }
                g_mime_object_write_content_to_stream(object, nil, out)
                attachments.append(MailAttachment(filename: nil, contentType: PartWalker.mimeType(object), data: memStreamBytes(out)))
                return
            }
            depth += 1
            walkMultipart(cgmime_multipart(object), object: object, context: context)
            depth -= 1
        } else if cgmime_is_message_part(object) != 0 {
            addEnclosedMessage(object, context: context)
        } else if cgmime_is_part(object) != 0 {
            addLeaf(object, context: context)
        }
    }

    private mutating func walkMultipart(_ multipart: UnsafeMutablePointer<GMimeMultipart>, object: UnsafeMutablePointer<GMimeObject>, context: Context) {
        let subtype = PartWalker.subtype(object)
        let count = g_mime_multipart_get_count(multipart)
        var children: [UnsafeMutablePointer<GMimeObject>] = []
        for i in 0..<count {
            if let child = g_mime_multipart_get_part(multipart, i) { children.append(child) }
        }
        if children.isEmpty {
            recoverBoundaryless(multipart, object: object, context: context)
            return
        }
        switch subtype {
        case "alternative":
            alternativeDepth += 1
            for child in children { walk(child, context: .alternative) }
            alternativeDepth -= 1
        case "related":
            // The root is the part named by the start parameter, else the first (RFC 2387 §3.2).
            var rootIndex = 0
            if let start = swiftString(g_mime_object_get_content_type_parameter(object, "start")) {
                let wanted = PartWalker.stripAngles(start)
                if let i = children.firstIndex(where: { PartWalker.contentID($0) == wanted }) { rootIndex = i }
            }
            for (i, child) in children.enumerated() {
                walk(child, context: i == rootIndex ? context : .relatedResource)
            }
        default:
            if subtype == "report", reportType == nil {
                reportType = swiftString(g_mime_object_get_content_type_parameter(object, "report-type"))?.trimmedWhitespace.asciiLowercased ?? ""
            }
            for child in children { walk(child, context: .mixed) }
        }
    }

    /// A multipart in which GMime found no parts (no boundary parameter, or a wrong one): its
    /// whole content is in the prologue. When the prologue starts with a "--boundary" line, it is
    /// parsed again with that boundary; otherwise the prologue is kept as plain text, so nothing is lost.
    private mutating func recoverBoundaryless(_ multipart: UnsafeMutablePointer<GMimeMultipart>, object: UnsafeMutablePointer<GMimeObject>, context: Context) {
        guard let raw = swiftString(g_mime_multipart_get_prologue(multipart)), !raw.trimmedWhitespace.isEmpty else { return }
        let prologue = String(decoding: TextDecoding.normalizeNewlines(Array(raw.utf8)), as: UTF8.self)
        let firstLine = prologue.split(separator: "\n").map { String($0).trimmedWhitespace }.first { !$0.isEmpty } ?? ""
        let boundary = firstLine.hasPrefix("--") ? String(firstLine.dropFirst(2)) : ""
        let declared = swiftString(g_mime_multipart_get_boundary(multipart))
        if !boundary.isEmpty, boundary != declared, !boundary.contains("\""), recoveryDepth < 4 {
            let head = "Content-Type: \(PartWalker.mimeType(object)); boundary=\"\(boundary)\"\r\n\r\n"
            let stream = memStream(Array(head.utf8) + Array(prologue.utf8))
            defer { cgmime_unref(stream) }
            let parser = g_mime_parser_new_with_stream(stream)
            defer { cgmime_unref(parser) }
            if let part = g_mime_parser_construct_part(parser, options) {
                defer { cgmime_unref(part) }
                recoveryDepth += 1
                walk(part, context: context)
                recoveryDepth -= 1
                return
            }
        }
        let text = TextDecoding.decode(Array(prologue.utf8), charset: "utf-8", options: options)
        if texts.isEmpty {
            texts.append(text)
        } else {
            attachments.append(MailAttachment(filename: nil, contentType: "text/plain", data: Array(text.utf8)))
        }
    }

    /// A message/rfc822 (or message/global, message/news) part: an attachment holding the
    /// enclosed message as written, named after its subject.
    private mutating func addEnclosedMessage(_ object: UnsafeMutablePointer<GMimeObject>, context: Context) {
        let part = cgmime_message_part(object)
        let inner = g_mime_message_part_get_message(part)
        var data: [UInt8] = []
        var subject: String?
        if let inner {
            let innerID = swiftString(g_mime_message_get_message_id(inner))
            if enclosedMessageID == nil, let innerID, !innerID.isEmpty { enclosedMessageID = innerID }
            subject = swiftString(g_mime_message_get_subject(inner))
            let out = g_mime_stream_mem_new()!
            defer { cgmime_unref(out) }
            g_mime_object_write_to_stream(cgmime_object(inner), nil, out)
            data = memStreamBytes(out)
        }
        var filename = swiftString(g_mime_object_get_content_disposition_parameter(object, "filename"))
            ?? swiftString(g_mime_object_get_content_type_parameter(object, "name"))
        if filename == nil {
            filename = PartWalker.fileName(forSubject: subject)
        }
        let disposition = swiftString(g_mime_object_get_disposition(object))?.asciiLowercased
        attachments.append(MailAttachment(
            filename: filename,
            contentType: PartWalker.mimeType(object),
            contentID: PartWalker.contentID(object),
            inline: disposition == "inline" || context == .relatedResource,
            data: data))
    }

    /// A leaf: body text, body html, or an attachment.
    private mutating func addLeaf(_ object: UnsafeMutablePointer<GMimeObject>, context: Context) {
        let part = cgmime_part(object)!
        let type = PartWalker.mimeType(object)
        let disposition = swiftString(g_mime_object_get_disposition(object))?.trimmedWhitespace.asciiLowercased
        let filename = swiftString(g_mime_part_get_filename(part))
        let bodyCandidate = disposition != "attachment" && filename == nil && context != .relatedResource
        let data = PartWalker.content(part)

        if bodyCandidate && type == "text/plain" && (texts.isEmpty || (context == .mixed && alternativeDepth == 0)) {
            var text = TextDecoding.decode(data, charset: swiftString(g_mime_object_get_content_type_parameter(object, "charset")), options: options)
            if swiftString(g_mime_object_get_content_type_parameter(object, "format"))?.asciiLowercased == "flowed" {
                let delSp = swiftString(g_mime_object_get_content_type_parameter(object, "delsp"))?.asciiLowercased == "yes"
                text = TextDecoding.unflow(text, delSp: delSp)
            }
            texts.append(text)
            return
        }
        if bodyCandidate && type == "text/html" && html == nil {
            html = TextDecoding.decode(data, charset: swiftString(g_mime_object_get_content_type_parameter(object, "charset")), options: options)
            return
        }
        if (type == "message/delivery-status" || type == "message/global-delivery-status") && deliveryStatus == nil {
            deliveryStatus = data
        }
        if (type == "text/rfc822-headers" || type == "message/rfc822-headers") && rfc822HeadersMessageID == nil {
            rfc822HeadersMessageID = PartWalker.messageID(inHeaders: data, options: options)
        }
        let contentID = PartWalker.contentID(object)
        attachments.append(MailAttachment(
            filename: filename,
            contentType: type,
            contentID: contentID,
            inline: disposition == "inline" || (context == .relatedResource && contentID != nil),
            data: data))
    }

    /// The delivery report, when a multipart/report of type delivery-status held a readable status part.
    func deliveryReport(options: OpaquePointer) -> DeliveryReport? {
        guard let reportType, reportType == "delivery-status" || reportType == "global-delivery-status",
              let deliveryStatus else { return nil }
        var report = DeliveryStatusParser.parse(deliveryStatus)
        report.originalMessageID = rfc822HeadersMessageID ?? enclosedMessageID
        return report
    }

    // MARK: Helpers

    /// `type/subtype` of a part, lowercased.
    static func mimeType(_ object: UnsafeMutablePointer<GMimeObject>) -> String {
        guard let type = g_mime_object_get_content_type(object) else { return "application/octet-stream" }
        let media = swiftString(g_mime_content_type_get_media_type(type))?.asciiLowercased ?? "application"
        let sub = swiftString(g_mime_content_type_get_media_subtype(type))?.asciiLowercased ?? "octet-stream"
        return media + "/" + sub
    }

    /// The subtype of a part, lowercased.
    static func subtype(_ object: UnsafeMutablePointer<GMimeObject>) -> String {
        guard let type = g_mime_object_get_content_type(object) else { return "" }
        return swiftString(g_mime_content_type_get_media_subtype(type))?.asciiLowercased ?? ""
    }

    /// The Content-ID without <>, nil when absent or empty.
    static func contentID(_ object: UnsafeMutablePointer<GMimeObject>) -> String? {
        guard let id = swiftString(g_mime_object_get_content_id(object)) else { return nil }
        let stripped = stripAngles(id)
        return stripped.isEmpty ? nil : stripped
    }

    /// `<x>` → `x` (also trims whitespace).
    static func stripAngles(_ s: String) -> String {
        var t = s.trimmedWhitespace
        if t.hasPrefix("<") { t.removeFirst() }
        if t.hasSuffix(">") { t.removeLast() }
        return t.trimmedWhitespace
    }

    /// The transfer-decoded bytes of a leaf part.
    static func content(_ part: UnsafeMutablePointer<GMimePart>) -> [UInt8] {
        guard let wrapper = g_mime_part_get_content(part) else { return [] }
        let out = g_mime_stream_mem_new()!
        defer { cgmime_unref(out) }
        g_mime_data_wrapper_write_to_stream(wrapper, out)
        return memStreamBytes(out)
    }

    /// The Message-ID (without <>) in a block of header fields (a text/rfc822-headers part,
    /// the copy in a plain-text bounce); nil when there is none.
    static func messageID(inHeaders bytes: [UInt8], options: OpaquePointer) -> String? {
        var block = bytes
        block += [13, 10, 13, 10]
        let stream = memStream(block)
        defer { cgmime_unref(stream) }
        let parser = g_mime_parser_new_with_stream(stream)
        defer { cgmime_unref(parser) }
        guard let message = g_mime_parser_construct_message(parser, options) else { return nil }
        defer { cgmime_unref(message) }
        guard let id = swiftString(g_mime_message_get_message_id(message)), !id.isEmpty else { return nil }
        return id
    }

    /// "<subject>.eml" for an enclosed message; "forwarded-message.eml" when it has no subject.
    /// Path separators and control characters become "_".
    static func fileName(forSubject subject: String?) -> String {
        let trimmed = subject?.trimmedWhitespace ?? ""
        guard !trimmed.isEmpty else { return "forwarded-message.eml" }
        let safe = String(String.UnicodeScalarView(trimmed.unicodeScalars.map {
            ($0 == "/" || $0 == "\\" || $0.value < 0x20 || $0.value == 0x7F) ? "_" : $0
        }))
        return safe + ".eml"
    }
}
