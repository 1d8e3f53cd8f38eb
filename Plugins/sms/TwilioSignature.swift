import COpenSSL

/// `application/x-www-form-urlencoded` bodies, as Twilio sends webhooks and takes API calls.
public enum FormEncoding {
    /// A form body that is not valid `application/x-www-form-urlencoded` UTF-8.
    public struct MalformedForm: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Parses a form body into its fields, in order; a name may repeat (`MediaUrl`).
    /// `+` is a space and `%XX` a byte; the decoded bytes must be UTF-8.
    public static func parse(_ body: [UInt8]) throws -> [(name: String, value: String)] {
        var fields: [(name: String, value: String)] = []
        for pair in body.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let eq = pair.firstIndex(of: UInt8(ascii: "="))
            let rawName = eq.map { pair[pair.startIndex..<$0] } ?? pair[...]
            let rawValue = eq.map { pair[pair.index(after: $0)...] } ?? []
            let name = try decode(rawName)
            if name.isEmpty { throw MalformedForm(description: "a form field has an empty name") }
            fields.append((name, try decode(rawValue)))
        }
        return fields
    }

    /// Decodes one percent-encoded component.
    static func decode(_ bytes: ArraySlice<UInt8>) throws -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20); i += 1
            } else if b == UInt8(ascii: "%") {
                guard i + 2 < bytes.endIndex,
                      let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2])
                else {
                    throw MalformedForm(description: "bad percent-escape at byte \(i - bytes.startIndex) of \"\(String(decoding: bytes.prefix(40), as: UTF8.self))\"")
                }
                out.append(hi << 4 | lo); i += 3
            } else {
                out.append(b); i += 1
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else {
            throw MalformedForm(description: "a form field is not valid UTF-8")
        }
        return s
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Encodes fields as a form body (unreserved characters kept, space as `+`, the rest `%XX`).
    public static func encode(_ fields: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        for (i, (name, value)) in fields.enumerated() {
            if i > 0 { out.append(UInt8(ascii: "&")) }
            escape(name, into: &out)
            out.append(UInt8(ascii: "="))
            escape(value, into: &out)
        }
        return out
    }

    static func escape(_ s: String, into out: inout [UInt8]) {
        let hex = Array("0123456789ABCDEF".utf8)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(b)
            case 0x20:
                out.append(UInt8(ascii: "+"))
            default:
                out.append(UInt8(ascii: "%")); out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 15)])
            }
        }
    }
}

/// Twilio's webhook signature, `X-Twilio-Signature`.
///
/// The signature is `base64(HMAC-SHA1(auth_token, url + params))`, where `url`
/// is the full URL Twilio requested (scheme, host, optional port, path and
/// query) and `params` is, for a form POST, every parameter name followed by
/// its value, sorted by name (a repeated name contributes each of its distinct
/// values, sorted). This is what Twilio's own helper libraries compute
/// (`RequestValidator.compute_signature` in the Python library).
public enum TwilioSignature {
    /// The expected signature of a request to `url` with form `params`.
    public static func compute(authToken: String, url: String, params: [(name: String, value: String)]) -> String {
        var data = Array(url.utf8)
        var byName: [String: [String]] = [:]
        for p in params { byName[p.name, default: []].append(p.value) }
        for name in byName.keys.sorted(by: utf8Less) {
            for value in Set(byName[name]!).sorted(by: utf8Less) {
                data.append(contentsOf: name.utf8)
                data.append(contentsOf: value.utf8)
            }
        }
        let key = Array(authToken.utf8)
        var mac = [UInt8](repeating: 0, count: 20)
        let rc = key.withUnsafeBufferPointer { k in
            data.withUnsafeBufferPointer { d in
                mac.withUnsafeMutableBufferPointer { m in
                    cossl_hmac_sha1(k.baseAddress, Int32(k.count), d.baseAddress, d.count, m.baseAddress)
                }
            }
        }
        precondition(rc == 0, "HMAC-SHA1 failed in libcrypto")
        return Base64.encode(mac)
    }

    /// Whether `signature` is valid for the request, compared in constant time.
    ///
    /// Like Twilio's validators, the URL is tried as given and with its default
    /// port (`:443` / `:80`) added or removed, since Twilio may sign either form.
    public static func isValid(signature: String, authToken: String, url: String, params: [(name: String, value: String)]) -> Bool {
        let given = Array(signature.utf8)
        var ok = false
        for candidate in urlVariants(url) {
            let expected = Array(compute(authToken: authToken, url: candidate, params: params).utf8)
            // Both are base64 of 20 bytes (28 characters); compare lengths first, then bytes in constant time.
            if expected.count == given.count {
                let same = expected.withUnsafeBufferPointer { e in
                    given.withUnsafeBufferPointer { g in cossl_memcmp(e.baseAddress, g.baseAddress, e.count) == 0 }
                }
                ok = ok || same
            }
        }
        return ok
    }

    /// The URL as given, and with its scheme's default port removed or added.
    static func urlVariants(_ url: String) -> [String] {
        let (scheme, port): (String, String)
        if url.hasPrefix("https://") { (scheme, port) = ("https://", "443") } else if url.hasPrefix("http://") { (scheme, port) = ("http://", "80") } else { return [url] }
        let rest = url.dropFirst(scheme.count)
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[rest.startIndex..<authorityEnd]
        let tail = rest[authorityEnd...]
        let hostPart: Substring
        if let at = authority.lastIndex(of: "@") { hostPart = authority[authority.index(after: at)...] } else { hostPart = authority }
        let userInfo = authority[authority.startIndex..<hostPart.startIndex]
        if hostPart.hasSuffix(":" + port) {
            return [url, scheme + userInfo + hostPart.dropLast(port.count + 1) + tail]
        }
        if let colon = hostPart.lastIndex(of: ":") {
            let digits = hostPart[hostPart.index(after: colon)...]
            let isPort = !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
                && (!hostPart.hasPrefix("[") || hostPart[..<colon].hasSuffix("]"))
            if isPort { return [url] } // an explicit non-default port: only that form
        }
        return [url, scheme + userInfo + hostPart + ":" + port + tail]
    }

    static func utf8Less(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }
}

/// Standard base64 (RFC 4648, with padding).
public enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Encodes bytes as base64 text.
    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)]); out.append(alphabet[Int(n & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
            out.append(UInt8(ascii: "=")); out.append(UInt8(ascii: "="))
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)]); out.append(UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }
}
