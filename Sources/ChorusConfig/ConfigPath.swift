/// One step of a path into the parsed configuration document: a table key or an array index.
enum PathComponent: Hashable, Sendable {
    case key(String)
    case index(Int)
}

/// The location of a value in the configuration document, rendered in messages as a dotted path such as
/// `instance[1].settings.token` (keys that are not TOML bare keys are shown quoted: `settings."a.b"`).
struct ConfigPath: Hashable, Sendable, CustomStringConvertible {
    var components: [PathComponent]

    /// The document root (the top-level table).
    static let root = ConfigPath(components: [])

    init(components: [PathComponent]) {
        self.components = components
    }

    init(_ keys: String...) {
        self.components = keys.map { .key($0) }
    }

    var isRoot: Bool { components.isEmpty }

    /// The path of the member `key` of the table at this path.
    func appending(_ key: String) -> ConfigPath {
        ConfigPath(components: components + [.key(key)])
    }

    /// The path of the member `keys` (a dotted key) of the table at this path.
    func appending(keys: [String]) -> ConfigPath {
        ConfigPath(components: components + keys.map { .key($0) })
    }

    /// The path of element `index` of the array at this path.
    func appending(index: Int) -> ConfigPath {
        ConfigPath(components: components + [.index(index)])
    }

    var description: String {
        var text = ""
        for component in components {
            switch component {
            case .key(let key):
                if !text.isEmpty {
                    text += "."
                }
                text += ConfigPath.render(key: key)
            case .index(let index):
                text += "[\(index)]"
            }
        }
        return text
    }

    /// Renders a key as it would be written in TOML: bare when possible, otherwise as a basic string.
    static func render(key: String) -> String {
        if isBareKey(key) {
            return key
        }
        return quoted(key)
    }

    /// Whether `key` can be written as a TOML bare key (`A-Za-z0-9_-`, non-empty).
    static func isBareKey(_ key: String) -> Bool {
        guard !key.isEmpty else { return false }
        return key.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }

    /// `text` as a double-quoted string with `"`, `\` and control characters escaped (valid TOML and JSON).
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
        return out
    }
}
