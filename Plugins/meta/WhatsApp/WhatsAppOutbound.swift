import ChorusJSON
import MetaGraph

/// Why a send cannot be mapped to the Cloud API (a permanent failure).
struct OutboundRefusal: Error, CustomStringConvertible {
    let code: String
    let message: String
    init(_ code: String, _ message: String) { self.code = code; self.message = message }
    var description: String { message }
}

/// What one send becomes: Cloud API calls to make in order.
struct OutboundPlan {
    /// Bodies for `POST /{phone-number-id}/messages`.
    var calls: [JSONValue]
    /// Whether every call is a template (allowed outside the customer-service window).
    var templatesOnly: Bool
    /// Whether this is a read receipt / typing indicator (`{"success": true}` answers, no message id).
    var isStatusUpdate: Bool
    /// Media to upload (`POST /{phone-number-id}/media`) before the call at that index; its id goes into the call.
    var uploads: [Int: MediaUpload] = [:]
    /// Whether the send needs no call at all (typing off).
    var isNoop: Bool { calls.isEmpty }
}

/// A media file the connector uploads to WhatsApp before sending it.
struct MediaUpload {
    enum Source { case file(String), url(String) }
    /// The Cloud API message type (`image`, `document`, …): where the id goes in the call body.
    let waType: String
    let source: Source
    let mimeType: String?
    let fileName: String?
}

/// Maps outbound messages (docs/schema.md, "What a plugin receives") to Cloud API request bodies. Pure: no I/O.
struct WhatsAppOutbound {
    /// `preview_url` when the send's options do not say.
    var previewLinks: Bool
    /// Default catalog for product messages.
    var catalogId: String?
    /// A payment configuration name: payment requests become `order_details` messages.
    var paymentConfiguration: String?
    /// `payment_type` of order_details messages (`upi`, `br`, …).
    var paymentType: String
    /// The connector's inbound media references (`/webhooks/<instance>/media/`): sending one back forwards the media by id.
    var mediaRefPrefix: String = ""
    /// Template used for order-status updates (body parameters: order id, status).
    var orderStatusTemplate: String?
    var orderStatusTemplateLanguage: String

    static let maxTextLength = 4096

    func plan(_ msg: JSONValue, lastInboundMessageId: String?) throws -> OutboundPlan {
        let type = msg["type"]?.stringValue ?? "message"
        let to = msg["to"]?.stringValue ?? ""
        guard !to.isEmpty else { throw OutboundRefusal("invalid_recipient", "the send has no recipient (to)") }
        let base = envelope(to: to)
        switch type {
        case "message":
            return try planMessage(msg, base: base)
        case "reaction":
            guard let target = msg["target"]?["channel_message_id"]?.stringValue else {
                throw OutboundRefusal("missing_target", "a reaction needs target.channel_message_id (a wamid)")
            }
            let remove = msg["reaction"]?["action"]?.stringValue == "remove"
            var b = base
            b["type"] = "reaction"
            b["reaction"] = ["message_id": .string(target), "emoji": .string(remove ? "" : msg["reaction"]?["emoji"]?.stringValue ?? "")]
            return OutboundPlan(calls: [.object(b)], templatesOnly: false, isStatusUpdate: false)
        case "read":
            guard let target = msg["target"]?["channel_message_id"]?.stringValue else {
                throw OutboundRefusal("missing_target", "mark-as-read needs target.channel_message_id (a wamid of an inbound message)")
            }
            return OutboundPlan(calls: [["messaging_product": "whatsapp", "status": "read", "message_id": .string(target)]],
                                templatesOnly: true, isStatusUpdate: true)
        case "typing":
            if msg["typing"]?["state"]?.stringValue == "off" {
                // WhatsApp hides the indicator by itself (after 25 s or at the next message).
                return OutboundPlan(calls: [], templatesOnly: true, isStatusUpdate: true)
            }
            guard let target = msg["target"]?["channel_message_id"]?.stringValue ?? lastInboundMessageId else {
                throw OutboundRefusal("no_inbound_message", "a typing indicator answers an inbound message; none is known for this chat")
            }
            return OutboundPlan(calls: [["messaging_product": "whatsapp", "status": "read", "message_id": .string(target),
                                         "typing_indicator": ["type": "text"]]], templatesOnly: true, isStatusUpdate: true)
        default:
            throw OutboundRefusal("unsupported_type", "WhatsApp Cloud API cannot \(type) a message")
        }
    }

    func envelope(to: String) -> JSONObject {
        var b: JSONObject = ["messaging_product": "whatsapp", "recipient_type": "individual"]
        if to.allSatisfy({ $0.isNumber || $0 == "+" }) { b["to"] = .string(to) } else { b["recipient"] = .string(to) }
        return b
    }

    func planMessage(_ msg: JSONValue, base: JSONObject) throws -> OutboundPlan {
        let parts = msg["parts"]?.arrayValue ?? []
        guard !parts.isEmpty else { throw OutboundRefusal("empty_message", "a message needs at least one part") }
        let preview = msg["options"]?["preview_url"]?.boolValue ?? previewLinks
        let texts = parts.filter { $0["type"]?.stringValue == "text" }.compactMap { $0["text"]?.stringValue }
        let others = parts.filter { $0["type"]?.stringValue != "text" }
        var calls: [JSONObject] = []
        var allTemplates = true
        var plan = OutboundPlan(calls: [], templatesOnly: false, isStatusUpdate: false)

        // Texts become the caption/body of a single other part that can carry one; otherwise their own message.
        let absorbs = others.count == 1 && canCarryBody(others[0])
        let joined = texts.joined(separator: "\n\n")
        if !absorbs || joined.isEmpty {
            for t in texts {
                guard t.unicodeScalars.count <= Self.maxTextLength else {
                    throw OutboundRefusal("text_too_long", "WhatsApp text messages are limited to \(Self.maxTextLength) characters")
                }
                var b = base
                b["type"] = "text"
                b["text"] = ["preview_url": .bool(preview), "body": .string(t)]
                calls.append(b)
                allTemplates = false
            }
        }
        for (i, p) in others.enumerated() {
            let body = absorbs && i == 0 && !joined.isEmpty ? joined : nil
            let (content, isTemplate, upload) = try partPayload(p, body: body, options: msg["options"])
            if let upload { plan.uploads[calls.count] = upload }
            var b = base
            for (k, v) in content { b[k] = v }
            calls.append(b)
            if !isTemplate { allTemplates = false }
        }
        if let reply = msg["reply_to"]?["channel_message_id"]?.stringValue, !calls.isEmpty {
            calls[0]["context"] = ["message_id": .string(reply)]
        }
        plan.calls = calls.map { .object($0) }
        plan.templatesOnly = allTemplates
        return plan
    }

    func canCarryBody(_ p: JSONValue) -> Bool {
        switch p["type"]?.stringValue {
        case "media": return ["image", "video", "file"].contains(p["kind"]?.stringValue ?? "")
        case "interactive", "payment_request", "product": return true
        default: return false
        }
    }

    /// The type-specific fields of one part's message, and whether it is a template.
    func partPayload(_ p: JSONValue, body: String?, options: JSONValue?) throws -> (JSONObject, Bool, MediaUpload?) {
        if p["type"]?.stringValue == "media" {
            let (m, upload) = try media(p, caption: body, uploadURLs: options?["upload_media"]?.boolValue ?? false)
            return (m, false, upload)
        }
        let (content, isTemplate) = try otherPayload(p, body: body)
        return (content, isTemplate, nil)
    }

    func otherPayload(_ p: JSONValue, body: String?) throws -> (JSONObject, Bool) {
        switch p["type"]?.stringValue ?? "" {
        case "location":
            var l: JSONObject = ["latitude": p["latitude"] ?? .null, "longitude": p["longitude"] ?? .null]
            if let n = p["name"] { l["name"] = n }
            if let a = p["address"] { l["address"] = a }
            return (["type": "location", "location": .object(l)], false)
        case "contact": return (["type": "contacts", "contacts": [contact(p)]], false)
        case "interactive": return (["type": "interactive", "interactive": .object(try interactive(p, body: body))], false)
        case "template": return (["type": "template", "template": .object(try template(p))], true)
        case "product":
            guard let catalog = p["catalog_id"]?.stringValue ?? catalogId else {
                throw OutboundRefusal("missing_catalog", "a product message needs catalog_id (in the part or the catalog_id setting)")
            }
            var i: JSONObject = ["type": "product", "action": ["catalog_id": .string(catalog), "product_retailer_id": p["product_id"] ?? .null]]
            if let body, !body.isEmpty { i["body"] = ["text": .string(body)] }
            return (["type": "interactive", "interactive": .object(i)], false)
        case "payment_request": return (try payment(p, body: body), false)
        case "order":
            guard let name = orderStatusTemplate else {
                throw OutboundRefusal("template_required", "order-status updates are sent as a template on WhatsApp: set the order_status_template setting")
            }
            let orderId = p["order_id"]?.stringValue ?? ""
            let status = p["status"]?.stringValue ?? ""
            guard !orderId.isEmpty, !status.isEmpty else {
                throw OutboundRefusal("invalid_order_update", "an order-status update needs order_id and status")
            }
            let t: JSONObject = ["name": .string(name), "language": ["code": .string(orderStatusTemplateLanguage)],
                                 "components": [["type": "body", "parameters": [["type": "text", "text": .string(orderId)], ["type": "text", "text": .string(status)]]]]]
            return (["type": "template", "template": .object(t)], true)
        case let other:
            throw OutboundRefusal("unsupported_part", "WhatsApp cannot send a \(other) part")
        }
    }

    /// A media message: by the channel's id, by link, or uploaded first (a `file://` ref, or a URL with
    /// `options.upload_media`); a ref to media this connector received is forwarded by its id.
    func media(_ p: JSONValue, caption: String?, uploadURLs: Bool) throws -> (JSONObject, MediaUpload?) {
        let kind = p["kind"]?.stringValue ?? ""
        let waType: String
        switch kind {
        case "image": waType = "image"
        case "video": waType = "video"
        case "audio", "voice": waType = "audio"
        case "file": waType = "document"
        case "sticker": waType = "sticker"
        default: throw OutboundRefusal("unsupported_media", "unknown media kind \(kind)")
        }
        var m = JSONObject()
        var upload: MediaUpload?
        let fileName = p["file_name"]?.stringValue
        let mime = p["mime_type"]?.stringValue
        if let id = p["channel_media_id"]?.stringValue {
            m["id"] = .string(id)
        } else if let ref = p["ref"]?.stringValue, !mediaRefPrefix.isEmpty, ref.hasPrefix(mediaRefPrefix), ref.count > mediaRefPrefix.count {
            m["id"] = .string(percentDecodePathSegment(String(ref.dropFirst(mediaRefPrefix.count))))
        } else if let ref = p["ref"]?.stringValue, ref.hasPrefix("file://") {
            let path = String(ref.dropFirst("file://".count))
            guard path.hasPrefix("/") else { throw OutboundRefusal("invalid_media_ref", "file refs must be absolute: file:///path") }
            upload = MediaUpload(waType: waType, source: .file(path), mimeType: mime, fileName: fileName ?? path.split(separator: "/").last.map(String.init))
        } else if let url = p["url"]?.stringValue {
            if uploadURLs {
                upload = MediaUpload(waType: waType, source: .url(url), mimeType: mime, fileName: fileName)
            } else {
                m["link"] = .string(url)
            }
        } else {
            throw OutboundRefusal("missing_media", "media needs url, channel_media_id, or a file:// ref to upload")
        }
        let cap = p["caption"]?.stringValue ?? caption
        if let cap, !cap.isEmpty, ["image", "video", "document"].contains(waType) { m["caption"] = .string(cap) }
        if waType == "document", let f = fileName { m["filename"] = .string(f) }
        var o = JSONObject()
        o["type"] = .string(waType)
        o[waType] = .object(m)
        return (o, upload)
    }

    func contact(_ p: JSONValue) -> JSONValue {
        var name: JSONObject = ["formatted_name": p["name"]?["formatted"] ?? .null]
        for (src, dst) in [("first", "first_name"), ("last", "last_name"), ("middle", "middle_name"), ("prefix", "prefix"), ("suffix", "suffix")] {
            if let v = p["name"]?[src] { name[dst] = v }
        }
        if name["first_name"] == nil { name["first_name"] = p["name"]?["formatted"] }
        var c: JSONObject = ["name": .object(name)]
        if let phones = p["phones"]?.arrayValue {
            c["phones"] = .array(phones.map { ph in
                var o: JSONObject = ["phone": ph["number"] ?? .null]
                if let t = ph["type"] { o["type"] = t }
                if let w = ph["channel_id"] { o["wa_id"] = w }
                return .object(o)
            })
        }
        if let emails = p["emails"]?.arrayValue {
            c["emails"] = .array(emails.map { e in
                var o: JSONObject = ["email": e["address"] ?? .null]
                if let t = e["type"] { o["type"] = t }
                return .object(o)
            })
        }
        if let v = p["organization"] { c["org"] = v }
        if let v = p["urls"] { c["urls"] = v }
        if let v = p["addresses"] { c["addresses"] = v }
        if let v = p["birthday"] { c["birthday"] = v }
        return .object(c)
    }

    func interactive(_ p: JSONValue, body bodyOverride: String?) throws -> JSONObject {
        let style = p["style"]?.stringValue ?? ""
        var i = JSONObject()
        let bodyText = p["body"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? bodyOverride
        if let h = p["header"]?.stringValue, !h.isEmpty { i["header"] = ["type": "text", "text": .string(h)] }
        if let bodyText { i["body"] = ["text": .string(bodyText)] }
        if let f = p["footer"]?.stringValue, !f.isEmpty { i["footer"] = ["text": .string(f)] }
        let buttons = p["buttons"]?.arrayValue ?? []
        switch style {
        case "buttons", "quick_replies":
            guard buttons.count <= 3 else { throw OutboundRefusal("too_many_buttons", "WhatsApp shows at most 3 reply buttons") }
            guard bodyText != nil else { throw OutboundRefusal("missing_body", "WhatsApp reply buttons need a body text") }
            i["type"] = "button"
            i["action"] = ["buttons": .array(try buttons.map { b in
                guard let title = b["title"]?.stringValue, title.count <= 20 else {
                    throw OutboundRefusal("button_title_too_long", "WhatsApp button titles are at most 20 characters")
                }
                return ["type": "reply", "reply": ["id": b["id"] ?? .string(title), "title": .string(title)]]
            })]
        case "list":
            let sections = p["sections"]?.arrayValue ?? []
            let rows = sections.reduce(0) { $0 + ($1["rows"]?.arrayValue?.count ?? 0) }
            guard rows <= 10 else { throw OutboundRefusal("too_many_rows", "WhatsApp lists have at most 10 rows in all") }
            guard bodyText != nil else { throw OutboundRefusal("missing_body", "WhatsApp lists need a body text") }
            i["type"] = "list"
            i["action"] = ["button": .string(buttons.first?["title"]?.stringValue ?? "Choose"),
                           "sections": .array(sections.map { s in
                               var o: JSONObject = [:]
                               if let t = s["title"] { o["title"] = t }
                               o["rows"] = .array((s["rows"]?.arrayValue ?? []).map { r in
                                   var row: JSONObject = ["id": r["id"] ?? .null, "title": r["title"] ?? .null]
                                   if let d = r["description"] { row["description"] = d }
                                   return .object(row)
                               })
                               return .object(o)
                           })]
        case "cta_url":
            guard buttons.count == 1, let url = buttons[0]["url"]?.stringValue, let title = buttons[0]["title"]?.stringValue else {
                throw OutboundRefusal("invalid_cta", "a WhatsApp call-to-action message has exactly one button with a url and a title")
            }
            guard bodyText != nil else { throw OutboundRefusal("missing_body", "WhatsApp call-to-action messages need a body text") }
            i["type"] = "cta_url"
            i["action"] = ["name": "cta_url", "parameters": ["display_text": .string(title), "url": .string(url)]]
        case "product":
            guard let catalog = p["catalog_id"]?.stringValue ?? catalogId else { throw OutboundRefusal("missing_catalog", "a product message needs catalog_id") }
            i["type"] = "product"
            i["action"] = ["catalog_id": .string(catalog), "product_retailer_id": p["product_id"] ?? .null]
        case "product_list":
            guard let catalog = p["catalog_id"]?.stringValue ?? catalogId else { throw OutboundRefusal("missing_catalog", "a product list needs catalog_id") }
            guard i["header"] != nil, bodyText != nil else {
                throw OutboundRefusal("missing_header", "a WhatsApp multi-product message needs a header and a body text")
            }
            i["type"] = "product_list"
            i["action"] = ["catalog_id": .string(catalog), "sections": .array((p["sections"]?.arrayValue ?? []).map { s in
                var o: JSONObject = ["title": s["title"] ?? "Products"]
                o["product_items"] = .array((s["product_ids"]?.arrayValue ?? []).map { ["product_retailer_id": $0] })
                return .object(o)
            })]
        default:
            throw OutboundRefusal("unsupported_interactive", "WhatsApp cannot show interactive style \(style)")
        }
        return i
    }

    func template(_ p: JSONValue) throws -> JSONObject {
        var components: [JSONValue] = []
        func param(_ v: JSONValue) -> JSONValue {
            if case .string(let s) = v { return ["type": "text", "text": .string(s)] }
            return v
        }
        if let h = p["parameters"]?["header"]?.arrayValue, !h.isEmpty { components.append(["type": "header", "parameters": .array(h.map(param))]) }
        if let b = p["parameters"]?["body"]?.arrayValue, !b.isEmpty { components.append(["type": "body", "parameters": .array(b.map(param))]) }
        for (index, button) in (p["parameters"]?["buttons"]?.arrayValue ?? []).enumerated() {
            switch button {
            case .string(let payload):
                components.append(["type": "button", "sub_type": "quick_reply", "index": .string(String(index)),
                                   "parameters": [["type": "payload", "payload": .string(payload)]]])
            case .object(var o):
                if o["type"] == nil { o["type"] = "button" }
                if o["index"] == nil { o["index"] = .string(String(index)) }
                components.append(.object(o))
            default:
                throw OutboundRefusal("invalid_template", "template button parameters are strings (quick-reply payloads) or component objects")
            }
        }
        components.append(contentsOf: p["components"]?.arrayValue ?? [])
        var t: JSONObject = ["name": p["name"] ?? .null, "language": ["code": p["language"] ?? .null]]
        if !components.isEmpty { t["components"] = .array(components) }
        return t
    }

    func payment(_ p: JSONValue, body: String?) throws -> JSONObject {
        let amount = p["amount"]?.intValue ?? 0
        let currency = p["currency"]?.stringValue ?? ""
        let pretty = MetaConvert.decimal(minorUnits: amount, currency: currency) + " " + currency
        let text = body ?? p["description"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 + " — " + pretty } ?? "Amount due: " + pretty
        if let config = paymentConfiguration {
            // order_details: the richest form, where a payment configuration exists for the number.
            let exp = MetaConvert.minorUnitExponent(currency)
            let ref = p["order_id"]?.stringValue ?? p["provider_reference"]?.stringValue ?? ""
            guard !ref.isEmpty else { throw OutboundRefusal("missing_reference", "an order_details payment needs order_id or provider_reference") }
            var params: JSONObject = ["reference_id": .string(ref), "type": "digital-goods", "payment_type": .string(paymentType),
                                      "payment_configuration": .string(config), "currency": .string(currency),
                                      "total_amount": ["value": .int(amount), "offset": .int(pow10(exp))]]
            var order: JSONObject = ["status": "pending",
                                     "items": [["retailer_id": .string(ref), "name": .string(p["description"]?.stringValue ?? ref),
                                                "amount": ["value": .int(amount), "offset": .int(pow10(exp))], "quantity": 1]],
                                     "subtotal": ["value": .int(amount), "offset": .int(pow10(exp))]]
            if let exp = p["expires_at"]?.stringValue, let secs = epochSeconds(rfc3339: exp) {
                order["expiration"] = ["timestamp": .string(String(secs)), "description": "Payment link expires"]
            }
            params["order"] = .object(order)
            return ["type": "interactive", "interactive": ["type": "order_details", "body": ["text": .string(text)],
                                                           "action": ["name": "review_and_pay", "parameters": .object(params)]]]
        }
        guard let link = p["link"]?.stringValue else {
            throw OutboundRefusal("missing_link", "a WhatsApp payment request needs a link (or a payment_configuration setting for order_details)")
        }
        return ["type": "interactive", "interactive": ["type": "cta_url", "body": ["text": .string(text)],
                                                       "action": ["name": "cta_url", "parameters": ["display_text": "Pay now", "url": .string(link)]]]]
    }

    func pow10(_ n: Int) -> Int64 { var v: Int64 = 1; for _ in 0..<n { v *= 10 }; return v }

    /// Epoch seconds of an RFC 3339 timestamp (`2026-11-24T10:00:00Z`, offsets allowed), nil when malformed.
    func epochSeconds(rfc3339 s: String) -> Int64? {
        let b = Array(s.utf8)
        guard b.count >= 20 else { return nil }
        func num(_ r: Range<Int>) -> Int64? { Int64(String(decoding: b[r], as: UTF8.self)) }
        guard let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10), let h = num(11..<13), let mi = num(14..<16), let se = num(17..<19) else { return nil }
        var offset: Int64 = 0
        if let sign = b.lastIndex(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }), sign > 18, b.count - sign == 6,
           let oh = num((sign + 1)..<(sign + 3)), let om = num((sign + 4)..<(sign + 6)) {
            offset = (oh * 3600 + om * 60) * (b[sign] == UInt8(ascii: "-") ? -1 : 1)
        }
        let yy = mo <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return days * 86_400 + h * 3600 + mi * 60 + se - offset
    }
}
