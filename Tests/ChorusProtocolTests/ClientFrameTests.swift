import ChorusJSON
import ChorusProtocol
import XCTest

final class ClientFrameTests: XCTestCase {
    private func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> ClientFrame? {
        do {
            return try ClientFrame.parse(text)
        } catch {
            XCTFail("unexpected error \(error) for \(text)", file: file, line: line)
            return nil
        }
    }

    private func expectError(_ text: String, _ code: ErrorCode, field: String? = nil, id: JSONValue? = nil,
                             file: StaticString = #filePath, line: UInt = #line)
    {
        do {
            let frame = try ClientFrame.parse(text)
            XCTFail("expected \(code.rawValue), parsed \(frame)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
            XCTAssertEqual(error.field, field, "\(error)", file: file, line: line)
            XCTAssertEqual(error.id, id, "\(error)", file: file, line: line)
            XCTAssertFalse(error.message.isEmpty, file: file, line: line)
        }
    }

    // MARK: Every command parses

    func testHello() {
        XCTAssertEqual(parse(#"{"op":"hello","protocol":1,"client":"crm"}"#),
                       ClientFrame(command: .hello(protocol: 1, client: "crm")))
        XCTAssertEqual(parse(#"{"op":"hello","id":"h","protocol":1}"#),
                       ClientFrame(id: "h", command: .hello(protocol: 1, client: nil)))
    }

    func testPingAndListingOps() {
        XCTAssertEqual(parse(#"{"op":"ping","id":7}"#), ClientFrame(id: 7, command: .ping))
        XCTAssertEqual(parse(#"{"op":"plugins"}"#)?.command, .plugins)
        XCTAssertEqual(parse(#"{"op":"instances"}"#)?.command, .instances)
        XCTAssertEqual(parse(#"{"op":"stats"}"#)?.command, .stats)
        XCTAssertEqual(parse(#"{"op":"subscriptions"}"#)?.command, .subscriptions)
    }

    func testSubscribeEphemeralDefaults() {
        XCTAssertEqual(parse(#"{"op":"subscribe"}"#)?.command, .subscribe(name: nil, filter: nil, from: nil))
    }

    func testSubscribeDurableWithFilterAndStartPositions() {
        let frame = parse(#"""
            {"op":"subscribe","id":"s1","name":"crm","filter":{"channels":["whatsapp","sandbox"],"types":["message"],
             "directions":["inbound"],"instances":["wa1"],"conversations":["conv_A"]},"from":"earliest"}
            """#)
        let filter = SubscriptionFilter(channels: ["whatsapp", "sandbox"], instances: ["wa1"], conversations: ["conv_A"],
                                        types: ["message"], directions: ["inbound"])
        XCTAssertEqual(frame, ClientFrame(id: "s1", command: .subscribe(name: "crm", filter: filter, from: .earliest)))

        XCTAssertEqual(parse(#"{"op":"subscribe","name":"crm","from":"stored"}"#)?.command,
                       .subscribe(name: "crm", filter: nil, from: .stored))
        XCTAssertEqual(parse(#"{"op":"subscribe","from":"now"}"#)?.command, .subscribe(name: nil, filter: nil, from: .now))
        XCTAssertEqual(parse(#"{"op":"subscribe","from":"cursor","cursor":123}"#)?.command,
                       .subscribe(name: nil, filter: nil, from: .cursor(123)))
        XCTAssertEqual(parse(#"{"op":"subscribe","from":"time","time":"2026-11-23T10:00:00Z"}"#)?.command,
                       .subscribe(name: nil, filter: nil, from: .timeMs(1_795_428_000_000)))
        XCTAssertEqual(parse(#"{"op":"subscribe","from":"time","time":1795428000000}"#)?.command,
                       .subscribe(name: nil, filter: nil, from: .timeMs(1_795_428_000_000)))
        // A cursor or a time alone implies the matching "from".
        XCTAssertEqual(parse(#"{"op":"subscribe","cursor":5}"#)?.command, .subscribe(name: nil, filter: nil, from: .cursor(5)))
        XCTAssertEqual(parse(#"{"op":"subscribe","time":1000}"#)?.command, .subscribe(name: nil, filter: nil, from: .timeMs(1000)))
        // An empty filter object is "everything", distinct from no filter (which keeps a durable one's stored filter).
        XCTAssertEqual(parse(#"{"op":"subscribe","name":"crm","filter":{}}"#)?.command,
                       .subscribe(name: "crm", filter: .all, from: nil))
    }

    func testUnsubscribeAndAck() {
        XCTAssertEqual(parse(#"{"op":"unsubscribe","sub":"eph-3"}"#)?.command, .unsubscribe(sub: "eph-3"))
        XCTAssertEqual(parse(#"{"op":"ack","sub":"crm","cursor":123}"#)?.command, .ack(sub: "crm", cursor: 123))
        XCTAssertEqual(parse(#"{"op":"ack","id":"a","sub":"crm","cursor":0}"#), ClientFrame(id: "a", command: .ack(sub: "crm", cursor: 0)))
    }

    func testSend() {
        let frame = parse(#"""
            {"op":"send","id":1,"idempotency_key":"k-1","message":{"conversation_id":"conv_X","parts":[{"type":"text","text":"hi"}],"reply_to":{"message_id":"msg_1"}}}
            """#)
        let message: JSONValue = [
            "conversation_id": "conv_X", "parts": [["type": "text", "text": "hi"]], "reply_to": ["message_id": "msg_1"],
        ]
        XCTAssertEqual(frame, ClientFrame(id: 1, command: .send(idempotencyKey: "k-1", message: message)))
        XCTAssertEqual(parse(#"{"op":"send","message":{"instance":"sandbox","to":"u1","parts":[]}}"#)?.command,
                       .send(idempotencyKey: nil, message: ["instance": "sandbox", "to": "u1", "parts": []]))
    }

    func testReplay() {
        XCTAssertEqual(parse(#"{"op":"replay","id":"r","filter":{"types":["message"]},"from_cursor":10,"to_cursor":20,"limit":5}"#),
                       ClientFrame(id: "r", command: .replay(filter: SubscriptionFilter(types: ["message"]), fromCursor: 10,
                                                             toCursor: 20, fromTimeMs: nil, toTimeMs: nil, limit: 5)))
        XCTAssertEqual(parse(#"{"op":"replay","from_time":"1970-01-01T00:00:01Z","to_time":5000}"#)?.command,
                       .replay(filter: .all, fromCursor: nil, toCursor: nil, fromTimeMs: 1000, toTimeMs: 5000, limit: nil))
    }

    func testAdminOps() {
        XCTAssertEqual(parse(#"{"op":"reset_subscription","name":"crm","to":"earliest"}"#)?.command,
                       .resetSubscription(name: "crm", to: .earliest))
        XCTAssertEqual(parse(#"{"op":"reset_subscription","name":"crm","to":"now"}"#)?.command,
                       .resetSubscription(name: "crm", to: .now))
        XCTAssertEqual(parse(#"{"op":"reset_subscription","name":"crm","to":42}"#)?.command,
                       .resetSubscription(name: "crm", to: .cursor(42)))
        XCTAssertEqual(parse(#"{"op":"reset_subscription","name":"crm","to":"2026-11-23T11:00:00+01:00"}"#)?.command,
                       .resetSubscription(name: "crm", to: .timeMs(1_795_428_000_000)))
        XCTAssertEqual(parse(#"{"op":"delete_subscription","id":9,"name":"crm"}"#),
                       ClientFrame(id: 9, command: .deleteSubscription(name: "crm")))
    }

    func testAllOpsAreListedAndParse() {
        XCTAssertEqual(ClientCommand.allOps.count, 13)
        let samples: [ClientCommand] = [
            .hello(protocol: 1, client: "x"), .ping, .subscribe(name: nil, filter: nil, from: nil), .unsubscribe(sub: "a"),
            .ack(sub: "a", cursor: 1), .send(idempotencyKey: nil, message: ["to": "x"]),
            .replay(filter: .all, fromCursor: nil, toCursor: nil, fromTimeMs: nil, toTimeMs: nil, limit: nil),
            .plugins, .instances, .stats, .subscriptions, .resetSubscription(name: "a", to: .now),
            .deleteSubscription(name: "a"),
        ]
        XCTAssertEqual(samples.map(\.op), ClientCommand.allOps)
        XCTAssertEqual(samples.filter(\.requiresAdmin).map(\.op), ["reset_subscription", "delete_subscription"])
    }

    // MARK: Encoding round-trips

    func testEncodeRoundTrips() throws {
        let filter = SubscriptionFilter(channels: ["a", "b"], types: ["message"])
        let frames: [ClientFrame] = [
            ClientFrame(id: "1", command: .hello(protocol: 1, client: "chorusctl")),
            ClientFrame(id: 2, command: .ping),
            ClientFrame(command: .subscribe(name: "crm", filter: filter, from: .stored)),
            ClientFrame(command: .subscribe(name: nil, filter: nil, from: .cursor(77))),
            ClientFrame(command: .subscribe(name: nil, filter: .all, from: .timeMs(1_795_428_000_123))),
            ClientFrame(command: .subscribe(name: "x", filter: nil, from: .earliest)),
            ClientFrame(command: .subscribe(name: nil, filter: nil, from: .now)),
            ClientFrame(command: .unsubscribe(sub: "eph-1")),
            ClientFrame(id: 3, command: .ack(sub: "crm", cursor: 9)),
            ClientFrame(id: 4, command: .send(idempotencyKey: "k", message: ["conversation_id": "conv_1", "parts": [["type": "text", "text": "a\nb"]]])),
            ClientFrame(id: 5, command: .replay(filter: filter, fromCursor: 1, toCursor: 2, fromTimeMs: 3, toTimeMs: 4, limit: 10)),
            ClientFrame(id: 6, command: .replay(filter: .all, fromCursor: nil, toCursor: nil, fromTimeMs: nil, toTimeMs: nil, limit: nil)),
            ClientFrame(command: .plugins), ClientFrame(command: .instances), ClientFrame(command: .stats),
            ClientFrame(command: .subscriptions),
            ClientFrame(command: .resetSubscription(name: "crm", to: .earliest)),
            ClientFrame(command: .resetSubscription(name: "crm", to: .now)),
            ClientFrame(command: .resetSubscription(name: "crm", to: .cursor(5))),
            ClientFrame(command: .resetSubscription(name: "crm", to: .timeMs(1_795_428_000_123))),
            ClientFrame(command: .deleteSubscription(name: "crm")),
        ]
        for frame in frames {
            let bytes = frame.encode()
            XCTAssertFalse(bytes.contains(0x0A), "encoded frame must be one line")
            XCTAssertEqual(try ClientFrame.parse(bytes), frame, String(decoding: bytes, as: UTF8.self))
        }
        XCTAssertEqual(String(decoding: ClientFrame(id: 1, command: .ack(sub: "crm", cursor: 9)).encode(), as: UTF8.self),
                       #"{"op":"ack","id":1,"sub":"crm","cursor":9}"#)
    }

    // MARK: Frame-level errors

    func testBadFrames() {
        expectError("not json", .badFrame)
        expectError(#"{"op":"ping""#, .badFrame)
        expectError("[1,2]", .badFrame)
        expectError(#""ping""#, .badFrame)
    }

    func testOpErrors() {
        expectError(#"{"id":1}"#, .invalid, field: "op", id: 1)
        expectError(#"{"op":5,"id":"x"}"#, .invalid, field: "op", id: "x")
        expectError(#"{"op":"fly","id":"x"}"#, .unknownOp, field: "op", id: "x")
        expectError(#"{"op":"PING"}"#, .unknownOp, field: "op")
    }

    func testIdErrors() {
        expectError(#"{"op":"ping","id":1.5}"#, .invalid, field: "id")
        expectError(#"{"op":"ping","id":{"a":1}}"#, .invalid, field: "id")
        expectError(#"{"op":"ping","id":true}"#, .invalid, field: "id")
        let long = String(repeating: "x", count: 300)
        expectError(#"{"op":"ping","id":"\#(long)"}"#, .invalid, field: "id")
    }

    func testUnknownFieldsNameTheField() {
        expectError(#"{"op":"ping","id":3,"extra":1}"#, .unknownField, field: "extra", id: 3)
        expectError(#"{"op":"subscribe","id":"s","name":"crm","form":"now"}"#, .unknownField, field: "form", id: "s")
        expectError(#"{"op":"ack","sub":"crm","cursor":1,"cursors":2}"#, .unknownField, field: "cursors")
        expectError(#"{"op":"subscribe","filter":{"channel":["x"]}}"#, .unknownField, field: "filter.channel")
        expectError(#"{"op":"replay","id":4,"filter":{"kinds":["x"]}}"#, .unknownField, field: "filter.kinds", id: 4)
    }

    func testDuplicateFieldsAreRefusedByTheParser() {
        expectError(#"{"op":"ack","sub":"a","sub":"b","cursor":1}"#, .badFrame)
        expectError(#"{"op":"subscribe","filter":{"types":["a"],"types":["b"]}}"#, .badFrame)
    }

    func testWrongTypesNameTheField() {
        expectError(#"{"op":"hello","id":1,"protocol":"1"}"#, .invalid, field: "protocol", id: 1)
        expectError(#"{"op":"hello","protocol":1,"client":5}"#, .invalid, field: "client")
        expectError(#"{"op":"subscribe","name":7}"#, .invalid, field: "name")
        expectError(#"{"op":"subscribe","from":1}"#, .invalid, field: "from")
        expectError(#"{"op":"ack","sub":"crm","cursor":"5"}"#, .invalid, field: "cursor")
        expectError(#"{"op":"ack","sub":"crm","cursor":1.5}"#, .invalid, field: "cursor")
        expectError(#"{"op":"send","message":"hi"}"#, .invalid, field: "message")
        expectError(#"{"op":"send","idempotency_key":1,"message":{}}"#, .invalid, field: "idempotency_key")
        expectError(#"{"op":"replay","limit":"10"}"#, .invalid, field: "limit")
        expectError(#"{"op":"replay","from_time":true}"#, .invalid, field: "from_time")
        expectError(#"{"op":"reset_subscription","name":"crm","to":true}"#, .invalid, field: "to")
    }

    func testMissingRequiredFields() {
        expectError(#"{"op":"hello","id":"h"}"#, .invalid, field: "protocol", id: "h")
        expectError(#"{"op":"unsubscribe","id":2}"#, .invalid, field: "sub", id: 2)
        expectError(#"{"op":"ack","cursor":1}"#, .invalid, field: "sub")
        expectError(#"{"op":"ack","sub":"crm"}"#, .invalid, field: "cursor")
        expectError(#"{"op":"send"}"#, .invalid, field: "message")
        expectError(#"{"op":"reset_subscription","name":"crm"}"#, .invalid, field: "to")
        expectError(#"{"op":"reset_subscription","to":"now"}"#, .invalid, field: "name")
        expectError(#"{"op":"delete_subscription"}"#, .invalid, field: "name")
        expectError(#"{"op":"unsubscribe","sub":""}"#, .invalid, field: "sub")
    }

    func testUnsupportedProtocolVersion() {
        expectError(#"{"op":"hello","id":1,"protocol":2}"#, .unsupported, field: "protocol", id: 1)
    }

    func testBadFilters() {
        expectError(#"{"op":"subscribe","filter":[]}"#, .invalid, field: "filter")
        expectError(#"{"op":"subscribe","filter":{"channels":[]}}"#, .invalid, field: "filter.channels")
        expectError(#"{"op":"subscribe","filter":{"channels":"sandbox"}}"#, .invalid, field: "filter.channels")
        expectError(#"{"op":"subscribe","id":8,"filter":{"types":["message",3]}}"#, .invalid, field: "filter.types", id: 8)
        expectError(#"{"op":"subscribe","filter":{"directions":[""]}}"#, .invalid, field: "filter.directions")
        expectError(#"{"op":"replay","filter":{"instances":{}}}"#, .invalid, field: "filter.instances")
    }

    func testBadStartPositions() {
        expectError(#"{"op":"subscribe","from":"yesterday"}"#, .invalid, field: "from")
        expectError(#"{"op":"subscribe","from":"cursor"}"#, .invalid, field: "cursor")
        expectError(#"{"op":"subscribe","from":"cursor","cursor":-1}"#, .invalid, field: "cursor")
        expectError(#"{"op":"subscribe","from":"time"}"#, .invalid, field: "time")
        expectError(#"{"op":"subscribe","from":"time","time":"23/11/2026"}"#, .invalid, field: "time")
        expectError(#"{"op":"subscribe","from":"now","cursor":3}"#, .invalid, field: "cursor")
        expectError(#"{"op":"subscribe","from":"cursor","cursor":3,"time":5}"#, .invalid, field: "time")
        expectError(#"{"op":"subscribe","cursor":3,"time":5}"#, .invalid, field: "time")
        expectError(#"{"op":"subscribe","from":"stored"}"#, .invalid, field: "from")
        expectError(#"{"op":"reset_subscription","name":"crm","to":"stored"}"#, .invalid, field: "to")
        expectError(#"{"op":"reset_subscription","name":"crm","to":-4}"#, .invalid, field: "to")
    }

    func testSubscriptionNames() {
        expectError(#"{"op":"subscribe","name":"eph-1"}"#, .invalid, field: "name")
        expectError(#"{"op":"subscribe","name":"replay-1"}"#, .invalid, field: "name")
        expectError(#"{"op":"subscribe","name":"has space"}"#, .invalid, field: "name")
        expectError(#"{"op":"subscribe","name":"\#(String(repeating: "n", count: 129))"}"#, .invalid, field: "name")
        XCTAssertEqual(parse(#"{"op":"subscribe","name":"team.crm_v2:eu-1"}"#)?.command,
                       .subscribe(name: "team.crm_v2:eu-1", filter: nil, from: nil))
    }

    func testReplayBounds() {
        expectError(#"{"op":"replay","from_cursor":10,"to_cursor":5}"#, .invalid, field: "to_cursor")
        expectError(#"{"op":"replay","from_time":10,"to_time":5}"#, .invalid, field: "to_time")
        expectError(#"{"op":"replay","limit":0}"#, .invalid, field: "limit")
    }

    func testNullFieldsCountAsAbsent() {
        XCTAssertEqual(parse(#"{"op":"subscribe","id":null,"name":null,"filter":null,"from":null}"#),
                       ClientFrame(command: .subscribe(name: nil, filter: nil, from: nil)))
    }
}
