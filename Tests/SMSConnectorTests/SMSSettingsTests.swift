import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
import XCTest

/// Settings validation, Messaging Services, and callbacks about messages this daemon never sent.
final class SMSSettingsTests: SMSTestCase {
    func testBadSettingsAreRefusedWithClearMessages() throws {
        func instance(_ name: String, _ settings: String) -> String {
            "[[instance]]\nname = \"\(name)\"\nplugin = \"sms\"\n[instance.settings]\n" + settings + "\n"
        }
        let base = "account_sid = \"\(FakeTwilio.accountSid)\"\nauth_token = \"t\"\napi_base_url = \"http://127.0.0.1:9\"\n"
        let toml = [
            instance("nopublic", base + "from_number = \"+15017122661\""),
            instance("nosender", base + "public_base_url = \"https://chorus.example.com\""),
            instance("badfrom", base + "public_base_url = \"https://chorus.example.com\"\nfrom_number = \"5017122661-x\""),
            instance("badurl", base + "public_base_url = \"chorus.example.com\"\nfrom_number = \"+15017122661\""),
            instance("badsegments", base + "public_base_url = \"https://chorus.example.com\"\nfrom_number = \"+15017122661\"\nmax_segments = 0"),
            instance("unknown", base + "public_base_url = \"https://chorus.example.com\"\nfrom_number = \"+15017122661\"\nsender_name = \"x\""),
            instance("notoken", "account_sid = \"\(FakeTwilio.accountSid)\"\npublic_base_url = \"https://chorus.example.com\"\nfrom_number = \"+15017122661\""),
        ].joined(separator: "\n")
        let d = try TestDaemon(instancesTOML: toml)
        try d.start()
        defer { d.stop() }
        let log = d.logText
        let expected: [(String, String)] = [
            ("nopublic", "setting \"public_base_url\" is required"),
            ("nosender", "give \"from_number\""),
            ("badfrom", "setting \"from_number\": expected an E.164 number"),
            ("badurl", "setting \"public_base_url\": expected an http(s) URL"),
            ("badsegments", "setting \"max_segments\": expected 1 to 100, found 0"),
            ("unknown", "unknown setting \"sender_name\""),
            ("notoken", "setting \"auth_token\" is required (or auth_token_file / auth_token_credential)"),
        ]
        for (name, message) in expected {
            let line = log.split(separator: "\n").first { $0.contains("instance \(name) failed") }
            XCTAssertNotNil(line, "no failure logged for \(name):\n\(log)")
            XCTAssertTrue(line?.contains(message) ?? false, "\(name): \(line ?? "")")
        }
    }

    func testMessagingServiceSendAndCallbacksForUnknownMessages() throws {
        let service = "MG9752274e9e519418a7406176694466fa"
        try startDaemon(settings: ["messaging_service_sid": "\"\(service)\"", "from_number": "\"\""])
        let sent = try sendAndWait(textMessage("Sent through a Messaging Service"))
        XCTAssertEqual(sent["status"]?["state"]?.stringValue, "sent", "\(sent)")
        let m = try XCTUnwrap(try fake.messages().first)
        XCTAssertEqual(m["params"]?["MessagingServiceSid"]?.first?.stringValue, service)
        XCTAssertNil(m["params"]?["From"], "From is not sent with a Messaging Service")
        XCTAssertEqual(m["status"]?.stringValue, "accepted")

        // Twilio may call back about a message another system sent from the same number: acknowledged, not stored.
        let r = try postWebhook("status", [("MessageSid", "SM" + String(repeating: "0", count: 32)), ("MessageStatus", "delivered"),
                                           ("AccountSid", FakeTwilio.accountSid), ("To", "+14155550199")])
        XCTAssertEqual(r.status, 200, r.body)
        // A status Chorus does not model ("partially_delivered" of group MMS) is acknowledged and ignored.
        let sid = try XCTUnwrap(sent["status"]?["channel_message_id"]?.stringValue)
        XCTAssertEqual(try fake.deliverStatuses(sid: sid, ["partially_delivered", "delivered"]), [200, 200])
        _ = try event { $0["status"]?["state"]?.stringValue == "delivered" && $0["status"]?["channel_message_id"]?.stringValue == sid }
        let statuses = try storedEvents(types: ["status"]).filter { $0["status"]?["channel_message_id"]?.stringValue != nil }
        XCTAssertEqual(statuses.map { $0["status"]?["state"]?.stringValue ?? "" }.sorted(), ["delivered", "sent"],
                       "the host's sent status and the delivered callback; nothing for the unknown message")
    }

    func testReloadAppliesNewSettingsOrKeepsTheOldOnes() throws {
        try startDaemon(settings: ["max_segments": "10"])
        let threeParts = String(repeating: "x", count: 400)
        XCTAssertEqual(try sendAndWait(textMessage(threeParts))["status"]?["state"]?.stringValue, "sent")

        func reconfigure(_ from: String, _ to: String, expect: String) throws {
            let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
            try config.replacingOccurrences(of: from, with: to).write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
            daemon.signal(SIGHUP)
            try waitFor(timeout: 10, expect) { self.daemon.logText.contains(expect) }
        }
        try reconfigure("max_segments = 10", "max_segments = 2", expect: "instance sms reconfigured")
        let refused = try sendAndWait(textMessage(threeParts))
        XCTAssertEqual(refused["status"]?["error"]?["code"]?.stringValue, "too_many_segments")
        XCTAssertTrue(refused["status"]?["error"]?["message"]?.stringValue?.contains("3 segments of GSM-7 (400 septets); the limit is max_segments = 2") ?? false,
                      "\(refused)")

        // An invalid new value is refused and the running settings stay.
        try reconfigure("max_segments = 2", "max_segments = 0", expect: "keeps its previous settings")
        XCTAssertTrue(daemon.logText.contains("setting \"max_segments\": expected 1 to 100, found 0"))
        XCTAssertEqual(try sendAndWait(textMessage(threeParts))["status"]?["error"]?["code"]?.stringValue, "too_many_segments")
        XCTAssertEqual(try sendAndWait(textMessage("short"))["status"]?["state"]?.stringValue, "sent")
        XCTAssertEqual(try fake.messages().count, 2)
    }
}
