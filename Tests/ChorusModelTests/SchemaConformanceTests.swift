import ChorusJSON
import ChorusModel
import Foundation
import XCTest

/// Checks every shape the Swift code emits against the published JSON Schemas
/// (schema/*.schema.json) with tools/validate_events.py, and that the schemas
/// refuse what the Swift code refuses.
final class SchemaConformanceTests: XCTestCase {
    static let eventSchema = "schema/chorus-event-v1.schema.json"
    static let outboundSchema = "schema/chorus-outbound-v1.schema.json"

    override func setUpWithError() throws {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import jsonschema"]
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        try probe.run()
        probe.waitUntilExit()
        XCTAssertEqual(probe.terminationStatus, 0, "python3 with the jsonschema package is needed (pip install jsonschema)")
    }

    /// Plugin emits covering every event type, part type and optional field.
    static let pluginEvents: [(String, InstanceContext)] = {
        var events: [(String, InstanceContext)] = [
            (#"{"type":"message","channel_ids":{"message":"wamid.HBgM","chat":"4915112345678","account":"1065"},"sender":{"id":"4915112345678","name":"Ana Lima","phone":"+4915112345678","role":"customer"},"timestamp":"2026-11-23T09:59:58Z","parts":[{"type":"text","text":"Hi, where is my order?"}]}"#, Fixtures.whatsapp),
            (#"{"type":"message","direction":"inbound","channel_ids":{"message":"m2","chat":"-100123","account":"bot1","thread":"77"},"sender":{"id":"u1","username":"ana","is_bot":false,"name":""},"participants":[{"id":"u1","role":"member"},{"id":"bot1","role":"bot","is_bot":true}],"timestamp":"2026-11-23t11:59:58.5+02:00","reply_to":{"channel_message_id":"m1","message_id":null},"thread_id":"77","parts":[{"type":"text","text":"**bold**","format":"markdown"}],"context":{"forwarded":true},"raw":{"update_id":9}}"#, Fixtures.telegram),
            (#"{"type":"message","channel_ids":{"message":"m3","chat":"c1"},"parts":[{"type":"text","text":"x"}],"raw":[1,"two",null],"dedup_key":"custom-1"}"#, Fixtures.whatsappKeepRaw),
            (#"{"type":"message","direction":"outbound","channel_ids":{"message":"echo1","chat":"c1","account":null},"sender":{"id":"1065","role":"business","email":null},"parts":[{"type":"text","text":"sent from the phone app"}],"reply_to":{}}"#, Fixtures.whatsapp),
            (#"{"type":"status","channel_ids":{"chat":"4915112345678","account":"1065"},"status":{"state":"delivered","channel_message_id":"wamid.OUT1","recipient":{"id":"4915112345678"},"pricing":{"billable":true,"category":"utility"}}}"#, Fixtures.whatsapp),
            (#"{"type":"status","direction":"outbound","channel_ids":{"chat":"c1"},"status":{"state":"failed","message_id":"msg_01JD8X3Z5Q7K9M2N4P6R8S0T1V","error":{"code":"131047","title":"Re-engagement message","message":"","details":[1]},"retryable":false}}"#, Fixtures.whatsapp),
            (#"{"type":"status","channel_ids":{"chat":"c1"},"status":{"state":"read","channel_message_id":"w2","error":null,"retryable":null}}"#, Fixtures.whatsapp),
            (#"{"type":"reaction","channel_ids":{"message":"r1","chat":"c1"},"sender":{"id":"u1"},"reaction":{"emoji":"👍"},"target":{"channel_message_id":"m1"}}"#, Fixtures.whatsapp),
            (#"{"type":"reaction","channel_ids":{"chat":"c1"},"reaction":{"action":"remove","emoji":""},"target":{"message_id":"msg_01JD8X3Z5Q7K9M2N4P6R8S0T1V"}}"#, Fixtures.whatsapp),
            (#"{"type":"reaction","channel_ids":{"chat":"c1"},"reaction":{"action":"add","emoji":"🎉"},"target":{"channel_message_id":"m1","message_id":null}}"#, Fixtures.telegram),
            (#"{"type":"edit","channel_ids":{"message":"m1","chat":"c1"},"target":{"channel_message_id":"m1"},"parts":[{"type":"text","text":"fixed"}],"timestamp":"2026-11-23T09:00:00.123456Z"}"#, Fixtures.telegram),
            (#"{"type":"delete","channel_ids":{"message":"m1","chat":"c1"},"target":{"channel_message_id":"m1"}}"#, Fixtures.telegram),
            (#"{"type":"typing","channel_ids":{"chat":"c1"},"sender":{"id":"u1"},"typing":{"state":"on"}}"#, Fixtures.telegram),
            (#"{"type":"typing","channel_ids":{"chat":"c1"},"typing":{"state":null}}"#, Fixtures.telegram),
            (#"{"type":"read","channel_ids":{"chat":"c1"},"sender":{"id":"u1"},"read":{"up_to_channel_message_id":"m9","watermark":"2026-11-23 09:00:00+01:00"}}"#, Fixtures.whatsapp),
            (#"{"type":"read","channel_ids":{"chat":"c1"}}"#, Fixtures.whatsapp),
            (#"{"type":"conversation","channel_ids":{"chat":"-100123"},"conversation":{"action":"member_joined","members":[{"id":"u7"}]},"participants":[{"id":"u7","role":"member"}]}"#, Fixtures.telegram),
            (#"{"type":"conversation","channel_ids":{"chat":"c9"},"conversation":{"action":"closed"},"context":{}}"#, Fixtures.whatsapp),
        ]
        // One message per valid part, and one with all of them.
        for part in Fixtures.validParts { events.append((Fixtures.message(parts: "[\(part)]"), Fixtures.whatsapp)) }
        events.append((Fixtures.message(parts: "[" + Fixtures.validParts.joined(separator: ",") + "]"), Fixtures.whatsapp))
        return events
    }()

    /// The normalized events (statuses resolved as the daemon does) plus host-generated events.
    func emittedEvents() throws -> [JSONObject] {
        var ids = IdentifierGenerator()
        var out: [JSONObject] = []
        for (i, (text, context)) in Self.pluginEvents.enumerated() {
            var ev = try XCTUnwrap(normalized(text, context: context, nowMs: Fixtures.now + Int64(i), ids: &ids), text)
            if ev.conversationId == nil || ev.statusMessageId == nil, ev.type == "status" {
                EventNormalizer.resolveStatus(&ev, conversationId: "conv_WVT7XCB17G817NMATQ90TVNFVP", messageId: "msg_01JD8X3Z5Q7K9M2N4P6R8S0T1W")
            }
            out.append(ev.object)
        }
        // A status emitted without a chat, resolved from the send it reports on.
        var unresolved = try XCTUnwrap(normalized(#"{"type":"status","direction":"outbound","status":{"state":"sent","channel_message_id":"wamid.OUT9"}}"#, ids: &ids))
        XCTAssertNil(unresolved.object["conversation_id"])
        EventNormalizer.resolveStatus(&unresolved, conversationId: "conv_WVT7XCB17G817NMATQ90TVNFVP", messageId: "msg_01JD8X3Z5Q7K9M2N4P6R8S0T1X")
        out.append(unresolved.object)

        let route = OutboundRoute(instance: "wa-main", channel: "whatsapp", conversationId: "conv_WVT7XCB17G817NMATQ90TVNFVP",
                                  chatId: "4915112345678", accountId: "1065")
        for text in Fixtures.validSends {
            let request = try OutboundRequest.validate(Fixtures.parse(text))
            let messageId = ids.next(prefix: "msg", nowMs: UInt64(Fixtures.now))
            out.append(HostEvents.outboundEvent(id: ids.next(prefix: "evt", nowMs: UInt64(Fixtures.now)), messageId: messageId,
                                                request: request, route: route, nowMs: Fixtures.now))
        }
        let messageId = ids.next(prefix: "msg", nowMs: UInt64(Fixtures.now))
        let outcomes: [(String, String?, String?, String?, Bool?)] = [
            ("sent", "wamid.OUT1", nil, nil, nil),
            ("failed", nil, "131026", "Message undeliverable", false),
            ("failed", "", "", "", true),
            ("failed", nil, nil, "the connector refused the message (status 3)", nil),
        ]
        for (state, cmid, code, message, retryable) in outcomes {
            out.append(HostEvents.statusEvent(id: ids.next(prefix: "evt", nowMs: UInt64(Fixtures.now + 5)), messageId: messageId, route: route,
                                              state: state, channelMessageId: cmid, errorCode: code, errorMessage: message,
                                              retryable: retryable, nowMs: Fixtures.now + 5))
        }
        return out
    }

    func testEverythingTheModelEmitsMatchesThePublishedEventSchema() throws {
        let events = try emittedEvents()
        XCTAssertGreaterThanOrEqual(events.count, 30)
        XCTAssertEqual(Set(events.compactMap { $0["type"]?.stringValue }), Schema.eventTypes, "every event type is covered")
        // Half of them as bare events, half as the protocol's event frames.
        var lines: [String] = []
        for (i, event) in events.enumerated() {
            let json = JSONWriter.encodeString(.object(event))
            lines.append(i % 2 == 0 ? json : #"{"type":"event","sub":"crm","cursor":\#(i + 1),"event":\#(json)}"#)
        }
        let (status, output) = try Fixtures.runValidator(schema: Self.eventSchema, lines: lines)
        XCTAssertEqual(status, 0, output)
        XCTAssertEqual(output.trimmingCharacters(in: .whitespacesAndNewlines), "\(events.count) events valid")
    }

    func testTheEventSchemaRefusesWhatTheModelRefuses() throws {
        let base = try XCTUnwrap(normalized(Fixtures.message(parts: #"[{"type":"text","text":"x"}]"#)))
        var lines: [String] = []
        // Every invalid part, inside an otherwise valid stored event.
        for (json, _, _) in Fixtures.invalidParts {
            var o = base.object
            o["parts"] = .array([Fixtures.parse(json)])
            lines.append(JSONWriter.encodeString(.object(o)))
        }
        // Envelope-level breakage the host never produces.
        func mutated(_ change: (inout JSONObject) -> Void) -> String {
            var o = base.object
            change(&o)
            return JSONWriter.encodeString(.object(o))
        }
        let envelope = [
            mutated { $0["id"] = "evt_lowercase0000000000000000" },
            mutated { $0["id"] = nil },
            mutated { $0["schema"] = 2 },
            mutated { $0["type"] = "poll" },
            mutated { $0["direction"] = "sideways" },
            mutated { $0["conversation_id"] = nil },
            mutated { $0["received_at"] = "2026-11-23T10:00:00Z" },
            mutated { $0["channel_ids"] = ["message": "m"] },
            mutated { $0["parts"] = [] },
            mutated { $0["dedup_key"] = "message:m" },
            mutated { $0["sender"] = ["id": "u1"] },
            mutated { $0["type"] = "status" },
            mutated { $0["type"] = "reaction"; $0["parts"] = nil; $0["reaction"] = ["emoji": "👍"] },
            mutated { $0["type"] = "delete"; $0["parts"] = nil; $0["target"] = [:] },
            mutated { $0["status"] = ["state": "accepted", "message_id": "msg_1"] },
            mutated { $0["context"] = "ad" },
        ]
        lines.append(contentsOf: envelope)
        let (status, output) = try Fixtures.runValidator(schema: Self.eventSchema, lines: lines)
        guard status == 1 else { return XCTFail("expected validation errors (status 1), got status \(status): \(output)") }
        for n in 1...lines.count {
            XCTAssertTrue(output.contains("events.ndjson:\(n): "), "line \(n) was accepted by the schema: \(lines[n - 1])\n\(output)")
        }
    }

    func testTheOutboundSchemaAgreesWithOutboundValidation() throws {
        let (okStatus, okOutput) = try Fixtures.runValidator(schema: Self.outboundSchema, lines: Fixtures.validSends)
        XCTAssertEqual(okStatus, 0, okOutput)
        XCTAssertEqual(okOutput.trimmingCharacters(in: .whitespacesAndNewlines), "\(Fixtures.validSends.count) events valid")

        var invalid = Fixtures.invalidSends.map(\.json)
        invalid += Fixtures.invalidParts.map { #"{"conversation_id":"c","parts":[\#($0.json)]}"# }
        let (status, output) = try Fixtures.runValidator(schema: Self.outboundSchema, lines: invalid)
        guard status == 1 else { return XCTFail("expected validation errors (status 1), got status \(status): \(output)") }
        for n in 1...invalid.count {
            XCTAssertTrue(output.contains("events.ndjson:\(n): "), "line \(n) was accepted by the schema: \(invalid[n - 1])\n\(output)")
        }
    }

    /// The JSON blocks of docs/schema.md tagged `json plugin-event`, `json stored-event` and `json send`.
    func documentationExamples() throws -> [(kind: String, json: String)] {
        let doc = try String(contentsOf: Fixtures.repositoryRoot.appendingPathComponent("docs/schema.md"), encoding: .utf8)
        var blocks: [(kind: String, json: String)] = []
        var current: (kind: String, lines: [String])?
        for line in doc.split(separator: "\n", omittingEmptySubsequences: false) {
            if let open = current {
                if line == "```" {
                    blocks.append((open.kind, open.lines.joined(separator: "\n")))
                    current = nil
                } else {
                    current?.lines.append(String(line))
                }
            } else if line.hasPrefix("```json ") {
                current = (String(line.dropFirst(8)), [])
            }
        }
        XCTAssertNil(current, "unterminated code block in docs/schema.md")
        return blocks
    }

    func testTheDocumentationExamplesFollowTheSchema() throws {
        let examples = try documentationExamples()
        let plugin = examples.filter { $0.kind == "plugin-event" }, stored = examples.filter { $0.kind == "stored-event" }
        let sends = examples.filter { $0.kind == "send" }
        XCTAssertGreaterThanOrEqual(plugin.count, 5)
        XCTAssertGreaterThanOrEqual(stored.count, 5)
        XCTAssertGreaterThanOrEqual(sends.count, 3)
        XCTAssertEqual(plugin.count + stored.count + sends.count, examples.count, "unknown example kinds: \(examples.map(\.kind))")

        for example in plugin {
            XCTAssertNotNil(normalized(example.json), example.json)
        }
        var storedLines: [String] = []
        for example in stored {
            let value = Fixtures.parse(example.json)
            storedLines.append(JSONWriter.encodeString(value))
            // The derived ids in the examples are the real ones.
            if let chat = value["channel_ids"]?["chat"]?.stringValue, let channel = value["channel"]?.stringValue {
                let account = value["channel_ids"]?["account"]?.stringValue ?? value["instance"]?.stringValue ?? ""
                XCTAssertEqual(value["conversation_id"]?.stringValue, ChorusIdentifiers.conversationId(channel: channel, account: account, chat: chat))
            }
            if let sender = value["sender"], let channel = value["channel"]?.stringValue {
                XCTAssertEqual(sender["contact_id"]?.stringValue, ChorusIdentifiers.contactId(channel: channel, nativeId: sender["id"]?.stringValue ?? ""))
            }
        }
        let (status, output) = try Fixtures.runValidator(schema: Self.eventSchema, lines: storedLines)
        XCTAssertEqual(status, 0, output)

        var sendLines: [String] = []
        for example in sends {
            let value = Fixtures.parse(example.json)
            XCTAssertNoThrow(try OutboundRequest.validate(value), example.json)
            sendLines.append(JSONWriter.encodeString(value))
        }
        let (sendStatus, sendOutput) = try Fixtures.runValidator(schema: Self.outboundSchema, lines: sendLines)
        XCTAssertEqual(sendStatus, 0, sendOutput)
    }

    func testTheValidatorReportsLineNumbersAndBadLines() throws {
        let valid = JSONWriter.encodeString(.object(try XCTUnwrap(normalized(Fixtures.message(parts: #"[{"type":"text","text":"x"}]"#))).object))
        let lines = [valid, "", "not json", #"{"type":"event","sub":"s","cursor":1}"#, #"{"a":1,"a":2}"#, valid]
        let (status, output) = try Fixtures.runValidator(schema: Self.eventSchema, lines: lines)
        XCTAssertEqual(status, 1)
        XCTAssertTrue(output.contains("events.ndjson:3: not valid JSON"), output)
        XCTAssertTrue(output.contains(#"events.ndjson:4: an "event" frame without "event""#), output)
        XCTAssertTrue(output.contains(#"events.ndjson:5: not valid JSON: duplicate key "a""#), output)
        XCTAssertFalse(output.contains("events.ndjson:1:"), output)
        XCTAssertFalse(output.contains("events.ndjson:6:"), output)
    }

    func testTheValidatorIsImportable() throws {
        let valid = JSONWriter.encodeString(.object(try XCTUnwrap(normalized(Fixtures.message(parts: #"[{"type":"text","text":"x"}]"#))).object))
        let script = """
            import json, sys
            sys.path.insert(0, "tools")
            from validate_events import validate_lines
            ok = validate_lines("\(Self.eventSchema)", [sys.argv[1], "", sys.argv[1]])
            bad = validate_lines("\(Self.eventSchema)", [sys.argv[1], '{"schema":1}'])
            print(json.dumps({"ok": ok, "bad": bad}))
            """
        let (status, output) = try Fixtures.runPython(["-c", script, valid])
        XCTAssertEqual(status, 0, output)
        let result = try JSONParser.parse(output.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertEqual(result["ok"], [])
        let bad = try XCTUnwrap(result["bad"]?.arrayValue)
        XCTAssertFalse(bad.isEmpty)
        XCTAssertTrue(bad.allSatisfy { $0.stringValue?.hasPrefix("line 2: ") == true }, "\(bad)")
        XCTAssertTrue(bad.contains { $0.stringValue?.contains("'id' is a required property") == true }, "\(bad)")
    }

    func testTheValidatorUsage() throws {
        let (status, output) = try Fixtures.runPython(["tools/validate_events.py"])
        XCTAssertEqual(status, 2)
        XCTAssertTrue(output.contains("usage: validate_events.py SCHEMA FILE..."), output)
        let (missing, why) = try Fixtures.runPython(["tools/validate_events.py", "schema/none.schema.json", "x.ndjson"])
        XCTAssertEqual(missing, 2)
        XCTAssertTrue(why.contains("schema/none.schema.json"), why)
    }
}
