import ChorusTestKit
import EmailMIME
import XCTest

/// Loads the .eml fixtures from Tests/Fixtures/email in the source tree.
enum EmailFixtures {
    /// Tests/Fixtures/email, found from this file's path.
    static let directory: String = {
        var path = "\(#filePath)"
        for _ in 0..<2 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path + "/Fixtures/email"
    }()

    /// The raw bytes of a fixture.
    static func bytes(_ name: String) throws -> [UInt8] {
        let url = URL(fileURLWithPath: directory + "/" + name)
        return [UInt8](try Data(contentsOf: url))
    }

    /// A fixture, parsed.
    static func parse(_ name: String) throws -> ParsedMail {
        try MailParser.parse(bytes(name))
    }

    /// Every .eml fixture name.
    static func all() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".eml") }.sorted()
    }
}

/// SHA-256 hex of some bytes (to check attachment contents).
func sha256Hex(_ bytes: [UInt8]) -> String { TestDigest.sha256Hex(bytes) }
