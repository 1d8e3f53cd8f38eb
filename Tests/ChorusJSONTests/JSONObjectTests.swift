import ChorusJSON
import XCTest

final class JSONObjectTests: XCTestCase {
    func testInsertionOrderAndUpdates() {
        var o = JSONObject()
        XCTAssertTrue(o.isEmpty)
        o["b"] = 1
        o["a"] = 2
        o["c"] = 3
        XCTAssertEqual(o.keys, ["b", "a", "c"])
        XCTAssertEqual(o.count, 3)
        o["a"] = "replaced"
        XCTAssertEqual(o.keys, ["b", "a", "c"], "replacing a value keeps its place")
        XCTAssertEqual(o["a"], "replaced")
        o["b"] = nil
        XCTAssertEqual(o.keys, ["a", "c"], "assigning nil removes the key")
        o["missing"] = nil
        XCTAssertEqual(o.count, 2, "removing an absent key does nothing")
        o["b"] = .null
        XCTAssertEqual(o.keys, ["a", "c", "b"], "JSON null is a value, not a removal")
        XCTAssertEqual(o["b"], .null)
        XCTAssertNil(o["zzz"])
    }

    func testInitializersAndIteration() {
        let o = JSONObject([("x", 1), ("y", "two")])
        XCTAssertEqual(o.keys, ["x", "y"])
        let lit: JSONObject = ["x": 1, "y": "two"]
        XCTAssertEqual(o, lit)
        var seen: [String] = []
        for (k, v) in o {
            seen.append("\(k)=\(v)")
        }
        XCTAssertEqual(seen, ["x=1", #"y="two""#])
        XCTAssertEqual(o.entries.map(\.key), ["x", "y"])
    }

    func testEqualityIgnoresOrderButNotContent() {
        let a: JSONObject = ["x": 1, "y": [1, 2], "z": ["n": nil]]
        let b: JSONObject = ["z": ["n": nil], "x": 1, "y": [1, 2]]
        XCTAssertEqual(a, b, "objects are equal whatever the key order")
        XCTAssertEqual(JSONValue.object(a), JSONValue.object(b))
        XCTAssertNotEqual(a, ["x": 1, "y": [2, 1], "z": ["n": nil]], "arrays are ordered")
        XCTAssertNotEqual(a, ["x": 1, "y": [1, 2]], "a missing key differs")
        XCTAssertNotEqual(a, ["x": 1, "y": [1, 2], "z": ["n": nil], "w": 0], "an extra key differs")
        XCTAssertNotEqual(a, ["x": 1, "y": [1, 2], "q": ["n": nil]], "same count, another key")
        XCTAssertNotEqual(["v": nil] as JSONObject, [:] as JSONObject, "null differs from absent")
        XCTAssertEqual(JSONObject(), [:])
    }

    func testValueEquality() {
        XCTAssertEqual(JSONValue.int(1), JSONValue.int(Int64(1)))
        XCTAssertNotEqual(JSONValue.int(1), JSONValue.double(1.0), "integers and doubles are distinct numbers")
        XCTAssertNotEqual(JSONValue.string("1"), JSONValue.int(1))
        XCTAssertNotEqual(JSONValue.null, JSONValue.bool(false))
        XCTAssertEqual(JSONValue(integerLiteral: 5), .number(.int(5)))
        XCTAssertEqual(JSONValue(floatLiteral: 0.5), .number(.double(0.5)))
        XCTAssertEqual(JSONValue(stringLiteral: "s"), .string("s"))
        XCTAssertEqual(JSONValue(booleanLiteral: true), .bool(true))
        XCTAssertEqual(JSONValue(nilLiteral: ()), .null)
    }
}
