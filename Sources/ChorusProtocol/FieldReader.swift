import ChorusJSON

/// Typed, validating access to the fields of one frame object.
struct FieldReader {
    let object: JSONObject

    func rejectUnknown(allowed: Set<String>, op: String) throws(ProtocolError) {
        for k in object.keys where !allowed.contains(k) {
            let list = allowed.subtracting(["op", "id"]).sorted()
            let takes = list.isEmpty ? "takes no other fields" : "takes \(list.joined(separator: ", "))"
            throw ProtocolError(code: .unknownField, message: "unknown field '\(k)': op '\(op)' \(takes)", field: k)
        }
    }

    /// The value of a field, treating JSON null as absent.
    func value(_ key: String) -> JSONValue? {
        guard let v = object[key], !v.isNull else { return nil }
        return v
    }

    func string(_ key: String, required: Bool = false, maxBytes: Int = 1024) throws(ProtocolError) -> String? {
        guard let v = value(key) else {
            if required { throw .invalid(key, "field '\(key)' is required") }
            return nil
        }
        guard case .string(let s) = v else {
            throw .invalid(key, "field '\(key)' must be a string, found \(v.typeName)")
        }
        if s.isEmpty { throw .invalid(key, "field '\(key)' must not be empty") }
        if s.utf8.count > maxBytes { throw .invalid(key, "field '\(key)' is longer than \(maxBytes) bytes") }
        return s
    }

    func int(_ key: String, required: Bool = false, min: Int64 = 0) throws(ProtocolError) -> Int64? {
        guard let v = value(key) else {
            if required { throw .invalid(key, "field '\(key)' is required") }
            return nil
        }
        guard case .number(.int(let i)) = v else {
            let found = v.typeName == "number" ? "a fractional or out-of-range number" : v.typeName
            throw .invalid(key, "field '\(key)' must be an integer, found \(found)")
        }
        if i < min { throw .invalid(key, "field '\(key)' must be at least \(min), found \(i)") }
        return i
    }

    /// A point in time: an RFC 3339 string or an integer number of milliseconds since the epoch.
    func time(_ key: String, required: Bool = false) throws(ProtocolError) -> Int64? {
        guard let v = value(key) else {
            if required { throw .invalid(key, "field '\(key)' is required") }
            return nil
        }
        switch v {
        case .string(let s):
            guard let ms = parseTimestamp(s) else {
                throw .invalid(key, "field '\(key)' is not an RFC 3339 timestamp such as \"2026-11-23T10:00:00Z\": \"\(s)\"")
            }
            return ms
        case .number(.int(let ms)):
            return ms
        default:
            throw .invalid(key, "field '\(key)' must be an RFC 3339 string or integer milliseconds since the epoch, found \(v.typeName)")
        }
    }

    func object(_ key: String, required: Bool = false) throws(ProtocolError) -> JSONObject? {
        guard let v = value(key) else {
            if required { throw .invalid(key, "field '\(key)' is required") }
            return nil
        }
        guard case .object(let o) = v else {
            throw .invalid(key, "field '\(key)' must be an object, found \(v.typeName)")
        }
        return o
    }

    /// A subscription name: 1–128 bytes of letters, digits, `.`, `_`, `-` and `:`.
    func subscriptionName(_ key: String, required: Bool = false) throws(ProtocolError) -> String? {
        guard let name = try string(key, required: required, maxBytes: 128) else { return nil }
        for c in name.utf8 {
            let ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == 0x2E || c == 0x5F || c == 0x2D || c == 0x3A
            if !ok {
                throw .invalid(key, "field '\(key)' may only contain letters, digits, '.', '_', '-' and ':', found \"\(name)\"")
            }
        }
        return name
    }
}
