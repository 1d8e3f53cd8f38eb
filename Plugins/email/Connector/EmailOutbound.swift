import ChorusConnectorSDK
import ChorusJSON
import EmailMIME

/// An outbound message rendered for email (docs/connectors/email.md, "Outbound mapping"). No I/O:
/// attachments are named here and fetched by the connector.
struct EmailOutbound: Sendable {
    /// A part email cannot carry, or a message that would be empty.
    struct Refusal: Error {
        let code: String
        let message: String
    }

    /// Where an attachment's bytes come from.
    enum Source: Equatable, Sendable {
        /// An http(s) URL, fetched by the connector.
        case url(String)
        /// A file this instance stored (a `ref` of its own media route).
        case stored(sha256: String)
    }

    struct Attachment: Equatable, Sendable {
        var source: Source
        var fileName: String?
        var mimeType: String?
    }

    var text: String
    var html: String?
    var attachments: [Attachment]

    /// Renders `parts`; `mediaPathPrefix` recognises refs of this instance's stored media.
    init(parts: [JSONValue], mediaPathPrefix: String) throws {
        var texts: [String] = []
        var htmls: [String] = []
        var attachments: [Attachment] = []
        for (i, p) in parts.enumerated() {
            let type = p["type"]?.stringValue ?? ""
            switch type {
            case "text":
                let t = p["text"]?.stringValue ?? ""
                if p["format"]?.stringValue == "html" {
                    htmls.append(t)
                    let plain = HTMLText.plainText(t)
                    texts.append(plain.text)
                } else if !t.isEmpty {
                    texts.append(t)
                    htmls.append(EmailOutbound.escapeHTML(t))
                }
            case "media":
                let source: Source
                if let ref = p["ref"]?.stringValue, ref.hasPrefix(mediaPathPrefix) {
                    source = .stored(sha256: String(ref.dropFirst(mediaPathPrefix.count)))
                } else if let url = p["url"]?.stringValue, url.hasPrefix("https://") || url.hasPrefix("http://") {
                    source = .url(url)
                } else {
                    throw Refusal(code: "unsupported_media",
                                  message: "parts[\(i)]: email attaches media from an http(s) url or a ref of this instance's own media (\(mediaPathPrefix)…)")
                }
                var name = p["file_name"]?.stringValue
                if name == nil || name!.isEmpty, case .url(let u) = source {
                    let last = u.split(separator: "?").first.flatMap { $0.split(separator: "/").last }.map(String.init)
                    name = (last?.isEmpty ?? true) ? nil : last
                }
                attachments.append(Attachment(source: source, fileName: name, mimeType: p["mime_type"]?.stringValue))
                if let c = p["caption"]?.stringValue, !c.isEmpty {
                    texts.append(c)
                    htmls.append(EmailOutbound.escapeHTML(c))
                }
            case "location", "contact", "payment_request", "product", "interactive":
                let rendered: String
                switch type {
                case "location": rendered = PlainTextParts.location(p)
                case "contact": rendered = PlainTextParts.contact(p)
                case "payment_request": rendered = PlainTextParts.payment(p)
                case "product": rendered = PlainTextParts.product(p)
                default:
                    guard let r = PlainTextParts.interactive(p, choicePrompt: "Reply with the number of your choice.") else {
                        throw Refusal(code: "unsupported", message: "parts[\(i)]: email cannot show an interactive \(p["style"]?.stringValue ?? "") message")
                    }
                    rendered = r
                }
                texts.append(rendered)
                htmls.append(EmailOutbound.escapeHTML(rendered))
            default:
                throw Refusal(code: "unsupported", message: "parts[\(i)]: email cannot send a \(type) part")
            }
        }
        text = texts.joined(separator: "\n\n")
        let anyHTMLPart = parts.contains { $0["type"]?.stringValue == "text" && $0["format"]?.stringValue == "html" }
        html = anyHTMLPart ? htmls.joined(separator: "\n") : nil
        self.attachments = attachments
        if text.isEmpty && (html ?? "").isEmpty && attachments.isEmpty {
            throw Refusal(code: "empty_message", message: "the message has neither text nor attachments")
        }
    }

    /// Text as HTML: entities escaped, links kept as text, line breaks as `<br>`.
    static func escapeHTML(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "\n": out += "<br>\n"
            default: out.append(c)
            }
        }
        return "<p>" + out + "</p>"
    }

    /// "Re: " + the thread's subject, unless it already starts with a reply marker.
    static func replySubject(_ subject: String) -> String {
        let base = ThreadBook.baseSubject(subject)
        return base.isEmpty ? "Re:" : "Re: " + base
    }
}
