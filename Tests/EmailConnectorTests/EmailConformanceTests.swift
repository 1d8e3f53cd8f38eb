import ChorusConformance
import ChorusTestKit
import XCTest

/// The email plugin against the ABI contract (the conformance kit's own host, no daemon): create,
/// start with an LMTP listener and the media route, sends refused or failed cleanly, stop.
final class EmailConformanceTests: XCTestCase {
    func testConformance() throws {
        let path = try XCTUnwrap(ConformanceKit.builtPlugin(product: "chorus-email"),
                                 "libchorus-email.so is not in \(ConformanceKit.productsDirectory ?? "?"): run `swift build` first")
        let settings: [(String, String)] = [
            ("address", "support@example.test"), ("lmtp_listen", "127.0.0.1:0"),
            ("smtp_host", "127.0.0.1"), ("smtp_port", "9"), ("smtp_security", "none"), ("smtp_timeout_s", "2"),
        ]
        let report = ConformanceKit.run(pluginPath: path, settings: settings, options: ConformanceOptions())
        XCTAssertFalse(report.results.isEmpty)
        for result in report.results where !result.passed { XCTFail(result.description) }
        XCTAssertEqual(report.results.first { $0.check == ConformanceKit.Check.routes }?.detail, "GET /webhooks/conformance/media/*")
        if !report.allPassed { for entry in report.log { print("plugin log: \(entry)") } }
    }
}
