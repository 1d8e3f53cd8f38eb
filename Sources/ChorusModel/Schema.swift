import ChorusJSON

/// The normalized schema, version 1 (docs/schema.md, schema/chorus-event-v1.schema.json).
public enum Schema {
    public static let version: Int64 = 1

    public static let eventTypes: Set<String> = ["message", "status", "reaction", "edit", "delete", "typing", "read", "conversation"]
    public static let directions: Set<String> = ["inbound", "outbound"]
    public static let partTypes: Set<String> = [
        "text", "media", "location", "contact", "interactive", "interactive_reply", "template",
        "product", "order", "payment_request", "unsupported",
    ]
    public static let mediaKinds: Set<String> = ["image", "audio", "video", "file", "sticker", "voice"]
    public static let textFormats: Set<String> = ["plain", "markdown", "html"]
    public static let statusStates: Set<String> = ["accepted", "sent", "delivered", "read", "failed"]
    public static let interactiveStyles: Set<String> = ["buttons", "list", "quick_replies", "cta_url", "product", "product_list"]
    public static let roles: Set<String> = ["customer", "agent", "bot", "business", "member"]
    /// Outbound `type`s a consumer may send.
    public static let outboundTypes: Set<String> = ["message", "reaction", "edit", "delete", "typing", "read"]
}

/// A violation of the schema, with the JSON path of the offending value.
public struct SchemaError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String
    public init(_ path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Field-level checks shared by inbound events and outbound messages.
struct Check {
    let object: JSONObject
    let path: String

    init(_ value: JSONValue?, _ path: String) throws(SchemaError) {
        guard let value else { throw SchemaError(path, "is required") }
        guard case .object(let o) = value else { throw SchemaError(path, "expected object, found \(value.typeName)") }
        self.object = o
        self.path = path
    }

    func sub(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// Refuses keys outside `keys`. Takes an array: for the handful of keys an object has,
    /// a linear scan is much cheaper than building and hashing a set on every call (hot path).
    func allowOnly(_ keys: [String]) throws(SchemaError) {
        for e in object.entries where !keys.contains(e.key) {
            throw SchemaError(sub(e.key), "unknown field (allowed: \(keys.sorted().joined(separator: ", ")))")
        }
    }

    func allowOnly(_ keys: Set<String>) throws(SchemaError) {
        for e in object.entries where !keys.contains(e.key) {
            throw SchemaError(sub(e.key), "unknown field (allowed: \(keys.sorted().joined(separator: ", ")))")
        }
    }

    func string(_ key: String, required: Bool = false, nonEmpty: Bool = true, oneOf: Set<String>? = nil, maxLength: Int = 65536) throws(SchemaError) -> String? {
        guard let v = object[key], !v.isNull else {
            if required { throw SchemaError(sub(key), "is required") }
            return nil
        }
        guard case .string(let s) = v else { throw SchemaError(sub(key), "expected string, found \(v.typeName)") }
        if nonEmpty && s.isEmpty { throw SchemaError(sub(key), "must not be empty") }
        if s.utf8.count > maxLength { throw SchemaError(sub(key), "longer than \(maxLength) bytes") }
        if let oneOf, !oneOf.contains(s) { throw SchemaError(sub(key), "must be one of \(oneOf.sorted().joined(separator: ", ")), found \"\(s)\"") }
        return s
    }

    func int(_ key: String, required: Bool = false, min: Int64? = nil) throws(SchemaError) -> Int64? {
        guard let v = object[key], !v.isNull else {
            if required { throw SchemaError(sub(key), "is required") }
            return nil
        }
        guard let i = v.intValue else { throw SchemaError(sub(key), "expected integer, found \(v.typeName == "number" ? "a fraction" : v.typeName)") }
        if let min, i < min { throw SchemaError(sub(key), "must be ≥ \(min)") }
        return i
    }

    func number(_ key: String, required: Bool = false, range: ClosedRange<Double>? = nil) throws(SchemaError) -> Double? {
        guard let v = object[key], !v.isNull else {
            if required { throw SchemaError(sub(key), "is required") }
            return nil
        }
        guard let d = v.doubleValue else { throw SchemaError(sub(key), "expected number, found \(v.typeName)") }
        if let range, !range.contains(d) { throw SchemaError(sub(key), "must be within \(range.lowerBound)…\(range.upperBound)") }
        return d
    }

    func bool(_ key: String) throws(SchemaError) -> Bool? {
        guard let v = object[key], !v.isNull else { return nil }
        guard case .bool(let b) = v else { throw SchemaError(sub(key), "expected boolean, found \(v.typeName)") }
        return b
    }

    func array(_ key: String, required: Bool = false, nonEmpty: Bool = false, max: Int = 1000) throws(SchemaError) -> [JSONValue]? {
        guard let v = object[key], !v.isNull else {
            if required { throw SchemaError(sub(key), "is required") }
            return nil
        }
        guard case .array(let a) = v else { throw SchemaError(sub(key), "expected array, found \(v.typeName)") }
        if nonEmpty && a.isEmpty { throw SchemaError(sub(key), "must not be empty") }
        if a.count > max { throw SchemaError(sub(key), "more than \(max) items") }
        return a
    }

    func objectField(_ key: String, required: Bool = false) throws(SchemaError) -> Check? {
        guard let v = object[key], !v.isNull else {
            if required { throw SchemaError(sub(key), "is required") }
            return nil
        }
        return try Check(v, sub(key))
    }

    func timestamp(_ key: String) throws(SchemaError) -> Int64? {
        guard let v = object[key], !v.isNull else { return nil }
        if case .string(let s) = v {
            guard let ms = Timestamp.parse(s) else { throw SchemaError(sub(key), "expected an RFC 3339 timestamp, found \"\(s)\"") }
            return ms
        }
        throw SchemaError(sub(key), "expected an RFC 3339 timestamp string, found \(v.typeName)")
    }

    func money(_ key: String, required: Bool = false) throws(SchemaError) {
        guard let m = try objectField(key, required: required) else { return }
        try m.allowOnly(["amount", "currency"])
        _ = try m.int("amount", required: true, min: 0)
        try Check.currency(m, "currency")
    }

    static func currency(_ c: Check, _ key: String) throws(SchemaError) {
        let cur = try c.string(key, required: true)!
        guard cur.utf8.count == 3, cur.utf8.allSatisfy({ $0 >= 65 && $0 <= 90 }) else {
            throw SchemaError(c.sub(key), "expected an ISO 4217 code such as \"EUR\", found \"\(cur)\"")
        }
    }
}

/// Validation of content parts (the same rules inbound and outbound).
public enum PartValidator {
    /// Validates `parts` (a non-empty array of part objects).
    public static func validate(parts value: JSONValue?, path: String = "parts") throws(SchemaError) {
        guard let value else { throw SchemaError(path, "is required") }
        guard case .array(let parts) = value else { throw SchemaError(path, "expected array, found \(value.typeName)") }
        if parts.isEmpty { throw SchemaError(path, "must contain at least one part") }
        if parts.count > 100 { throw SchemaError(path, "more than 100 parts") }
        for (i, p) in parts.enumerated() { try validate(part: p, path: "\(path)[\(i)]") }
    }

    public static func validate(part: JSONValue, path: String) throws(SchemaError) {
        let c = try Check(part, path)
        let type = try c.string("type", required: true)!
        switch type {
        case "text":
            try c.allowOnly(["type", "text", "format"])
            _ = try c.string("text", required: true, nonEmpty: false, maxLength: 1 << 20)
            _ = try c.string("format", oneOf: Schema.textFormats)
        case "media":
            try c.allowOnly(["type", "kind", "url", "ref", "channel_media_id", "mime_type", "size", "caption", "file_name", "sha256", "duration_ms", "width", "height"])
            _ = try c.string("kind", required: true, oneOf: Schema.mediaKinds)
            let url = try c.string("url"), ref = try c.string("ref"), mid = try c.string("channel_media_id")
            if url == nil && ref == nil && mid == nil { throw SchemaError(c.sub("url"), "a media part needs one of url, ref or channel_media_id") }
            _ = try c.string("mime_type"); _ = try c.int("size", min: 0); _ = try c.string("caption", nonEmpty: false)
            _ = try c.string("file_name"); _ = try c.string("sha256")
            _ = try c.int("duration_ms", min: 0); _ = try c.int("width", min: 0); _ = try c.int("height", min: 0)
        case "location":
            try c.allowOnly(["type", "latitude", "longitude", "name", "address", "url"])
            _ = try c.number("latitude", required: true, range: -90...90)
            _ = try c.number("longitude", required: true, range: -180...180)
            _ = try c.string("name"); _ = try c.string("address"); _ = try c.string("url")
        case "contact":
            try c.allowOnly(["type", "name", "phones", "emails", "organization", "urls", "addresses", "birthday"])
            let n = try c.objectField("name", required: true)!
            try n.allowOnly(["formatted", "first", "last", "middle", "prefix", "suffix"])
            _ = try n.string("formatted", required: true)
            for (i, ph) in (try c.array("phones") ?? []).enumerated() {
                let pc = try Check(ph, c.sub("phones") + "[\(i)]")
                try pc.allowOnly(["number", "type", "channel_id"])
                _ = try pc.string("number", required: true)
            }
            for (i, em) in (try c.array("emails") ?? []).enumerated() {
                let ec = try Check(em, c.sub("emails") + "[\(i)]")
                try ec.allowOnly(["address", "type"])
                _ = try ec.string("address", required: true)
            }
        case "interactive":
            try c.allowOnly(["type", "style", "header", "body", "footer", "buttons", "sections", "catalog_id", "product_id"])
            let style = try c.string("style", required: true, oneOf: Schema.interactiveStyles)!
            _ = try c.string("header", nonEmpty: false); _ = try c.string("body", nonEmpty: false); _ = try c.string("footer", nonEmpty: false)
            let buttons = try c.array("buttons", required: style == "buttons" || style == "quick_replies" || style == "cta_url", nonEmpty: true, max: 100) ?? []
            for (i, b) in buttons.enumerated() {
                let bc = try Check(b, c.sub("buttons") + "[\(i)]")
                try bc.allowOnly(["id", "title", "url", "payload"])
                _ = try bc.string("title", required: true)
                _ = try bc.string("id", required: style != "cta_url")
                _ = try bc.string("url", required: style == "cta_url")
                _ = try bc.string("payload")
            }
            let sections = try c.array("sections", required: style == "list" || style == "product_list", nonEmpty: true, max: 10) ?? []
            for (i, s) in sections.enumerated() {
                let sc = try Check(s, c.sub("sections") + "[\(i)]")
                try sc.allowOnly(["title", "rows", "product_ids"])
                _ = try sc.string("title")
                for (j, r) in (try sc.array("rows") ?? []).enumerated() {
                    let rc = try Check(r, sc.sub("rows") + "[\(j)]")
                    try rc.allowOnly(["id", "title", "description"])
                    _ = try rc.string("id", required: true); _ = try rc.string("title", required: true); _ = try rc.string("description")
                }
                for (j, pid) in (try sc.array("product_ids") ?? []).enumerated() where pid.stringValue == nil {
                    throw SchemaError(sc.sub("product_ids") + "[\(j)]", "expected string")
                }
            }
            if style == "product" || style == "product_list" { _ = try c.string("catalog_id", required: true) }
            if style == "product" { _ = try c.string("product_id", required: true) }
        case "interactive_reply":
            try c.allowOnly(["type", "choice_id", "title", "description", "kind", "payload"])
            _ = try c.string("choice_id", required: true)
            _ = try c.string("title", nonEmpty: false); _ = try c.string("description", nonEmpty: false)
            _ = try c.string("kind", oneOf: ["button", "list", "quick_reply", "postback", "template_button", "card_action", "callback"])
            _ = try c.string("payload", nonEmpty: false)
        case "template":
            try c.allowOnly(["type", "name", "language", "parameters", "components"])
            _ = try c.string("name", required: true); _ = try c.string("language", required: true)
            if let p = try c.objectField("parameters") {
                try p.allowOnly(["header", "body", "buttons"])
                _ = try p.array("header"); _ = try p.array("body"); _ = try p.array("buttons")
            }
            _ = try c.array("components")
        case "product":
            try c.allowOnly(["type", "catalog_id", "product_id", "title", "description", "price", "image_url", "url"])
            _ = try c.string("product_id", required: true); _ = try c.string("catalog_id")
            _ = try c.string("title"); _ = try c.string("description", nonEmpty: false)
            try c.money("price"); _ = try c.string("image_url"); _ = try c.string("url")
        case "order":
            try c.allowOnly(["type", "catalog_id", "order_id", "items", "total", "note", "status"])
            _ = try c.string("catalog_id"); _ = try c.string("order_id"); _ = try c.string("note", nonEmpty: false); _ = try c.string("status")
            let items = try c.array("items", required: true, nonEmpty: true)!
            for (i, it) in items.enumerated() {
                let ic = try Check(it, c.sub("items") + "[\(i)]")
                try ic.allowOnly(["product_id", "title", "quantity", "price"])
                _ = try ic.string("product_id", required: true); _ = try ic.string("title")
                _ = try ic.int("quantity", required: true, min: 1)
                try ic.money("price")
            }
            try c.money("total")
        case "payment_request":
            try c.allowOnly(["type", "amount", "currency", "description", "link", "provider", "provider_reference", "expires_at", "order_id"])
            _ = try c.int("amount", required: true, min: 0)
            try Check.currency(c, "currency")
            _ = try c.string("description", nonEmpty: false)
            let link = try c.string("link"), ref = try c.string("provider_reference")
            if link == nil && ref == nil { throw SchemaError(c.sub("link"), "a payment request needs a link or a provider_reference") }
            _ = try c.string("provider"); _ = try c.timestamp("expires_at"); _ = try c.string("order_id")
        case "unsupported":
            try c.allowOnly(["type", "channel_type", "description"])
            _ = try c.string("channel_type", required: true); _ = try c.string("description", nonEmpty: false)
        default:
            throw SchemaError(c.sub("type"), "unknown part type \"\(type)\" (known: \(Schema.partTypes.sorted().joined(separator: ", ")); use \"unsupported\" for channel types Chorus does not model)")
        }
    }

    /// The part types present, for capability checks.
    public static func types(of parts: JSONValue?) -> [String] {
        (parts?.arrayValue ?? []).compactMap { $0["type"]?.stringValue }
    }
}
