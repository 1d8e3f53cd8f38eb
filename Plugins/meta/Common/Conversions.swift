import ChorusJSON
import ChorusModel

/// Conversions between Meta's wire formats and the normalized schema.
public enum MetaConvert {
    /// Unix seconds (Meta sends them as strings, `"1700000000"`) as an RFC 3339 UTC timestamp; nil when not a number.
    public static func timestamp(unixSeconds value: JSONValue?) -> String? {
        guard let v = value else { return nil }
        let secs: Int64?
        switch v {
        case .string(let s): secs = Int64(s)
        case .number: secs = v.intValue ?? v.doubleValue.map { Int64($0) }
        default: secs = nil
        }
        return secs.map { rfc3339(epochSeconds: $0) }
    }

    /// Unix seconds as epoch milliseconds.
    public static func epochMs(unixSeconds value: JSONValue?) -> Int64? {
        switch value {
        case .string(let s)?: return Int64(s).map { $0 * 1000 }
        case .number?: return value?.intValue.map { $0 * 1000 }
        default: return nil
        }
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` for epoch seconds.
    public static func rfc3339(epochSeconds t: Int64) -> String {
        Timestamp.format(epochSeconds: t)
    }

    /// Digits after the decimal point of a currency (ISO 4217 minor units).
    public static func minorUnitExponent(_ currency: String) -> Int {
        switch currency.uppercased() {
        case "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF": return 0
        case "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND": return 3
        default: return 2
        }
    }

    /// A decimal price (`99.99`, or `"99.99"`) in minor units of `currency`, exactly (no binary rounding drift).
    public static func minorUnits(_ value: JSONValue?, currency: String) -> Int64? {
        let text: String
        switch value {
        case .string(let s)?: text = s
        case .number(.int(let i))?: text = String(i)
        case .number(.double(let d))?: text = String(d)
        default: return nil
        }
        let exp = minorUnitExponent(currency)
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = Int64(parts[0].isEmpty ? "0" : String(parts[0])), whole >= 0 else { return nil }
        var frac = parts.count > 1 ? String(parts[1]) : ""
        guard frac.allSatisfy({ $0.isNumber }) else { return nil }
        var scale: Int64 = 1
        for _ in 0..<exp { scale *= 10 }
        // Round half up past the currency's precision.
        var roundUp = false
        if frac.count > exp { roundUp = frac[frac.index(frac.startIndex, offsetBy: exp)] >= "5"; frac = String(frac.prefix(exp)) }
        while frac.count < exp { frac += "0" }
        return whole * scale + (Int64(frac.isEmpty ? "0" : frac) ?? 0) + (roundUp ? 1 : 0)
    }

    /// Minor units as a decimal string (`11499`, `EUR` → `114.99`).
    public static func decimal(minorUnits amount: Int64, currency: String) -> String {
        let exp = minorUnitExponent(currency)
        if exp == 0 { return String(amount) }
        var scale: Int64 = 1
        for _ in 0..<exp { scale *= 10 }
        var frac = String(abs(amount) % scale)
        while frac.count < exp { frac = "0" + frac }
        return (amount < 0 ? "-" : "") + String(abs(amount) / scale) + "." + frac
    }
}
