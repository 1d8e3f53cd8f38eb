import CGMime

/// Turns the transfer-decoded bytes of a text part into a UTF-8 Swift String.
enum TextDecoding {
    /// Decodes `bytes` declared as `charset` (nil when the part declared none).
    ///
    /// UTF-8 and undeclared/ASCII text that is valid UTF-8 is taken as is; ISO-8859-1 (and
    /// undeclared 8-bit text that is not UTF-8) is read as windows-1252, as browsers and mail
    /// clients do; every other charset goes through GMime's iconv charset filter. A charset iconv
    /// does not know, or UTF-8 that is not valid, falls back to GMime's 8-bit guess (UTF-8, then
    /// windows-1252). Line ends become "\n"; a leading byte-order mark is dropped.
    static func decode(_ bytes: [UInt8], charset: String?, options: OpaquePointer) -> String {
        let name = charset?.trimmedWhitespace.asciiLowercased ?? ""
        let utf8: [UInt8]
        switch name {
        case "", "us-ascii", "ascii", "utf-8", "utf8", "unknown-8bit", "x-unknown", "x-user-defined", "default":
            utf8 = isValidUTF8(bytes) ? bytes : guess8bit(bytes, options: options)
        case "iso-8859-1", "iso8859-1", "latin1", "iso_8859-1", "l1", "cp819", "ibm819":
            utf8 = convert(bytes, from: "windows-1252") ?? guess8bit(bytes, options: options)
        default:
            utf8 = convert(bytes, from: name) ?? guess8bit(bytes, options: options)
        }
        return String(decoding: normalizeNewlines(dropBOM(utf8)), as: UTF8.self)
    }

    /// True when the bytes are well-formed UTF-8.
    static func isValidUTF8(_ bytes: [UInt8]) -> Bool {
        String(validating: bytes, as: UTF8.self) != nil
    }

    /// `bytes` converted from `charset` to UTF-8 by GMime's charset filter; nil when iconv has no such charset.
    static func convert(_ bytes: [UInt8], from charset: String) -> [UInt8]? {
        if bytes.isEmpty { return [] }
        let output = g_mime_stream_mem_new()!
        defer { cgmime_unref(output) }
        let filtered = g_mime_stream_filter_new(output)!
        defer { cgmime_unref(filtered) }
        guard cgmime_stream_filter_add_charset(filtered, charset, "UTF-8") == 1 else { return nil }
        let written = bytes.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                g_mime_stream_write(filtered, $0, buf.count)
            }
        }
        guard written >= 0, g_mime_stream_flush(filtered) == 0 else { return nil }
        return memStreamBytes(output)
    }

    /// GMime's guess for undeclared 8-bit text (the parser options' fallback charsets).
    static func guess8bit(_ bytes: [UInt8], options: OpaquePointer) -> [UInt8] {
        if bytes.isEmpty { return [] }
        let decoded = bytes.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                g_mime_utils_decode_8bit(options, $0, buf.count)
            }
        }
        guard let decoded else { return Array(String(decoding: bytes, as: UTF8.self).utf8) }
        defer { cgmime_free(decoded) }
        return Array(UnsafeBufferPointer(start: UnsafeRawPointer(decoded).assumingMemoryBound(to: UInt8.self), count: strlen(decoded)))
    }

    /// Without a leading UTF-8 byte-order mark.
    static func dropBOM(_ bytes: [UInt8]) -> [UInt8] {
        bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? Array(bytes.dropFirst(3)) : bytes
    }

    /// CRLF and lone CR turned into LF.
    static func normalizeNewlines(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.contains(13) else { return bytes }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            if c == 13 {
                out.append(10)
                if i + 1 < bytes.count, bytes[i + 1] == 10 { i += 1 }
            } else {
                out.append(c)
            }
            i += 1
        }
        return out
    }

    /// Undoes RFC 3676 format=flowed: soft line breaks (a trailing space) are joined within the
    /// same quote depth; space-stuffing is removed; with `delSp` the trailing space is deleted too.
    /// The signature separator "-- " is never joined.
    static func unflow(_ text: String, delSp: Bool) -> String {
        var out: [String] = []
        var pending: (depth: Int, content: String)?
        func flush() {
            if let p = pending {
                out.append(p.depth > 0 ? String(repeating: ">", count: p.depth) + " " + p.content : p.content)
            }
            pending = nil
        }
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = Substring(rawLine)
            var depth = 0
            while line.first == ">" { depth += 1; line = line.dropFirst() }
            if line.first == " " { line = line.dropFirst() }
            let content = String(line)
            let flowed = content.hasSuffix(" ") && content != "-- "
            if let p = pending, p.depth != depth { flush() }
            var piece = content
            if flowed && delSp { piece.removeLast() }
            if let p = pending {
                pending = (depth, p.content + piece)
            } else {
                pending = (depth, piece)
            }
            if !flowed { flush() }
        }
        flush()
        return out.joined(separator: "\n")
    }
}
