/// RFC 3339 timestamps, as used in the normalized schema ("2026-11-23T10:00:00.123Z").
/// Hand-written (no Foundation formatter) because every event carries two of them.
public enum Timestamp {
    /// Formats whole seconds since the Unix epoch as UTC without a fraction ("2026-11-23T10:00:00Z"),
    /// the form channel APIs use for their own timestamps.
    public static func format(epochSeconds: Int64) -> String {
        var s = format(ms: epochSeconds * 1000)
        s.removeSubrange(s.index(s.endIndex, offsetBy: -5)..<s.index(before: s.endIndex))   // drop ".000"
        return s
    }

    /// Formats milliseconds since the Unix epoch as UTC with millisecond precision.
    public static func format(ms: Int64) -> String {
        let secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        let millis = Int(ms - secs * 1000)
        var days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
        let rem = Int(secs - days * 86400)
        // Civil from days (Howard Hinnant's algorithm).
        days += 719468
        let era = (days >= 0 ? days : days - 146096) / 146097
        let doe = days - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        var y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        if m <= 2 { y += 1 }
        var out = [UInt8]()
        out.reserveCapacity(24)
        func put(_ v: Int, _ width: Int) {
            var digits = [UInt8](repeating: 48, count: width)
            var v = v
            for i in stride(from: width - 1, through: 0, by: -1) { digits[i] = UInt8(48 + v % 10); v /= 10 }
            out.append(contentsOf: digits)
        }
        put(Int(y), 4); out.append(45); put(Int(m), 2); out.append(45); put(Int(d), 2)
        out.append(84); put(rem / 3600, 2); out.append(58); put(rem / 60 % 60, 2); out.append(58); put(rem % 60, 2)
        out.append(46); put(millis, 3); out.append(90)
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses RFC 3339 ("2026-11-23T10:00:00Z", with optional fraction and offset) to ms since the epoch.
    public static func parse(_ s: String) -> Int64? {
        let b = Array(s.utf8)
        guard b.count >= 20 else { return nil }
        func num(_ from: Int, _ len: Int) -> Int? {
            guard from + len <= b.count else { return nil }
            var v = 0
            for i in from..<(from + len) {
                guard b[i] >= 48 && b[i] <= 57 else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        guard let y = num(0, 4), b[4] == 45, let mo = num(5, 2), b[7] == 45, let d = num(8, 2),
              b[10] == 84 || b[10] == 116 || b[10] == 32,
              let h = num(11, 2), b[13] == 58, let mi = num(14, 2), b[16] == 58, let sec = num(17, 2),
              (1...12).contains(mo), d >= 1, d <= daysInMonth(y, mo), h < 24, mi < 60, sec < 61 else { return nil }
        var i = 19
        var millis = 0
        if i < b.count && b[i] == 46 {
            i += 1
            var digits = 0
            while i < b.count && b[i] >= 48 && b[i] <= 57 {
                if digits < 3 { millis = millis * 10 + Int(b[i] - 48) }
                digits += 1; i += 1
            }
            guard digits > 0 else { return nil }
            if digits < 3 { for _ in digits..<3 { millis *= 10 } }
        }
        guard i < b.count else { return nil }
        var offset = 0
        if b[i] == 90 || b[i] == 122 {
            i += 1
        } else if b[i] == 43 || b[i] == 45 {
            guard let oh = num(i + 1, 2), i + 3 < b.count, b[i + 3] == 58, let om = num(i + 4, 2), oh < 24, om < 60 else { return nil }
            offset = (oh * 60 + om) * 60 * (b[i] == 43 ? 1 : -1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        // Days from civil.
        let yy = mo <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let mp = (mo + 9) % 12
        let doy = (153 * mp + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = Int64(era) * 146097 + Int64(doe) - 719468
        let secs = days * 86400 + Int64(h * 3600 + mi * 60 + sec) - Int64(offset)
        return secs * 1000 + Int64(millis)
    }

    /// The number of days in month `m` (1–12) of proleptic Gregorian year `y`.
    static func daysInMonth(_ y: Int, _ m: Int) -> Int {
        switch m {
        case 2: return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}
