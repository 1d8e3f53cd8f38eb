import ChorusJSON

/// Renders the structured parts of the normalized schema (docs/schema.md, "Parts") as plain text,
/// for channels that can only carry text: SMS, email, and any connector that wants the same
/// wording. Links stay links; choices become a numbered list.
public enum PlainTextParts {
    /// A `location` part: its name and address, then a map link (the part's `url`, or a Google Maps link).
    public static func location(_ p: JSONValue) -> String {
        let lat = p["latitude"]?.doubleValue ?? 0, lon = p["longitude"]?.doubleValue ?? 0
        var lines: [String] = []
        let label = [p["name"]?.stringValue, p["address"]?.stringValue].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ", ")
        if !label.isEmpty { lines.append(label) }
        lines.append(p["url"]?.stringValue ?? "https://maps.google.com/?q=\(lat),\(lon)")
        return lines.joined(separator: "\n")
    }

    /// A `contact` part: the formatted name, then one line per phone number and email address.
    public static func contact(_ p: JSONValue) -> String {
        var lines = [p["name"]?["formatted"]?.stringValue ?? ""]
        for phone in p["phones"]?.arrayValue ?? [] {
            if let n = phone["number"]?.stringValue { lines.append(n + (phone["type"]?.stringValue.map { " (\($0))" } ?? "")) }
        }
        for email in p["emails"]?.arrayValue ?? [] {
            if let a = email["address"]?.stringValue { lines.append(a) }
        }
        return lines.filter { !$0.isEmpty }.joined(separator: "\n")
    }

    /// An `interactive` part: header and body, buttons and list rows as numbered choices
    /// ("1) Yes"), followed by `choicePrompt` when there are choices; `cta_url` buttons as
    /// "Title: url"; then the footer. Nil for styles that have no text form (`product`, `product_list`).
    public static func interactive(_ p: JSONValue, choicePrompt: String?) -> String? {
        var lines: [String] = []
        for key in ["header", "body"] { if let t = p[key]?.stringValue, !t.isEmpty { lines.append(t) } }
        let style = p["style"]?.stringValue ?? ""
        switch style {
        case "buttons", "quick_replies":
            let titles = (p["buttons"]?.arrayValue ?? []).compactMap { $0["title"]?.stringValue }
            for (n, t) in titles.enumerated() { lines.append("\(n + 1)) \(t)") }
            if !titles.isEmpty, let prompt = choicePrompt { lines.append(prompt) }
        case "list":
            var n = 0
            for section in p["sections"]?.arrayValue ?? [] {
                if let t = section["title"]?.stringValue, !t.isEmpty { lines.append(t) }
                for row in section["rows"]?.arrayValue ?? [] {
                    n += 1
                    var line = "\(n)) " + (row["title"]?.stringValue ?? "")
                    if let d = row["description"]?.stringValue, !d.isEmpty { line += " - " + d }
                    lines.append(line)
                }
            }
            if n > 0, let prompt = choicePrompt { lines.append(prompt) }
        case "cta_url":
            for b in p["buttons"]?.arrayValue ?? [] {
                lines.append((b["title"]?.stringValue ?? "") + ": " + (b["url"]?.stringValue ?? ""))
            }
        default:
            return nil
        }
        if let f = p["footer"]?.stringValue, !f.isEmpty { lines.append(f) }
        return lines.joined(separator: "\n")
    }

    /// A `payment_request` part: its description, "Amount: 114.99 EUR", and "Pay here: <link>"
    /// (or "Payment reference: …" when there is no link).
    public static func payment(_ p: JSONValue) -> String {
        var lines: [String] = []
        if let d = p["description"]?.stringValue, !d.isEmpty { lines.append(d) }
        let currency = p["currency"]?.stringValue ?? ""
        lines.append("Amount: " + formatMoney(p["amount"]?.intValue ?? 0, currency) + " " + currency)
        if let link = p["link"]?.stringValue { lines.append("Pay here: " + link) } else if let r = p["provider_reference"]?.stringValue { lines.append("Payment reference: " + r) }
        return lines.joined(separator: "\n")
    }

    /// A `product` part: title (or id), description, "Price: …", and its URL.
    public static func product(_ p: JSONValue) -> String {
        var lines: [String] = []
        lines.append(p["title"]?.stringValue ?? p["product_id"]?.stringValue ?? "")
        if let d = p["description"]?.stringValue, !d.isEmpty { lines.append(d) }
        if let price = p["price"], let amount = price["amount"]?.intValue, let c = price["currency"]?.stringValue {
            lines.append("Price: " + formatMoney(amount, c) + " " + c)
        }
        if let u = p["url"]?.stringValue { lines.append(u) }
        return lines.joined(separator: "\n")
    }

    /// Minor units as a decimal amount with the currency's ISO 4217 exponent (`11499`, `EUR` → `114.99`).
    public static func formatMoney(_ minor: Int64, _ currency: String) -> String {
        let exponent: Int
        switch currency {
        case "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF": exponent = 0
        case "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND": exponent = 3
        default: exponent = 2
        }
        guard exponent > 0 else { return String(minor) }
        var scale: Int64 = 1
        for _ in 0..<exponent { scale *= 10 }
        let whole = minor / scale, frac = minor % scale
        var f = String(frac)
        while f.count < exponent { f = "0" + f }
        return "\(whole).\(f)"
    }
}
