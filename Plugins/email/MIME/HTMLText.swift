/// Plain text from an HTML mail body.
public enum HTMLText {
    /// Plain text from HTML for a mail without a text part: drops head/style/script, turns br/p/div/li/tr into line breaks, decodes entities, removes <blockquote> contents into the quoted part (return both).
    ///
    /// Details: whitespace outside `<pre>` collapses to single spaces; block elements (p, div,
    /// h1–h6, tr, table, ul/ol, pre, hr, section…) start a new line and `<br>` breaks one; list
    /// items start with "- "; table cells are separated by a space; a link whose text differs from
    /// its http(s) target is written `text (url)`; images and comments (Outlook's conditional
    /// comments included) are dropped; `&nbsp;` becomes a plain space; at most one blank line is
    /// kept in a row. `quoted` is the text of the outermost `<blockquote>` elements, one after the
    /// other separated by a blank line; nil when there are none.
    public static func plainText(_ html: String) -> (text: String, quoted: String?) {
        var converter = HTMLConverter(Array(html.unicodeScalars))
        converter.run()
        let text = HTMLConverter.tidy(converter.main)
        let quoted = HTMLConverter.tidy(converter.quoted)
        return (text, quoted.isEmpty ? nil : quoted)
    }
}

/// The single-pass tokenizer behind `HTMLText.plainText`.
struct HTMLConverter {
    let s: [Unicode.Scalar]
    var i = 0
    var main: [Unicode.Scalar] = []
    var quoted: [Unicode.Scalar] = []
    var quoteDepth = 0
    var preDepth = 0
    /// Only decode character references (for attribute values): "<" is plain text.
    var entitiesOnly = false
    /// Open links: the href and where the link text starts in the current output.
    var links: [(href: String?, start: Int)] = []

    init(_ scalars: [Unicode.Scalar]) { s = scalars }

    static let blockTags: Set<String> = ["p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "ul", "ol", "dl", "dt", "dd",
                                         "pre", "hr", "section", "article", "header", "footer", "address", "center", "form",
                                         "fieldset", "figure", "figcaption", "main", "nav", "aside", "tbody", "thead", "tfoot",
                                         "caption", "html", "body", "blockquote", "li"]
    static let skippedTags: Set<String> = ["style", "script", "title", "template", "head", "xml", "noscript", "object", "iframe"]

    mutating func run() {
        while i < s.count {
            let c = s[i]
            if c == "<" && !entitiesOnly { tag(); continue }
            if c == "&" { emitText(entity()); continue }
            emitScalar(c)
            i += 1
        }
    }

    // MARK: Output

    private var outputCount: Int { quoteDepth > 0 ? quoted.count : main.count }

    private mutating func append(_ text: String) {
        if quoteDepth > 0 { quoted.append(contentsOf: text.unicodeScalars) } else { main.append(contentsOf: text.unicodeScalars) }
    }

    private mutating func append(_ scalar: Unicode.Scalar) {
        if quoteDepth > 0 { quoted.append(scalar) } else { main.append(scalar) }
    }

    private var lastScalar: Unicode.Scalar? { quoteDepth > 0 ? quoted.last : main.last }

    /// The current output from `start` on, trimmed (without copying the whole output).
    private func outputText(from start: Int) -> String {
        let slice = quoteDepth > 0 ? quoted[min(start, quoted.count)...] : main[min(start, main.count)...]
        return String(String.UnicodeScalarView(slice)).trimmedWhitespace
    }

    /// Text content: whitespace collapses (outside <pre>); NBSP becomes a space.
    private mutating func emitText(_ text: String) {
        for scalar in text.unicodeScalars { emitScalar(scalar) }
    }

    private mutating func emitScalar(_ scalar: Unicode.Scalar) {
        let c: Unicode.Scalar = (scalar.value == 0xA0) ? " " : scalar
        if preDepth > 0 {
            if c != "\r" { append(c) }
            return
        }
        if c == " " || c == "\t" || c == "\n" || c == "\r" || c == "\u{0C}" {
            if let last = lastScalar, last != " ", last != "\n" { append(" " as Unicode.Scalar) }
        } else {
            append(c)
        }
    }

    private mutating func newline() {
        // Drop a space before the break.
        if quoteDepth > 0 {
            while quoted.last == " " { quoted.removeLast() }
        } else {
            while main.last == " " { main.removeLast() }
        }
        append("\n")
    }

    private mutating func ensureLineStart() {
        if let last = lastScalar, last != "\n" { newline() }
    }

    // MARK: Tags

    private mutating func tag() {
        // s[i] == "<"
        let next = i + 1 < s.count ? s[i + 1] : " "
        if next == "!" {
            if matches("<!--", at: i) { skip(past: "-->", from: i + 4) } else { skip(past: ">", from: i + 2) }
            return
        }
        if next == "?" { skip(past: ">", from: i + 2); return }
        let closing = next == "/"
        var j = closing ? i + 2 : i + 1
        guard j < s.count, s[j].properties.isAlphabetic else {
            emitText("<")
            i += 1
            return
        }
        var name = ""
        while j < s.count, s[j].properties.isAlphabetic || s[j].properties.numericType != nil || s[j] == "-" || s[j] == ":" {
            name.unicodeScalars.append(s[j]); j += 1
        }
        name = name.asciiLowercased
        // Attributes up to ">", honouring quotes.
        let attrStart = j
        var quote: Unicode.Scalar?
        while j < s.count {
            let c = s[j]
            if let q = quote { if c == q { quote = nil } } else if c == "\"" || c == "'" { quote = c } else if c == ">" { break }
            j += 1
        }
        let attributes = Array(s[attrStart..<min(j, s.count)])
        i = min(j + 1, s.count)
        if closing { closeTag(name) } else { openTag(name, attributes) }
    }

    private mutating func openTag(_ name: String, _ attributes: [Unicode.Scalar]) {
        if HTMLConverter.skippedTags.contains(name) {
            if let end = find(closing: name, from: i) {
                i = end
            } else if name != "head" && name != "html" {
                i = s.count
            }
            return
        }
        switch name {
        case "br":
            newline()
        case "blockquote":
            ensureLineStart()
            if quoteDepth > 0 { ensureLineStart() } else if !quoted.isEmpty { quoted.append(contentsOf: "\n\n".unicodeScalars) }
            quoteDepth += 1
        case "li":
            ensureLineStart()
            append("- ")
        case "td", "th":
            if let last = lastScalar, last != "\n", last != " " { append(" ") }
        case "a":
            links.append((HTMLConverter.attribute("href", in: attributes), outputCount))
        case "pre":
            ensureLineStart()
            preDepth += 1
        default:
            if HTMLConverter.blockTags.contains(name) { ensureLineStart() }
        }
    }

    private mutating func closeTag(_ name: String) {
        switch name {
        case "blockquote":
            if quoteDepth > 0 { ensureLineStart(); quoteDepth -= 1 }
            ensureLineStart()
        case "a":
            guard let link = links.popLast(), let href = link.href?.trimmedWhitespace else { return }
            let lower = href.asciiLowercased
            guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else { return }
            let linkText = outputText(from: link.start)
            let bare = href.drop { $0 != "/" }.drop { $0 == "/" }
            if !linkText.isEmpty && linkText != href && linkText != String(bare) && linkText.trimmingTrailingSlash != String(bare).trimmingTrailingSlash {
                append(" (" + href + ")")
            } else if linkText.isEmpty {
                append(href)
            }
        case "pre":
            if preDepth > 0 { preDepth -= 1 }
            ensureLineStart()
        default:
            if HTMLConverter.blockTags.contains(name) { ensureLineStart() }
        }
    }

    // MARK: Scanning helpers

    private func matches(_ literal: String, at index: Int) -> Bool {
        var k = index
        for c in literal.unicodeScalars {
            guard k < s.count, s[k] == c else { return false }
            k += 1
        }
        return true
    }

    private mutating func skip(past literal: String, from index: Int) {
        var k = index
        while k < s.count {
            if matches(literal, at: k) { i = k + literal.unicodeScalars.count; return }
            k += 1
        }
        i = s.count
    }

    /// The index just past `</name ...>` (case-insensitive), searching from `index`.
    private func find(closing name: String, from index: Int) -> Int? {
        let target = Array(("</" + name).unicodeScalars)
        var k = index
        while k + target.count <= s.count {
            var ok = true
            for (n, t) in target.enumerated() {
                let c = s[k + n]
                let lower = (c.value >= 65 && c.value <= 90) ? Unicode.Scalar(c.value + 32)! : c
                if lower != t { ok = false; break }
            }
            if ok {
                let after = k + target.count
                if after >= s.count || !(s[after].properties.isAlphabetic || s[after].properties.numericType != nil) {
                    var e = after
                    while e < s.count, s[e] != ">" { e += 1 }
                    return min(e + 1, s.count)
                }
            }
            k += 1
        }
        return nil
    }

    /// An entity at `i` ("&…;"), decoded; a lone "&" stays as it is.
    private mutating func entity() -> String {
        var j = i + 1
        if j < s.count, s[j] == "#" {
            j += 1
            var hex = false
            if j < s.count, s[j] == "x" || s[j] == "X" { hex = true; j += 1 }
            var value: UInt32 = 0
            let digitsStart = j
            while j < s.count, let d = hexValue(s[j]), hex || d < 10, value < 0x110000 {
                value = value * (hex ? 16 : 10) + d
                j += 1
            }
            guard j > digitsStart else { i += 1; return "&" }
            if j < s.count, s[j] == ";" { j += 1 }
            i = j
            let scalar = HTMLEntities.windows1252C1[value] ?? Unicode.Scalar(value) ?? "\u{FFFD}"
            return String(scalar.value == 0 ? "\u{FFFD}" : scalar)
        }
        var name = ""
        while j < s.count, name.unicodeScalars.count < 32, s[j].isASCII, s[j].properties.isAlphabetic || s[j].properties.numericType != nil {
            name.unicodeScalars.append(s[j]); j += 1
        }
        let terminated = j < s.count && s[j] == ";"
        if let value = HTMLEntities.named[name], terminated || HTMLEntities.legacy.contains(name) {
            i = terminated ? j + 1 : j
            return value
        }
        i += 1
        return "&"
    }

    private func hexValue(_ c: Unicode.Scalar) -> UInt32? {
        switch c.value {
        case 48...57: return c.value - 48
        case 65...70: return c.value - 55
        case 97...102: return c.value - 87
        default: return nil
        }
    }

    /// The value of attribute `name` (lowercase) in a tag's attribute text, entities decoded.
    static func attribute(_ name: String, in attributes: [Unicode.Scalar]) -> String? {
        func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" || c == "/" }
        var k = 0
        let a = attributes
        while k < a.count {
            while k < a.count, isSpace(a[k]) { k += 1 }
            var attrName = String.UnicodeScalarView()
            while k < a.count, !isSpace(a[k]), a[k] != "=" { attrName.append(a[k]); k += 1 }
            while k < a.count, a[k] == " " || a[k] == "\t" || a[k] == "\n" || a[k] == "\r" { k += 1 }
            var value: String?
            if k < a.count, a[k] == "=" {
                k += 1
                while k < a.count, a[k] == " " || a[k] == "\t" || a[k] == "\n" || a[k] == "\r" { k += 1 }
                var v = String.UnicodeScalarView()
                if k < a.count, a[k] == "\"" || a[k] == "'" {
                    let q = a[k]
                    k += 1
                    while k < a.count, a[k] != q { v.append(a[k]); k += 1 }
                    k += 1
                } else {
                    while k < a.count, !isSpace(a[k]) || a[k] == "/" { v.append(a[k]); k += 1 }
                }
                value = String(v)
            }
            if String(attrName).asciiLowercased == name { return value.map(HTMLText.decodeEntities) }
            if attrName.isEmpty && value == nil { k += 1 }
        }
        return nil
    }

    /// Lines trimmed at the end, at most one blank line in a row, no blank lines at either end.
    static func tidy(_ scalars: [Unicode.Scalar]) -> String {
        let text = String(String.UnicodeScalarView(scalars))
        var lines: [String] = []
        var blank = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = String(raw)
            while let last = line.unicodeScalars.last, last == " " || last == "\t" { line.unicodeScalars.removeLast() }
            if line.isEmpty {
                blank += 1
                if blank > 1 || lines.isEmpty { continue }
            } else {
                blank = 0
            }
            lines.append(line)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines.joined(separator: "\n")
    }
}

extension HTMLText {
    /// `text` with HTML character references decoded (used for attribute values).
    static func decodeEntities(_ text: String) -> String {
        guard text.contains("&") else { return text }
        var converter = HTMLConverter(Array(text.unicodeScalars))
        converter.preDepth = 1
        converter.entitiesOnly = true
        converter.run()
        return String(String.UnicodeScalarView(converter.main))
    }
}

extension String {
    var trimmingTrailingSlash: String { hasSuffix("/") ? String(dropLast()) : self }
}
