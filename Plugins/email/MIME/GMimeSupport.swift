import CGMime

/// GMime process-wide setup and the small conversions every other file needs.
enum GMime {
    /// `g_mime_init` exactly once, thread-safely (Swift runs a static initialiser once, under a lock).
    private static let initialized: Bool = {
        g_mime_init()
        return true
    }()

    /// Makes sure GMime is initialised; call before any other GMime function.
    static func ensureInitialized() {
        _ = initialized
    }

    /// Parser options for received mail: lenient RFC 2047 / address / parameter parsing, and
    /// UTF-8 then windows-1252 for undeclared 8-bit header text. Free with `g_mime_parser_options_free`.
    static func lenientParserOptions() -> OpaquePointer {
        ensureInitialized()
        let options = g_mime_parser_options_new()!
        g_mime_parser_options_set_rfc2047_compliance_mode(options, GMIME_RFC_COMPLIANCE_LOOSE)
        g_mime_parser_options_set_address_compliance_mode(options, GMIME_RFC_COMPLIANCE_LOOSE)
        g_mime_parser_options_set_parameter_compliance_mode(options, GMIME_RFC_COMPLIANCE_LOOSE)
        g_mime_parser_options_set_allow_addresses_without_domain(options, 1)
        cgmime_parser_options_set_fallback_utf8_cp1252(options)
        return options
    }
}

/// A borrowed C string as a Swift String (nil stays nil; invalid UTF-8 is repaired with U+FFFD).
func swiftString(_ p: UnsafePointer<CChar>?) -> String? {
    guard let p else { return nil }
    return String(decoding: UnsafeRawBufferPointer(start: p, count: strlen(p)), as: UTF8.self)
}

/// An owned (g_malloc'ed) C string as a Swift String; frees it.
func takeString(_ p: UnsafeMutablePointer<CChar>?) -> String? {
    guard let p else { return nil }
    defer { cgmime_free(p) }
    return swiftString(p)
}

/// The bytes a GMime memory stream holds (copied).
func memStreamBytes(_ stream: UnsafeMutablePointer<GMimeStream>) -> [UInt8] {
    let count = cgmime_stream_mem_length(stream)
    guard count > 0, let data = cgmime_stream_mem_data(stream) else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: count))
}

/// A new GMime memory stream holding a copy of `bytes`. Unref when done.
func memStream(_ bytes: [UInt8]) -> UnsafeMutablePointer<GMimeStream> {
    bytes.withUnsafeBufferPointer { buf in
        guard let base = buf.baseAddress, buf.count > 0 else { return g_mime_stream_mem_new() }
        return base.withMemoryRebound(to: CChar.self, capacity: buf.count) {
            g_mime_stream_mem_new_with_buffer($0, buf.count)
        }
    }
}
