// PluginTestSupport.swift — builds the C test plugins (the negative fixtures and the echo connector) with
// gcc, using the flags of their Makefiles, into a temporary directory once per test run, and provides a small harness: a real EventLoop, a
// FakeDaemon behind the host API, plugin instances, and an HTTP ingress + client for webhooks.

import ChorusConformance
import ChorusJSON
import ChorusLoop
import ChorusPluginHost
import Foundation
import Logging
import XCTest

/// Paths of the C plugins built for this test run.
struct BuiltPlugins: Sendable {
    let directory: String
    let echo: String
    func fixture(_ name: String) -> String { "\(directory)/fixtures/\(name).so" }
}

enum PluginBuildError: Error, CustomStringConvertible {
    case failed(command: String, status: Int32, output: String)
    var description: String {
        switch self {
        case .failed(let command, let status, let output): return "`\(command)` exited with \(status):\n\(output)"
        }
    }
}

enum TestPlugins {
    /// The repository root, from this file's location (Tests/ChorusPluginHostTests/…).
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Where `built` put the plugins; removed when the test process exits.
    nonisolated(unsafe) static var builtDirectory: String?

    /// Built once per process; every test shares the result.
    static let built: Result<BuiltPlugins, PluginBuildError> = {
        do {
            let dir = FileManager.default.temporaryDirectory
                .appendingPathComponent("chorus-plugin-tests-\(getpid())").path
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            builtDirectory = dir
            atexit { if let dir = TestPlugins.builtDirectory { try? FileManager.default.removeItem(atPath: dir) } }
            let include = "\(repositoryRoot)/Sources/CChorusPlugin/include"
            // The flags of Plugins/echo-c/Makefile and Tests/Fixtures/plugins/Makefile.
            let flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-fvisibility=hidden", "-shared", "-I", include]
            let fixtures = "\(repositoryRoot)/Tests/Fixtures/plugins"
            try FileManager.default.createDirectory(atPath: "\(dir)/fixtures", withIntermediateDirectories: true)
            for source in try FileManager.default.contentsOfDirectory(atPath: fixtures).sorted() where source.hasSuffix(".c") {
                let name = String(source.dropLast(2))
                try run(["gcc"] + flags + ["-o", "\(dir)/fixtures/\(name).so", "\(fixtures)/\(source)"])
            }
            try FileManager.default.createDirectory(atPath: "\(dir)/echo", withIntermediateDirectories: true)
            try run(["gcc"] + flags + ["-Wl,-z,defs", "-o", "\(dir)/echo/libchorus-echo.so", "\(repositoryRoot)/Plugins/echo-c/echo.c"])
            return .success(BuiltPlugins(directory: dir, echo: "\(dir)/echo/libchorus-echo.so"))
        } catch let error as PluginBuildError {
            return .failure(error)
        } catch {
            return .failure(.failed(command: "mkdir", status: -1, output: "\(error)"))
        }
    }()

    static func get() throws -> BuiltPlugins { try built.get() }

    private static func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw PluginBuildError.failed(command: arguments.joined(separator: " "), status: process.terminationStatus, output: output)
        }
    }
}

/// A loop, a fake daemon and the instances created on them. Call `shutdown()` at the end of each test.
final class PluginHarness {
    let loop: EventLoop
    let fake: FakeDaemon
    let logger = Logger(label: "chorus-plugin-tests") { _ in SwiftLogNoOpLogHandler() }
    private(set) var instances: [PluginInstance] = []
    private var ingress: HTTPServer?
    private var client: HTTPClient?
    let stateDirectory: String

    init() throws {
        loop = try EventLoop()
        fake = FakeDaemon(loop: loop)
        stateDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-harness-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
    }

    /// Creates (but does not start) an instance attached to the fake daemon.
    func instance(_ plugin: LoadedPlugin, name: String = "echo-test", settings: [(String, String)] = []) -> PluginInstance {
        let i = PluginInstance(name: name, plugin: plugin, settings: settings, stateDirectory: stateDirectory,
                               loop: loop, httpClient: nil, logger: logger)
        i.delegate = fake
        instances.append(i)
        return i
    }

    /// Creates and starts an instance.
    func started(_ plugin: LoadedPlugin, name: String = "echo-test", settings: [(String, String)] = []) throws -> PluginInstance {
        let i = instance(plugin, name: name, settings: settings)
        try i.create()
        try i.start()
        return i
    }

    /// Stops (waiting for `stopped`) and destroys an instance. Returns whether `stopped` came in time.
    @discardableResult
    func stopAndDestroy(_ i: PluginInstance) -> Bool {
        let before = fake.stoppedInstances.filter { $0 == i.name }.count
        i.stop()
        let stopped = fake.runLoop(until: { self.fake.stoppedInstances.filter { $0 == i.name }.count > before },
                                   timeoutMilliseconds: 2000)
        fake.markDestroyed(i)
        i.destroy()
        return stopped
    }

    /// Sends an HTTP request to the fake daemon's ingress and runs the loop until the answer arrives.
    func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
                 timeoutMilliseconds: UInt64 = 5000) throws -> HTTPClientResponse?
    {
        if ingress == nil { ingress = try fake.startIngress(logger: logger) }
        if client == nil { client = try HTTPClient(loop: loop) }
        var response: HTTPClientResponse?
        startRequest(method, path, headers: headers, body: body) { response = $0 }
        fake.runLoop(until: { response != nil }, timeoutMilliseconds: timeoutMilliseconds)
        return response
    }

    /// Starts an HTTP request without waiting; `completion` runs on the loop.
    func startRequest(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
                      completion: @escaping (HTTPClientResponse) -> Void)
    {
        if ingress == nil { ingress = try? fake.startIngress(logger: logger) }
        if client == nil { client = try? HTTPClient(loop: loop) }
        guard let ingress, let client else { return }
        client.execute(HTTPClientRequest(method: method, url: "http://127.0.0.1:\(ingress.boundPort)\(path)",
                                         headers: headers, body: body), completion: completion)
    }

    func shutdown() {
        for i in instances where i.state != .stopped && i.state != .failed {
            stopAndDestroy(i)
        }
        client?.close()
        ingress?.close()
        fake.runLoop(forMilliseconds: 20)
        loop.shutdown()
        try? FileManager.default.removeItem(atPath: stateDirectory)
    }
}

extension JSONValue {
    /// Encodes to bytes (test convenience).
    var bytes: [UInt8] { JSONWriter.encode(self) }
}

/// An outbound message in the form chorusd hands to `send`.
func outboundMessage(to chat: String, parts: [JSONValue], id: String = "msg_test_1") -> [UInt8] {
    let message: JSONValue = [
        "schema": 1, "message_id": .string(id), "type": "message", "instance": "echo-test",
        "conversation_id": "conv_test", "to": .string(chat),
        "channel_ids": ["chat": .string(chat), "account": "echo-test"], "parts": .array(parts),
    ]
    return message.bytes
}

func textParts(_ text: String) -> [JSONValue] { [["type": "text", "text": .string(text)]] }
