import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// Why a request's Slack signature was refused. The `description` is safe to log: it never contains
/// the signing secret or the signature.
public enum SlackSignatureError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `X-Slack-Request-Timestamp` or `X-Slack-Signature` is missing.
    case missingHeaders
    /// `X-Slack-Request-Timestamp` is not a whole number of seconds.
    case malformedTimestamp
    /// The timestamp is further than the tolerance from now (a replay, or a badly wrong clock).
    case stale(ageSeconds: Int64)
    /// The signature is not `v0=` followed by 64 hex digits.
    case malformedSignature
    /// The signature does not match the body.
    case mismatch

    public var description: String {
        switch self {
        case .missingHeaders: return "X-Slack-Request-Timestamp or X-Slack-Signature missing"
        case .malformedTimestamp: return "X-Slack-Request-Timestamp is not a Unix time"
        case .stale(let age): return "request timestamp is \(age) s away from now (replayed or clock skew)"
        case .malformedSignature: return "X-Slack-Signature is not v0=<64 hex digits>"
        case .mismatch: return "X-Slack-Signature does not match the body"
        }
    }
}

/// Verifies Slack request signatures (version `v0`): `X-Slack-Signature` must be
/// `"v0=" + hex(HMAC-SHA256(signing_secret, "v0:" + X-Slack-Request-Timestamp + ":" + raw body))`,
/// compared in constant time, and the timestamp must be within `toleranceSeconds` of now.
public struct SlackSignatureVerifier: Sendable {
    /// Slack's documented window: five minutes either way.
    public static let defaultToleranceSeconds: Int64 = 300

    private let secret: [UInt8]
    /// How far the request timestamp may be from now, in seconds.
    public let toleranceSeconds: Int64

    public init(signingSecret: String, toleranceSeconds: Int64 = SlackSignatureVerifier.defaultToleranceSeconds) {
        self.secret = Array(signingSecret.utf8)
        self.toleranceSeconds = toleranceSeconds
    }

    /// The signature Slack would send for `body` at `timestamp` (`v0=` + 64 lower-case hex digits).
    public func signature(timestamp: String, body: [UInt8]) -> String {
        "v0=" + SlackHex.encode(mac(timestamp: timestamp, body: body))
    }

    /// Checks the headers against the raw body; `now` is the current Unix time in seconds.
    public func verify(timestamp: String?, signature: String?, body: [UInt8], now: Int64 = SlackClock.nowSeconds()) throws(SlackSignatureError) {
        guard let timestamp, let signature, !timestamp.isEmpty, !signature.isEmpty else { throw .missingHeaders }
        guard timestamp.utf8.count <= 12, let ts = Int64(timestamp), ts > 0 else { throw .malformedTimestamp }
        let age = now - ts
        if age > toleranceSeconds || age < -toleranceSeconds { throw .stale(ageSeconds: age) }
        let given = Array(signature.utf8)
        guard given.count == 67, given[0] == UInt8(ascii: "v"), given[1] == UInt8(ascii: "0"), given[2] == UInt8(ascii: "="),
              let decoded = SlackHex.decode(given[3...])
        else { throw .malformedSignature }
        let expected = mac(timestamp: timestamp, body: body)
        let equal = expected.withUnsafeBytes { e in decoded.withUnsafeBytes { g in cossl_memcmp(e.baseAddress, g.baseAddress, 32) } }
        guard equal == 0 else { throw .mismatch }
    }

    private func mac(timestamp: String, body: [UInt8]) -> [UInt8] {
        var base = Array("v0:".utf8)
        base.reserveCapacity(base.count + timestamp.utf8.count + 1 + body.count)
        base.append(contentsOf: timestamp.utf8)
        base.append(UInt8(ascii: ":"))
        base.append(contentsOf: body)
        var out = [UInt8](repeating: 0, count: 32)
        let rc = secret.withUnsafeBytes { k in
            base.withUnsafeBytes { d in
                out.withUnsafeMutableBufferPointer { o in
                    cossl_hmac_sha256(k.baseAddress, Int32(k.count), d.baseAddress, d.count, o.baseAddress)
                }
            }
        }
        // HMAC only fails on allocation failure; a zero MAC then simply never matches a real signature.
        if rc != 0 { return [UInt8](repeating: 0, count: 32) }
        return out
    }
}

/// Lower-case hex encoding and strict decoding.
enum SlackHex {
    static let digits = Array("0123456789abcdef".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ hex: ArraySlice<UInt8>) -> [UInt8]? {
        guard hex.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(hex.count / 2)
        var i = hex.startIndex
        while i < hex.endIndex {
            guard let hi = nibble(hex[i]), let lo = nibble(hex[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }
}

/// Wall-clock and monotonic time.
public enum SlackClock {
    /// Unix time in seconds.
    public static func nowSeconds() -> Int64 { Int64(time(nil)) }

    /// A monotonic clock in milliseconds, for rate-limit holds.
    static func monotonicMs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }
}
