import COpenSSL
import ChorusConnectorSDK

/// Meta's webhook request signing: `X-Hub-Signature-256: sha256=<hex>`, the
/// HMAC-SHA256 of the raw request body keyed with the app secret.
///
/// Shared by every Meta channel (WhatsApp Cloud API, Messenger, Instagram):
/// they sign webhooks the same way. Verify over the *raw* bytes, before parsing.
public enum GraphSignature {
    /// The header Meta puts the signature in (lower-case, as `IncomingRequest.header` expects).
    public static let headerName = "x-hub-signature-256"

    /// Why a signature was refused.
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        /// No `X-Hub-Signature-256` header.
        case missing
        /// The header is not `sha256=` followed by 64 hex digits.
        case malformed
        /// Well-formed, but not the HMAC of this body with this secret.
        case mismatch
        public var description: String {
            switch self {
            case .missing: return "missing X-Hub-Signature-256 header"
            case .malformed: return "malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)"
            case .mismatch: return "X-Hub-Signature-256 does not match the request body"
            }
        }
    }

    /// The raw HMAC-SHA256 of `body` keyed with `secret`.
    public static func hmac(body: [UInt8], secret: String) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let key = Array(secret.utf8)
        key.withUnsafeBytes { k in
            body.withUnsafeBytes { b in
                out.withUnsafeMutableBufferPointer { o in
                    _ = cossl_hmac_sha256(k.baseAddress, Int32(k.count), b.baseAddress, b.count, o.baseAddress)
                }
            }
        }
        return out
    }

    /// The header value Meta would send for `body`: `sha256=<lower-case hex>`.
    public static func sign(body: [UInt8], secret: String) -> String {
        "sha256=" + hexString(hmac(body: body, secret: secret))
    }

    /// Checks `header` (the `X-Hub-Signature-256` value, or nil when absent) against `body`,
    /// comparing digests in constant time.
    public static func verify(body: [UInt8], header: String?, secret: String) -> Result<Void, Failure> {
        guard let header else { return .failure(.missing) }
        let bytes = Array(header.utf8)
        let prefix = Array("sha256=".utf8)
        guard bytes.count == prefix.count + 64, bytes.prefix(prefix.count).elementsEqual(prefix),
              let given = hexDecode(bytes[prefix.count...]) else { return .failure(.malformed) }
        let expected = hmac(body: body, secret: secret)
        let same = given.withUnsafeBytes { g in expected.withUnsafeBytes { e in cossl_memcmp(g.baseAddress, e.baseAddress, 32) } }
        return same == 0 ? .success(()) : .failure(.mismatch)
    }

    /// Verifies the signature of an incoming webhook request.
    public static func verify(_ request: IncomingRequest, secret: String) -> Result<Void, Failure> {
        verify(body: request.body, header: request.header(headerName), secret: secret)
    }
}

/// The webhook subscription handshake (`GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`).
public enum WebhookVerification {
    /// Answers a verification request: 200 with the challenge as plain text when
    /// the mode is `subscribe` and the token matches (constant-time), 403 otherwise
    /// (400 when parameters are missing).
    public static func handle(_ request: IncomingRequest, verifyToken: String, _ responder: Responder) {
        var mode: String?, token: String?, challenge: String?
        for (k, v) in request.queryItems {
            switch k {
            case "hub.mode": mode = v
            case "hub.verify_token": token = v
            case "hub.challenge": challenge = v
            default: break
            }
        }
        guard let mode, let token, let challenge else {
            responder.respond(status: 400, headers: [("Content-Type", "text/plain")],
                              body: Array("expected hub.mode, hub.verify_token and hub.challenge\n".utf8))
            return
        }
        guard mode == "subscribe", constantTimeEquals(token, verifyToken) else {
            responder.respond(status: 403, headers: [("Content-Type", "text/plain")], body: Array("verification refused\n".utf8))
            return
        }
        responder.respond(status: 200, headers: [("Content-Type", "text/plain")], body: Array(challenge.utf8))
    }

    /// Compares two strings without revealing where they differ through timing.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        if x.isEmpty { return true }
        return x.withUnsafeBytes { p in y.withUnsafeBytes { q in cossl_memcmp(p.baseAddress, q.baseAddress, x.count) } } == 0
    }
}

/// The SHA-256 digest of `bytes` in lower-case hex (stable ids for payloads that carry none).
public func sha256Hex(_ bytes: [UInt8]) -> String {
    var out = [UInt8](repeating: 0, count: 32)
    bytes.withUnsafeBytes { b in out.withUnsafeMutableBufferPointer { o in cossl_sha256(b.baseAddress, b.count, o.baseAddress) } }
    return hexString(out)
}

/// Lower-case hex of bytes.
public func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}

func hexDecode(_ s: ArraySlice<UInt8>) -> [UInt8]? {
    guard s.count % 2 == 0 else { return nil }
    func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }
    var out = [UInt8]()
    out.reserveCapacity(s.count / 2)
    var i = s.startIndex
    while i < s.endIndex {
        guard let h = nibble(s[i]), let l = nibble(s[i + 1]) else { return nil }
        out.append(h << 4 | l)
        i += 2
    }
    return out
}
