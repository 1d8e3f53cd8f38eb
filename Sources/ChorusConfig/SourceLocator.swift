/// Finds the line on which each key, table header and array element of a TOML document appears.
///
/// TOMLKit does not expose source positions for parsed values, so the locator scans the source text itself.
/// It is only run on text that TOMLKit has already accepted, so it can assume valid TOML; on anything it does
/// not understand it skips to the next line rather than failing, and a path it did not see simply has no line.
///
/// Paths are resolved the way TOML defines them:
/// - `[a.b]` headers and dotted keys (`a.b.c = 1`) record every prefix (first mention wins for implicit tables);
/// - `[[a.b]]` headers append an element to the array of tables `a.b`, recorded as `a.b[n]`, and later headers
///   and keys refer to its last element (`[a.b.c]` → `a.b[n].c`);
/// - inline tables (`t = { x = 1 }`) and arrays (`v = [1, { y = 2 }]`) record their members and elements
///   (`t.x`, `v[0]`, `v[1].y`) on the line where each member starts.
struct SourceLocator {
    private var lines: [ConfigPath: Int] = [:]
    /// Number of elements of each array of tables seen so far, keyed by the array's resolved path.
    private var arrayTableCounts: [ConfigPath: Int] = [:]

    /// Scans `text` (which must be valid TOML for the result to be complete).
    init(text: String) {
        var scanner = TOMLScanner(bytes: Array(text.utf8))
        scan(&scanner)
    }

    /// The 1-based line where `path` appears in the source, or `nil` if it was not found.
    func line(for path: ConfigPath) -> Int? {
        lines[path]
    }

    // MARK: - Recording

    private mutating func recordIfAbsent(_ path: ConfigPath, _ line: Int) {
        if lines[path] == nil {
            lines[path] = line
        }
    }

    /// Records a `keys = value` statement found in the table `base` on `line`.
    private mutating func recordKeyValue(base: ConfigPath, keys: [String], line: Int) {
        var path = base
        for (position, key) in keys.enumerated() {
            path = path.appending(key)
            if position == keys.count - 1 {
                lines[path] = line
            } else {
                recordIfAbsent(path, line)
            }
        }
    }

    /// Records a `[keys]` or `[[keys]]` header on `line` and returns the path of the table it opens.
    private mutating func recordHeader(keys: [String], isArray: Bool, line: Int) -> ConfigPath {
        var path = ConfigPath.root
        for (position, key) in keys.enumerated() {
            path = path.appending(key)
            let isLast = position == keys.count - 1
            if isLast && isArray {
                let count = (arrayTableCounts[path] ?? 0) + 1
                arrayTableCounts[path] = count
                recordIfAbsent(path, line)
                path = path.appending(index: count - 1)
                lines[path] = line
            } else {
                if let count = arrayTableCounts[path], count > 0 {
                    path = path.appending(index: count - 1)
                }
                if isLast {
                    lines[path] = line
                } else {
                    recordIfAbsent(path, line)
                }
            }
        }
        return path
    }

    // MARK: - Scanning

    private mutating func scan(_ scanner: inout TOMLScanner) {
        var current = ConfigPath.root
        while true {
            scanner.skipBlank()
            guard let byte = scanner.peek() else { return }
            let line = scanner.line
            if byte == UInt8(ascii: "[") {
                let isArray = scanner.peek(at: 1) == UInt8(ascii: "[")
                scanner.advance()
                if isArray {
                    scanner.advance()
                }
                if let keys = scanner.parseKey() {
                    current = recordHeader(keys: keys, isArray: isArray, line: line)
                }
                scanner.skipToNextLine()
            } else {
                guard let keys = scanner.parseKey() else {
                    scanner.skipToNextLine()
                    continue
                }
                scanner.skipSpaces()
                guard scanner.peek() == UInt8(ascii: "=") else {
                    scanner.skipToNextLine()
                    continue
                }
                scanner.advance()
                recordKeyValue(base: current, keys: keys, line: line)
                scanValue(&scanner, path: current.appending(keys: keys))
                scanner.skipToNextLine()
            }
        }
    }

    /// Skips one value, recording the members of inline tables and the elements of arrays under `path`.
    private mutating func scanValue(_ scanner: inout TOMLScanner, path: ConfigPath) {
        scanner.skipSpaces()
        guard let byte = scanner.peek() else { return }
        switch byte {
        case UInt8(ascii: "\""):
            scanner.skipBasicString()
        case UInt8(ascii: "'"):
            scanner.skipLiteralString()
        case UInt8(ascii: "{"):
            scanner.advance()
            while true {
                scanner.skipBlank()
                guard let next = scanner.peek() else { return }
                if next == UInt8(ascii: "}") {
                    scanner.advance()
                    return
                }
                let line = scanner.line
                guard let keys = scanner.parseKey() else { return }
                scanner.skipSpaces()
                guard scanner.peek() == UInt8(ascii: "=") else { return }
                scanner.advance()
                recordKeyValue(base: path, keys: keys, line: line)
                scanValue(&scanner, path: path.appending(keys: keys))
                scanner.skipBlank()
                if scanner.peek() == UInt8(ascii: ",") {
                    scanner.advance()
                } else if scanner.peek() == UInt8(ascii: "}") {
                    scanner.advance()
                    return
                } else {
                    return
                }
            }
        case UInt8(ascii: "["):
            scanner.advance()
            var index = 0
            while true {
                scanner.skipBlank()
                guard let next = scanner.peek() else { return }
                if next == UInt8(ascii: "]") {
                    scanner.advance()
                    return
                }
                let elementPath = path.appending(index: index)
                recordIfAbsent(elementPath, scanner.line)
                let before = scanner.position
                scanValue(&scanner, path: elementPath)
                if scanner.position == before {
                    return
                }
                scanner.skipBlank()
                if scanner.peek() == UInt8(ascii: ",") {
                    scanner.advance()
                    index += 1
                } else if scanner.peek() == UInt8(ascii: "]") {
                    scanner.advance()
                    return
                } else {
                    return
                }
            }
        default:
            scanner.skipScalar()
        }
    }
}

/// A byte cursor over TOML source that tracks the current line.
struct TOMLScanner {
    private let bytes: [UInt8]
    private(set) var position = 0
    private(set) var line = 1

    init(bytes: [UInt8]) {
        self.bytes = bytes
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            position = 3
        }
    }

    func peek(at offset: Int = 0) -> UInt8? {
        let index = position + offset
        return index < bytes.count ? bytes[index] : nil
    }

    mutating func advance() {
        guard position < bytes.count else { return }
        if bytes[position] == UInt8(ascii: "\n") {
            line += 1
        }
        position += 1
    }

    /// Skips spaces, tabs and carriage returns.
    mutating func skipSpaces() {
        while let byte = peek(), byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") {
            advance()
        }
    }

    /// Skips whitespace, newlines and comments.
    mutating func skipBlank() {
        while let byte = peek() {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
                || byte == UInt8(ascii: "\n") {
                advance()
            } else if byte == UInt8(ascii: "#") {
                while let next = peek(), next != UInt8(ascii: "\n") {
                    advance()
                }
            } else {
                return
            }
        }
    }

    /// Skips the rest of the current line, including its newline.
    mutating func skipToNextLine() {
        while let byte = peek() {
            advance()
            if byte == UInt8(ascii: "\n") {
                return
            }
        }
    }

    /// Skips a number, boolean, date or time: everything up to a delimiter, comment or end of line.
    mutating func skipScalar() {
        while let byte = peek(), byte != UInt8(ascii: ","), byte != UInt8(ascii: "]"), byte != UInt8(ascii: "}"),
              byte != UInt8(ascii: "\n"), byte != UInt8(ascii: "#") {
            advance()
        }
    }

    /// Skips a `"…"` or `"""…"""` string starting at the current position.
    mutating func skipBasicString() {
        if peek(at: 1) == UInt8(ascii: "\""), peek(at: 2) == UInt8(ascii: "\"") {
            advance(); advance(); advance()
            while let byte = peek() {
                if byte == UInt8(ascii: "\\") {
                    advance(); advance()
                } else if byte == UInt8(ascii: "\""), peek(at: 1) == UInt8(ascii: "\""), peek(at: 2) == UInt8(ascii: "\"") {
                    advance(); advance(); advance()
                    // Up to two quotes may directly precede the closing delimiter: `""""" ` ends the string.
                    var extra = 0
                    while extra < 2, peek() == UInt8(ascii: "\"") {
                        advance()
                        extra += 1
                    }
                    return
                } else {
                    advance()
                }
            }
            return
        }
        advance()
        while let byte = peek() {
            if byte == UInt8(ascii: "\\") {
                advance(); advance()
            } else if byte == UInt8(ascii: "\"") {
                advance()
                return
            } else if byte == UInt8(ascii: "\n") {
                return
            } else {
                advance()
            }
        }
    }

    /// Skips a `'…'` or `'''…'''` string starting at the current position.
    mutating func skipLiteralString() {
        if peek(at: 1) == UInt8(ascii: "'"), peek(at: 2) == UInt8(ascii: "'") {
            advance(); advance(); advance()
            while let byte = peek() {
                if byte == UInt8(ascii: "'"), peek(at: 1) == UInt8(ascii: "'"), peek(at: 2) == UInt8(ascii: "'") {
                    advance(); advance(); advance()
                    var extra = 0
                    while extra < 2, peek() == UInt8(ascii: "'") {
                        advance()
                        extra += 1
                    }
                    return
                }
                advance()
            }
            return
        }
        advance()
        while let byte = peek() {
            if byte == UInt8(ascii: "'") {
                advance()
                return
            } else if byte == UInt8(ascii: "\n") {
                return
            }
            advance()
        }
    }

    /// Parses a possibly dotted key (`a`, `a.b`, `"x.y".'z'`) and returns its decoded parts,
    /// or `nil` if no key starts at the current position.
    mutating func parseKey() -> [String]? {
        var keys: [String] = []
        while true {
            skipSpaces()
            guard let byte = peek() else { break }
            if byte == UInt8(ascii: "\"") {
                guard let key = parseBasicKey() else { return nil }
                keys.append(key)
            } else if byte == UInt8(ascii: "'") {
                guard let key = parseLiteralKey() else { return nil }
                keys.append(key)
            } else {
                var raw: [UInt8] = []
                while let next = peek(), !TOMLScanner.bareKeyTerminators.contains(next) {
                    raw.append(next)
                    advance()
                }
                if raw.isEmpty {
                    return nil
                }
                keys.append(String(decoding: raw, as: UTF8.self))
            }
            skipSpaces()
            if peek() == UInt8(ascii: ".") {
                advance()
            } else {
                break
            }
        }
        return keys.isEmpty ? nil : keys
    }

    private static let bareKeyTerminators: Set<UInt8> = Set(" \t\r\n=.[]#\"'{},".utf8)

    private mutating func parseLiteralKey() -> String? {
        advance()
        var raw: [UInt8] = []
        while let byte = peek() {
            if byte == UInt8(ascii: "'") {
                advance()
                return String(decoding: raw, as: UTF8.self)
            }
            if byte == UInt8(ascii: "\n") {
                return nil
            }
            raw.append(byte)
            advance()
        }
        return nil
    }

    private mutating func parseBasicKey() -> String? {
        advance()
        var raw: [UInt8] = []
        while let byte = peek() {
            switch byte {
            case UInt8(ascii: "\""):
                advance()
                return String(decoding: raw, as: UTF8.self)
            case UInt8(ascii: "\n"):
                return nil
            case UInt8(ascii: "\\"):
                advance()
                guard let escape = peek() else { return nil }
                advance()
                switch escape {
                case UInt8(ascii: "b"): raw.append(0x08)
                case UInt8(ascii: "t"): raw.append(0x09)
                case UInt8(ascii: "n"): raw.append(0x0A)
                case UInt8(ascii: "f"): raw.append(0x0C)
                case UInt8(ascii: "r"): raw.append(0x0D)
                case UInt8(ascii: "e"): raw.append(0x1B)
                case UInt8(ascii: "\""): raw.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): raw.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "x"): appendScalar(hexDigits: 2, to: &raw)
                case UInt8(ascii: "u"): appendScalar(hexDigits: 4, to: &raw)
                case UInt8(ascii: "U"): appendScalar(hexDigits: 8, to: &raw)
                default: return nil
                }
            default:
                raw.append(byte)
                advance()
            }
        }
        return nil
    }

    private mutating func appendScalar(hexDigits: Int, to raw: inout [UInt8]) {
        var value: UInt32 = 0
        for _ in 0..<hexDigits {
            guard let byte = peek(), let digit = TOMLScanner.hexValue(byte) else { return }
            value = value &* 16 &+ digit
            advance()
        }
        if let scalar = Unicode.Scalar(value) {
            raw.append(contentsOf: Array(String(Character(scalar)).utf8))
        }
    }

    private static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }
}
