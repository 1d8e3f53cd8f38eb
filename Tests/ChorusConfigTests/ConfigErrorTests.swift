import XCTest
@testable import ChorusConfig

final class ConfigErrorTests: XCTestCase {
    private func errors(_ text: String) -> [ConfigError] {
        let (configuration, errors) = ChorusConfiguration.validate(text, file: "chorus.toml", baseDirectory: "/etc/chorus")
        if errors.isEmpty {
            XCTAssertNotNil(configuration)
        } else {
            XCTAssertNil(configuration, "a configuration with errors must not be returned")
        }
        return errors
    }

    /// Asserts that `text` produces exactly one error with the given key, line and message.
    private func assertSingleError(_ text: String, key: String?, line: Int?, message: String,
                                   file: StaticString = #filePath, sourceLine: UInt = #line) {
        let found = errors(text)
        XCTAssertEqual(found, [ConfigError(key: key, line: line, message: message, file: "chorus.toml")],
                       file: file, line: sourceLine)
    }

    func testDescriptionFormat() {
        let error = ConfigError(key: "http.listen", line: 12, message: "expected \"host:port\", found \"abc\"",
                                file: "chorus.toml")
        XCTAssertEqual(error.description, "chorus.toml:12: http.listen: expected \"host:port\", found \"abc\"")
        XCTAssertEqual(ConfigError(key: nil, line: 3, message: "oops", file: nil).description, "<config>:3: oops")
        XCTAssertEqual(ConfigError(key: "a.b", line: nil, message: "bad", file: "x.toml").description,
                       "x.toml: a.b: bad (line not found in source)")
        XCTAssertEqual(ConfigError(key: nil, line: nil, message: "unreadable", file: "x.toml").description,
                       "x.toml: unreadable")
    }

    func testUnknownTopLevelKey() {
        assertSingleError("""
            [http]
            listen = "127.0.0.1:1"

            colour = "blue"
            """, key: "http.colour", line: 4,
            message: "unknown key \"colour\"; allowed keys in [http]: enabled, listen, max_body_bytes, idle_timeout_ms")

        assertSingleError("""
            # comment
            verbose = true
            [daemon]
            """, key: "verbose", line: 2,
            message: "unknown key \"verbose\"; allowed keys in top-level: daemon, http, store, socket, access, instance")

        assertSingleError("""
            [daemon]
            log_level = "info"

            [metrics]
            enabled = true
            """, key: "metrics", line: 4,
            message: "unknown key \"metrics\"; allowed keys in top-level: daemon, http, store, socket, access, instance")
    }

    func testUnknownKeyInHTTPWithDottedAndInlineForms() {
        assertSingleError("""
            [http]
            enabled = true
            listen = "127.0.0.1:8780"
            max_body = 10
            """, key: "http.max_body", line: 4,
            message: "unknown key \"max_body\"; allowed keys in [http]: enabled, listen, max_body_bytes, idle_timeout_ms")

        assertSingleError("""
            daemon.log_level = "info"
            http.port = 80
            """, key: "http.port", line: 2,
            message: "unknown key \"port\"; allowed keys in [http]: enabled, listen, max_body_bytes, idle_timeout_ms")

        assertSingleError("""
            store = { fsync = "off" }

            http = { enabled = true, listen = "1.2.3.4:5", tls = true }
            """, key: "http.tls", line: 3,
            message: "unknown key \"tls\"; allowed keys in [http]: enabled, listen, max_body_bytes, idle_timeout_ms")
    }

    func testUnknownKeyInSecondInstance() {
        assertSingleError("""
            [[instance]]
            name = "one"
            plugin = "sandbox"

            [[instance]]
            name = "two"
            plugin = "sandbox"
            send_limit = 5

            [instance.settings]
            anything_goes = 1
            """, key: "instance[1].send_limit", line: 8,
            message: "unknown key \"send_limit\"; allowed keys in [[instance]]: name, plugin, enabled, settings, "
                + "send_queue_limit, send_concurrency, max_send_attempts")
    }

    func testSettingsAreFreeForm() {
        XCTAssertEqual(errors("""
            [[instance]]
            name = "one"
            plugin = "sandbox"
            [instance.settings]
            totally_unknown = "fine"
            nested.deeper.key = [1, 2]
            [instance.settings.more]
            x = 1
            """), [])
    }

    func testWrongTypes() {
        assertSingleError("""
            [daemon]
            state_dir = "/var/lib/chorus"
            shutdown_timeout_ms = "10s"
            """, key: "daemon.shutdown_timeout_ms", line: 3, message: "expected integer, found string")

        assertSingleError("""
            [http]
            enabled = "yes"
            """, key: "http.enabled", line: 2, message: "expected boolean, found string")

        assertSingleError("""
            http = 8780
            """, key: "http", line: 1, message: "expected table, found integer")

        assertSingleError("""
            [daemon]
            plugin_dirs = [
              "/a",
              42,
            ]
            """, key: "daemon.plugin_dirs[1]", line: 4, message: "expected string, found integer")

        assertSingleError("""
            [store]
            retention_hours = 1.5
            """, key: "store.retention_hours", line: 2, message: "expected integer, found float")

        assertSingleError("""
            [[instance]]
            name = "x"
            plugin = "sandbox"
            settings = "none"
            """, key: "instance[0].settings", line: 4, message: "expected table, found string")

        assertSingleError("""
            [instance]
            name = "x"
            """, key: "instance", line: 1,
            message: "expected array of tables, found table (write [[instance]] for each entry)")
    }

    func testBadListen() {
        assertSingleError("""
            [daemon]
            log_level = "info"

            [http]
            listen = "abc"
            """, key: "http.listen", line: 5, message: "expected \"host:port\", found \"abc\"")

        for bad in ["127.0.0.1", "127.0.0.1:", "host:port", "::1:80", "[::1]80", "[zz]:80", "a b:80", "h:123456"] {
            let found = errors("[http]\nlisten = \"\(bad)\"\n")
            XCTAssertEqual(found.count, 1, bad)
            XCTAssertEqual(found.first?.key, "http.listen", bad)
            XCTAssertEqual(found.first?.line, 2, bad)
            XCTAssertEqual(found.first?.message, "expected \"host:port\", found \"\(bad)\"", bad)
        }
        assertSingleError("[http]\nlisten = \":70000\"\n", key: "http.listen", line: 2,
                          message: "port must be between 0 and 65535, found 70000")
        XCTAssertEqual(errors("[http]\nlisten = \"abc\"\n").first?.description,
                       "chorus.toml:2: http.listen: expected \"host:port\", found \"abc\"")
    }

    func testDuplicateInstanceNames() {
        assertSingleError("""
            [[instance]]
            name = "chat"
            plugin = "sandbox"

            [[instance]]
            name = "other"
            plugin = "sandbox"

            [[instance]]
            plugin = "sandbox"
            name = "chat"
            """, key: "instance[2].name", line: 11,
            message: "duplicate instance name \"chat\" (first defined in instance[0] at line 2)")
    }

    func testInvalidInstanceName() {
        for bad in ["Chat", "-chat", "chat room", "*", "", String(repeating: "a", count: 64)] {
            let found = errors("""
                [[instance]]
                plugin = "sandbox"
                name = \(ConfigPath.quoted(bad))
                """)
            XCTAssertEqual(found.count, 1, bad)
            XCTAssertEqual(found.first?.key, "instance[0].name", bad)
            XCTAssertEqual(found.first?.line, 3, bad)
        }
        assertSingleError("""
            [[instance]]
            name = "Chat"
            plugin = "sandbox"
            """, key: "instance[0].name", line: 2,
            message: "invalid instance name \"Chat\": use 1 to 63 lowercase letters, digits, \"_\" or \"-\", "
                + "starting with a letter or digit")
        XCTAssertEqual(errors("[[instance]]\nname = \"\(String(repeating: "a", count: 63))\"\nplugin = \"sandbox\"\n"), [])
    }

    func testMissingRequiredKeyPointsAtTheTableHeader() {
        assertSingleError("""
            [[instance]]
            name = "one"
            plugin = "sandbox"

            # the second instance lacks its plugin
            [[instance]]
            name = "two"
            """, key: "instance[1].plugin", line: 6, message: "missing required key \"plugin\"")

        assertSingleError("""
            instance = [
              { name = "one", plugin = "sandbox" },
              { plugin = "sandbox" },
            ]
            """, key: "instance[1].name", line: 3, message: "missing required key \"name\"")
    }

    func testTOMLSyntaxErrorReportsLine() {
        let found = errors("""
            [daemon]
            log_level = "info"
            state_dir = = "x"
            """)
        XCTAssertEqual(found.count, 1)
        XCTAssertNil(found.first?.key)
        XCTAssertEqual(found.first?.line, 3)
        XCTAssertTrue(found.first?.message.hasPrefix("TOML syntax error (column ") ?? false, found.first?.message ?? "")
        XCTAssertTrue(found.first?.description.hasPrefix("chorus.toml:3: TOML syntax error") ?? false)

        let duplicate = errors("""
            [http]
            enabled = true

            enabled = false
            """)
        XCTAssertEqual(duplicate.count, 1)
        XCTAssertEqual(duplicate.first?.line, 4)
    }

    func testNULCharacterIsReportedWithItsLine() {
        assertSingleError("[daemon]\nlog_level = \"info\"\u{0}\n", key: nil, line: 2,
                          message: "the file contains a NUL character")
    }

    func testParseThrowsTheFirstErrorInFileOrder() {
        let text = """
            [[instance]]
            name = "Bad"
            plugin = "sandbox"

            [http]
            listen = "nope"

            [daemon]
            log_level = "loud"
            """
        let all = errors(text)
        XCTAssertEqual(all.map(\.key), ["instance[0].name", "http.listen", "daemon.log_level"])
        XCTAssertEqual(all.map(\.line), [2, 6, 9])
        XCTAssertEqual(all[2].message,
                       "expected one of trace, debug, info, notice, warning, error, critical, found \"loud\"")
        XCTAssertThrowsError(try ChorusConfiguration.parse(text, file: "chorus.toml", baseDirectory: "/")) { error in
            XCTAssertEqual(error as? ConfigError, all[0])
        }
    }

    func testAccessRuleErrors() {
        assertSingleError("""
            [[access]]
            read = true
            """, key: "access[0]", line: 1, message: "an access rule needs one of uid, user, gid or group")

        assertSingleError("""
            [[access]]
            uid = 1000
            group = "staff"
            """, key: "access[0].group", line: 3,
            message: "an access rule takes only one of uid, user, gid or group (found uid and group)")

        assertSingleError("""
            [[instance]]
            name = "chat"
            plugin = "sandbox"

            [[access]]
            gid = 100
            instances = ["chat", "chta"]
            """, key: "access[0].instances[1]", line: 7,
            message: "unknown instance \"chta\" (defined instances: chat)")

        assertSingleError("""
            [[access]]
            uid = -1
            """, key: "access[0].uid", line: 2, message: "must be between 0 and 4294967294, found -1")

        assertSingleError("""
            [[access]]
            user = "alice"
            instances = []
            """, key: "access[0].instances", line: 3,
            message: "must name at least one instance (use [\"*\"] for all instances)")
    }

    func testSocketErrors() {
        assertSingleError("""
            [socket]
            mode = "rw-rw----"
            """, key: "socket.mode", line: 2, message: "expected octal permission bits such as \"0660\", found \"rw-rw----\"")

        assertSingleError("""
            [socket]
            mode = 660
            """, key: "socket.mode", line: 2,
            message: "permission bits must be between 0 and 0o777, found 660; write them as a string such as \"0660\" "
                + "or as an octal integer such as 0o660")

        let long = "/" + String(repeating: "d", count: 120) + ".sock"
        assertSingleError("""
            [socket]
            path = "\(long)"
            """, key: "socket.path", line: 2,
            message: "socket path is \(long.utf8.count) bytes long; Unix socket paths are limited to 107 bytes")

        let found = errors("[daemon]\nstate_dir = \"/\(String(repeating: "s", count: 100))\"\n")
        XCTAssertEqual(found.map(\.key), ["daemon.state_dir"])
        XCTAssertEqual(found.map(\.line), [2])

        XCTAssertEqual(errors("[socket]\nmode = \"0640\"\ngroup = \"chorus\"\n"), [])
        assertSingleError("[socket]\ngroup = \"bad group\"\n", key: "socket.group", line: 2,
                          message: "invalid group name \"bad group\"")
    }

    func testOtherValueErrors() {
        assertSingleError("""
            [store]
            fsync = "sometimes"
            """, key: "store.fsync", line: 2, message: "expected one of always, grouped, off, found \"sometimes\"")

        assertSingleError("""
            [[instance]]
            name = "x"
            plugin = "not a plugin"
            """, key: "instance[0].plugin", line: 3,
            message: "invalid plugin \"not a plugin\": expected a plugin name such as \"sandbox\" (loaded as "
                + "libchorus-sandbox.so from the plugin directories) or a path to a .so file")

        assertSingleError("""
            [daemon]
            state_dir = "~/chorus"
            """, key: "daemon.state_dir", line: 2,
            message: "\"~\" is not expanded: use an absolute path or one relative to the configuration file")

        assertSingleError("""
            [[instance]]
            name = "x"
            plugin = "sandbox"
            send_concurrency = 0
            """, key: "instance[0].send_concurrency", line: 4, message: "must be between 1 and 1024, found 0")

        assertSingleError("""
            [[instance]]
            name = "x"
            plugin = "sandbox"
            [instance.settings]
            token_file = ""
            """, key: "instance[0].settings.token_file", line: 5, message: "must not be empty")
    }

    func testSeveralErrorsAreAllCollected() {
        let found = errors("""
            [daemon]
            log_level = 3
            bogus = 1

            [[instance]]
            name = "a"

            [[instance]]
            name = "a"
            plugin = "sandbox"
            """)
        XCTAssertEqual(found.map(\.key), ["daemon.log_level", "daemon.bogus", "instance[0].plugin", "instance[1].name"])
        XCTAssertEqual(found.map(\.line), [2, 3, 5, 9])
    }
}
