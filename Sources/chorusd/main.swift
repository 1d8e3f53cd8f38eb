// chorusd: argument parsing only; the daemon lives in ChorusDaemon.
import ArgumentParser
import ChorusConfig
import ChorusDaemon
import Logging
#if canImport(Glibc)
import Glibc
#endif

struct Chorusd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chorusd",
        abstract: "Chorus chat gateway daemon.",
        discussion: "With no --config, chorusd runs on an embedded default: state in ./chorus-state, the consumer socket beside it, HTTP ingress on 127.0.0.1:8780 and the sandbox connector enabled.",
        version: "chorusd \(Daemon.version)")

    @Option(name: .shortAndLong, help: "The TOML config file (see docs/configuration.md).")
    var config: String?

    @Option(name: .customLong("check-config"), help: "Validate a config file, print any errors with key and line, and exit.")
    var checkConfig: String?

    @Option(name: .customLong("plugin-dir"), help: "Extra plugin directory (repeatable), searched after the configured ones.")
    var pluginDirs: [String] = []

    @Option(name: .customLong("log-level"), help: "Override daemon.log_level.")
    var logLevel: String?

    @Flag(name: .customLong("print-default-config"), help: "Print the embedded default config and exit.")
    var printDefault = false

    func run() throws {
        if printDefault { print(ChorusConfiguration.embeddedDefaultTOML); return }
        if let path = checkConfig {
            let text: String
            do { _ = try ChorusConfiguration.load(path: path) } catch {
                // load reports the first error; validate lists them all.
                if let t = readFile(path) { text = t } else { printErr("\(error)"); throw ExitCode(1) }
                let (_, errors) = ChorusConfiguration.validate(text, file: path, baseDirectory: dirname(path))
                for e in (errors.isEmpty ? [error] : errors) { printErr("\(e)") }
                throw ExitCode(1)
            }
            print("\(path): OK")
            return
        }
        var cfg: ChorusConfiguration
        if let path = config {
            do { cfg = try ChorusConfiguration.load(path: path) } catch { printErr("\(error)"); throw ExitCode(1) }
        } else {
            cfg = ChorusConfiguration.embeddedDefault(baseDirectory: currentDirectory())
        }
        let level = Logger.Level(rawValue: logLevel ?? cfg.daemon.logLevel) ?? .info
        // Structured journal entries when systemd connected stderr to the journal; `<N>` prefixed lines otherwise.
        let toJournal = JournalLogHandler.stderrIsJournal(journalStream: getenv("JOURNAL_STREAM").map { String(cString: $0) })
        LoggingSystem.bootstrap { label in
            toJournal ? JournalLogHandler(label: label, level: level) as LogHandler : SyslogLogHandler(label: label, level: level)
        }
        let logger = Logger(label: "chorusd")
        if config == nil { logger.notice("no --config given: running on the embedded default config (chorusd --print-default-config shows it)") }
        let exe = executableDirectory()
        let defaults = pluginDirs + [exe, exe + "/../lib/chorus/plugins", "/usr/local/lib/chorus/plugins", "/usr/lib/chorus/plugins"]
        do {
            let daemon = try Daemon(configuration: cfg, options: DaemonOptions(configPath: config, defaultPluginDirectories: defaults), logger: logger)
            let code = daemon.run()
            if code != 0 { throw ExitCode(code) }
        } catch let e as ExitCode {
            throw e
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
    }
}

func printErr(_ s: String) {
    let line = Array((s + "\n").utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

func readFile(_ path: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}

func dirname(_ path: String) -> String {
    guard let i = path.lastIndex(of: "/") else { return currentDirectory() }
    return i == path.startIndex ? "/" : String(path[..<i])
}

func currentDirectory() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    return getcwd(&buf, buf.count) != nil ? String(cString: buf) : "."
}

func executableDirectory() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    guard n > 0 else { return "." }
    return dirname(String(cString: buf))
}

Chorusd.main()
