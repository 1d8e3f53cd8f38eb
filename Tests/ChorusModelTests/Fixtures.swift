import ChorusJSON
import ChorusModel
import Foundation
import XCTest

/// Shared inputs and helpers for the model tests.
enum Fixtures {
    /// 2026-11-23T10:00:00.000Z
    static let now: Int64 = 1_795_428_000_000

    static let whatsapp = InstanceContext(name: "wa-main", channel: "whatsapp", keepRaw: false)
    static let whatsappKeepRaw = InstanceContext(name: "wa-main", channel: "whatsapp", keepRaw: true)
    static let telegram = InstanceContext(name: "tg-support", channel: "telegram", keepRaw: false)

    static func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> JSONValue {
        do { return try JSONParser.parse(text) } catch {
            XCTFail("fixture is not JSON: \(error)\n\(text)", file: file, line: line)
            return .null
        }
    }

    /// A message event as a plugin emits it, around the given parts array.
    static func message(parts: String) -> String {
        #"{"type":"message","channel_ids":{"message":"wamid.P1","chat":"4915112345678","account":"1065"},"sender":{"id":"4915112345678"},"parts":\#(parts)}"#
    }

    // MARK: Parts

    /// Parts the validator accepts: at least one of every type and interactive style.
    static let validParts: [String] = [
        #"{"type":"text","text":"Hello ✓ \"quoted\"\nsecond line"}"#,
        #"{"type":"text","text":"","format":"markdown"}"#,
        #"{"type":"text","text":"<b>hi</b>","format":"html"}"#,
        #"{"type":"media","kind":"image","url":"https://cdn.example/a.jpg","mime_type":"image/jpeg","size":48213,"caption":"Receipt","width":800,"height":600,"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}"#,
        #"{"type":"media","kind":"voice","channel_media_id":"1234567","mime_type":"audio/ogg","duration_ms":5300}"#,
        #"{"type":"media","kind":"file","ref":"blob_01","file_name":"invoice.pdf","caption":""}"#,
        #"{"type":"media","kind":"sticker","url":"https://cdn.example/s.webp"}"#,
        #"{"type":"media","kind":"video","url":"https://cdn.example/v.mp4","caption":null,"size":null}"#,
        #"{"type":"location","latitude":52.52,"longitude":13.405,"name":"Office","address":"Alexanderplatz 1, Berlin","url":"https://maps.example/x"}"#,
        #"{"type":"location","latitude":-90,"longitude":180}"#,
        #"{"type":"contact","name":{"formatted":"Ana Lima","first":"Ana","last":"Lima","prefix":"Dr."},"phones":[{"number":"+4915112345678","type":"mobile","channel_id":"4915112345678"}],"emails":[{"address":"ana@example.com","type":"work"}],"organization":{"company":"Lima GmbH","title":"CEO"},"urls":[{"url":"https://lima.example","type":"work"}],"addresses":[{"city":"Berlin","country_code":"DE"}],"birthday":"1990-04-01"}"#,
        #"{"type":"interactive","style":"buttons","header":"Order #1042","body":"Confirm delivery?","footer":"Reply within 24h","buttons":[{"id":"yes","title":"Yes"},{"id":"no","title":"No","payload":"cancel-1042"}]}"#,
        #"{"type":"interactive","style":"list","body":"Pick a slot","buttons":[{"id":"menu","title":"Slots"}],"sections":[{"title":"Tomorrow","rows":[{"id":"t9","title":"09:00","description":"Morning"},{"id":"t14","title":"14:00"}]}]}"#,
        #"{"type":"interactive","style":"quick_replies","body":"Rate us","buttons":[{"id":"5","title":"★★★★★"}]}"#,
        #"{"type":"interactive","style":"cta_url","body":"Track your parcel","buttons":[{"title":"Track","url":"https://track.example/1042"}]}"#,
        #"{"type":"interactive","style":"product","body":"Still interested?","catalog_id":"cat1","product_id":"sku-1"}"#,
        #"{"type":"interactive","style":"product_list","header":"Our picks","body":"Summer","catalog_id":"cat1","sections":[{"title":"Shoes","product_ids":["sku-1","sku-2"]}]}"#,
        #"{"type":"interactive_reply","choice_id":"yes","title":"Yes","kind":"button","payload":""}"#,
        #"{"type":"interactive_reply","choice_id":"t14","title":"14:00","description":"","kind":"list"}"#,
        #"{"type":"template","name":"order_update","language":"en_US","parameters":{"header":[{"type":"text","text":"No. 1042"}],"body":["Ana","1042"],"buttons":[]},"components":[{"type":"body"}]}"#,
        #"{"type":"product","catalog_id":"cat1","product_id":"sku-1","title":"Trail shoe","description":"","price":{"amount":8999,"currency":"EUR"},"image_url":"https://cdn.example/sku-1.jpg","url":"https://shop.example/sku-1"}"#,
        #"{"type":"order","catalog_id":"cat1","order_id":"ord-77","items":[{"product_id":"sku-1","title":"Trail shoe","quantity":2,"price":{"amount":8999,"currency":"EUR"}},{"product_id":"sku-9","quantity":1}],"total":{"amount":17998,"currency":"EUR"},"note":"Gift wrap please","status":"pending"}"#,
        #"{"type":"payment_request","amount":17998,"currency":"EUR","description":"Order ord-77","link":"https://pay.example/p/77","provider":"stripe","expires_at":"2026-11-24T10:00:00+01:00","order_id":"ord-77"}"#,
        #"{"type":"payment_request","amount":0,"currency":"JPY","provider_reference":"pi_123"}"#,
        #"{"type":"unsupported","channel_type":"poll","description":"A poll with 3 options"}"#,
    ]

    /// Parts the validator refuses, each with the exact error path (inside `parts[0]`) and a fragment of the message.
    static let invalidParts: [(json: String, path: String, message: String)] = [
        (#""hello""#, "parts[0]", "expected object, found string"),
        (#"{"text":"a"}"#, "parts[0].type", "is required"),
        (#"{"type":"video","url":"u"}"#, "parts[0].type", "unknown part type \"video\""),
        (#"{"type":"text"}"#, "parts[0].text", "is required"),
        (#"{"type":"text","text":5}"#, "parts[0].text", "expected string, found number"),
        (#"{"type":"text","text":"a","format":"rtf"}"#, "parts[0].format", "must be one of html, markdown, plain"),
        (#"{"type":"text","text":"a","bold":true}"#, "parts[0].bold", "unknown field"),
        (#"{"type":"media","kind":"image"}"#, "parts[0].url", "needs one of url, ref or channel_media_id"),
        (#"{"type":"media","kind":"gif","url":"u"}"#, "parts[0].kind", "must be one of"),
        (#"{"type":"media","url":"u"}"#, "parts[0].kind", "is required"),
        (#"{"type":"media","kind":"image","url":"u","size":-1}"#, "parts[0].size", "must be ≥ 0"),
        (#"{"type":"media","kind":"image","url":"u","width":1.5}"#, "parts[0].width", "expected integer, found a fraction"),
        (#"{"type":"media","kind":"image","url":""}"#, "parts[0].url", "must not be empty"),
        (#"{"type":"location","latitude":91,"longitude":0}"#, "parts[0].latitude", "must be within"),
        (#"{"type":"location","latitude":0,"longitude":-180.5}"#, "parts[0].longitude", "must be within"),
        (#"{"type":"location","latitude":"52.5","longitude":13}"#, "parts[0].latitude", "expected number, found string"),
        (#"{"type":"location","latitude":1}"#, "parts[0].longitude", "is required"),
        (#"{"type":"contact","name":{"first":"Ana"}}"#, "parts[0].name.formatted", "is required"),
        (#"{"type":"contact","name":"Ana"}"#, "parts[0].name", "expected object, found string"),
        (#"{"type":"contact","name":{"formatted":"Ana","nick":"A"}}"#, "parts[0].name.nick", "unknown field"),
        (#"{"type":"contact","name":{"formatted":"Ana"},"phones":[{"type":"mobile"}]}"#, "parts[0].phones[0].number", "is required"),
        (#"{"type":"contact","name":{"formatted":"Ana"},"emails":[{"address":"a@b.c","label":"x"}]}"#, "parts[0].emails[0].label", "unknown field"),
        (#"{"type":"interactive","style":"buttons","body":"x"}"#, "parts[0].buttons", "is required"),
        (#"{"type":"interactive","style":"buttons","buttons":[]}"#, "parts[0].buttons", "must not be empty"),
        (#"{"type":"interactive","style":"buttons","buttons":[{"title":"Yes"}]}"#, "parts[0].buttons[0].id", "is required"),
        (#"{"type":"interactive","style":"buttons","buttons":[{"id":"y"}]}"#, "parts[0].buttons[0].title", "is required"),
        (#"{"type":"interactive","style":"cta_url","buttons":[{"title":"Go"}]}"#, "parts[0].buttons[0].url", "is required"),
        (#"{"type":"interactive","style":"list","body":"x"}"#, "parts[0].sections", "is required"),
        (#"{"type":"interactive","style":"list","sections":[{"rows":[{"id":"a"}]}]}"#, "parts[0].sections[0].rows[0].title", "is required"),
        (#"{"type":"interactive","style":"product_list","catalog_id":"c","sections":[{"product_ids":["a",1]}]}"#, "parts[0].sections[0].product_ids[1]", "expected string"),
        (#"{"type":"interactive","style":"product","catalog_id":"c"}"#, "parts[0].product_id", "is required"),
        (#"{"type":"interactive","style":"product","product_id":"p"}"#, "parts[0].catalog_id", "is required"),
        (#"{"type":"interactive","style":"carousel","body":"x"}"#, "parts[0].style", "must be one of"),
        (#"{"type":"interactive_reply","title":"Yes"}"#, "parts[0].choice_id", "is required"),
        (#"{"type":"interactive_reply","choice_id":"a","kind":"swipe"}"#, "parts[0].kind", "must be one of"),
        (#"{"type":"template","name":"t"}"#, "parts[0].language", "is required"),
        (#"{"type":"template","name":"t","language":"en","parameters":{"footer":[]}}"#, "parts[0].parameters.footer", "unknown field"),
        (#"{"type":"template","name":"t","language":"en","parameters":{"body":"x"}}"#, "parts[0].parameters.body", "expected array, found string"),
        (#"{"type":"product","title":"x"}"#, "parts[0].product_id", "is required"),
        (#"{"type":"product","product_id":"p","price":{"amount":100}}"#, "parts[0].price.currency", "is required"),
        (#"{"type":"product","product_id":"p","price":{"amount":1.25,"currency":"EUR"}}"#, "parts[0].price.amount", "expected integer, found a fraction"),
        (#"{"type":"product","product_id":"p","price":{"amount":100,"currency":"eur"}}"#, "parts[0].price.currency", "ISO 4217"),
        (#"{"type":"product","product_id":"p","price":{"amount":100,"currency":"EUR","symbol":"€"}}"#, "parts[0].price.symbol", "unknown field"),
        (#"{"type":"order","items":[]}"#, "parts[0].items", "must not be empty"),
        (#"{"type":"order","order_id":"o"}"#, "parts[0].items", "is required"),
        (#"{"type":"order","items":[{"product_id":"a","quantity":0}]}"#, "parts[0].items[0].quantity", "must be ≥ 1"),
        (#"{"type":"order","items":[{"product_id":"a"}]}"#, "parts[0].items[0].quantity", "is required"),
        (#"{"type":"order","items":[{"product_id":"a","quantity":1}],"total":{"amount":-5,"currency":"EUR"}}"#, "parts[0].total.amount", "must be ≥ 0"),
        (#"{"type":"payment_request","amount":100,"currency":"EUR"}"#, "parts[0].link", "needs a link or a provider_reference"),
        (#"{"type":"payment_request","amount":"100","currency":"EUR","link":"l"}"#, "parts[0].amount", "expected integer, found string"),
        (#"{"type":"payment_request","amount":99.5,"currency":"EUR","link":"l"}"#, "parts[0].amount", "expected integer, found a fraction"),
        (#"{"type":"payment_request","amount":100,"currency":"EURO","link":"l"}"#, "parts[0].currency", "ISO 4217"),
        (#"{"type":"payment_request","currency":"EUR","link":"l"}"#, "parts[0].amount", "is required"),
        (#"{"type":"payment_request","amount":100,"link":"l"}"#, "parts[0].currency", "is required"),
        (#"{"type":"payment_request","amount":100,"currency":"EUR","link":"l","expires_at":"tomorrow"}"#, "parts[0].expires_at", "RFC 3339"),
        (#"{"type":"unsupported"}"#, "parts[0].channel_type", "is required"),
        (#"{"type":"unsupported","channel_type":"poll","options":[]}"#, "parts[0].options", "unknown field"),
    ]

    // MARK: Outbound sends

    /// `send` messages the daemon accepts.
    static let validSends: [String] = [
        #"{"conversation_id":"conv_WVT7XCB17G817NMATQ90TVNFVP","parts":[{"type":"text","text":"Your order shipped"}]}"#,
        #"{"type":"message","instance":"wa-main","to":"4915112345678","parts":[{"type":"template","name":"order_update","language":"en_US","parameters":{"body":["Ana"]}}],"options":{"preview_url":false},"metadata":{"ticket":"T-9"}}"#,
        #"{"conversation_id":"c1","parts":[{"type":"payment_request","amount":17998,"currency":"EUR","link":"https://pay.example/p/77"}],"reply_to":{"channel_message_id":"wamid.1"},"thread_id":"th-1"}"#,
        #"{"type":"edit","conversation_id":"c1","target":{"message_id":"msg_01JD8X3Z5Q7K9M2N4P6R8S0T1V"},"parts":[{"type":"text","text":"fixed typo"}]}"#,
        #"{"type":"reaction","conversation_id":"c1","target":{"channel_message_id":"wamid.1"},"reaction":{"emoji":"👍"}}"#,
        #"{"type":"reaction","conversation_id":"c1","target":{"channel_message_id":"wamid.1"},"reaction":{"action":"remove"}}"#,
        #"{"type":"delete","conversation_id":"c1","target":{"message_id":"msg_x"}}"#,
        #"{"type":"typing","conversation_id":"c1","typing":{"state":"on"}}"#,
        #"{"type":"typing","instance":"tg","to":"-100123"}"#,
        #"{"type":"read","conversation_id":"c1","target":{"channel_message_id":"wamid.9"}}"#,
        #"{"type":null,"conversation_id":"c1","parts":[{"type":"text","text":"t"}],"thread_id":null,"metadata":null,"options":null}"#,
    ]

    /// `send` messages the daemon refuses, with the exact error path and a message fragment.
    static let invalidSends: [(json: String, path: String, message: String)] = [
        (#"[1]"#, "message", "expected object, found array"),
        (#"{"conversation_id":"c1","text":"hi"}"#, "message.text", "unknown field"),
        (#"{"parts":[{"type":"text","text":"t"}]}"#, "message.conversation_id", "is required (or give both instance and to)"),
        (#"{"instance":"wa","parts":[{"type":"text","text":"t"}]}"#, "message.conversation_id", "is required"),
        (#"{"conversation_id":"","parts":[{"type":"text","text":"t"}]}"#, "message.conversation_id", "must not be empty"),
        (#"{"type":"poll","conversation_id":"c1"}"#, "message.type", "must be one of"),
        (#"{"conversation_id":"c1"}"#, "message.parts", "is required"),
        (#"{"conversation_id":"c1","parts":[]}"#, "message.parts", "must contain at least one part"),
        (#"{"conversation_id":"c1","parts":[{"type":"text"}]}"#, "message.parts[0].text", "is required"),
        (#"{"type":"edit","conversation_id":"c1","parts":[{"type":"text","text":"t"}]}"#, "message.target", "is required"),
        (#"{"type":"edit","conversation_id":"c1","target":{},"parts":[{"type":"text","text":"t"}]}"#, "message.target.channel_message_id", "is required"),
        (#"{"type":"reaction","conversation_id":"c1","target":{"channel_message_id":"w"}}"#, "message.reaction", "is required"),
        (#"{"type":"reaction","conversation_id":"c1","target":{"channel_message_id":"w"},"reaction":{}}"#, "message.reaction.emoji", "is required"),
        (#"{"type":"reaction","conversation_id":"c1","target":{"channel_message_id":"w"},"reaction":{"emoji":"x","action":"toggle"}}"#, "message.reaction.action", "must be one of"),
        (#"{"type":"delete","conversation_id":"c1"}"#, "message.target", "is required"),
        (#"{"type":"delete","conversation_id":"c1","target":{"message_id":"m"},"parts":[{"type":"text","text":"t"}]}"#, "message.parts", "only message and edit sends carry parts"),
        (#"{"type":"read","conversation_id":"c1"}"#, "message.target", "is required"),
        (#"{"type":"typing","conversation_id":"c1","typing":{"state":"maybe"}}"#, "message.typing.state", "must be one of"),
        (#"{"conversation_id":"c1","parts":[{"type":"text","text":"t"}],"options":"fast"}"#, "message.options", "expected object, found string"),
        (#"{"conversation_id":"c1","parts":[{"type":"text","text":"t"}],"metadata":[1]}"#, "message.metadata", "expected object, found array"),
        (#"{"conversation_id":"c1","parts":[{"type":"text","text":"t"}],"reply_to":{"id":"x"}}"#, "message.reply_to.id", "unknown field"),
        (#"{"conversation_id":"c1","parts":[{"type":"text","text":"t"}],"thread_id":""}"#, "message.thread_id", "must not be empty"),
        (#"{"conversation_id":"c1","parts":[{"type":"text","text":"t"}],"target":{"id":"x"}}"#, "message.target.id", "unknown field"),
        (#"{"conversation_id":"c1","parts":[{"type":"text","text":"t"}],"reaction":"👍"}"#, "message.reaction", "expected object, found string"),
    ]

    // MARK: Running the published schema

    /// The repository root, found from this file's path (Tests/ChorusModelTests/Fixtures.swift).
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Runs `python3 tools/validate_events.py SCHEMA FILE` on the given NDJSON lines.
    static func runValidator(schema: String, lines: [String]) throws -> (status: Int32, output: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-model-tests-\(getpid())-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("events.ndjson")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)

        return try runPython(["tools/validate_events.py", schema, file.path])
    }

    /// Runs `python3 ARGS…` in the repository root; returns its exit status and its output (stdout and stderr).
    static func runPython(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        process.currentDirectoryURL = repositoryRoot
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

extension XCTestCase {
    /// Normalizes a plugin's event, failing the test when it is refused.
    func normalized(_ text: String, context: InstanceContext = Fixtures.whatsapp, nowMs: Int64 = Fixtures.now,
                    ids: inout IdentifierGenerator, file: StaticString = #filePath, line: UInt = #line) -> NormalizedEvent?
    {
        do {
            return try EventNormalizer.normalize(json: Array(text.utf8), context: context, ids: &ids, nowMs: nowMs)
        } catch {
            XCTFail("refused: \(error)\n\(text)", file: file, line: line)
            return nil
        }
    }

    func normalized(_ text: String, context: InstanceContext = Fixtures.whatsapp, nowMs: Int64 = Fixtures.now,
                    file: StaticString = #filePath, line: UInt = #line) -> NormalizedEvent?
    {
        var ids = IdentifierGenerator()
        return normalized(text, context: context, nowMs: nowMs, ids: &ids, file: file, line: line)
    }

    /// Asserts that the normalizer refuses `text` with exactly `path` and a message containing `message`.
    func assertRefused(_ text: String, path: String, _ message: String, context: InstanceContext = Fixtures.whatsapp,
                       file: StaticString = #filePath, line: UInt = #line)
    {
        var ids = IdentifierGenerator()
        do {
            let ev = try EventNormalizer.normalize(json: Array(text.utf8), context: context, ids: &ids, nowMs: Fixtures.now)
            XCTFail("accepted, expected \(path): \(message)\n\(JSONWriter.encodeString(.object(ev.object)))", file: file, line: line)
        } catch {
            XCTAssertEqual(error.path, path, "\(error)", file: file, line: line)
            XCTAssertTrue(error.message.contains(message), "message \"\(error.message)\" lacks \"\(message)\"", file: file, line: line)
        }
    }

    /// Asserts that `send` validation refuses `text` with exactly `path` and a message containing `message`.
    func assertSendRefused(_ text: String, path: String, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        let value = Fixtures.parse(text, file: file, line: line)
        do {
            let r = try OutboundRequest.validate(value)
            XCTFail("accepted, expected \(path): \(message): \(r)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.path, path, "\(error)", file: file, line: line)
            XCTAssertTrue(error.message.contains(message), "message \"\(error.message)\" lacks \"\(message)\"", file: file, line: line)
        }
    }
}
