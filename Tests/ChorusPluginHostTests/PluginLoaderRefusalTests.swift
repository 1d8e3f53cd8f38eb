// PluginLoaderRefusalTests.swift — the negative fixtures (Tests/Fixtures/plugins) are refused by
// PluginLoader with the right PluginLoadError case and a message naming the file and the versions, and a
// plugin whose create fails reports its reason.

import CChorusPlugin
import ChorusLoop
import ChorusPluginHost
import XCTest

final class PluginLoaderRefusalTests: XCTestCase {
    func testPluginPickingAnUnofferedVersionIsRefused() throws {
        let path = try TestPlugins.get().fixture("bad_version")
        XCTAssertThrowsError(try PluginLoader.load(path: path)) { error in
            guard case PluginLoadError.versionMismatch(let p, let offered, let picked) = error else {
                return XCTFail("expected versionMismatch, got \(error)")
            }
            XCTAssertEqual(p, path)
            XCTAssertEqual(offered, [CHORUS_PLUGIN_ABI_V1])
            XCTAssertEqual(picked, 99)
            let message = "\(error)"
            XCTAssertTrue(message.contains(path), message)
            XCTAssertTrue(message.contains("picked ABI version 99"), message)
            XCTAssertTrue(message.contains("offers only 1"), message)
        }
    }

    func testSharedObjectWithoutEntryPointIsRefused() throws {
        let path = try TestPlugins.get().fixture("no_entry")
        XCTAssertThrowsError(try PluginLoader.load(path: path)) { error in
            guard case PluginLoadError.missingSymbol(let p, let symbol) = error else {
                return XCTFail("expected missingSymbol, got \(error)")
            }
            XCTAssertEqual(p, path)
            XCTAssertEqual(symbol, "chorus_plugin_entry")
            let message = "\(error)"
            XCTAssertTrue(message.contains(path), message)
            XCTAssertTrue(message.contains("chorus_plugin_entry"), message)
        }
    }

    func testPluginBuiltWithAnotherSwiftToolchainIsRefused() throws {
        let path = try TestPlugins.get().fixture("wrong_toolchain")
        XCTAssertThrowsError(try PluginLoader.load(path: path)) { error in
            guard case PluginLoadError.toolchainMismatch(let p, let plugin, let host) = error else {
                return XCTFail("expected toolchainMismatch, got \(error)")
            }
            XCTAssertEqual(p, path)
            XCTAssertEqual(plugin, "swift-0.0.1")
            XCTAssertTrue(host.hasPrefix("swift-"), host)
            XCTAssertNotEqual(host, plugin)
            let message = "\(error)"
            XCTAssertTrue(message.contains(path), message)
            XCTAssertTrue(message.contains("swift-0.0.1"), message)
            XCTAssertTrue(message.contains(host), message)
        }
    }

    func testDescriptorSmallerThanV1IsRefused() throws {
        let path = try TestPlugins.get().fixture("small_struct")
        XCTAssertThrowsError(try PluginLoader.load(path: path)) { error in
            guard case PluginLoadError.invalidDescriptor(let p, let reason) = error else {
                return XCTFail("expected invalidDescriptor, got \(error)")
            }
            XCTAssertEqual(p, path)
            XCTAssertTrue(reason.contains("struct_size 16"), reason)
            XCTAssertTrue("\(error)".contains(path))
        }
    }

    func testMissingFileIsReportedWithTheSearchedPaths() throws {
        let dir = try TestPlugins.get().directory
        XCTAssertThrowsError(try PluginLoader.resolve("no-such-plugin", directories: [dir])) { error in
            guard case PluginLoadError.notFound(let name, let searched) = error else {
                return XCTFail("expected notFound, got \(error)")
            }
            XCTAssertEqual(name, "no-such-plugin")
            XCTAssertEqual(searched.first, "\(dir)/libchorus-no-such-plugin.so")
            XCTAssertTrue("\(error)".contains("\(dir)/libchorus-no-such-plugin.so"))
        }
    }

    func testFailingCreateReportsThePluginsReason() throws {
        let path = try TestPlugins.get().fixture("failing_init")
        let plugin = try PluginLoader.load(path: path)
        XCTAssertEqual(plugin.name, "failing-init")
        let harness = try PluginHarness()
        defer { harness.shutdown() }
        let instance = harness.instance(plugin, name: "needs-key")
        XCTAssertThrowsError(try instance.create()) { error in
            guard let e = error as? PluginInstanceError else { return XCTFail("expected PluginInstanceError, got \(error)") }
            XCTAssertEqual(e.instance, "needs-key")
            XCTAssertEqual(e.stage, "create")
            XCTAssertEqual(e.status, Int32(CHORUS_ERR_INVALID.rawValue))
            XCTAssertEqual(e.reason, "missing api_key setting")
            XCTAssertTrue(e.description.contains("missing api_key setting"), e.description)
        }
        XCTAssertEqual(instance.state, .failed)
        XCTAssertEqual(instance.lastError, "create failed: missing api_key setting")
    }
}
