/// Reads the message/delivery-status part of an RFC 3464 report.
enum DeliveryStatusParser {
    /// The report's envelope id and per-recipient blocks (`originalMessageID` is left nil: it
    /// comes from another part of the report).
    ///
    /// A block with a Final-Recipient (or, lacking one, an Original-Recipient) field is a
    /// recipient block; an Action missing from it is inferred from the Status class
    /// (5 → failed, 4 → delayed, 2 → delivered, else "unknown").
    static func parse(_ bytes: [UInt8]) -> DeliveryReport {
        let text = String(decoding: TextDecoding.normalizeNewlines(bytes), as: UTF8.self)
        var envelopeID: String?
        var recipients: [DeliveryReport.Recipient] = []
        for block in fieldBlocks(text) {
            if envelopeID == nil, let id = block["original-envelope-id"], !id.isEmpty { envelopeID = id }
            let final = block["final-recipient"].map(addressValue)
            let original = block["original-recipient"].map(addressValue)
            guard let address = final ?? original, !address.isEmpty else { continue }
            let status = block["status"].flatMap(statusCode)
            var action = block["action"].map { firstWord($0).asciiLowercased } ?? ""
            if action.isEmpty { action = inferredAction(status) }
            let diagnostic = block["diagnostic-code"].map(typedValue).flatMap { $0.isEmpty ? nil : $0 }
            recipients.append(DeliveryReport.Recipient(
                address: address, action: action, status: status, diagnostic: diagnostic,
                originalRecipient: (original?.isEmpty ?? true) ? nil : original))
        }
        return DeliveryReport(originalMessageID: nil, originalEnvelopeID: envelopeID, recipients: recipients)
    }

    /// The blocks of `name: value` fields separated by empty lines; names lowercased, folded
    /// lines unfolded, the first occurrence of a field kept.
    static func fieldBlocks(_ text: String) -> [[String: String]] {
        var blocks: [[String: String]] = []
        var current: [String: String] = [:]
        var lastName: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) {
                if !current.isEmpty { blocks.append(current) }
                current = [:]
                lastName = nil
                continue
            }
            if line.first == " " || line.first == "\t" {
                if let name = lastName, let value = current[name] {
                    current[name] = value + " " + String(line).trimmedWhitespace
                }
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon]).trimmedWhitespace.asciiLowercased
            let value = String(line[line.index(after: colon)...]).trimmedWhitespace
            if current[name] == nil {
                current[name] = value
                lastName = name
            } else {
                lastName = nil
            }
        }
        if !current.isEmpty { blocks.append(current) }
        return blocks
    }

    /// `rfc822; <a@b>` → `a@b`.
    static func addressValue(_ value: String) -> String {
        PartWalker.stripAngles(typedValue(value))
    }

    /// The part after the `type;` prefix (`smtp; 550 …` → `550 …`); the whole value when there is no `;`.
    static func typedValue(_ value: String) -> String {
        guard let semi = value.firstIndex(of: ";") else { return value.trimmedWhitespace }
        return String(value[value.index(after: semi)...]).trimmedWhitespace
    }

    /// `5.1.1 (comment)` → `5.1.1`.
    static func statusCode(_ value: String) -> String? {
        let code = firstWord(value)
        return code.isEmpty ? nil : code
    }

    /// The value up to the first space, tab or "(".
    static func firstWord(_ value: String) -> String {
        String(value.trimmedWhitespace.prefix { $0 != " " && $0 != "\t" && $0 != "(" })
    }

    /// The action a status class implies.
    static func inferredAction(_ status: String?) -> String {
        switch status?.first {
        case "5": return "failed"
        case "4": return "delayed"
        case "2": return "delivered"
        default: return "unknown"
        }
    }
}

/// Bounces that are not RFC 3464 reports but follow a fixed, documented text: qmail's QSBMF
/// (cr.yp.to/proto/qsbmf.txt) and Exim's default bounce. Recognised only when the From is
/// MAILER-DAEMON (or postmaster), the copy marker is present, at least one failed recipient is
/// listed and the copied headers hold a Message-ID.
enum PlainTextBounce {
    static let qmailMarker = "--- Below this line is a copy of the message."
    static let eximMarkers = ["------ This is a copy of the message, including all the headers. ------",
                              "------ This is a copy of the message's headers. ------",
                              "------ This is a copy of the body of the message, without the headers. ------"]

    /// The report, or nil when the text is not a recognisable plain-text bounce.
    static func parse(text: String, from: MailAddress?, options: OpaquePointer) -> DeliveryReport? {
        guard let sender = from?.address.asciiLowercased,
              sender.hasPrefix("mailer-daemon@") || sender.hasPrefix("postmaster@") || sender == "mailer-daemon" else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let recipients: [DeliveryReport.Recipient]
        let markerIndex: Int
        if let i = lines.firstIndex(where: { $0.trimmedWhitespace == qmailMarker }) {
            markerIndex = i
            recipients = qmailRecipients(Array(lines[..<i]))
        } else if let i = lines.firstIndex(where: { eximMarkers.contains($0.trimmedWhitespace) }) {
            markerIndex = i
            recipients = eximRecipients(Array(lines[..<i]))
        } else {
            return nil
        }
        guard !recipients.isEmpty else { return nil }
        var copy = Array(lines[(markerIndex + 1)...])
        while let first = copy.first, first.trimmedWhitespace.isEmpty { copy.removeFirst() }
        let block = copy.joined(separator: "\r\n")
        guard let messageID = PartWalker.messageID(inHeaders: Array(block.utf8), options: options) else { return nil }
        return DeliveryReport(originalMessageID: messageID, originalEnvelopeID: nil, recipients: recipients)
    }

    /// QSBMF: each recipient paragraph starts with `<address>:` and the lines up to the next
    /// empty line are its description.
    static func qmailRecipients(_ lines: [String]) -> [DeliveryReport.Recipient] {
        var result: [DeliveryReport.Recipient] = []
        var i = 0
        while i < lines.count {
            let line = lines[i].trimmedWhitespace
            if line.hasPrefix("<"), line.hasSuffix(">:"), line.contains("@") {
                let address = String(line.dropFirst().dropLast(2))
                var description: [String] = []
                i += 1
                while i < lines.count, !lines[i].trimmedWhitespace.isEmpty, !lines[i].hasPrefix("<") {
                    description.append(lines[i].trimmedWhitespace)
                    i += 1
                }
                result.append(recipient(address, description))
                continue
            }
            i += 1
        }
        return result
    }

    /// Exim: after "The following address(es) failed:", each address is indented by two spaces
    /// and its diagnostic lines by more.
    static func eximRecipients(_ lines: [String]) -> [DeliveryReport.Recipient] {
        guard let start = lines.firstIndex(where: { $0.contains("address(es) failed:") }) else { return [] }
        var result: [DeliveryReport.Recipient] = []
        var address: String?
        var description: [String] = []
        func finish() {
            if let address { result.append(recipient(address, description)) }
            address = nil
            description = []
        }
        for line in lines[(start + 1)...] {
            if line.trimmedWhitespace.isEmpty { continue }
            let indent = line.prefix { $0 == " " || $0 == "\t" }.count
            if indent == 0 { break }
            if indent <= 2 {
                finish()
                let token = String(line.trimmedWhitespace.prefix { $0 != " " && $0 != "\t" })
                if token.contains("@") { address = PartWalker.stripAngles(token) }
            } else if address != nil {
                description.append(line.trimmedWhitespace)
            }
        }
        finish()
        return result
    }

    /// A failed recipient; the status is the first `x.y.z` enhanced code in the description.
    static func recipient(_ address: String, _ description: [String]) -> DeliveryReport.Recipient {
        let diagnostic = description.joined(separator: " ")
        return DeliveryReport.Recipient(
            address: address, action: "failed", status: enhancedStatus(in: diagnostic),
            diagnostic: diagnostic.isEmpty ? nil : diagnostic)
    }

    /// The first RFC 3463 enhanced status code (`5.1.1`) in `text`.
    static func enhancedStatus(in text: String) -> String? {
        let chars = Array(text.utf8)
        func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
        var i = 0
        while i < chars.count {
            let c = chars[i]
            let boundaryBefore = i == 0 || !(isDigit(chars[i - 1]) || chars[i - 1] == 46)
            if boundaryBefore, c == 50 || c == 52 || c == 53, i + 1 < chars.count, chars[i + 1] == 46 {
                var j = i + 2
                let d1 = j
                while j < chars.count, isDigit(chars[j]), j - d1 < 3 { j += 1 }
                if j > d1, j < chars.count, chars[j] == 46 {
                    j += 1
                    let d2 = j
                    while j < chars.count, isDigit(chars[j]), j - d2 < 3 { j += 1 }
                    let boundaryAfter = j >= chars.count || !(isDigit(chars[j]))
                    if j > d2, boundaryAfter {
                        return String(decoding: chars[i..<j], as: UTF8.self)
                    }
                }
            }
            i += 1
        }
        return nil
    }
}
