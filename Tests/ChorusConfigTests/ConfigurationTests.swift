import Foundation
import XCTest
@testable import ChorusConfig

final class ConfigurationTests: XCTestCase {
    /// The repository root, found from this file's location (Tests/ChorusConfigTests/…).
    private var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    private func parse(_ text: String, base: String = "/etc/chorus") throws -> ChorusConfiguration {
        try ChorusConfiguration.parse(text, file: "test.toml", baseDirectory: base)
    }

    func testEmbeddedDefaultParsesWithSandboxInstance() throws {
        let configuration = ChorusConfiguration.embeddedDefault(baseDirectory: "/srv/app")
        XCTAssertNil(configuration.sourcePath)
        XCTAssertEqual(configuration.daemon.stateDirectory, "/srv/app/chorus-state")
        XCTAssertEqual(configuration.socket.path, "/srv/app/chorus-state/chorus.sock")
        XCTAssertEqual(configuration.socket.mode, 0o660)
        XCTAssertNil(configuration.socket.group)
        XCTAssertTrue(configuration.http.enabled)
        XCTAssertEqual(configuration.http.host, "127.0.0.1")
        XCTAssertEqual(configuration.http.port, 8780)
        XCTAssertEqual(configuration.daemon.logLevel, "info")
        XCTAssertEqual(configuration.instances.count, 1)
        let sandbox = try XCTUnwrap(configuration.instance(named: "sandbox"))
        XCTAssertEqual(sandbox.plugin, "sandbox")
        XCTAssertFalse(sandbox.pluginIsPath)
        XCTAssertTrue(sandbox.enabled)
        XCTAssertTrue(configuration.access.isEmpty)

        // The text itself validates without errors and gives the same result.
        let (parsed, errors) = ChorusConfiguration.validate(ChorusConfiguration.embeddedDefaultTOML, file: nil,
                                                            baseDirectory: "/srv/app")
        XCTAssertEqual(errors, [])
        XCTAssertEqual(parsed, configuration)
    }

    func testEmbeddedDefaultWithRelativeBaseUsesWorkingDirectory() {
        let configuration = ChorusConfiguration.embeddedDefault(baseDirectory: ".")
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertEqual(configuration.daemon.stateDirectory, ValueSyntax.normalize(cwd + "/chorus-state"))
        XCTAssertTrue(configuration.socket.path.hasPrefix("/"))
    }

    func testDefaultsOfAnEmptyFile() throws {
        let configuration = try parse("")
        XCTAssertEqual(configuration.daemon, DaemonSection(stateDirectory: "/etc/chorus/chorus-state"))
        XCTAssertEqual(configuration.daemon.shutdownTimeoutMs, 10_000)
        XCTAssertFalse(configuration.daemon.rawPayloads)
        XCTAssertEqual(configuration.daemon.pluginDirectories, [])
        XCTAssertEqual(configuration.http, HTTPSection())
        XCTAssertEqual(configuration.http.maxBodyBytes, 1_048_576)
        XCTAssertEqual(configuration.http.idleTimeoutMs, 60_000)
        XCTAssertEqual(configuration.store.fsync, "grouped")
        XCTAssertEqual(configuration.store.retentionHours, 720)
        XCTAssertNil(configuration.store.retentionMaxBytes)
        XCTAssertEqual(configuration.store.subscriberBufferBytes, 4 * 1_048_576)
        XCTAssertEqual(configuration.socket.path, "/etc/chorus/chorus-state/chorus.sock")
        XCTAssertEqual(configuration.socket.maxFrameBytes, 1_048_576)
        XCTAssertEqual(configuration.instances, [])
        XCTAssertEqual(configuration.sourcePath, "test.toml")
    }

    func testDistExampleParsesAndValidates() throws {
        let path = repositoryRoot + "/dist/chorus.toml"
        let configuration = try ChorusConfiguration.load(path: path)
        XCTAssertEqual(configuration.sourcePath, ValueSyntax.normalize(path))
        XCTAssertEqual(configuration.daemon.stateDirectory, "/var/lib/chorus")
        XCTAssertEqual(configuration.daemon.pluginDirectories, ["/usr/local/lib/chorus/plugins"])
        XCTAssertEqual(configuration.socket.path, "/run/chorus/chorus.sock")
        XCTAssertEqual(configuration.socket.group, "chorus")
        XCTAssertEqual(configuration.socket.mode, 0o660)
        XCTAssertEqual(configuration.store.retentionMaxBytes, 10 << 30)
        XCTAssertEqual(configuration.http.maxBodyBytes, 1 << 20)
        XCTAssertEqual(configuration.instances.map(\.name), ["sandbox"])
        XCTAssertEqual(configuration.instances[0].plugin, "sandbox")
        XCTAssertEqual(configuration.access.count, 2)
        XCTAssertEqual(configuration.access[0], AccessRule(group: "chorus", read: true, send: false))
        XCTAssertEqual(configuration.access[1], AccessRule(group: "chorus", send: true, instances: ["sandbox"]))

        // The commented-out second instance is valid too once uncommented.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let marker = "# A second instance of another connector"
        let markerRange = try XCTUnwrap(text.range(of: marker))
        let lineEnd = try XCTUnwrap(text[markerRange.upperBound...].firstIndex(of: "\n"))
        let range = markerRange.lowerBound..<lineEnd
        let tail = text[range.upperBound...].split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.hasPrefix("# ") ? String(line.dropFirst(2)) : (line == "#" ? "" : String(line))
        }
        let uncommented = String(text[..<range.lowerBound]) + tail.joined(separator: "\n")
        let (full, errors) = ChorusConfiguration.validate(uncommented, file: "uncommented.toml",
                                                         baseDirectory: "/etc/chorus")
        XCTAssertEqual(errors, [])
        let second = try XCTUnwrap(full?.instance(named: "team-chat"))
        XCTAssertEqual(second.plugin, "/usr/local/lib/chorus/plugins/libchorus-matrix.so")
        XCTAssertTrue(second.pluginIsPath)
        XCTAssertEqual(second.sendConcurrency, 4)
        XCTAssertEqual(second.setting("rooms"), #"["!abc:example.org","!def:example.org"]"#)
        XCTAssertEqual(second.setting("limits.per_minute"), "120")
        XCTAssertEqual(second.setting("access_token_file"), "/etc/chorus/secrets/team-chat.token")
    }

    func testDocumentationAndExampleCoverEveryKey() throws {
        let documentation = try String(contentsOfFile: repositoryRoot + "/docs/configuration.md", encoding: .utf8)
        let example = try String(contentsOfFile: repositoryRoot + "/dist/chorus.toml", encoding: .utf8)
        let tables: [(String, [String])] = [
            ("[daemon]", ConfigDecoder.daemonKeys), ("[http]", ConfigDecoder.httpKeys),
            ("[store]", ConfigDecoder.storeKeys), ("[socket]", ConfigDecoder.socketKeys),
            ("[[access]]", ConfigDecoder.accessKeys), ("[[instance]]", ConfigDecoder.instanceKeys),
        ]
        for (header, keys) in tables {
            XCTAssertTrue(documentation.contains("## `\(header)"), "docs lack a section for \(header)")
            XCTAssertTrue(example.contains(header), "dist/chorus.toml lacks \(header)")
            for key in keys {
                XCTAssertTrue(documentation.contains("| `\(key)` |"), "docs lack a table row for \(header) \(key)")
                XCTAssertTrue(example.contains("\(key) =") || example.contains("[instance.\(key)]"),
                              "dist/chorus.toml does not show \(header) \(key)")
            }
        }
    }

    func testEveryKeyIsRead() throws {
        let configuration = try parse("""
            [daemon]
            state_dir = "/var/lib/chorus"
            plugin_dirs = ["/opt/a", "plugins"]
            log_level = "debug"
            shutdown_timeout_ms = 2500
            raw_payloads = true

            [http]
            enabled = false
            listen = "[::1]:9000"
            max_body_bytes = 2048
            idle_timeout_ms = 1000

            [store]
            fsync = "always"
            retention_hours = 0
            retention_max_bytes = 5000000
            subscriber_buffer_bytes = "64KiB"

            [socket]
            path = "ctl.sock"
            mode = 0o600
            group = 1001
            max_frame_bytes = "2MiB"

            [[access]]
            uid = 1000
            send = true
            admin = true
            instances = ["one"]

            [[access]]
            user = "alice"
            read = false

            [[instance]]
            name = "one"
            plugin = "sandbox"
            enabled = false
            send_queue_limit = 5
            send_concurrency = 2
            max_send_attempts = 3
            """)
        XCTAssertEqual(configuration.daemon, DaemonSection(stateDirectory: "/var/lib/chorus",
                                                           pluginDirectories: ["/opt/a", "/etc/chorus/plugins"],
                                                           logLevel: "debug", shutdownTimeoutMs: 2500, rawPayloads: true))
        XCTAssertEqual(configuration.http, HTTPSection(enabled: false, host: "::1", port: 9000, maxBodyBytes: 2048,
                                                       idleTimeoutMs: 1000))
        XCTAssertEqual(configuration.http.listenAddress, "[::1]:9000")
        XCTAssertEqual(configuration.store, StoreSection(fsync: "always", retentionHours: nil,
                                                         retentionMaxBytes: 5_000_000, subscriberBufferBytes: 65_536))
        XCTAssertEqual(configuration.socket, SocketSection(path: "/var/lib/chorus/ctl.sock", mode: 0o600, group: "1001",
                                                           maxFrameBytes: 2 << 20))
        XCTAssertEqual(configuration.access, [
            AccessRule(uid: 1000, read: true, send: true, admin: true, instances: ["one"]),
            AccessRule(user: "alice", read: false),
        ])
        XCTAssertTrue(configuration.access[0].covers(instance: "one"))
        XCTAssertFalse(configuration.access[0].covers(instance: "two"))
        XCTAssertTrue(configuration.access[1].covers(instance: "two"))
        XCTAssertEqual(configuration.instances, [
            InstanceConfig(name: "one", plugin: "sandbox", enabled: false, settings: [], sendQueueLimit: 5,
                           sendConcurrency: 2, maxSendAttempts: 3),
        ])
    }

    func testListenForms() throws {
        let cases: [(String, String, Int)] = [
            ("127.0.0.1:8780", "127.0.0.1", 8780),
            ("[::1]:8780", "::1", 8780),
            (":8780", "0.0.0.0", 8780),
            ("localhost:0", "localhost", 0),
            ("[fe80::1%eth0]:65535", "fe80::1%eth0", 65535),
        ]
        for (listen, host, port) in cases {
            let configuration = try parse("[http]\nlisten = \"\(listen)\"\n")
            XCTAssertEqual(configuration.http.host, host, listen)
            XCTAssertEqual(configuration.http.port, port, listen)
        }
    }

    func testSettingsFlatteningOfNestedTablesAndArrays() throws {
        let configuration = try parse(#"""
            [[instance]]
            name = "chat"
            plugin = "sandbox"

            [instance.settings]
            token = "abc"
            port = 0x1F
            ratio = 1.5
            big = 1e20
            verbose = true
            rooms = ["a", "b\"q"]
            mixed = [1, 2.5, false, { id = 7, tags = ["x"] }, [3]]
            day = 2024-01-02
            secret_file = "secrets/token"
            absolute_file = "/run/secrets/x"
            inline = { depth = { level = 3 } }
            "quoted.key" = "q"

            [instance.settings.limits]
            per_minute = 120

            [instance.settings.limits.burst]
            size = 20
            """#)
        let settings = try XCTUnwrap(configuration.instances.first).settings
        XCTAssertEqual(settings.map(\.key), settings.map(\.key).sorted())
        let dictionary = Dictionary(uniqueKeysWithValues: settings.map { ($0.key, $0.value) })
        XCTAssertEqual(dictionary, [
            "token": "abc",
            "port": "31",
            "ratio": "1.5",
            "big": "1e+20",
            "verbose": "true",
            "rooms": #"["a","b\"q"]"#,
            "mixed": #"[1,2.5,false,{"id":7,"tags":["x"]},[3]]"#,
            "day": "2024-01-02",
            "secret_file": "/etc/chorus/secrets/token",
            "absolute_file": "/run/secrets/x",
            "inline.depth.level": "3",
            "quoted.key": "q",
            "limits.per_minute": "120",
            "limits.burst.size": "20",
        ])
        XCTAssertEqual(configuration.instances[0].setting("limits.burst.size"), "20")
        XCTAssertNil(configuration.instances[0].setting("missing"))
    }

    func testSizeUnits() throws {
        let cases: [(String, Int64)] = [
            ("\"2048\"", 2048),
            ("4096", 4096),
            ("\"10B\"", 10),
            ("\"1KB\"", 1000),
            ("\"1KiB\"", 1024),
            ("\"500MB\"", 500_000_000),
            ("\"500 mib\"", 500 << 20),
            ("\"10GiB\"", 10 << 30),
            ("\"10GB\"", 10_000_000_000),
            ("\"1.5GiB\"", 3 << 29),
            ("\"2TiB\"", 2 << 40),
            ("\"3TB\"", 3_000_000_000_000),
        ]
        for (text, expected) in cases {
            let configuration = try parse("[store]\nretention_max_bytes = \(text)\n")
            XCTAssertEqual(configuration.store.retentionMaxBytes, expected, text)
        }
        XCTAssertNil(try parse("[store]\nretention_max_bytes = 0\n").store.retentionMaxBytes)
        XCTAssertNil(try parse("[store]\nretention_max_bytes = \"0GiB\"\n").store.retentionMaxBytes)
        XCTAssertEqual(try parse("[http]\nmax_body_bytes = \"64MiB\"\n").http.maxBodyBytes, 64 << 20)
        XCTAssertEqual(try parse("[socket]\nmax_frame_bytes = \"1KiB\"\n").socket.maxFrameBytes, 1024)

        for bad in ["\"10 parsecs\"", "\"GiB\"", "\"1.\"", "\"-5MB\"", "\"99999999999TiB\""] {
            let (_, errors) = ChorusConfiguration.validate("[store]\nretention_max_bytes = \(bad)\n", file: "t.toml",
                                                           baseDirectory: "/")
            XCTAssertEqual(errors.count, 1, bad)
            XCTAssertEqual(errors.first?.key, "store.retention_max_bytes", bad)
            XCTAssertEqual(errors.first?.line, 2, bad)
            XCTAssertTrue(errors.first?.message.hasPrefix("expected a size such as") ?? false, bad)
        }
        let (_, tooBig) = ChorusConfiguration.validate("[http]\nmax_body_bytes = \"65MiB\"\n", file: "t.toml",
                                                       baseDirectory: "/")
        XCTAssertEqual(tooBig, [ConfigError(key: "http.max_body_bytes", line: 2,
                                            message: "must be between 1 KiB and 64 MiB, found 65 MiB", file: "t.toml")])
    }

    func testRelativePathResolution() throws {
        let configuration = try parse("""
            [daemon]
            state_dir = "state/../var/./chorus"
            plugin_dirs = ["../plugins", "/abs/dir/", "."]

            [socket]
            path = "run/chorus.sock"

            [[instance]]
            name = "local"
            plugin = "./build/libchorus-local.so"

            [[instance]]
            name = "named"
            plugin = "sandbox"
            """, base: "/etc/chorus/")
        XCTAssertEqual(configuration.daemon.stateDirectory, "/etc/chorus/var/chorus")
        XCTAssertEqual(configuration.daemon.pluginDirectories, ["/etc/plugins", "/abs/dir", "/etc/chorus"])
        XCTAssertEqual(configuration.socket.path, "/etc/chorus/var/chorus/run/chorus.sock")
        XCTAssertEqual(configuration.instances[0].plugin, "/etc/chorus/build/libchorus-local.so")
        XCTAssertEqual(configuration.instances[1].plugin, "sandbox")
    }

    func testLoadResolvesAgainstTheFilesDirectory() throws {
        let directory = NSTemporaryDirectory() + "chorus-config-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory + "/conf", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/conf/chorus.toml"
        try "[daemon]\nstate_dir = \"../state\"\n".write(toFile: path, atomically: true, encoding: .utf8)

        let configuration = try ChorusConfiguration.load(path: path)
        let root = ValueSyntax.normalize(directory)
        XCTAssertEqual(configuration.daemon.stateDirectory, root + "/state")
        XCTAssertEqual(configuration.socket.path, root + "/state/chorus.sock")
        XCTAssertEqual(configuration.sourcePath, root + "/conf/chorus.toml")
    }

    func testLoadReportsUnreadableAndInvalidFiles() throws {
        XCTAssertThrowsError(try ChorusConfiguration.load(path: "/nonexistent/chorus.toml")) { error in
            XCTAssertEqual(error as? ConfigError, ConfigError(
                key: nil, line: nil, message: "cannot read configuration file: No such file or directory",
                file: "/nonexistent/chorus.toml"))
        }
        XCTAssertThrowsError(try ChorusConfiguration.load(path: NSTemporaryDirectory())) { error in
            XCTAssertEqual((error as? ConfigError)?.message, "cannot read configuration file: Is a directory")
        }

        let path = NSTemporaryDirectory() + "chorus-config-utf8-\(getpid()).toml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var bytes = Array("[daemon]\nlog_level = \"".utf8)
        bytes += [0xFF, 0xFE]
        bytes += Array("\"\n".utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try ChorusConfiguration.load(path: path)) { error in
            XCTAssertEqual(error as? ConfigError, ConfigError(key: nil, line: 2, message: "the file is not valid UTF-8",
                                                              file: path))
        }
    }
}
