import ChorusJSON
import XCTest

final class JSONWriterTests: XCTestCase {
    func text(_ v: JSONValue) -> String { JSONWriter.encodeString(v) }

    // MARK: Escaping

    func testStringEscaping() {
        XCTAssertEqual(text("plain"), #""plain""#)
        XCTAssertEqual(text("quote \" backslash \\ slash /"), #""quote \" backslash \\ slash /""#)
        XCTAssertEqual(text("\n\r\t\u{08}\u{0C}"), #""\n\r\t\b\f""#)
        XCTAssertEqual(text("\u{0}\u{1}\u{1F}"), #""\u0000\u0001\u001f""#)
        XCTAssertEqual(text("\u{7F}"), "\"\u{7F}\"", "DEL is left as is")
        XCTAssertEqual(text("héllo ✓ 😀 \u{2028}"), "\"héllo ✓ 😀 \u{2028}\"", "non-ASCII is written as UTF-8")
        XCTAssertEqual(text(""), #""""#)
        XCTAssertEqual(text("a\"b\"c"), #""a\"b\"c""#, "runs between escapes are copied")
    }

    func testEveryControlCharacterIsEscapedAndRoundTrips() throws {
        for c in 0..<0x20 {
            let s = "x" + String(UnicodeScalar(UInt8(c))) + "y"
            let encoded = JSONWriter.encode(.string(s))
            XCTAssertFalse(encoded.dropFirst().dropLast().contains { $0 < 0x20 }, "raw control character \(c) written")
            XCTAssertEqual(try JSONParser.parse(encoded), .string(s))
        }
    }

    // MARK: Numbers

    func testNumbers() {
        XCTAssertEqual(text(0), "0")
        XCTAssertEqual(text(7), "7")
        XCTAssertEqual(text(-7), "-7")
        XCTAssertEqual(text(1234567890), "1234567890")
        XCTAssertEqual(text(.int(Int64.max)), "9223372036854775807")
        XCTAssertEqual(text(.int(Int64.min)), "-9223372036854775808")
        XCTAssertEqual(text(2.5), "2.5")
        XCTAssertEqual(text(-0.125), "-0.125")
        XCTAssertEqual(text(3.0), "3", "whole doubles are written as integers")
        XCTAssertEqual(text(-0.0), "0")
        XCTAssertEqual(text(.double(1e20)), "1e+20")
        XCTAssertEqual(text(.double(.nan)), "null", "JSON has no NaN")
        XCTAssertEqual(text(.double(.infinity)), "null")
        XCTAssertEqual(text(.double(-.infinity)), "null")
        for d in [0.1, 1.0 / 3.0, Double.leastNonzeroMagnitude, 1.7976931348623157e308, -2.2250738585072014e-308, 123456.789e10, 1e15, 1e-7] {
            let back = try? JSONParser.parse(JSONWriter.encode(.double(d)))
            XCTAssertEqual(back?.doubleValue, d, "\(d) does not round-trip: \(text(.double(d)))")
        }
    }

    // MARK: Structure

    func testValuesAndContainers() {
        XCTAssertEqual(text(nil), "null")
        XCTAssertEqual(text(true), "true")
        XCTAssertEqual(text(false), "false")
        XCTAssertEqual(text([]), "[]")
        XCTAssertEqual(text([:]), "{}")
        XCTAssertEqual(text([1, "a", nil, [true], ["k": []]]), #"[1,"a",null,[true],{"k":[]}]"#)
        XCTAssertEqual(text(["z": 1, "a": ["y": 2, "b": 3]]), #"{"z":1,"a":{"y":2,"b":3}}"#, "insertion order is kept")
        XCTAssertEqual(text(["k\"ey\n": "v"]), #"{"k\"ey\n":"v"}"#, "keys are escaped too")
        XCTAssertEqual(JSONValue.object(["a": 1]).description, #"{"a":1}"#)
    }

    func testStreamingWriter() {
        var w = JSONWriter()
        w.beginObject()
        w.field("s", "x")
        w.field("missing", nil as String?)
        w.field("present", "y" as String?)
        w.field("i", 5)
        w.field("i64", Int64(-6))
        w.field("b", true)
        w.field("v", ["nested": [1, 2]])
        w.key("arr")
        w.beginArray()
        w.int(1)
        w.double(2.5)
        w.uint(UInt64.max)
        w.null()
        w.bool(false)
        w.string("s")
        w.raw(Array(#"{"pre":"encoded"}"#.utf8))
        w.raw(Array("[7]".utf8)[...])
        w.value(["k": nil])
        w.beginArray()
        w.endArray()
        w.beginObject()
        w.endObject()
        w.endArray()
        w.key("empty")
        w.beginObject()
        w.endObject()
        w.endObject()
        let out = String(decoding: w.bytes, as: UTF8.self)
        XCTAssertEqual(out, #"{"s":"x","present":"y","i":5,"i64":-6,"b":true,"v":{"nested":[1,2]},"arr":[1,2.5,18446744073709551615,null,false,"s",{"pre":"encoded"},[7],{"k":null},[],{}],"empty":{}}"#)
        XCTAssertNotNil(try? JSONParser.parse(w.bytes), "the output parses")
    }

    func testTopLevelSequenceWithoutContainer() {
        var w = JSONWriter(capacity: 8)
        w.string("a")
        XCTAssertEqual(String(decoding: w.bytes, as: UTF8.self), #""a""#)
    }

    func testStaticAppenders() {
        var out: [UInt8] = Array("x=".utf8)
        JSONWriter.appendString("q\"", to: &out)
        JSONWriter.appendInt(-42, to: &out)
        JSONWriter.appendDouble(0.5, to: &out)
        JSONWriter.append(["a": [1]], to: &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), #"x="q\""-420.5{"a":[1]}"#)
    }

    // MARK: Round trips

    func testRoundTripPreservesValueAndOrder() throws {
        let source = #"{"schema":1,"id":"evt_01","parts":[{"type":"text","text":"hi \"there\"\n\u0001 😀"},{"type":"location","latitude":52.52,"longitude":-13.4}],"n":null,"t":true,"big":-9223372036854775808,"e":1.5e-7,"nested":{"z":[],"a":{}}}"#
        let v = try JSONParser.parse(source)
        let encoded = JSONWriter.encode(v)
        let again = try JSONParser.parse(encoded)
        XCTAssertEqual(again, v)
        XCTAssertEqual(JSONWriter.encode(again), encoded, "encoding is deterministic")
        XCTAssertEqual(again.objectValue?.keys, ["schema", "id", "parts", "n", "t", "big", "e", "nested"])
    }

    func testRandomDocumentsRoundTrip() throws {
        var rng = SplitMix64(seed: 0xC0FFEE)
        for _ in 0..<500 {
            let v = randomValue(depth: 0, rng: &rng)
            let encoded = JSONWriter.encode(v)
            let back = try JSONParser.parse(encoded)
            XCTAssertEqual(back, v, String(decoding: encoded, as: UTF8.self))
        }
    }

    /// A small deterministic generator, so a failure is reproducible.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    func randomString(rng: inout SplitMix64) -> String {
        let pool: [Character] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{0}", "\u{1F}", "é", "€", "😀", "\u{2028}", "\u{FFFD}"]
        return String((0..<Int.random(in: 0...12, using: &rng)).map { _ in pool.randomElement(using: &rng)! })
    }

    func randomValue(depth: Int, rng: inout SplitMix64) -> JSONValue {
        switch Int.random(in: 0...(depth > 4 ? 4 : 6), using: &rng) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2: return .int(Int64.random(in: Int64.min...Int64.max, using: &rng))
        case 3:
            // Doubles with a fraction, so they come back as doubles.
            return .double(Double(Int.random(in: -1_000_000...1_000_000, using: &rng)) + 0.5)
        case 4: return .string(randomString(rng: &rng))
        case 5: return .array((0..<Int.random(in: 0...5, using: &rng)).map { _ in randomValue(depth: depth + 1, rng: &rng) })
        default:
            var o = JSONObject()
            for i in 0..<Int.random(in: 0...5, using: &rng) {
                o[randomString(rng: &rng) + "#\(i)"] = randomValue(depth: depth + 1, rng: &rng)
            }
            return .object(o)
        }
    }
}
