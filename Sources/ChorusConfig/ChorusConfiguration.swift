import Glibc
import TOMLKit

/// The validated contents of Chorus's TOML configuration file (see `docs/configuration.md`).
///
/// Every relative path in the file is made absolute while parsing: `daemon.state_dir`, `daemon.plugin_dirs`
/// and plugin paths against the file's directory, `socket.path` against the state directory.
public struct ChorusConfiguration: Sendable, Equatable {
    /// The `[daemon]` table.
    public var daemon: DaemonSection
    /// The `[http]` table.
    public var http: HTTPSection
    /// The `[store]` table.
    public var store: StoreSection
    /// The `[socket]` table.
    public var socket: SocketSection
    /// The `[[access]]` tables, in file order.
    public var access: [AccessRule]
    /// The `[[instance]]` tables, in file order.
    public var instances: [InstanceConfig]
    /// The absolute path of the file the configuration was loaded from (as given to ``parse(_:file:baseDirectory:)``
    /// for text); `nil` for the embedded default.
    public var sourcePath: String?

    /// Creates a configuration from its sections.
    public init(daemon: DaemonSection, http: HTTPSection, store: StoreSection, socket: SocketSection,
                access: [AccessRule], instances: [InstanceConfig], sourcePath: String?) {
        self.daemon = daemon
        self.http = http
        self.store = store
        self.socket = socket
        self.access = access
        self.instances = instances
        self.sourcePath = sourcePath
    }

    /// The instance named `name`, if configured.
    public func instance(named name: String) -> InstanceConfig? {
        instances.first { $0.name == name }
    }

    // MARK: - Parsing

    /// Parses TOML text. `baseDirectory` resolves relative paths (state_dir, plugin dirs, *_file settings) — for a
    /// file it is the file's directory; for the embedded default it is the current directory.
    ///
    /// - Parameters:
    ///   - text: The TOML document.
    ///   - file: Name of the file the text came from, used in error messages and as ``sourcePath``.
    ///   - baseDirectory: Directory relative paths resolve against; a relative directory is itself taken
    ///     relative to the process's working directory.
    /// - Throws: The first ``ConfigError`` in file order; use ``validate(_:file:baseDirectory:)`` to get all.
    public static func parse(_ text: String, file: String? = nil,
                             baseDirectory: String) throws(ConfigError) -> ChorusConfiguration {
        let (configuration, errors) = validate(text, file: file, baseDirectory: baseDirectory)
        if let first = errors.first {
            throw first
        }
        guard let configuration else {
            throw ConfigError(key: nil, line: nil, message: "configuration could not be decoded", file: file)
        }
        return configuration
    }

    /// Parses and validates TOML text, collecting every error instead of stopping at the first.
    ///
    /// - Returns: The configuration when the text is valid (and no errors), otherwise `nil` and the errors
    ///   sorted by line. A TOML syntax error is reported alone, with TOMLKit's line and column.
    public static func validate(_ text: String, file: String?,
                                baseDirectory: String) -> (ChorusConfiguration?, [ConfigError]) {
        if let nulLine = lineOfFirstNUL(in: text) {
            return (nil, [ConfigError(key: nil, line: nulLine, message: "the file contains a NUL character", file: file)])
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let line = error.source.begin.line > 0 ? error.source.begin.line : nil
            let column = error.source.begin.column > 0 ? " (column \(error.source.begin.column))" : ""
            return (nil, [ConfigError(key: nil, line: line, message: "TOML syntax error\(column): \(error.description)",
                                      file: file)])
        } catch {
            return (nil, [ConfigError(key: nil, line: nil, message: "TOML syntax error: \(error)", file: file)])
        }
        let decoder = ConfigDecoder(text: text, file: file, baseDirectory: ValueSyntax.absoluteDirectory(baseDirectory))
        let configuration = decoder.decode(root)
        let errors = sortedByLine(decoder.errors)
        return (errors.isEmpty ? configuration : nil, errors)
    }

    /// Largest configuration file ``load(path:)`` accepts.
    public static let maxFileBytes = 16 << 20

    /// Reads, parses and validates the configuration file at `path`.
    ///
    /// Relative paths in the file resolve against the file's directory; ``sourcePath`` is the file's absolute path.
    /// - Throws: ``ConfigError`` when the file cannot be read, is not UTF-8, or does not validate.
    public static func load(path: String) throws(ConfigError) -> ChorusConfiguration {
        let bytes = try readFile(path)
        let text: String
        switch decodeUTF8(bytes) {
        case .success(let decoded):
            text = decoded
        case .failure(let invalidLine):
            throw ConfigError(key: nil, line: invalidLine.line, message: "the file is not valid UTF-8", file: path)
        }
        let absolutePath = ValueSyntax.resolve(path, against: ValueSyntax.currentDirectory())
        var configuration = try parse(text, file: path, baseDirectory: ValueSyntax.directoryOf(absolutePath))
        configuration.sourcePath = absolutePath
        return configuration
    }

    // MARK: - Embedded default

    /// The embedded default used when chorusd runs with no config file: state in ./chorus-state, socket beside it,
    /// HTTP ingress on 127.0.0.1:8780, the sandbox connector enabled as instance "sandbox".
    public static let embeddedDefaultTOML: String = """
        # Chorus embedded default configuration, used when chorusd runs without a configuration file.
        # Only the daemon's own user (and root) may use the socket: add [[access]] rules in a real file.

        [daemon]
        state_dir = "./chorus-state"
        log_level = "info"

        [http]
        enabled = true
        listen = "127.0.0.1:8780"

        [store]
        fsync = "grouped"

        # socket.path defaults to <state_dir>/chorus.sock.
        [socket]
        mode = "0660"

        [[instance]]
        name = "sandbox"
        plugin = "sandbox"

        """

    /// The embedded default (``embeddedDefaultTOML``) with relative paths resolved against `baseDirectory`
    /// (normally the working directory of chorusd).
    public static func embeddedDefault(baseDirectory: String) -> ChorusConfiguration {
        let (configuration, errors) = validate(embeddedDefaultTOML, file: nil, baseDirectory: baseDirectory)
        guard var configuration, errors.isEmpty else {
            preconditionFailure("the embedded default configuration is invalid: \(errors.map(\.description))")
        }
        configuration.sourcePath = nil
        return configuration
    }

    // MARK: - Helpers

    private static func sortedByLine(_ errors: [ConfigError]) -> [ConfigError] {
        errors.enumerated().sorted { lhs, rhs in
            let left = lhs.element.line ?? Int.max
            let right = rhs.element.line ?? Int.max
            return left != right ? left < right : lhs.offset < rhs.offset
        }.map(\.element)
    }

    private static func lineOfFirstNUL(in text: String) -> Int? {
        var line = 1
        for byte in text.utf8 {
            if byte == 0 {
                return line
            }
            if byte == UInt8(ascii: "\n") {
                line += 1
            }
        }
        return nil
    }

    private struct InvalidUTF8: Error {
        let line: Int
    }

    private static func decodeUTF8(_ bytes: [UInt8]) -> Result<String, InvalidUTF8> {
        if let text = String(validating: bytes, as: UTF8.self) {
            return .success(text)
        }
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var line = 1
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                if scalar == "\n" {
                    line += 1
                }
            case .emptyInput:
                return .failure(InvalidUTF8(line: line))
            case .error:
                return .failure(InvalidUTF8(line: line))
            }
        }
    }

    private static func readFile(_ path: String) throws(ConfigError) -> [UInt8] {
        func failure(_ reason: String) -> ConfigError {
            ConfigError(key: nil, line: nil, message: "cannot read configuration file: \(reason)", file: path)
        }
        guard !path.isEmpty else {
            throw failure("empty path")
        }
        guard let stream = fopen(path, "rb") else {
            throw failure(String(cString: strerror(errno)))
        }
        defer { fclose(stream) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                fread(buffer.baseAddress, 1, buffer.count, stream)
            }
            if count > 0 {
                bytes.append(contentsOf: chunk[0..<count])
                if bytes.count > maxFileBytes {
                    throw failure("file is larger than \(ValueSyntax.formatSize(Int64(maxFileBytes)))")
                }
            }
            if count < chunk.count {
                if ferror(stream) != 0 {
                    throw failure(String(cString: strerror(errno)))
                }
                break
            }
        }
        return bytes
    }
}
