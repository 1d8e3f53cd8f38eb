/// A problem found while reading or validating a Chorus configuration file.
///
/// Every error produced by ``ChorusConfiguration`` names, where applicable, the dotted path of the offending
/// key (for example `instance[1].settings` or `http.listen`) and the 1-based line of the file on which that
/// key appears. When the line could not be located in the source text, ``line`` is `nil` and
/// ``description`` says so explicitly instead of guessing.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The dotted path of the offending key, e.g. `"instance[1].settings"` or `"http.listen"`;
    /// `nil` for errors that concern the whole file (unreadable file, TOML syntax error).
    public let key: String?
    /// The 1-based line in the file where the offending key (or the syntax error) is; `nil` when unknown.
    public let line: Int?
    /// A human-readable explanation, e.g. `expected integer, found string`.
    public let message: String
    /// The file name as given to the parser; `nil` for text that did not come from a file.
    public let file: String?

    /// Creates an error.
    /// - Parameters:
    ///   - key: Dotted path of the offending key, if the error concerns one.
    ///   - line: 1-based line number in the file, if known.
    ///   - message: Explanation of what is wrong.
    ///   - file: Path of the configuration file, if the text came from a file.
    public init(key: String?, line: Int?, message: String, file: String?) {
        self.key = key
        self.line = line
        self.message = message
        self.file = file
    }

    /// The error in the conventional compiler-like form
    /// `chorus.toml:12: http.listen: expected "host:port", found "abc"`.
    ///
    /// Text without a file is shown as `<config>`. When the error concerns a key whose line could not be
    /// found in the source, the description ends with `(line not found in source)`.
    public var description: String {
        var text = file ?? "<config>"
        if let line {
            text += ":\(line)"
        }
        text += ": "
        if let key {
            text += "\(key): "
        }
        text += message
        if key != nil && line == nil {
            text += " (line not found in source)"
        }
        return text
    }
}
