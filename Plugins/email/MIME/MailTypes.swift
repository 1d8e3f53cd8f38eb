/// A mailbox: an address with an optional display name (decoded, UTF-8).
public struct MailAddress: Equatable, Sendable {
    /// The display name, RFC 2047 decoded; nil when the header gave none.
    public var name: String?
    /// The addr-spec, `local@domain`.
    public var address: String
    /// A mailbox from its parts.
    public init(name: String? = nil, address: String) {
        self.name = name
        self.address = address
    }
}

/// A MIME leaf part that is not the message body: a file, an inline image, a forwarded message.
public struct MailAttachment: Sendable, Equatable {
    /// The file name, decoded from RFC 2231 or RFC 2047 form, UTF-8; nil when the part names none.
    public var filename: String?
    /// `type/subtype`, lowercased, without parameters (`image/png`).
    public var contentType: String
    /// The Content-ID without angle brackets.
    public var contentID: String?
    /// True for `Content-Disposition: inline` and for the referenced (non-root) parts of a multipart/related.
    public var inline: Bool
    /// The content, transfer-decoded (base64, quoted-printable, uuencode undone).
    public var data: [UInt8]
    /// An attachment from its parts.
    public init(filename: String?, contentType: String, contentID: String? = nil, inline: Bool = false, data: [UInt8]) {
        self.filename = filename
        self.contentType = contentType
        self.contentID = contentID
        self.inline = inline
        self.data = data
    }
}

/// A delivery status notification (a bounce): RFC 3464 `multipart/report; report-type=delivery-status`,
/// or a qmail / Exim plain-text bounce whose copy of the original headers names its Message-ID.
public struct DeliveryReport: Sendable, Equatable {
    /// One per-recipient block of the report.
    public struct Recipient: Sendable, Equatable {
        /// The Final-Recipient address, without its address type (`rfc822;`).
        public var address: String
        /// The Action, lowercased: "failed", "delayed", "delivered", "relayed" or "expanded".
        public var action: String
        /// The Status code (`5.1.1`), without comments; nil when absent.
        public var status: String?
        /// The Diagnostic-Code text without its type (`smtp;`), unfolded; nil when absent.
        public var diagnostic: String?
        /// The Original-Recipient address (the one the sender addressed, before aliasing), when the report gives it.
        public var originalRecipient: String?
        /// A recipient block from its parts.
        public init(address: String, action: String, status: String? = nil, diagnostic: String? = nil, originalRecipient: String? = nil) {
            self.address = address
            self.action = action
            self.status = status
            self.diagnostic = diagnostic
            self.originalRecipient = originalRecipient
        }
    }
    /// The Message-ID (without <>) of the mail that bounced: from the text/rfc822-headers or
    /// message/rfc822 part, else from the report's own In-Reply-To / References.
    public var originalMessageID: String?
    /// The Original-Envelope-Id of the report (the ENVID the sender gave at MAIL FROM).
    public var originalEnvelopeID: String?
    /// The per-recipient blocks, in report order.
    public var recipients: [Recipient]
    /// A report from its parts.
    public init(originalMessageID: String?, originalEnvelopeID: String? = nil, recipients: [Recipient]) {
        self.originalMessageID = originalMessageID
        self.originalEnvelopeID = originalEnvelopeID
        self.recipients = recipients
    }
    /// True when any recipient's action is "failed".
    public var isFailure: Bool { recipients.contains { $0.action == "failed" } }
}

/// One received message, decoded. See docs/connectors/email-mime.md for which part becomes what.
public struct ParsedMail: Sendable {
    /// The Message-ID without <>; nil when absent.
    public var messageID: String?
    /// The In-Reply-To msg-ids, without <>.
    public var inReplyTo: [String]
    /// The References msg-ids, without <>, in header order.
    public var references: [String]
    /// The Subject, RFC 2047 decoded; "" when absent.
    public var subject: String
    /// The first From mailbox.
    public var from: MailAddress?
    /// Reply-To mailboxes (groups expanded).
    public var replyTo: [MailAddress]
    /// To mailboxes (groups expanded).
    public var to: [MailAddress]
    /// Cc mailboxes (groups expanded).
    public var cc: [MailAddress]
    /// The Date header as epoch seconds; nil when absent or unparsable.
    public var date: Int64?
    /// The text/plain body, UTF-8 with "\n" line ends (format=flowed undone).
    public var text: String?
    /// The text/html body, UTF-8 with "\n" line ends.
    public var html: String?
    /// What the sender wrote in this message: `text` (or text derived from `html` when there is no
    /// text part) with the signature and the quoted history removed, trimmed.
    public var newText: String
    /// What was removed from the body to make `newText` (signature, then quoted history); nil when nothing.
    public var quotedText: String?
    /// Every leaf part that is not the body, in tree order.
    public var attachments: [MailAttachment]
    /// True for machine-sent mail: Auto-Submitted other than "no", Precedence bulk/junk/list,
    /// X-Autoreply/X-Autorespond, a null Return-Path (`<>`), a From of MAILER-DAEMON@…, any
    /// multipart/report, or a recognised bounce.
    public var autoSubmitted: Bool
    /// Set for a bounce: RFC 3464 delivery-status reports, and qmail / Exim plain-text bounces.
    public var deliveryReport: DeliveryReport?
    /// Every top-level header in order, names as written, values unfolded and RFC 2047 decoded.
    public var headers: [(name: String, value: String)]

    /// The value of the first top-level header with this name (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveEquals(name) }?.value
    }
}

/// Input that is not a mail (or a mail that cannot be built), with a message saying why.
public struct MailParseError: Error, CustomStringConvertible, Equatable {
    /// What is wrong, for logs and error replies.
    public var description: String
    /// An error with this message.
    public init(_ description: String) { self.description = description }
}

/// A message to send. `MailBuilder.build` turns it into RFC 5322 bytes.
public struct OutgoingMail: Sendable {
    /// The From mailbox.
    public var from: MailAddress
    /// The To mailboxes.
    public var to: [MailAddress]
    /// The Cc mailboxes.
    public var cc: [MailAddress]
    /// The Reply-To mailboxes.
    public var replyTo: [MailAddress]
    /// The subject (any Unicode; RFC 2047 encoded when not ASCII).
    public var subject: String
    /// The text/plain body.
    public var text: String?
    /// The text/html body.
    public var html: String?
    /// The Message-ID without <> (`MailBuilder.newMessageID(domain:)` makes one).
    public var messageID: String
    /// The Date, epoch seconds (written in UTC, `+0000`).
    public var date: Int64
    /// The msg-id this replies to, without <>.
    public var inReplyTo: String?
    /// The References msg-ids, without <>, oldest first.
    public var references: [String]
    /// Attachments; inline ones with a contentID go in a multipart/related next to the html.
    public var attachments: [MailAttachment]
    /// More headers, appended after the standard ones (values RFC 2047 encoded when not ASCII).
    public var extraHeaders: [(name: String, value: String)]
    /// A message with no body, no Cc/Reply-To, no attachments and no threading headers yet.
    public init(from: MailAddress, to: [MailAddress], subject: String, messageID: String, date: Int64) {
        self.from = from
        self.to = to
        self.cc = []
        self.replyTo = []
        self.subject = subject
        self.text = nil
        self.html = nil
        self.messageID = messageID
        self.date = date
        self.inReplyTo = nil
        self.references = []
        self.attachments = []
        self.extraHeaders = []
    }
}

extension String {
    /// ASCII case-insensitive comparison (header names, media types, keywords).
    func caseInsensitiveEquals(_ other: String) -> Bool {
        let a = utf8, b = other.utf8
        guard a.count == b.count else { return false }
        return zip(a, b).allSatisfy { asciiLower($0) == asciiLower($1) }
    }

    /// The string with ASCII letters lowercased (other characters unchanged).
    var asciiLowercased: String {
        String(decoding: utf8.map(asciiLower), as: UTF8.self)
    }

    /// The string without leading and trailing spaces, tabs, CR and LF.
    var trimmedWhitespace: String {
        let scalars = unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.isMailWhitespace }) else { return "" }
        let end = scalars.lastIndex(where: { !$0.isMailWhitespace })!
        return String(scalars[start...end])
    }
}

@inline(__always) func asciiLower(_ c: UInt8) -> UInt8 { (c >= 65 && c <= 90) ? c + 32 : c }

extension Unicode.Scalar {
    /// Space, tab, CR, LF, form feed, vertical tab, or NBSP.
    var isMailWhitespace: Bool {
        switch value {
        case 0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C, 0xA0: return true
        default: return false
        }
    }
}
