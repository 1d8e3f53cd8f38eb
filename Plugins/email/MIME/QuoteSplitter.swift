/// Separates what the sender wrote from the quoted history (and signature) of a plain-text reply.
public enum QuoteSplitter {
    /// Splits a plain-text reply into what is new and what was removed: the signature and the
    /// quoted history ("On … wrote:" and its localised forms, Outlook's "-----Original Message-----"
    /// and "From: … Sent: …" blocks, a trailing block of ">" lines). A forward ("---------- Forwarded
    /// message") is not history.
    ///
    /// The rules, in order:
    /// - The history starts at the first of: an attribution line ("On … wrote:", also wrapped over
    ///   up to three lines, and the German, French, Spanish, Italian, Dutch and Portuguese forms),
    ///   an "-----Original Message-----" separator (also localised), an Outlook header block
    ///   ("From:" followed within six lines by "Sent:"/"Date:" and "To:"/"Subject:", also
    ///   localised; a "_____" rule just before it belongs to the history), or a block of ">" lines
    ///   that runs to the end of the text (blank lines allowed). Interleaved quotes followed by new
    ///   text stay in `new`.
    /// - A forward marker ("---------- Forwarded message ---------", "Begin forwarded message:",
    ///   "-------- Forwarded Message --------", localised) ends the search: what follows it is
    ///   content the sender is passing on, and stays in `new`.
    /// - The signature: the last line that is exactly "-- " (RFC 3676 §4.3) before the history
    ///   starts, or a bare "--" followed by at most ten non-blank lines; it and everything after it
    ///   leave `new`, provided some text precedes it.
    ///   So `new` never carries the signature.
    /// - `quoted` is everything removed (signature, then history), trimmed; nil when nothing was.
    /// - `new` is trimmed of trailing whitespace and leading blank lines.
    public static func split(_ text: String) -> (new: String, quoted: String?) {
        let normalized = text.utf8.contains(13) ? String(decoding: TextDecoding.normalizeNewlines(Array(text.utf8)), as: UTF8.self) : text
        let lines = normalized.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var cut = historyStart(lines) ?? lines.count

        // An Outlook rule ("________") or blank lines just above the history go with it.
        var k = cut
        while k > 0 {
            let previous = lines[k - 1].trimmedWhitespace
            if previous.isEmpty { k -= 1; continue }
            if cut < lines.count, previous.count >= 10, previous.allSatisfy({ $0 == "_" }) { k -= 1; cut = k; continue }
            break
        }

        // The signature: the last separator line above the history, when text precedes it.
        if let sig = lines[..<cut].lastIndex(where: { $0 == "-- " || $0 == "--" }),
           lines[..<sig].contains(where: { !$0.trimmedWhitespace.isEmpty }),
           lines[sig] == "-- " || lines[(sig + 1)..<cut].filter({ !$0.trimmedWhitespace.isEmpty }).count <= 10 {
            cut = sig
        }

        let newText = trimmed(lines[..<cut])
        let removed = trimmed(lines[cut...])
        return (newText, removed.isEmpty ? nil : removed)
    }

    /// The index of the first line of the quoted history, nil when there is none.
    static func historyStart(_ lines: [String]) -> Int? {
        for i in lines.indices {
            let line = lines[i].trimmedWhitespace
            if line.isEmpty { continue }
            if isForwardMarker(line) { return nil }
            if isAttribution(lines, at: i) || isOriginalMessageMarker(line) || isOutlookHeaderBlock(lines, at: i) {
                return i
            }
            if line.hasPrefix(">") && quoteRunsToEnd(lines, from: i) { return i }
        }
        return nil
    }

    /// Attribution lines: "On … wrote:" and its localised forms, possibly wrapped.
    static func isAttribution(_ lines: [String], at i: Int) -> Bool {
        let first = lines[i].trimmedWhitespace
        guard let pattern = attributionPatterns.first(where: { first.hasPrefix($0.start) }) else { return false }
        var joined = first
        for extra in 0..<3 {
            if extra > 0 {
                let next = i + extra
                guard next < lines.count else { return false }
                let line = lines[next].trimmedWhitespace
                if line.isEmpty { return false }
                joined += " " + line
            }
            if joined.count > 400 { return false }
            let normalized = joined.replacingNBSP
            if pattern.ends.contains(where: { normalized.hasSuffix($0) }),
               pattern.middle.map({ normalized.contains($0) }) ?? true {
                return true
            }
        }
        return false
    }

    /// How an attribution starts and ends, per language (`middle`: a word it must contain).
    static let attributionPatterns: [(start: String, ends: [String], middle: String?)] = [
        ("On ", ["wrote:"], nil),                            // English (Gmail, Apple Mail, Thunderbird)
        ("Am ", [":"], " schrieb"),                          // German
        ("Le ", ["a écrit :", "a écrit:"], nil),             // French
        ("El ", ["escribió:", "escribio:"], nil),            // Spanish
        ("Il ", ["ha scritto:"], nil),                       // Italian
        ("Op ", [":"], " schreef"),                          // Dutch
        ("Em ", ["escreveu:"], nil),                         // Portuguese
    ]

    /// "-----Original Message-----" and its localised forms.
    static func isOriginalMessageMarker(_ line: String) -> Bool {
        guard line.hasPrefix("---") else { return false }
        let core = line.trimmingDashesAndSpaces.asciiLowercased
        return ["original message", "ursprüngliche nachricht", "message d'origine", "mensaje original",
                "messaggio originale", "oorspronkelijk bericht", "mensagem original"].contains(core)
    }

    /// Forward markers: the content after them is being passed on, not history.
    static func isForwardMarker(_ line: String) -> Bool {
        let lower = line.asciiLowercased
        if lower == "begin forwarded message:" || lower == "anfang der weitergeleiteten nachricht:" { return true }
        guard line.hasPrefix("--") else { return false }
        let core = line.trimmingDashesAndSpaces.asciiLowercased
        return ["forwarded message", "weitergeleitete nachricht", "message transféré", "mensaje reenviado",
                "messaggio inoltrato", "doorgestuurd bericht", "mensagem encaminhada"].contains(core)
    }

    /// An Outlook header block: "From:" then, within six lines, a sent/date field and a to/subject field.
    static func isOutlookHeaderBlock(_ lines: [String], at i: Int) -> Bool {
        guard hasField(lines[i], fromFields) else { return false }
        var sawSent = false, sawTo = false
        for j in (i + 1)..<min(lines.count, i + 7) {
            let line = lines[j]
            if hasField(line, sentFields) { sawSent = true }
            if hasField(line, toFields) { sawTo = true }
        }
        return sawSent && sawTo
    }

    static let fromFields = ["From", "Von", "De", "Da", "Van"]
    static let sentFields = ["Sent", "Date", "Gesendet", "Datum", "Envoyé", "Date d'envoi", "Enviado", "Enviado el", "Inviato", "Data", "Verzonden"]
    static let toFields = ["To", "Subject", "An", "Betreff", "À", "Objet", "Para", "Asunto", "A", "Oggetto", "Aan", "Onderwerp", "Assunto"]

    /// True when `line` is `Name:` (or `*Name:*`, as Outlook's plain text bolds it) for one of `names`.
    static func hasField(_ line: String, _ names: [String]) -> Bool {
        var t = Substring(line.trimmedWhitespace)
        if t.hasPrefix("*") { t = t.dropFirst() }
        guard let colon = t.firstIndex(of: ":") else { return false }
        let name = String(t[..<colon]).replacingNBSP.trimmedWhitespace
        return names.contains(name)
    }

    /// True when every non-blank line from `i` to the end starts with ">".
    static func quoteRunsToEnd(_ lines: [String], from i: Int) -> Bool {
        lines[i...].allSatisfy { line in
            let t = line.trimmedWhitespace
            return t.isEmpty || t.hasPrefix(">")
        }
    }

    /// The lines joined, without leading blank lines and trailing whitespace.
    static func trimmed(_ lines: ArraySlice<String>) -> String {
        var slice = lines
        while let first = slice.first, first.trimmedWhitespace.isEmpty { slice.removeFirst() }
        var joined = slice.joined(separator: "\n")
        while let last = joined.unicodeScalars.last, last.isMailWhitespace { joined.unicodeScalars.removeLast() }
        return joined
    }
}

extension String {
    /// NBSP (U+00A0) and narrow NBSP (U+202F) turned into plain spaces.
    var replacingNBSP: String {
        String(String.UnicodeScalarView(unicodeScalars.map { ($0.value == 0xA0 || $0.value == 0x202F) ? " " : $0 }))
    }

    /// Without leading and trailing "-", "=" and whitespace (`"----- Original Message -----"` → `"Original Message"`).
    var trimmingDashesAndSpaces: String {
        let scalars = unicodeScalars
        func keep(_ s: Unicode.Scalar) -> Bool { !(s == "-" || s == "=" || s.isMailWhitespace) }
        guard let start = scalars.firstIndex(where: keep) else { return "" }
        let end = scalars.lastIndex(where: keep)!
        return String(scalars[start...end])
    }
}
