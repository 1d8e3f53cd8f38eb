import ChorusJSON
import XCTest

final class JSONParserTests: XCTestCase {
    func parse(_ text: String, maxDepth: Int = JSONParser.defaultMaxDepth, file: StaticString = #filePath, line: UInt = #line) -> JSONValue? {
        do { return try JSONParser.parse(text, maxDepth: maxDepth) } catch {
            XCTFail("refused \(text): \(error)", file: file, line: line)
            return nil
        }
    }

    func assertRefused(_ bytes: [UInt8], _ message: String, at offset: Int? = nil, maxDepth: Int = JSONParser.defaultMaxDepth,
                       file: StaticString = #filePath, line: UInt = #line)
    {
        do {
            let v = try JSONParser.parse(bytes, maxDepth: maxDepth)
            XCTFail("accepted \(String(decoding: bytes, as: UTF8.self)) as \(v)", file: file, line: line)
        } catch {
            XCTAssertTrue(error.message.contains(message), "\"\(error.message)\" lacks \"\(message)\"", file: file, line: line)
            if let offset { XCTAssertEqual(error.offset, offset, "offset", file: file, line: line) }
            XCTAssertTrue(error.description.hasPrefix("invalid JSON at byte \(error.offset): "), file: file, line: line)
        }
    }

    func assertRefused(_ text: String, _ message: String, at offset: Int? = nil, maxDepth: Int = JSONParser.defaultMaxDepth,
                       file: StaticString = #filePath, line: UInt = #line)
    {
        assertRefused(Array(text.utf8), message, at: offset, maxDepth: maxDepth, file: file, line: line)
    }

    // MARK: Values

    func testScalarsAndWhitespace() {
        XCTAssertEqual(parse("null"), .null)
        XCTAssertEqual(parse("true"), .bool(true))
        XCTAssertEqual(parse("false"), .bool(false))
        XCTAssertEqual(parse(#""a""#), .string("a"))
        XCTAssertEqual(parse(" \t\r\n 42 \n"), .int(42))
        XCTAssertEqual(parse("[]"), .array([]))
        XCTAssertEqual(parse("{}"), .object(JSONObject()))
        XCTAssertEqual(parse(" [ 1 , [ ] , { } , \"x\" ] "), [1, [], [:], "x"])
        XCTAssertEqual(parse(#"{ "a" : { "b" : [ null , true ] } }"#), ["a": ["b": [nil, true]]])
    }

    func testNumbers() {
        XCTAssertEqual(parse("0"), .number(.int(0)))
        XCTAssertEqual(parse("-0"), .number(.int(0)))
        XCTAssertEqual(parse("-12"), .number(.int(-12)))
        XCTAssertEqual(parse("9223372036854775807"), .number(.int(Int64.max)))
        XCTAssertEqual(parse("-9223372036854775808"), .number(.int(Int64.min)))
        XCTAssertEqual(parse("9223372036854775808"), .number(.double(9223372036854775808.0)), "beyond Int64: a double")
        XCTAssertEqual(parse("1.5"), .number(.double(1.5)))
        XCTAssertEqual(parse("-0.25"), .number(.double(-0.25)))
        XCTAssertEqual(parse("1e3"), .number(.double(1000)))
        XCTAssertEqual(parse("1E+3"), .number(.double(1000)))
        XCTAssertEqual(parse("25e-1"), .number(.double(2.5)))
        XCTAssertEqual(parse("1.0"), .number(.double(1.0)), "a fraction stays a double even when whole")
        XCTAssertEqual(parse("1.0")?.intValue, 1, "but reads as an integer")
        XCTAssertNil(parse("1.5")?.intValue)
        XCTAssertEqual(parse("5e-324"), .number(.double(.leastNonzeroMagnitude)))
        XCTAssertEqual(parse("1.7976931348623157e308"), .number(.double(1.7976931348623157e308)))

        assertRefused("01", "unexpected data after the document", at: 1)
        assertRefused("-", "truncated number", at: 0)
        assertRefused("-a", "invalid number", at: 0)
        assertRefused("+1", "unexpected character '+'", at: 0)
        assertRefused(".5", "unexpected character '.'", at: 0)
        assertRefused("1.", "no digits after '.'", at: 0)
        assertRefused("1.e5", "no digits after '.'")
        assertRefused("1e", "empty exponent", at: 0)
        assertRefused("1e+", "empty exponent")
        assertRefused("1e400", "number out of range", at: 0)
        assertRefused("-1e400", "number out of range")
        assertRefused("0x10", "unexpected data after the document", at: 1)
        assertRefused("NaN", "unexpected character 'N'")
        assertRefused("Infinity", "unexpected character 'I'")
        assertRefused("[1,]", "unexpected character ']'", at: 3)
    }

    func testLiterals() {
        assertRefused("tru", "unexpected end of input")
        assertRefused("trux", "invalid literal", at: 0)
        assertRefused("nul", "unexpected end of input")
        assertRefused("True", "unexpected character 'T'")
        assertRefused("nulll", "unexpected data after the document", at: 4)
    }

    // MARK: Strings

    func testEscapes() {
        XCTAssertEqual(parse(#""\" \\ \/ \b \f \n \r \t""#), .string("\" \\ / \u{08} \u{0C} \n \r \t"))
        XCTAssertEqual(parse(#""\u0041\u00e9\u20AC""#), .string("Aé€"))
        XCTAssertEqual(parse(#""\u0000""#), .string("\u{0}"))
        XCTAssertEqual(parse(#""a\u001fb""#), .string("a\u{1F}b"))
        XCTAssertEqual(parse(#""plain ascii then \n escape""#), .string("plain ascii then \n escape"))
        XCTAssertEqual(parse("\"héllo ✓ 😀\""), .string("héllo ✓ 😀"), "raw UTF-8 passes through")
        XCTAssertEqual(parse("\"\u{7F}\""), .string("\u{7F}"), "DEL needs no escape")

        assertRefused(#""\x41""#, "invalid escape '\\x'", at: 2)
        assertRefused(#""\u12x""#, "invalid hex digit", at: 5)
        assertRefused(#""\u12"#, "truncated \\u escape")
        assertRefused(#""\uZZZZ""#, "invalid hex digit")
        assertRefused("\"abc", "unterminated string", at: 0)
        assertRefused("\"abc\\", "unterminated string", at: 0)
        assertRefused("\"a\\nb", "unterminated string")
        assertRefused("\"a\nb\"", "control character in string", at: 2)
        assertRefused("\"a\tb\"", "control character in string", at: 2)
        assertRefused("\"\\n\u{01}\"", "control character in string", at: 3)
        assertRefused("'a'", "unexpected character '''")
    }

    func testSurrogates() {
        XCTAssertEqual(parse(#""\ud83d\ude00""#), .string("😀"))
        XCTAssertEqual(parse(#""\uD834\uDD1E""#), .string("𝄞"))
        XCTAssertEqual(parse(#""x\uDBFF\uDFFFy""#), .string("x\u{10FFFF}y"))
        assertRefused(#""\ud83d""#, "unpaired surrogate")
        assertRefused(#""\ud83dx""#, "unpaired surrogate")
        assertRefused(#""\ud83d\u0041""#, "unpaired surrogate")
        assertRefused(#""\ud83d\ud83d""#, "unpaired surrogate")
        assertRefused(#""\ude00""#, "unpaired surrogate")
        assertRefused(#""\ude00\ud83d""#, "unpaired surrogate")
    }

    func testInvalidUTF8() {
        assertRefused([0x22, 0xFF, 0x22], "not valid UTF-8", at: 1)
        assertRefused([0x22, 0x61, 0xC3, 0x22], "not valid UTF-8")                 // truncated 2-byte sequence
        assertRefused([0x22, 0xC0, 0xAF, 0x22], "not valid UTF-8")                 // overlong "/"
        assertRefused([0x22, 0xED, 0xA0, 0x80, 0x22], "not valid UTF-8")           // encoded surrogate
        assertRefused([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], "not valid UTF-8")     // above U+10FFFF
        assertRefused([0x22, 0x5C, 0x6E, 0xFF, 0x22], "not valid UTF-8")           // on the escape path too
        XCTAssertEqual(try? JSONParser.parse([0x22, 0xE2, 0x9C, 0x93, 0x22]), .string("✓"))
        assertRefused([0xEF, 0xBB, 0xBF, 0x31], "unexpected character", at: 0)    // a BOM is not JSON text
        assertRefused([0xFF], "unexpected character '\\xff'")
    }

    // MARK: Structure

    func testDepthLimit() {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        XCTAssertNotNil(parse(ok))
        assertRefused(String(repeating: "[", count: 65) + String(repeating: "]", count: 65), "nesting deeper than 64", at: 64)
        let objects = String(repeating: #"{"a":"#, count: 65) + "1" + String(repeating: "}", count: 65)
        assertRefused(objects, "nesting deeper than 64")
        XCTAssertNotNil(parse(String(repeating: #"{"a":"#, count: 64) + "1" + String(repeating: "}", count: 64)))
        XCTAssertNotNil(parse("[[[1]]]", maxDepth: 3))
        assertRefused("[[[1]]]", "nesting deeper than 2", maxDepth: 2)
        // Very deep input is refused quickly, not by exhausting the stack.
        assertRefused(String(repeating: "[", count: 1_000_000), "nesting deeper than 64")
    }

    func testTrailingDataAndEmptyInput() {
        assertRefused("", "unexpected end of input", at: 0)
        assertRefused([], "unexpected end of input", at: 0)
        assertRefused("   ", "unexpected end of input", at: 3)
        assertRefused("{} {}", "unexpected data after the document", at: 3)
        assertRefused("1 2", "unexpected data after the document", at: 2)
        assertRefused(#"{"a":1}x"#, "unexpected data after the document", at: 7)
        assertRefused("null\u{0}", "unexpected data after the document", at: 4)
        assertRefused("[1 2]", "expected ',' or ']'", at: 3)
        assertRefused("[1", "unexpected end of input in array")
        assertRefused(#"{"a" 1}"#, "expected ':'", at: 5)
        assertRefused(#"{"a":1 "b":2}"#, "expected ',' or '}'", at: 7)
        assertRefused(#"{"a":1,}"#, "expected a string key", at: 7)
        assertRefused(#"{a:1}"#, "expected a string key", at: 1)
        assertRefused(#"{"a":1"#, "unexpected end of input in object")
        assertRefused(#"{"a":"#, "unexpected end of input")
    }

    func testDuplicateKeysAreRefused() {
        assertRefused(#"{"a":1,"a":2}"#, "duplicate key \"a\"", at: 7)
        assertRefused(#"{"a":{"b":1,"c":2,"b":3}}"#, "duplicate key \"b\"")
        assertRefused(#"{"\u0061":1,"a":2}"#, "duplicate key \"a\"")  // compared decoded
        // Large objects switch to a set; duplicates are still found, wherever they are.
        let keys = (0..<40).map { #""k\#($0)":\#($0)"# }
        XCTAssertEqual(parse("{" + keys.joined(separator: ",") + "}")?.objectValue?.count, 40)
        assertRefused("{" + keys.joined(separator: ",") + #","k3":0}"#, "duplicate key \"k3\"")
        assertRefused("{" + keys.joined(separator: ",") + #","k39":0}"#, "duplicate key \"k39\"")
        assertRefused("{" + keys.prefix(16).joined(separator: ",") + #","k0":0}"#, "duplicate key \"k0\"")
        XCTAssertNotNil(parse(#"[{"a":1},{"a":2}]"#), "the same key in sibling objects is fine")
    }

    func testKeysKeepDocumentOrder() throws {
        let v = try XCTUnwrap(parse(#"{"z":1,"a":2,"m":{"y":1,"b":2}}"#))
        XCTAssertEqual(v.objectValue?.keys, ["z", "a", "m"])
        XCTAssertEqual(v["m"]?.objectValue?.keys, ["y", "b"])
    }

    func testParsesFromAnUnsafeBuffer() throws {
        let bytes = Array(#"{"k":[1,2.5,"s"]}"#.utf8)
        let v = try bytes.withUnsafeBytes { raw in try JSONParser.parse(raw) }
        XCTAssertEqual(v, ["k": [1, 2.5, "s"]])
    }

    // MARK: Accessors

    func testAccessors() throws {
        let v = try XCTUnwrap(parse(#"{"s":"x","b":true,"i":7,"d":2.5,"w":3.0,"n":null,"a":[1],"o":{"k":1}}"#))
        XCTAssertEqual(v["s"]?.stringValue, "x")
        XCTAssertEqual(v["b"]?.boolValue, true)
        XCTAssertEqual(v["i"]?.intValue, 7)
        XCTAssertEqual(v["i"]?.doubleValue, 7)
        XCTAssertEqual(v["d"]?.doubleValue, 2.5)
        XCTAssertNil(v["d"]?.intValue)
        XCTAssertEqual(v["w"]?.intValue, 3)
        XCTAssertEqual(v["n"]?.isNull, true)
        XCTAssertEqual(v["a"]?.arrayValue, [1])
        XCTAssertEqual(v["o"]?.objectValue?["k"], 1)
        XCTAssertNil(v["missing"])
        XCTAssertNil(v["s"]?["x"], "subscript on a non-object is nil")
        XCTAssertNil(v["s"]?.intValue)
        XCTAssertNil(v["i"]?.stringValue)
        XCTAssertEqual(JSONValue.double(1e16).intValue, nil, "too large to be exact")
        XCTAssertEqual(["null", "boolean", "number", "string", "array", "object"],
                       [v["n"], v["b"], v["i"], v["s"], v["a"], v["o"]].map { $0!.typeName })
    }
}
