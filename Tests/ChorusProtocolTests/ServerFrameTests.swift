import ChorusJSON
import ChorusProtocol
import XCTest

final class ServerFrameTests: XCTestCase {
    private func object(_ line: [UInt8], file: StaticString = #filePath, line l: UInt = #line) -> JSONObject? {
        XCTAssertEqual(line.last, 0x0A, "server frames end with a newline", file: file, line: l)
        XCTAssertEqual(line.filter { $0 == 0x0A }.count, 1, "exactly one line", file: file, line: l)
        do {
            return try JSONParser.parse(Array(line.dropLast())).objectValue
        } catch {
            XCTFail("not JSON: \(error)", file: file, line: l)
            return nil
        }
    }

    func testHello() throws {
        let line = ServerFrame.hello(server: "chorusd 0.1.0", maxFrameBytes: 1_048_576, ops: ClientCommand.allOps,
                                     peer: (uid: 1000, gid: 1000, pid: 42), access: (read: true, send: true, admin: false))
        XCTAssertEqual(String(decoding: line, as: UTF8.self),
                       #"{"type":"hello","protocol":1,"server":"chorusd 0.1.0","schema":1,"ops":["hello","ping","subscribe","unsubscribe","ack","send","replay","plugins","instances","stats","subscriptions","reset_subscription","delete_subscription"],"max_frame_bytes":1048576,"peer":{"uid":1000,"gid":1000,"pid":42},"access":{"read":true,"send":true,"admin":false}}"#
                        + "\n")
        guard case .hello(let o) = try ServerMessage.parse(line) else { return XCTFail("expected hello") }
        XCTAssertEqual(o["max_frame_bytes"]?.intValue, 1_048_576)
        XCTAssertEqual(o["access"]?["admin"], false)

        let anonymous = object(ServerFrame.hello(server: "s", maxFrameBytes: 10, ops: [], peer: nil,
                                                 access: (read: false, send: false, admin: false)))
        XCTAssertEqual(anonymous?["peer"], .null)
    }

    func testOkPongAndGenericReplies() throws {
        XCTAssertEqual(ServerFrame.ok(id: 3), Array("{\"type\":\"ok\",\"id\":3}\n".utf8))
        XCTAssertEqual(ServerFrame.ok(id: nil), Array("{\"type\":\"ok\"}\n".utf8))
        XCTAssertEqual(ServerFrame.pong(id: "p"), Array("{\"type\":\"pong\",\"id\":\"p\"}\n".utf8))

        let line = ServerFrame.reply(type: "subscribed", id: "s1",
                                     fields: ["sub": "crm", "durable": true, "cursor": 122, "type": "ignored"])
        XCTAssertEqual(String(decoding: line, as: UTF8.self),
                       #"{"type":"subscribed","id":"s1","sub":"crm","durable":true,"cursor":122}"# + "\n")
        XCTAssertEqual(try ServerMessage.parse(line),
                       .reply(type: "subscribed", id: "s1", body: ["sub": "crm", "durable": true, "cursor": 122]))
        XCTAssertEqual(try ServerMessage.parse(line).id, "s1")
    }

    func testErrorFrames() throws {
        let e = ProtocolError(code: .unknownField, message: "unknown field 'x'", field: "x", id: 12)
        let line = ServerFrame.error(e)
        XCTAssertEqual(String(decoding: line, as: UTF8.self),
                       #"{"type":"error","id":12,"code":"unknown_field","message":"unknown field 'x'","field":"x"}"# + "\n")
        XCTAssertEqual(try ServerMessage.parse(line), .error(e))

        let bare = ProtocolError(code: .badFrame, message: "not JSON")
        XCTAssertEqual(object(ServerFrame.error(bare))?.keys, ["type", "code", "message"])
        XCTAssertEqual(try ServerMessage.parse(ServerFrame.error(bare)), .error(bare))

        for code in ErrorCode.allCases {
            let err = ProtocolError(code: code, message: "m", id: "i")
            XCTAssertEqual(try ServerMessage.parse(ServerFrame.error(err)), .error(err))
        }
    }

    func testUnknownErrorCodeFromServerBecomesInternal() throws {
        let msg = try ServerMessage.parse(Array(#"{"type":"error","id":1,"code":"teapot","message":"short and stout"}"#.utf8))
        XCTAssertEqual(msg, .error(ProtocolError(code: .internal, message: "[teapot] short and stout", id: 1)))
    }

    func testAppendEventParsesBack() throws {
        let event: JSONValue = [
            "schema": 1, "id": "evt_1", "type": "message", "direction": "inbound",
            "parts": [["type": "text", "text": "héllo \"world\"\n"]],
        ]
        let eventJSON = JSONWriter.encode(event)
        var out: [UInt8] = Array("previous\n".utf8)
        eventJSON.withUnsafeBytes { raw in
            ServerFrame.appendEvent(sub: "crm \"quoted\"", cursor: 9_007_199_254_740_993, eventJSON: raw, to: &out)
        }
        XCTAssertEqual(Array(out[0..<9]), Array("previous\n".utf8), "appends, does not replace")
        let line = Array(out[9...])
        XCTAssertEqual(line.last, 0x0A)
        XCTAssertEqual(line.filter { $0 == 0x0A }.count, 1)
        XCTAssertEqual(try ServerMessage.parse(line), .event(sub: "crm \"quoted\"", cursor: 9_007_199_254_740_993, event: event))
        XCTAssertEqual(object(line)?.keys, ["type", "sub", "cursor", "event"])

        var viaArray: [UInt8] = []
        ServerFrame.appendEvent(sub: "crm \"quoted\"", cursor: 9_007_199_254_740_993, eventJSON: eventJSON, to: &viaArray)
        XCTAssertEqual(viaArray, line)
    }

    func testGoodbye() throws {
        let line = ServerFrame.goodbye(reason: "shutting down")
        XCTAssertEqual(String(decoding: line, as: UTF8.self), #"{"type":"goodbye","reason":"shutting down"}"# + "\n")
        XCTAssertEqual(try ServerMessage.parse(line), .goodbye("shutting down"))
    }

    func testMalformedServerFrames() {
        for text in ["nope", "[]", #"{"id":1}"#, #"{"type":3}"#, #"{"type":"event","sub":"a","cursor":"1","event":{}}"#,
                     #"{"type":"event","cursor":1,"event":{}}"#, #"{"type":"event","sub":"a","cursor":1}"#]
        {
            do {
                let m = try ServerMessage.parse(Array(text.utf8))
                XCTFail("parsed \(m) from \(text)")
            } catch {
                XCTAssertEqual(error.code, .badFrame, text)
            }
        }
    }

    func testReplyWithoutId() throws {
        XCTAssertEqual(try ServerMessage.parse(Array(#"{"type":"replay_done","count":7,"last_cursor":130}"#.utf8)),
                       .reply(type: "replay_done", id: nil, body: ["count": 7, "last_cursor": 130]))
    }
}
