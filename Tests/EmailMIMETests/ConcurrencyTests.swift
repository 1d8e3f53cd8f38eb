import Dispatch
import EmailMIME
import XCTest

/// MailParser and MailBuilder from many threads at once give the same results as one at a time.
final class ConcurrencyTests: XCTestCase {
    struct Summary: Equatable, Sendable {
        var messageID: String?
        var subject: String
        var text: String?
        var newText: String
        var attachments: [MailAttachment]
        var report: DeliveryReport?
    }

    static func summary(_ bytes: [UInt8]) -> Summary? {
        guard let m = try? MailParser.parse(bytes) else { return nil }
        return Summary(messageID: m.messageID, subject: m.subject, text: m.text, newText: m.newText, attachments: m.attachments, report: m.deliveryReport)
    }

    func testParallelParsing() throws {
        let inputs = try EmailFixtures.all().map { try EmailFixtures.bytes($0) }
        let expected = inputs.map(ConcurrencyTests.summary)
        let rounds = 8
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var mismatches = 0
            var runs = 0
        }
        let results = Results()
        DispatchQueue.concurrentPerform(iterations: rounds * 4) { iteration in
            var mismatches = 0
            for (i, input) in inputs.enumerated() where ConcurrencyTests.summary(input) != expected[i] {
                mismatches += 1
            }
            var out = OutgoingMail(from: MailAddress(name: "Thread \(iteration)", address: "t\(iteration)@shop.example"),
                                   to: [MailAddress(address: "c@example.com")], subject: "Grüße \(iteration)",
                                   messageID: "c-\(iteration)@shop.example", date: 1_700_000_000)
            out.text = "Nachricht \(iteration) – ü"
            if let built = try? MailBuilder.build(out), let parsed = try? MailParser.parse(built) {
                if parsed.subject != "Grüße \(iteration)" || parsed.text != "Nachricht \(iteration) – ü\n" { mismatches += 1 }
            } else {
                mismatches += 1
            }
            results.lock.lock()
            results.mismatches += mismatches
            results.runs += 1
            results.lock.unlock()
        }
        XCTAssertEqual(results.runs, rounds * 4)
        XCTAssertEqual(results.mismatches, 0)
        XCTAssertGreaterThan(expected.compactMap { $0 }.count, 25)
    }
}
