import ChorusJSON
import ChorusProtocol
import XCTest

final class SubscriptionFilterTests: XCTestCase {
    func testAllMatchesEverything() {
        XCTAssertTrue(SubscriptionFilter.all.isAll)
        XCTAssertTrue(SubscriptionFilter.all.matches(channel: "x", instance: "y", conversationId: nil, type: "message", direction: nil))
        XCTAssertEqual(try SubscriptionFilter(json: nil), .all)
        XCTAssertEqual(try SubscriptionFilter(json: .null), .all)
        XCTAssertEqual(try SubscriptionFilter(json: [:]), .all)
    }

    func testEveryDimensionMustMatch() throws {
        let f = try SubscriptionFilter(json: ["channels": ["sandbox"], "types": ["message", "status"], "directions": ["inbound"]])
        XCTAssertTrue(f.matches(channel: "sandbox", instance: "s1", conversationId: "conv_1", type: "message", direction: "inbound"))
        XCTAssertTrue(f.matches(channel: "sandbox", instance: "s2", conversationId: nil, type: "status", direction: "inbound"))
        XCTAssertFalse(f.matches(channel: "whatsapp", instance: "s1", conversationId: "conv_1", type: "message", direction: "inbound"))
        XCTAssertFalse(f.matches(channel: "sandbox", instance: "s1", conversationId: "conv_1", type: "typing", direction: "inbound"))
        XCTAssertFalse(f.matches(channel: "sandbox", instance: "s1", conversationId: "conv_1", type: "message", direction: "outbound"))
        XCTAssertFalse(f.matches(channel: "sandbox", instance: "s1", conversationId: "conv_1", type: "message", direction: nil))
    }

    func testConversationFilterExcludesEventsWithoutConversation() throws {
        let f = try SubscriptionFilter(json: ["conversations": ["conv_1"], "instances": ["a"]])
        XCTAssertTrue(f.matches(channel: "c", instance: "a", conversationId: "conv_1", type: "message", direction: "inbound"))
        XCTAssertFalse(f.matches(channel: "c", instance: "a", conversationId: nil, type: "message", direction: "inbound"))
        XCTAssertFalse(f.matches(channel: "c", instance: "b", conversationId: "conv_1", type: "message", direction: "inbound"))
    }

    func testJSONIsCanonicalAndRoundTrips() throws {
        let f = SubscriptionFilter(channels: ["b", "a"], conversations: ["conv_2"], directions: ["outbound"])
        XCTAssertEqual(JSONWriter.encodeString(f.json),
                       #"{"channels":["a","b"],"conversations":["conv_2"],"directions":["outbound"]}"#)
        XCTAssertEqual(try SubscriptionFilter(json: f.json), f)
        XCTAssertEqual(JSONWriter.encodeString(SubscriptionFilter.all.json), "{}")
    }

    func testDuplicateValuesCollapse() throws {
        let f = try SubscriptionFilter(json: ["types": ["message", "message"]])
        XCTAssertEqual(f.types, ["message"])
    }

    func testErrorsNameTheFilterField() {
        func code(_ json: JSONValue) -> (ErrorCode, String?)? {
            do {
                _ = try SubscriptionFilter(json: json)
                return nil
            } catch {
                return (error.code, error.field)
            }
        }
        XCTAssertEqual(code("x")?.0, .invalid)
        XCTAssertEqual(code("x")?.1, "filter")
        XCTAssertEqual(code(["types": []])?.1, "filter.types")
        XCTAssertEqual(code(["types": [1]])?.1, "filter.types")
        XCTAssertEqual(code(["colour": ["red"]])?.0, .unknownField)
        XCTAssertEqual(code(["colour": ["red"]])?.1, "filter.colour")
    }
}
