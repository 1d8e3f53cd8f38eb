import ChorusConnectorSDK
import ChorusJSON

/// A send Slack cannot carry: reported as a permanent failure with `code`.
public struct SlackPlanError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: String
    public let message: String
    public init(_ code: String, _ message: String) { self.code = code; self.message = message }
    public var description: String { "\(code): \(message)" }
}

/// One Web API step of a send.
public enum SlackStep: Sendable, Equatable {
    /// A Web API method with a JSON body (`chat.postMessage`, `chat.update`, `chat.delete`, `reactions.add`, …).
    case call(method: String, body: JSONValue)
    /// A file upload (files.getUploadURLExternal, POST to the upload URL, files.completeUploadExternal) of the
    /// file fetched from `source` (an http(s) URL).
    case upload(source: String, fileName: String, title: String?, initialComment: String?, channel: String, threadTs: String?)

    /// The Web API method the step starts with (for rate-limit holds).
    public var firstMethod: String {
        switch self {
        case .call(let m, _): return m
        case .upload: return "files.getUploadURLExternal"
        }
    }
}

/// The Web API calls that deliver one outbound message, in order.
public struct SlackPlan: Sendable, Equatable {
    /// The channel (conversation id) the send goes to.
    public var channel: String
    public var steps: [SlackStep]
    /// For chat.update / chat.delete / reactions.*: the channel message id to report (the target).
    public var targetMessageId: String?
}

/// Builds `SlackPlan`s from outbound messages (docs/schema.md, "What a plugin receives").
public enum SlackOutbound {
    /// Slack's limit on `text` (longer messages are truncated by Slack, so they are refused instead).
    public static let maxTextLength = 40_000
    /// Slack's limits on Block Kit: 50 blocks a message, 25 elements an actions block, 3000 characters a section.
    static let maxBlocks = 50, maxActions = 25, maxSectionText = 3000, maxButtonText = 75, maxOptions = 100

    public static func plan(_ m: JSONValue) throws(SlackPlanError) -> SlackPlan {
        let type = m["type"]?.stringValue ?? "message"
        let to = m["to"]?.stringValue ?? ""
        switch type {
        case "message":
            guard !to.isEmpty else { throw SlackPlanError("missing_recipient", "the message has no \"to\" (a Slack channel id)") }
            return try message(m, channel: to)
        case "edit":
            let (channel, ts) = try target(m, fallbackChannel: to)
            let content = try content(m["parts"]?.arrayValue ?? [], allowUploads: false, channel: channel, threadTs: nil)
            var body: JSONObject = ["channel": .string(channel), "ts": .string(ts), "text": .string(content.text)]
            body["blocks"] = .array(content.blocks)
            return SlackPlan(channel: channel, steps: [.call(method: "chat.update", body: .object(body))], targetMessageId: "\(channel):\(ts)")
        case "delete":
            let (channel, ts) = try target(m, fallbackChannel: to)
            return SlackPlan(channel: channel, steps: [.call(method: "chat.delete", body: ["channel": .string(channel), "ts": .string(ts)])],
                             targetMessageId: "\(channel):\(ts)")
        case "reaction":
            let (channel, ts) = try target(m, fallbackChannel: to)
            let remove = m["reaction"]?["action"]?.stringValue == "remove"
            guard let emoji = m["reaction"]?["emoji"]?.stringValue, !emoji.isEmpty else {
                throw SlackPlanError("missing_emoji", "Slack needs the reaction's name to \(remove ? "remove" : "add") it")
            }
            let name = SlackEmoji.name(forEmoji: emoji)
            guard !name.isEmpty, name.utf8.allSatisfy({ $0 > 32 && $0 != UInt8(ascii: ":") }) else {
                throw SlackPlanError("invalid_name", "\"\(emoji)\" is not an emoji Slack names; use :name: for custom ones")
            }
            let body: JSONValue = ["channel": .string(channel), "timestamp": .string(ts), "name": .string(name)]
            return SlackPlan(channel: channel, steps: [.call(method: remove ? "reactions.remove" : "reactions.add", body: body)],
                             targetMessageId: "\(channel):\(ts)")
        default:
            throw SlackPlanError("unsupported_type", "Slack's Web API has no \(type) for bots")
        }
    }

    /// The target's channel and ts, from `target.channel_message_id` (`"<channel>:<ts>"`).
    static func target(_ m: JSONValue, fallbackChannel: String) throws(SlackPlanError) -> (String, String) {
        guard let id = m["target"]?["channel_message_id"]?.stringValue, !id.isEmpty else {
            throw SlackPlanError("missing_target", "target.channel_message_id is required (the message was not sent through this channel)")
        }
        if let (c, ts) = SlackText.splitMessageId(id), isSlackTs(ts) { return (c, ts) }
        guard !fallbackChannel.isEmpty, isSlackTs(id) else {
            throw SlackPlanError("invalid_target", "target \"\(id)\" is not a Slack message id (<channel>:<ts>)")
        }
        return (fallbackChannel, id)
    }

    /// Whether `s` looks like a Slack message ts (`"1355517523.000005"`).
    static func isSlackTs(_ s: String) -> Bool {
        let pieces = s.split(separator: ".", omittingEmptySubsequences: false)
        return pieces.count == 2 && !pieces[0].isEmpty && !pieces[1].isEmpty
            && pieces.allSatisfy { $0.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }
    }

    /// The thread to post in: `thread_id`, else the ts of `reply_to.channel_message_id`.
    static func threadTs(_ m: JSONValue, channel: String) -> String? {
        if let t = m["thread_id"]?.stringValue, !t.isEmpty { return SlackText.splitMessageId(t)?.ts ?? t }
        if let r = m["reply_to"]?["channel_message_id"]?.stringValue, !r.isEmpty {
            if let (c, ts) = SlackText.splitMessageId(r) { return c == channel ? ts : nil }
            return r
        }
        return nil
    }

    static func message(_ m: JSONValue, channel: String) throws(SlackPlanError) -> SlackPlan {
        let thread = threadTs(m, channel: channel)
        if let thread, !isSlackTs(thread) {
            throw SlackPlanError("invalid_thread_ts", "thread \"\(thread)\" is not a Slack message ts")
        }
        let content = try content(m["parts"]?.arrayValue ?? [], allowUploads: true, channel: channel, threadTs: thread)
        var steps: [SlackStep] = []
        var uploads = content.uploads
        let onlyText = content.blocks.isEmpty
        if !uploads.isEmpty && onlyText && !content.text.isEmpty {
            // Text and files only: the text becomes the first file's comment, so it is one Slack message.
            if case .upload(let s, let f, let t, _, let c, let th) = uploads[0] {
                uploads[0] = .upload(source: s, fileName: f, title: t, initialComment: content.text, channel: c, threadTs: th)
            }
        } else if !content.text.isEmpty || !content.blocks.isEmpty {
            var body: JSONObject = ["channel": .string(channel), "text": .string(content.text)]
            if !content.blocks.isEmpty { body["blocks"] = .array(content.blocks) }
            if onlyText { body["mrkdwn"] = true }
            if let thread { body["thread_ts"] = .string(thread) }
            if let opts = m["options"]?.objectValue {
                for key in ["reply_broadcast", "unfurl_links", "unfurl_media"] {
                    if let b = opts[key]?.boolValue { body[key] = .bool(b) }
                }
            }
            steps.append(.call(method: "chat.postMessage", body: .object(body)))
        }
        steps.append(contentsOf: uploads)
        guard !steps.isEmpty else { throw SlackPlanError("empty_message", "nothing to send") }
        return SlackPlan(channel: channel, steps: steps, targetMessageId: nil)
    }

    struct Content {
        var text: String
        var blocks: [JSONValue]
        var uploads: [SlackStep]
    }

    /// Text, Block Kit blocks and uploads for a message's parts. `text` is always set (it is the notification
    /// and accessibility fallback for blocks).
    static func content(_ parts: [JSONValue], allowUploads: Bool, channel: String, threadTs: String?) throws(SlackPlanError) -> Content {
        guard !parts.isEmpty else { throw SlackPlanError("empty_message", "no parts") }
        var texts: [String] = []
        var blocks: [JSONValue] = []
        var uploads: [SlackStep] = []
        var needsBlocks = false
        for (i, p) in parts.enumerated() {
            let type = p["type"]?.stringValue ?? ""
            switch type {
            case "text":
                let t = p["text"]?.stringValue ?? ""
                texts.append(t)
                blocks.append(contentsOf: sections(t))
            case "interactive":
                needsBlocks = true
                let (fallback, bs) = try interactive(p, index: i)
                texts.append(fallback)
                blocks.append(contentsOf: bs)
            case "payment_request":
                needsBlocks = true
                let (fallback, bs) = try payment(p, index: i)
                texts.append(fallback)
                blocks.append(contentsOf: bs)
            case "media":
                let caption = p["caption"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
                let name = p["file_name"]?.stringValue
                if let url = p["url"]?.stringValue, !url.isEmpty {
                    needsBlocks = true
                    if p["kind"]?.stringValue == "image" || p["kind"]?.stringValue == "sticker" {
                        var img: JSONObject = ["type": "image", "image_url": .string(url), "alt_text": .string(caption ?? name ?? "image")]
                        if let caption { img["title"] = plain(caption, limit: 2000) }
                        blocks.append(.object(img))
                        texts.append(caption ?? url)
                    } else {
                        let label = (name ?? url).replacingAngles()
                        var t = "<\(url)|\(label)>"
                        if let caption { t += "\n" + caption }
                        blocks.append(contentsOf: sections(t))
                        texts.append(caption ?? label)
                    }
                } else if let ref = p["ref"]?.stringValue, ref.hasPrefix("https://") || ref.hasPrefix("http://") {
                    guard allowUploads else { throw SlackPlanError("unsupported_part", "parts[\(i)]: files cannot be replaced by an edit") }
                    let fileName = name ?? (ref.split(separator: "/").last.map { String($0.split(separator: "?").first ?? $0) } ?? "file")
                    uploads.append(.upload(source: ref, fileName: fileName.isEmpty ? "file" : fileName, title: caption, initialComment: nil,
                                           channel: channel, threadTs: threadTs))
                } else {
                    throw SlackPlanError("unsupported_media", "parts[\(i)]: Slack needs a media url (shown as a link or image) or an http(s) ref (uploaded)")
                }
            default:
                throw SlackPlanError("unsupported_part", "parts[\(i)]: Slack cannot send \(type) parts")
            }
        }
        let text = texts.joined(separator: "\n")
        guard text.count <= maxTextLength else { throw SlackPlanError("msg_too_long", "text longer than \(maxTextLength) characters") }
        if !needsBlocks { blocks = [] }
        guard blocks.count <= maxBlocks else { throw SlackPlanError("invalid_blocks", "more than \(maxBlocks) blocks") }
        return Content(text: text, blocks: blocks, uploads: uploads)
    }

    /// Section blocks for mrkdwn text (split at Slack's 3000-character limit).
    static func sections(_ text: String) -> [JSONValue] {
        guard !text.isEmpty else { return [] }
        var out: [JSONValue] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            let chunk = rest.prefix(maxSectionText)
            rest = rest.dropFirst(chunk.count)
            out.append(["type": "section", "text": ["type": "mrkdwn", "text": .string(String(chunk))]])
        }
        return out
    }

    static func plain(_ s: String, limit: Int) -> JSONValue {
        ["type": "plain_text", "text": .string(String(s.prefix(limit))), "emoji": true]
    }

    /// An interactive part as Block Kit: header, body section, an actions block of buttons (value = the
    /// button id) or a static select for lists, and the footer as a context block.
    static func interactive(_ p: JSONValue, index i: Int) throws(SlackPlanError) -> (String, [JSONValue]) {
        let style = p["style"]?.stringValue ?? ""
        var blocks: [JSONValue] = []
        var fallback: [String] = []
        if let h = p["header"]?.stringValue, !h.isEmpty { blocks.append(["type": "header", "text": plain(h, limit: 150)]); fallback.append(h) }
        if let b = p["body"]?.stringValue, !b.isEmpty { blocks.append(contentsOf: sections(b)); fallback.append(b) }
        switch style {
        case "buttons", "quick_replies", "cta_url":
            let buttons = p["buttons"]?.arrayValue ?? []
            guard !buttons.isEmpty, buttons.count <= maxActions else {
                throw SlackPlanError("invalid_blocks", "parts[\(i)]: Slack shows 1 to \(maxActions) buttons, found \(buttons.count)")
            }
            var elements: [JSONValue] = []
            for (j, b) in buttons.enumerated() {
                let title = b["title"]?.stringValue ?? ""
                guard title.count <= maxButtonText else {
                    throw SlackPlanError("invalid_blocks", "parts[\(i)].buttons[\(j)]: Slack button text is at most \(maxButtonText) characters")
                }
                var el: JSONObject = ["type": "button", "text": plain(title, limit: maxButtonText)]
                let id = b["id"]?.stringValue
                el["action_id"] = .string(String((id ?? "url-\(j)").prefix(255)))
                if let id { el["value"] = .string(String(id.prefix(2000))) }
                if let url = b["url"]?.stringValue { el["url"] = .string(url) }
                elements.append(.object(el))
            }
            blocks.append(["type": "actions", "block_id": .string("chorus-\(i)"), "elements": .array(elements)])
        case "list":
            var groups: [JSONValue] = []
            var total = 0
            for s in p["sections"]?.arrayValue ?? [] {
                var options: [JSONValue] = []
                for r in s["rows"]?.arrayValue ?? [] {
                    var o: JSONObject = ["text": plain(r["title"]?.stringValue ?? "", limit: 75), "value": .string(r["id"]?.stringValue ?? "")]
                    if let d = r["description"]?.stringValue, !d.isEmpty { o["description"] = plain(d, limit: 75) }
                    options.append(.object(o))
                }
                total += options.count
                groups.append(["label": plain(s["title"]?.stringValue ?? "Options", limit: 75), "options": .array(options)])
            }
            guard total > 0, total <= maxOptions else {
                throw SlackPlanError("invalid_blocks", "parts[\(i)]: a Slack menu has 1 to \(maxOptions) options, found \(total)")
            }
            let placeholder = p["buttons"]?.arrayValue?.first?["title"]?.stringValue ?? "Choose"
            var select: JSONObject = ["type": "static_select", "action_id": .string("chorus-list-\(i)"), "placeholder": plain(placeholder, limit: 150)]
            if groups.count == 1 { select["options"] = groups[0]["options"] } else { select["option_groups"] = .array(groups) }
            blocks.append(["type": "actions", "block_id": .string("chorus-\(i)"), "elements": [.object(select)]])
        default:
            throw SlackPlanError("unsupported_part", "parts[\(i)]: Slack cannot show interactive style \(style)")
        }
        if let f = p["footer"]?.stringValue, !f.isEmpty {
            blocks.append(["type": "context", "elements": [["type": "mrkdwn", "text": .string(String(f.prefix(3000)))]]])
            fallback.append(f)
        }
        if fallback.isEmpty { fallback.append((p["buttons"]?.arrayValue ?? []).compactMap { $0["title"]?.stringValue }.joined(separator: " · ")) }
        return (fallback.joined(separator: "\n"), blocks)
    }

    /// ISO 4217 currencies without minor units (the rest are shown with two decimals, or three for these).
    static let zeroDecimal: Set<String> = ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"]
    static let threeDecimal: Set<String> = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]

    /// `11499` `EUR` → `"114.99 EUR"`.
    static func formatAmount(_ amount: Int64, _ currency: String) -> String {
        let digits = zeroDecimal.contains(currency) ? 0 : threeDecimal.contains(currency) ? 3 : 2
        guard digits > 0 else { return "\(amount) \(currency)" }
        var div: Int64 = 1
        for _ in 0..<digits { div *= 10 }
        let frac = String(amount % div)
        return "\(amount / div).\(String(repeating: "0", count: digits - frac.count))\(frac) \(currency)"
    }

    /// A payment request as a section with a link button to the payment page.
    static func payment(_ p: JSONValue, index i: Int) throws(SlackPlanError) -> (String, [JSONValue]) {
        guard let link = p["link"]?.stringValue, !link.isEmpty else {
            throw SlackPlanError("unsupported_part", "parts[\(i)]: Slack can only show a payment request with a link")
        }
        let amount = formatAmount(p["amount"]?.intValue ?? 0, p["currency"]?.stringValue ?? "")
        var line = "*Payment request: \(amount)*"
        if let d = p["description"]?.stringValue, !d.isEmpty { line += "\n" + d }
        if let e = p["expires_at"]?.stringValue { line += "\n_Expires \(e)_" }
        let button: JSONValue = ["type": "button", "text": plain("Pay \(amount)", limit: maxButtonText), "url": .string(link),
                                 "action_id": .string("chorus-pay-\(i)"), "style": "primary"]
        return ("Payment request: \(amount) \(link)", [["type": "section", "text": ["type": "mrkdwn", "text": .string(line)], "accessory": button]])
    }
}

extension String {
    /// Escapes the characters Slack's mrkdwn treats as control characters in link labels.
    func replacingAngles() -> String {
        var out = ""
        for c in self {
            switch c {
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "&": out += "&amp;"
            case "|": out += "¦"
            default: out.append(c)
            }
        }
        return out
    }
}
