import ChorusJSON
import ChorusModel
import EmailMIME

/// Turns a parsed mail into Chorus events (docs/connectors/email.md, "Inbound mapping"). No I/O.
struct EmailInbound {
    /// The instance's mailbox address (`channel_ids.account`).
    let account: String
    /// Prefix of media refs (`/webhooks/<instance>/media/`).
    let mediaPathPrefix: String
    /// Absolute base for media URLs, when the operator gave `public_base_url`.
    let publicBaseURL: String?

    /// HTML kept in `context.html` up to this size; larger bodies are noted as truncated.
    static let maxContextHTML = 256 << 10

    /// The Message-ID used for dedup and threading: the header's, or for mail without one a
    /// stable digest of the raw message (so a redelivery of the same bytes is still stored once).
    static func messageID(_ mail: ParsedMail, raw: [UInt8]) -> String {
        if let id = mail.messageID, !id.isEmpty { return id }
        return "sha256." + MediaFiles.sha256Hex(raw) + "@chorus.invalid"
    }

    /// Who a reply to this mail goes to: its Reply-To, else its From.
    static func replyAddresses(_ mail: ParsedMail) -> [String] {
        let r = mail.replyTo.map { $0.address.lowercased() }.filter { !$0.isEmpty }
        if !r.isEmpty { return r }
        return mail.from.map { [$0.address.lowercased()] } ?? []
    }

    static func participant(_ a: MailAddress, role: String?) -> JSONValue {
        var p: JSONObject = ["id": .string(a.address.lowercased()), "email": .string(a.address)]
        if let n = a.name, !n.isEmpty { p["name"] = .string(n) }
        if let role { p["role"] = .string(role) }
        return .object(p)
    }

    static func kind(_ contentType: String) -> String {
        if contentType.hasPrefix("image/") { return "image" }
        if contentType.hasPrefix("video/") { return "video" }
        if contentType.hasPrefix("audio/") { return "audio" }
        return "file"
    }

    /// The `message` event of `mail` in conversation `chat`; `stored` holds the digest of each attachment, in order.
    func messageEvent(_ mail: ParsedMail, messageID: String, chat: String, stored: [String], transport: String,
                      envelope: (from: String, recipients: [String])? = nil) -> JSONValue {
        var parts: [JSONValue] = []
        if !mail.newText.isEmpty || mail.attachments.isEmpty {
            parts.append(["type": "text", "text": .string(mail.newText)])
        }
        for (a, digest) in zip(mail.attachments, stored) {
            let ref = mediaPathPrefix + digest
            var p: JSONObject = ["type": "media", "kind": .string(EmailInbound.kind(a.contentType)), "ref": .string(ref),
                                 "mime_type": .string(a.contentType), "size": .int(Int64(a.data.count)), "sha256": .string(digest)]
            if let base = publicBaseURL { p["url"] = .string(base + ref) }
            if let f = a.filename, !f.isEmpty { p["file_name"] = .string(f) }
            parts.append(.object(p))
            if parts.count == 100 { break }
        }
        var ids: JSONObject = ["message": .string(messageID), "chat": .string(chat), "account": .string(account)]
        if chat.hasPrefix("<") { ids["thread"] = .string(String(chat.dropFirst().dropLast())) }
        var event: JSONObject = [
            "type": "message", "direction": "inbound", "channel_ids": .object(ids), "parts": .array(parts),
        ]
        if let from = mail.from {
            event["sender"] = EmailInbound.participant(from, role: "customer")
        } else {
            event["sender"] = ["id": .string(envelope?.from.lowercased() ?? "unknown"), "role": "customer"]
        }
        let others = (mail.to + mail.cc).filter { $0.address.lowercased() != account && !$0.address.isEmpty }
        if !others.isEmpty { event["participants"] = .array(others.prefix(10_000).map { EmailInbound.participant($0, role: nil) }) }
        if let d = mail.date { event["timestamp"] = .string(Timestamp.format(epochSeconds: d)) }
        if let parent = mail.inReplyTo.last { event["reply_to"] = ["channel_message_id": .string(parent)] }
        event["context"] = .object(context(mail, transport: transport, envelope: envelope))
        return .object(event)
    }

    func context(_ mail: ParsedMail, transport: String, envelope: (from: String, recipients: [String])?) -> JSONObject {
        var c: JSONObject = ["subject": .string(mail.subject), "transport": .string(transport)]
        func list(_ a: [MailAddress]) -> JSONValue {
            .array(a.map { a in
                var o: JSONObject = ["address": .string(a.address)]
                if let n = a.name, !n.isEmpty { o["name"] = .string(n) }
                return .object(o)
            })
        }
        if !mail.to.isEmpty { c["to"] = list(mail.to) }
        if !mail.cc.isEmpty { c["cc"] = list(mail.cc) }
        if !mail.replyTo.isEmpty { c["reply_to"] = list(mail.replyTo) }
        if !mail.references.isEmpty { c["references"] = .array(mail.references.map { .string($0) }) }
        if let q = mail.quotedText, !q.isEmpty { c["quoted_text"] = .string(q) }
        if let h = mail.html {
            if h.utf8.count <= EmailInbound.maxContextHTML { c["html"] = .string(h) } else { c["html_truncated"] = .int(Int64(h.utf8.count)) }
        }
        if mail.autoSubmitted { c["auto_submitted"] = .bool(true) }
        if let e = envelope {
            c["envelope"] = ["from": .string(e.from), "recipients": .array(e.recipients.map { .string($0) })]
        }
        return c
    }

    /// Status events for a delivery report about a message this instance sent (`failed` for a
    /// failed recipient, `delivered` for a delivered one; delays and relays give none).
    func statusEvents(_ report: DeliveryReport, originalMessageID: String, reportMessageID: String) -> [JSONValue] {
        var out: [JSONValue] = []
        for r in report.recipients {
            var s: JSONObject = ["channel_message_id": .string(originalMessageID), "recipient": .string(r.address)]
            switch r.action {
            case "failed":
                s["state"] = "failed"
                s["retryable"] = .bool(false)
                let code = r.status ?? "5.0.0"
                s["error"] = ["code": .string(code), "title": "bounced",
                              "message": .string(r.diagnostic ?? "the mail to \(r.address) could not be delivered (\(code))")]
            case "delivered":
                s["state"] = "delivered"
            default:
                continue
            }
            out.append([
                "type": "status", "direction": "outbound", "status": .object(s),
                "channel_ids": ["account": .string(account)],
                "dedup_key": .string("dsn:\(reportMessageID):\(r.address.lowercased()):\(r.action)"),
            ])
        }
        return out
    }
}
