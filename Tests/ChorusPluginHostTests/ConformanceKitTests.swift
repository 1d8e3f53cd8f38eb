// ConformanceKitTests.swift — ConformanceKit passes on both example connectors (the C echo plugin built
// here with gcc, and the Swift sandbox plugin built by SwiftPM) and flags each defect of the negative
// fixtures under the right check.

import ChorusConformance
import ChorusJSON
import Foundation
import XCTest

final class ConformanceKitTests: XCTestCase {
    private func assertAllPassed(_ results: [ConformanceResult], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(results.map(\.check), ConformanceKitTests.allChecks, file: file, line: line)
        for r in results where !r.passed { XCTFail(r.description, file: file, line: line) }
        XCTAssertEqual(ConformanceKit.summary(of: results), "\(ConformanceKitTests.allChecks.count) passed, 0 failed", file: file, line: line)
    }

    static let allChecks: [String] = {
        typealias C = ConformanceKit.Check
        return [C.dlopen, C.entrySymbol, C.declinesUnknownVersion, C.picksV1, C.descriptorSize, C.descriptorFields,
                C.descriptorReserved, C.vtable, C.capabilities, C.loader, C.toolchain, C.create, C.start, C.routes,
                C.sendOnce, C.noSecondResult, C.events, C.stop, C.destroy]
    }()

    private func result(_ results: [ConformanceResult], _ check: String) -> ConformanceResult? {
        results.first { $0.check == check }
    }

    // MARK: The example connectors pass

    func testEchoPluginPasses() throws {
        let results = ConformanceKit.run(pluginPath: try TestPlugins.get().echo, settings: [("prefix", "echo: ")])
        assertAllPassed(results)
        XCTAssertEqual(result(results, ConformanceKit.Check.routes)?.detail, "POST /webhooks/conformance/inbound")
        XCTAssertEqual(result(results, ConformanceKit.Check.sendOnce)?.detail, "SENT, channel message id \"echo-1\"")
        XCTAssertEqual(result(results, ConformanceKit.Check.events)?.detail, "1 event(s): message")
    }

    func testSandboxPluginPasses() throws {
        guard let path = ConformanceKit.builtPlugin(product: "chorus-sandbox") else {
            let dir = ConformanceKit.productsDirectory ?? "(unknown)"
            return XCTFail("libchorus-sandbox.so is not in the build directory \(dir): run `swift build` "
                + "(with the same --scratch-path) before `swift test`, so the plugin products are built")
        }
        let report = ConformanceKit.run(pluginPath: path, settings: [], options: ConformanceOptions())
        assertAllPassed(report.results)
        XCTAssertTrue(report.allPassed)
        XCTAssertTrue(result(report.results, ConformanceKit.Check.toolchain)?.detail.hasPrefix("built with swift-") ?? false)
        XCTAssertTrue(report.log.contains { $0.message == "sandbox channel ready" }, "\(report.log)")
    }

    func testCustomMessageFromFileIsSent() throws {
        let plugins = try TestPlugins.get()
        let file = "\(plugins.directory)/message.json"
        let message: JSONValue = ["type": "message", "to": "file-chat", "parts": [["type": "text", "text": "from a file"]]]
        XCTAssertTrue(FileManagerShim.write(JSONWriter.encode(message), to: file))
        let bytes = try ConformanceKit.readMessageFile(file)
        let collected = LineCollector()
        let report = ConformanceKit.run(pluginPath: plugins.echo, settings: [],
                                        options: ConformanceOptions(sendJSON: bytes, logSink: { collected.add($0.description) }))
        let sinkLines = collected.lines
        XCTAssertTrue(report.allPassed, report.results.filter { !$0.passed }.map(\.description).joined(separator: "\n"))
        XCTAssertTrue(sinkLines.contains { $0.contains("echo channel \"conformance\" ready") }, "\(sinkLines)")

        XCTAssertThrowsError(try ConformanceKit.readMessageFile("\(plugins.directory)/missing.json")) { error in
            XCTAssertTrue("\(error)".contains("missing.json"), "\(error)")
        }
        let notObject = "\(plugins.directory)/array.json"
        XCTAssertTrue(FileManagerShim.write(Array("[1,2]".utf8), to: notObject))
        XCTAssertThrowsError(try ConformanceKit.readMessageFile(notObject)) { error in
            XCTAssertTrue("\(error)".contains("expected a JSON object"), "\(error)")
        }
    }

    // MARK: Defects are flagged under the right check

    func testBadVersionFailsNegotiation() throws {
        let results = ConformanceKit.run(pluginPath: try TestPlugins.get().fixture("bad_version"))
        XCTAssertEqual(result(results, ConformanceKit.Check.declinesUnknownVersion)?.passed, false)
        XCTAssertEqual(result(results, ConformanceKit.Check.picksV1)?.passed, false)
        XCTAssertEqual(result(results, ConformanceKit.Check.picksV1)?.detail, "offered only [1], the plugin picked 99")
        XCTAssertEqual(result(results, ConformanceKit.Check.loader)?.passed, false)
        XCTAssertNil(result(results, ConformanceKit.Check.create), "no instance is created from a refused plugin")
    }

    func testMissingEntryPointIsFlagged() throws {
        let results = ConformanceKit.run(pluginPath: try TestPlugins.get().fixture("no_entry"))
        XCTAssertEqual(results.map(\.check), [ConformanceKit.Check.dlopen, ConformanceKit.Check.entrySymbol, ConformanceKit.Check.loader])
        XCTAssertEqual(results.map(\.passed), [true, false, false])
    }

    func testWrongToolchainIsFlagged() throws {
        let results = ConformanceKit.run(pluginPath: try TestPlugins.get().fixture("wrong_toolchain"))
        let toolchain = try XCTUnwrap(result(results, ConformanceKit.Check.toolchain))
        XCTAssertFalse(toolchain.passed)
        XCTAssertTrue(toolchain.detail.contains("swift-0.0.1"), toolchain.detail)
        XCTAssertEqual(results.filter { !$0.passed }.count, 1, "\(results)")
    }

    func testSmallDescriptorIsFlagged() throws {
        let results = ConformanceKit.run(pluginPath: try TestPlugins.get().fixture("small_struct"))
        let size = try XCTUnwrap(result(results, ConformanceKit.Check.descriptorSize))
        XCTAssertFalse(size.passed)
        XCTAssertTrue(size.detail.contains("struct_size is 16"), size.detail)
        XCTAssertNil(result(results, ConformanceKit.Check.descriptorFields), "fields beyond struct_size are not read")
    }

    func testFailingCreateIsFlaggedWithTheReason() throws {
        let results = ConformanceKit.run(pluginPath: try TestPlugins.get().fixture("failing_init"))
        let create = try XCTUnwrap(result(results, ConformanceKit.Check.create))
        XCTAssertFalse(create.passed)
        XCTAssertTrue(create.detail.contains("missing api_key setting"), create.detail)
        XCTAssertEqual(results.last?.check, ConformanceKit.Check.create)
    }

    func testRuntimeContractViolationsAreFlagged() throws {
        let report = ConformanceKit.run(pluginPath: try TestPlugins.get().fixture("misbehaving"), settings: [],
                                        options: ConformanceOptions(timeoutMilliseconds: 300, graceMilliseconds: 50))
        let failed = Set(report.results.filter { !$0.passed }.map(\.check))
        XCTAssertEqual(failed, [ConformanceKit.Check.noSecondResult, ConformanceKit.Check.events, ConformanceKit.Check.stop])
        XCTAssertTrue(result(report.results, ConformanceKit.Check.noSecondResult)?.detail.contains("2 times") ?? false)
        XCTAssertTrue(result(report.results, ConformanceKit.Check.events)?.detail.contains("id, instance") ?? false)
        XCTAssertEqual(report.summary, "16 passed, 3 failed")
        XCTAssertFalse(report.allPassed)
    }

    func testUnloadablePathIsReported() {
        let results = ConformanceKit.run(pluginPath: "/nonexistent/libchorus-nothing.so")
        XCTAssertEqual(results.count, 1)
        XCTAssertEqual(results.first?.check, ConformanceKit.Check.dlopen)
        XCTAssertEqual(results.first?.passed, false)
        XCTAssertTrue(results.first?.detail.contains("/nonexistent/libchorus-nothing.so") ?? false)
    }
}

/// Collects log lines from the (Sendable) log sink.
final class LineCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func add(_ line: String) { lock.lock(); stored.append(line); lock.unlock() }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return stored }
}

enum FileManagerShim {
    static func write(_ bytes: [UInt8], to path: String) -> Bool {
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }
}
