import COpenSSL
import ChorusJSON

/// Why an inbound Bot Framework token was refused (answered 403, nothing stored).
public struct TeamsAuthError: Error, Sendable, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// base64url (RFC 4648 §5) without padding, as JWTs use it; standard base64 and padding are accepted too.
public enum Base64URL {
    /// Decodes `s`, or nil when it is not base64url.
    public static func decode(_ s: some StringProtocol) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count * 3 / 4)
        var acc: UInt32 = 0, bits = 0
        for c in s.utf8 {
            let v: UInt32
            switch c {
            case 65...90: v = UInt32(c - 65)
            case 97...122: v = UInt32(c - 97 + 26)
            case 48...57: v = UInt32(c - 48 + 52)
            case UInt8(ascii: "-"), UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "_"), UInt8(ascii: "/"): v = 63
            case UInt8(ascii: "="): continue
            default: return nil
            }
            acc = (acc << 6) | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((acc >> UInt32(bits)) & 0xFF))
            }
        }
        if bits >= 6 { return nil }  // a single dangling character is not valid base64
        return out
    }
}

/// One RSA public key from a JWKS document.
public struct TeamsJWK: Sendable {
    public let kid: String
    public let n: [UInt8]
    public let e: [UInt8]
    /// The channels this key may sign for (Bot Framework's `endorsements`), empty when not given.
    public let endorsements: [String]
}

/// A JWT split and decoded, not yet verified.
public struct TeamsJWT: Sendable {
    public let header: JSONValue
    public let claims: JSONValue
    /// `header.payload`, the signed bytes.
    public let signingInput: [UInt8]
    public let signature: [UInt8]

    /// Splits a compact JWS (`header.payload.signature`).
    public init(_ token: String) throws(TeamsAuthError) {
        let pieces = token.split(separator: ".", omittingEmptySubsequences: false)
        guard pieces.count == 3 else { throw TeamsAuthError("the token is not a JWT (three dot-separated parts)") }
        guard let h = Base64URL.decode(pieces[0]), let p = Base64URL.decode(pieces[1]), let s = Base64URL.decode(pieces[2]) else {
            throw TeamsAuthError("the token is not base64url")
        }
        guard let hj = try? JSONParser.parse(h), case .object = hj, let pj = try? JSONParser.parse(p), case .object = pj else {
            throw TeamsAuthError("the token's header or claims are not JSON objects")
        }
        header = hj
        claims = pj
        signingInput = Array(pieces[0].utf8) + [UInt8(ascii: ".")] + Array(pieces[1].utf8)
        signature = s
    }

    /// The `kid` of the header.
    public var keyId: String? { header["kid"]?.stringValue }

    /// Checks algorithm, signature, issuer, audience, lifetime (with `skewSeconds`) and, when given, the
    /// `serviceurl` claim. Throws the first problem found.
    public func verify(key: TeamsJWK, issuers: [String], audience: String, now: Int64, skewSeconds: Int64 = 300,
                       serviceURL: String?) throws(TeamsAuthError)
    {
        guard header["alg"]?.stringValue == "RS256" else {
            throw TeamsAuthError("unsupported algorithm \(header["alg"]?.stringValue ?? "none") (RS256 only)")
        }
        let ok = key.n.withUnsafeBufferPointer { n in
            key.e.withUnsafeBufferPointer { e in
                signingInput.withUnsafeBufferPointer { d in
                    signature.withUnsafeBufferPointer { s in
                        cossl_rs256_verify(n.baseAddress, n.count, e.baseAddress, e.count, d.baseAddress, d.count, s.baseAddress, s.count)
                    }
                }
            }
        }
        guard ok == 1 else { throw TeamsAuthError(ok == 0 ? "bad signature" : "the signing key is unusable") }
        guard let iss = claims["iss"]?.stringValue, issuers.contains(iss) else {
            throw TeamsAuthError("wrong issuer \(claims["iss"]?.stringValue ?? "(none)")")
        }
        let audOK: Bool
        switch claims["aud"] {
        case .string(let a)?: audOK = a == audience
        case .array(let a)?: audOK = a.contains { $0.stringValue == audience }
        default: audOK = false
        }
        guard audOK else { throw TeamsAuthError("wrong audience") }
        guard let exp = claims["exp"]?.intValue else { throw TeamsAuthError("the token has no expiry") }
        guard now <= exp + skewSeconds else { throw TeamsAuthError("the token expired") }
        if let nbf = claims["nbf"]?.intValue, now + skewSeconds < nbf { throw TeamsAuthError("the token is not valid yet") }
        if let serviceURL {
            let claim = claims["serviceurl"]?.stringValue ?? claims["serviceUrl"]?.stringValue
            guard let claim, TeamsJWT.sameServiceURL(claim, serviceURL) else {
                throw TeamsAuthError("the serviceUrl claim does not match the activity")
            }
        }
    }

    /// Service URLs compared without a trailing slash and case-insensitively (Teams sends both spellings).
    static func sameServiceURL(_ a: String, _ b: String) -> Bool {
        func norm(_ s: String) -> String {
            var s = s.lowercased()
            while s.hasSuffix("/") { s.removeLast() }
            return s
        }
        return norm(a) == norm(b)
    }
}

extension TeamsJWK {
    /// The RSA keys of a JWKS document (`{"keys":[{"kty":"RSA","kid","n","e"}]}`); other keys are skipped.
    public static func parseSet(_ body: [UInt8]) -> [String: TeamsJWK]? {
        guard let doc = try? JSONParser.parse(body), let keys = doc["keys"]?.arrayValue else { return nil }
        var out: [String: TeamsJWK] = [:]
        for k in keys {
            guard k["kty"]?.stringValue == "RSA", let kid = k["kid"]?.stringValue, let n = k["n"]?.stringValue.flatMap({ Base64URL.decode($0) }),
                  let e = k["e"]?.stringValue.flatMap({ Base64URL.decode($0) }), !n.isEmpty, !e.isEmpty
            else { continue }
            out[kid] = TeamsJWK(kid: kid, n: n, e: e, endorsements: k["endorsements"]?.arrayValue?.compactMap { $0.stringValue } ?? [])
        }
        return out
    }
}
