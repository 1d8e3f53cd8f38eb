import Glibc

/// Parsers and formatters for the value syntaxes used in the configuration file (sizes, listen addresses,
/// permission bits, names, paths).
enum ValueSyntax {
    // MARK: Sizes

    /// Parses a size written as a string with a unit: `"512"`, `"64KiB"`, `"1.5 GiB"`, `"500MB"`, `"10 B"`.
    /// Units are case-insensitive: B, KB/MB/GB/TB (powers of 1000) and KiB/MiB/GiB/TiB (powers of 1024).
    /// Fractions are rounded down to whole bytes. Returns `nil` for malformed text or a value above `Int64.max`.
    static func parseSize(_ text: String) -> Int64? {
        let trimmed = text.trimmingSpaces()
        var number = ""
        var rest = Substring(trimmed)
        while let first = rest.first, first.isASCII, first.isNumber || first == "." {
            number.append(first)
            rest = rest.dropFirst()
        }
        let unit = String(rest).trimmingSpaces().lowercased()
        let multiplier: Int64
        switch unit {
        case "", "b": multiplier = 1
        case "kb": multiplier = 1_000
        case "mb": multiplier = 1_000_000
        case "gb": multiplier = 1_000_000_000
        case "tb": multiplier = 1_000_000_000_000
        case "kib": multiplier = 1 << 10
        case "mib": multiplier = 1 << 20
        case "gib": multiplier = 1 << 30
        case "tib": multiplier = 1 << 40
        default: return nil
        }
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = parts.first, !whole.isEmpty, let wholeValue = Int64(whole) else {
            return nil
        }
        let (scaled, overflow) = wholeValue.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { return nil }
        guard parts.count == 2 else { return scaled }
        let fraction = parts[1]
        guard !fraction.isEmpty, fraction.count <= 18, let fractionValue = Int64(fraction) else { return nil }
        var divisor: Int64 = 1
        for _ in 0..<fraction.count {
            divisor *= 10
        }
        // fractionValue / divisor * multiplier, computed without overflow for the multipliers above.
        let fractionalBytes = Int64((Double(fractionValue) / Double(divisor)) * Double(multiplier))
        let (total, totalOverflow) = scaled.addingReportingOverflow(fractionalBytes)
        return totalOverflow ? nil : total
    }

    /// Formats a byte count for messages: `64 MiB`, `1 KiB`, `1500 bytes`.
    static func formatSize(_ bytes: Int64) -> String {
        let units: [(Int64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, name) in units where bytes != 0 && bytes % size == 0 {
            return "\(bytes / size) \(name)"
        }
        return bytes == 1 ? "1 byte" : "\(bytes) bytes"
    }

    // MARK: Listen addresses

    /// Why a `listen` value was rejected.
    enum ListenError: Error {
        case malformed
        case portOutOfRange(Int)
    }

    /// Parses `host:port`, `[ipv6]:port` or `:port` (all IPv4 interfaces).
    static func parseListen(_ text: String) -> Result<(host: String, port: Int), ListenError> {
        let host: String
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(.malformed) }
            host = String(text[text.index(after: text.startIndex)..<close])
            let afterBracket = text[text.index(after: close)...]
            guard afterBracket.hasPrefix(":") else { return .failure(.malformed) }
            portText = afterBracket.dropFirst()
            guard host.contains(":"), isIPv6Literal(host) else { return .failure(.malformed) }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return .failure(.malformed) }
            let hostPart = String(text[..<colon])
            portText = text[text.index(after: colon)...]
            if hostPart.isEmpty {
                host = "0.0.0.0"
            } else {
                guard isHostName(hostPart) else { return .failure(.malformed) }
                host = hostPart
            }
        }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = Int(portText) else {
            return .failure(.malformed)
        }
        guard port <= 65_535 else { return .failure(.portOutOfRange(port)) }
        return .success((host, port))
    }

    /// Host names and IPv4 addresses: letters, digits, `-`, `_` and `.`, at most 253 characters.
    private static func isHostName(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 253, !text.hasPrefix("."), !text.hasPrefix("-") else { return false }
        return text.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)
                || scalar == "-" || scalar == "." || scalar == "_")
        }
    }

    /// IPv6 literal as written inside brackets: hex digits, `:` and `.`, with an optional `%zone`.
    private static func isIPv6Literal(_ text: String) -> Bool {
        let parts = text.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = parts.first, !address.isEmpty, address.count <= 45 else { return false }
        if parts.count == 2 {
            let zone = parts[1]
            guard !zone.isEmpty, zone.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") })
            else { return false }
        }
        return address.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
    }

    // MARK: Permission bits

    /// Parses permission bits written as an octal string: `"0660"`, `"660"`, `"0o660"`. At most `0o777`.
    static func parseOctalMode(_ text: String) -> Int? {
        var digits = Substring(text.trimmingSpaces())
        if digits.hasPrefix("0o") || digits.hasPrefix("0O") {
            digits = digits.dropFirst(2)
        }
        guard !digits.isEmpty, digits.count <= 4, digits.allSatisfy({ ("0"..."7").contains($0) }),
              let value = Int(digits, radix: 8), value <= 0o777 else {
            return nil
        }
        return value
    }

    // MARK: Names

    /// Whether `name` is a valid instance or plugin name: `[a-z0-9][a-z0-9_-]{0,62}`.
    static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count) else { return false }
        func isLowerAlnum(_ byte: UInt8) -> Bool {
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
        }
        guard isLowerAlnum(bytes[0]) else { return false }
        return bytes.dropFirst().allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// Whether `name` looks like a POSIX user or group name: `[A-Za-z0-9._-]`, optionally ending in `$`,
    /// not starting with `-`, at most 32 characters.
    static func isValidAccountName(_ name: String) -> Bool {
        var body = Substring(name)
        if body.hasSuffix("$") {
            body = body.dropLast()
        }
        guard !body.isEmpty, name.utf8.count <= 32, !body.hasPrefix("-") else { return false }
        return body.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-") }
    }

    // MARK: Paths

    /// Makes `path` absolute against `base` (itself absolute) and removes `.`, `..` and repeated slashes.
    static func resolve(_ path: String, against base: String) -> String {
        normalize(path.hasPrefix("/") ? path : base + "/" + path)
    }

    /// Lexically normalizes an absolute path (`..` at the root stays at the root).
    static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".":
                continue
            case "..":
                if !parts.isEmpty {
                    parts.removeLast()
                }
            default:
                parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// `directory` as an absolute, normalized path; relative directories are taken from the working directory.
    static func absoluteDirectory(_ directory: String) -> String {
        if directory.hasPrefix("/") {
            return normalize(directory)
        }
        return resolve(directory, against: currentDirectory())
    }

    /// The process's working directory, or `/` if it cannot be determined (e.g. it was removed).
    static func currentDirectory() -> String {
        guard let pointer = getcwd(nil, 0) else { return "/" }
        defer { free(pointer) }
        return String(cString: pointer)
    }

    /// The directory part of an absolute, normalized path.
    static func directoryOf(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = String(path[..<slash])
        return directory.isEmpty ? "/" : directory
    }
}

extension String {
    /// The string without leading and trailing spaces and tabs.
    func trimmingSpaces() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { $0 != " " && $0 != "\t" }),
              let last = scalars.lastIndex(where: { $0 != " " && $0 != "\t" }) else {
            return ""
        }
        return String(scalars[first...last])
    }
}
