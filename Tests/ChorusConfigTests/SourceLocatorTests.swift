import XCTest
@testable import ChorusConfig

final class SourceLocatorTests: XCTestCase {
    private func line(_ locator: SourceLocator, _ components: PathComponent...) -> Int? {
        locator.line(for: ConfigPath(components: components))
    }

    func testTablesArraysOfTablesAndDottedKeys() {
        let locator = SourceLocator(text: """
            top = 1
            [a]
            b.c = "x"   # comment with [brackets] and = signs
            [[list]]
            name = "first"
            [list.sub]
            deep = true
            [[list]]
            name = "second"
            [[list.items]]
            v = 1
            [[list.items]]
            v = 2
            "quoted.key" = 3
            'lit' = 4
            """)
        XCTAssertEqual(line(locator, .key("top")), 1)
        XCTAssertEqual(line(locator, .key("a")), 2)
        XCTAssertEqual(line(locator, .key("a"), .key("b")), 3)
        XCTAssertEqual(line(locator, .key("a"), .key("b"), .key("c")), 3)
        XCTAssertEqual(line(locator, .key("list")), 4)
        XCTAssertEqual(line(locator, .key("list"), .index(0)), 4)
        XCTAssertEqual(line(locator, .key("list"), .index(0), .key("name")), 5)
        XCTAssertEqual(line(locator, .key("list"), .index(0), .key("sub")), 6)
        XCTAssertEqual(line(locator, .key("list"), .index(0), .key("sub"), .key("deep")), 7)
        XCTAssertEqual(line(locator, .key("list"), .index(1)), 8)
        XCTAssertEqual(line(locator, .key("list"), .index(1), .key("name")), 9)
        XCTAssertEqual(line(locator, .key("list"), .index(1), .key("items"), .index(0)), 10)
        XCTAssertEqual(line(locator, .key("list"), .index(1), .key("items"), .index(1), .key("v")), 13)
        XCTAssertEqual(line(locator, .key("list"), .index(1), .key("items"), .index(1), .key("quoted.key")), 14)
        XCTAssertEqual(line(locator, .key("list"), .index(1), .key("items"), .index(1), .key("lit")), 15)
        XCTAssertNil(line(locator, .key("list"), .index(2)))
        XCTAssertNil(line(locator, .key("missing")))
    }

    func testMultilineStringsArraysAndInlineTables() {
        let locator = SourceLocator(text: #"""
            text = """
            not.a = "key"
            [not_a_table]
            """
            literal = '''
            x = 1
            '''
            after = 1
            arr = [
              "a", # comment ]
              { k = "v",
                n = 2 },
              [1, 2],
            ]
            inline = { a = 1, b.c = { d = "}" } }
            escaped = "quote \" ] # not a comment"
            "esc\u0041ped" = 5
            """#)
        XCTAssertEqual(line(locator, .key("text")), 1)
        XCTAssertNil(line(locator, .key("not")))
        XCTAssertNil(line(locator, .key("not_a_table")))
        XCTAssertEqual(line(locator, .key("literal")), 5)
        XCTAssertNil(line(locator, .key("x")))
        XCTAssertEqual(line(locator, .key("after")), 8)
        XCTAssertEqual(line(locator, .key("arr")), 9)
        XCTAssertEqual(line(locator, .key("arr"), .index(0)), 10)
        XCTAssertEqual(line(locator, .key("arr"), .index(1)), 11)
        XCTAssertEqual(line(locator, .key("arr"), .index(1), .key("k")), 11)
        XCTAssertEqual(line(locator, .key("arr"), .index(1), .key("n")), 12)
        XCTAssertEqual(line(locator, .key("arr"), .index(2)), 13)
        XCTAssertEqual(line(locator, .key("arr"), .index(2), .index(1)), 13)
        XCTAssertEqual(line(locator, .key("inline"), .key("b"), .key("c"), .key("d")), 15)
        XCTAssertEqual(line(locator, .key("escaped")), 16)
        XCTAssertEqual(line(locator, .key("escAped")), 17)
    }

    func testPathRendering() {
        XCTAssertEqual(ConfigPath(components: [.key("instance"), .index(1), .key("settings")]).description,
                       "instance[1].settings")
        XCTAssertEqual(ConfigPath(components: [.key("s"), .key("a.b"), .key("with space")]).description,
                       #"s."a.b"."with space""#)
        XCTAssertEqual(ConfigPath.root.description, "")
    }
}
