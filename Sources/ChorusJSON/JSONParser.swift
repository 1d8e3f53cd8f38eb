/// An error in a JSON document, with the byte offset where it was found.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var offset: Int
    public init(_ message: String, offset: Int) { self.message = message; self.offset = offset }
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

/// A strict RFC 8259 parser over UTF-8 bytes.
///
/// Limits protect the daemon from hostile input: nesting depth (default 64),
/// the document must be a single value with only whitespace around it, and an
/// object may not repeat a name.
public struct JSONParser {
    public static let defaultMaxDepth = 64

    /// Parses one JSON document.
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        var p = JSONParser(bytes.bindMemory(to: UInt8.self), maxDepth: maxDepth)
        p.skipWhitespace()
        let v = try p.parseValue(depth: 0)
        p.skipWhitespace()
        if p.i != p.end { throw JSONParseError("unexpected data after the document", offset: p.i) }
        return v
    }

    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        do {
            return try bytes.withUnsafeBytes { raw in try parse(raw, maxDepth: maxDepth) }
        } catch let e as JSONParseError {
            throw e
        } catch {
            throw JSONParseError("\(error)", offset: 0)
        }
    }

    public static func parse(_ string: String, maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        try parse(Array(string.utf8), maxDepth: maxDepth)
    }

    private let buf: UnsafeBufferPointer<UInt8>
    private var i: Int
    private let end: Int
    private let maxDepth: Int

    private init(_ buf: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.buf = buf
        self.i = 0
        self.end = buf.count
        self.maxDepth = maxDepth
    }

    @inline(__always) private mutating func skipWhitespace() {
        while i < end {
            let c = buf[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { break }
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard i < end else { throw JSONParseError("unexpected end of input", offset: i) }
        switch buf[i] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw JSONParseError("unexpected character '\(printable(buf[i]))'", offset: i)
        }
    }

    private func printable(_ c: UInt8) -> String {
        (c >= 0x20 && c < 0x7F) ? String(UnicodeScalar(c)) : "\\x" + String(c, radix: 16)
    }

    private mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let n = word.utf8CodeUnitCount
        guard end - i >= n else { throw JSONParseError("unexpected end of input", offset: i) }
        let w = word.utf8Start
        for k in 0..<n where buf[i + k] != w[k] {
            throw JSONParseError("invalid literal", offset: i)
        }
        i += n
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > maxDepth { throw JSONParseError("nesting deeper than \(maxDepth)", offset: i) }
        i += 1
        var entries: [(key: String, value: JSONValue)] = []
        // Duplicate names are refused (RFC 8259 §4 leaves them to the parser): a validator that
        // looks at the first value and a consumer that keeps the last would otherwise disagree.
        // Small objects are checked linearly; large ones switch to a set.
        var seen: Set<String>? = nil
        skipWhitespace()
        if i < end && buf[i] == UInt8(ascii: "}") { i += 1; return .object(JSONObject()) }
        entries.reserveCapacity(8)
        while true {
            skipWhitespace()
            guard i < end, buf[i] == UInt8(ascii: "\"") else { throw JSONParseError("expected a string key", offset: i) }
            let keyOffset = i
            let key = try parseString()
            if seen != nil {
                if !seen!.insert(key).inserted { throw JSONParseError("duplicate key \"\(key)\"", offset: keyOffset) }
            } else if entries.count < 16 {
                for e in entries where e.0 == key { throw JSONParseError("duplicate key \"\(key)\"", offset: keyOffset) }
            } else {
                var set = Set(entries.map { $0.0 })
                if !set.insert(key).inserted { throw JSONParseError("duplicate key \"\(key)\"", offset: keyOffset) }
                seen = set
            }
            skipWhitespace()
            guard i < end, buf[i] == UInt8(ascii: ":") else { throw JSONParseError("expected ':'", offset: i) }
            i += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            entries.append((key, value))
            skipWhitespace()
            guard i < end else { throw JSONParseError("unexpected end of input in object", offset: i) }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            if buf[i] == UInt8(ascii: "}") { i += 1; break }
            throw JSONParseError("expected ',' or '}'", offset: i)
        }
        return .object(JSONObject(entries: entries))
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > maxDepth { throw JSONParseError("nesting deeper than \(maxDepth)", offset: i) }
        i += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if i < end && buf[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard i < end else { throw JSONParseError("unexpected end of input in array", offset: i) }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            if buf[i] == UInt8(ascii: "]") { i += 1; break }
            throw JSONParseError("expected ',' or ']'", offset: i)
        }
        return .array(items)
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        i += 1  // opening quote
        let start = i
        // Fast path: no escapes.
        while i < end {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                let s = try makeString(UnsafeBufferPointer(rebasing: buf[start..<i]), at: start)
                i += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw JSONParseError("control character in string", offset: i) }
            i += 1
        }
        // Slow path with escapes.
        var out: [UInt8] = Array(buf[start..<i])
        while i < end {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                return try out.withUnsafeBufferPointer { b throws(JSONParseError) in try makeString(b, at: start) }
            }
            if c < 0x20 { throw JSONParseError("control character in string", offset: i) }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < end else { break }
            let e = buf[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    // High surrogate: a low one must follow.
                    guard end - i >= 6, buf[i] == UInt8(ascii: "\\"), buf[i + 1] == UInt8(ascii: "u") else {
                        throw JSONParseError("unpaired surrogate", offset: i)
                    }
                    i += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw JSONParseError("unpaired surrogate", offset: i) }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw JSONParseError("unpaired surrogate", offset: i)
                }
                guard let u = Unicode.Scalar(scalar) else { throw JSONParseError("invalid \\u escape", offset: i) }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw JSONParseError("invalid escape '\\\(printable(e))'", offset: i - 1)
            }
        }
        throw JSONParseError("unterminated string", offset: start - 1)
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard end - i >= 4 else { throw JSONParseError("truncated \\u escape", offset: i) }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = buf[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - 48)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - 87)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - 55)
            default: throw JSONParseError("invalid hex digit in \\u escape", offset: i)
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private func makeString(_ b: UnsafeBufferPointer<UInt8>, at offset: Int) throws(JSONParseError) -> String {
        // Fast path: pure ASCII needs no validation (most keys and many values).
        var ascii = true
        for c in b where c >= 0x80 { ascii = false; break }
        if ascii { return String(decoding: b, as: UTF8.self) }
        guard let s = String(validating: b, as: UTF8.self) else {
            throw JSONParseError("string is not valid UTF-8", offset: offset)
        }
        return s
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONNumber {
        let start = i
        var isInt = true
        if buf[i] == UInt8(ascii: "-") { i += 1 }
        guard i < end else { throw JSONParseError("truncated number", offset: start) }
        if buf[i] == UInt8(ascii: "0") {
            i += 1
        } else if buf[i] >= UInt8(ascii: "1") && buf[i] <= UInt8(ascii: "9") {
            while i < end && buf[i] >= UInt8(ascii: "0") && buf[i] <= UInt8(ascii: "9") { i += 1 }
        } else {
            throw JSONParseError("invalid number", offset: start)
        }
        if i < end && buf[i] == UInt8(ascii: ".") {
            isInt = false
            i += 1
            let digits = i
            while i < end && buf[i] >= UInt8(ascii: "0") && buf[i] <= UInt8(ascii: "9") { i += 1 }
            if i == digits { throw JSONParseError("invalid number: no digits after '.'", offset: start) }
        }
        if i < end && (buf[i] == UInt8(ascii: "e") || buf[i] == UInt8(ascii: "E")) {
            isInt = false
            i += 1
            if i < end && (buf[i] == UInt8(ascii: "+") || buf[i] == UInt8(ascii: "-")) { i += 1 }
            let digits = i
            while i < end && buf[i] >= UInt8(ascii: "0") && buf[i] <= UInt8(ascii: "9") { i += 1 }
            if i == digits { throw JSONParseError("invalid number: empty exponent", offset: start) }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)
        if isInt, let v = Int64(text) { return .int(v) }
        guard let d = Double(text), d.isFinite else { throw JSONParseError("number out of range", offset: start) }
        return .double(d)
    }
}
