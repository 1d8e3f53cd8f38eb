// chorus-conformance — checks a connector plugin (.so) against the Chorus plugin ABI contract.
//
// Argument parsing only; the checks live in ChorusConformance (ConformanceKit).

import ArgumentParser
import ChorusConformance
import ChorusJSON

@main
struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chorus-conformance",
        abstract: "Check a Chorus connector plugin against the plugin ABI contract.",
        discussion: """
            Loads the plugin the way chorusd does and runs one instance on a real event loop with a fake \
            daemon behind the host API. Prints one PASS or FAIL line per check and a final "N passed, M failed" \
            line; exits with status 1 if any check failed. See docs/plugin-abi.md.
            """)

    @Argument(help: "Path of the plugin shared object, e.g. Plugins/echo-c/build/libchorus-echo.so.")
    var plugin: String

    @Option(name: .customLong("setting"), help: ArgumentHelp("An instance setting handed to create (repeatable).", valueName: "key=value"))
    var settings: [String] = []

    @Option(name: .customLong("send-json"), help: ArgumentHelp("A file holding the outbound message JSON to send instead of the default text message.", valueName: "file"))
    var sendJSON: String?

    @Option(name: .customLong("timeout-ms"), help: "Longest wait for a send result and for stopped, in milliseconds.")
    var timeoutMilliseconds: UInt64 = ConformanceKit.defaultTimeoutMilliseconds

    @Flag(name: .long, help: "Print what the plugin and the host log during the run.")
    var verbose = false

    func validate() throws {
        for s in settings where !s.contains("=") || s.hasPrefix("=") {
            throw ValidationError("--setting expects key=value, got \"\(s)\"")
        }
        if timeoutMilliseconds == 0 { throw ValidationError("--timeout-ms must be greater than 0") }
    }

    func run() throws {
        var options = ConformanceOptions(timeoutMilliseconds: timeoutMilliseconds)
        if let sendJSON {
            let bytes: [UInt8]
            do { bytes = try ConformanceKit.readMessageFile(sendJSON) } catch {
                throw ValidationError("--send-json: \(error)")
            }
            options.sendJSON = bytes
        }
        if verbose {
            options.logSink = { entry in print("      log  \(entry)") }
        }
        let pairs: [(String, String)] = settings.map { s in
            let eq = s.firstIndex(of: "=")!
            return (String(s[..<eq]), String(s[s.index(after: eq)...]))
        }
        let report = ConformanceKit.run(pluginPath: plugin, settings: pairs, options: options)
        for result in report.results { print(result.description) }
        print(report.summary)
        if !report.allPassed { throw ExitCode(1) }
    }
}
