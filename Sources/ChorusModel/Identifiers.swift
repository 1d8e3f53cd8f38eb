import COpenSSL

/// Chorus's own identifiers.
///
/// - Event and message ids are time-ordered and unique: a 48-bit millisecond
///   timestamp followed by 80 bits that are random at each new millisecond and
///   incremented within one (the ULID scheme), written in Crockford base32.
///   Sorting ids as strings sorts them by creation time.
/// - Conversation and contact ids are *derived*, not allocated: a hash of the
///   channel's own identifiers, so the same chat always maps to the same Chorus
///   conversation, across restarts and on every machine, with no lookup.
public enum ChorusIdentifiers {
    static let alphabet: [UInt8] = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

    /// Encodes bytes as Crockford base32 (no padding), most significant bits first.
    public static func base32(_ bytes: [UInt8], characters: Int) -> String {
        var out = [UInt8]()
        out.reserveCapacity(characters)
        var acc: UInt32 = 0
        var bits = 0
        for b in bytes {
            if out.count >= characters { break }
            acc = (acc << 8) | UInt32(b)
            bits += 8
            while bits >= 5 && out.count < characters {
                bits -= 5
                out.append(alphabet[Int((acc >> UInt32(bits)) & 31)])
            }
            acc &= (1 << UInt32(bits)) - 1
        }
        if bits > 0 && out.count < characters { out.append(alphabet[Int((acc << UInt32(5 - bits)) & 31)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// SHA-256 of the parts joined with a 0x1F separator (unit separator, never in ids).
    public static func digest(_ parts: [String]) -> [UInt8] {
        var input = [UInt8]()
        for (i, p) in parts.enumerated() {
            if i > 0 { input.append(0x1F) }
            input.append(contentsOf: p.utf8)
        }
        var out = [UInt8](repeating: 0, count: 32)
        input.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { o in cossl_sha256(raw.baseAddress, raw.count, o.baseAddress) }
        }
        return out
    }

    /// The stable conversation id of a chat: `conv_` + 26 base32 characters (130 bits of SHA-256).
    /// `account` is the channel account (a WhatsApp phone number id, a page id, a bot) — or the instance name when the channel has none.
    public static func conversationId(channel: String, account: String, chat: String) -> String {
        "conv_" + base32(digest(["conversation", channel, account, chat]), characters: 26)
    }

    /// The stable contact id of a channel-native participant id.
    public static func contactId(channel: String, nativeId: String) -> String {
        "ct_" + base32(digest(["contact", channel, nativeId]), characters: 26)
    }
}

/// Generates time-ordered unique ids (`evt_…`, `msg_…`). Not thread-safe: one per thread (the loop owns one).
public struct IdentifierGenerator {
    private var lastMs: UInt64 = 0
    private var random: (hi: UInt16, lo: UInt64) = (0, 0)

    public init() {}

    /// A new id with the given prefix ("evt", "msg"): prefix + "_" + 26 characters.
    public mutating func next(prefix: String, nowMs: UInt64) -> String {
        if nowMs > lastMs {
            lastMs = nowMs
            var r = [UInt8](repeating: 0, count: 10)
            r.withUnsafeMutableBufferPointer { b in
                if cossl_random(b.baseAddress, 10) != 0 {
                    // RAND_bytes cannot fail once seeded; fall back to the system generator anyway.
                    var g = SystemRandomNumberGenerator()
                    for i in 0..<10 { b[i] = UInt8.random(in: 0...255, using: &g) }
                }
            }
            // Keep the top bit clear so increments within a millisecond never overflow in practice.
            random.hi = (UInt16(r[0] & 0x7F) << 8) | UInt16(r[1])
            random.lo = r[2..<10].reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
        } else {
            // Same (or earlier, if the clock stepped back) millisecond: stay monotonic.
            let (lo, overflow) = random.lo.addingReportingOverflow(1)
            random.lo = lo
            if overflow { random.hi &+= 1 }
        }
        // 128 bits (48-bit ms, 80 random) → 26 base32 characters, read 5 bits at a time from the
        // least significant end; the 2 bits above bit 127 are zero, so the first character is 0–7.
        let value = (UInt128(lastMs & 0xFFFF_FFFF_FFFF) << 80) | (UInt128(random.hi) << 64) | UInt128(random.lo)
        var chars = [UInt8](repeating: 0, count: 26)
        for i in 0..<26 { chars[25 - i] = ChorusIdentifiers.alphabet[Int(truncatingIfNeeded: (value >> (5 * i)) & 31)] }
        return prefix + "_" + String(decoding: chars, as: UTF8.self)
    }
}
