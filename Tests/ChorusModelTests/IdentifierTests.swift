import ChorusModel
import XCTest

final class IdentifierTests: XCTestCase {
    static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

    /// Decodes the 26 base32 characters after the prefix into the 128-bit ULID value.
    func decode(_ id: String, prefix: String, file: StaticString = #filePath, line: UInt = #line) -> UInt128? {
        guard id.hasPrefix(prefix + "_") else { XCTFail("\(id) lacks \(prefix)_", file: file, line: line); return nil }
        let body = Array(id.dropFirst(prefix.count + 1))
        guard body.count == 26 else { XCTFail("\(id): \(body.count) characters", file: file, line: line); return nil }
        var v: UInt128 = 0
        for c in body {
            guard let d = Self.alphabet.firstIndex(of: c) else { XCTFail("\(id): '\(c)' is not Crockford base32", file: file, line: line); return nil }
            v = (v << 5) | UInt128(d)
        }
        XCTAssertLessThanOrEqual(body[0], "7", "a 128-bit value leaves the first character 0–7", file: file, line: line)
        return v
    }

    // MARK: Time-ordered ids

    func testIdsCarryTheirMillisecondLikeAULID() throws {
        var gen = IdentifierGenerator()
        for ms: UInt64 in [1, 1_795_428_000_000, 0xFFFF_FFFF_FFFF] {
            let id = gen.next(prefix: "evt", nowMs: ms)
            let v = try XCTUnwrap(decode(id, prefix: "evt"))
            XCTAssertEqual(UInt64(v >> 80), ms, id)
        }
        // The time characters of a real id against an independent encoding of the milliseconds.
        var fresh = IdentifierGenerator()
        let id = fresh.next(prefix: "msg", nowMs: 0x0123_4567_89AB)
        var tsChars = ""
        let ms: UInt64 = 0x0123_4567_89AB
        // The first 10 characters encode 50 bits: 2 zero bits then the 48-bit timestamp.
        for i in 0..<10 { tsChars.append(Self.alphabet[Int((ms >> UInt64(45 - 5 * i)) & 31)]) }
        XCTAssertEqual(String(id.dropFirst(4).prefix(10)), tsChars)
        XCTAssertEqual(tsChars, "014D2PF2DB")
    }

    func testHundredThousandIdsInOneMillisecondAreUniqueAndIncreasing() throws {
        var gen = IdentifierGenerator()
        let ms: UInt64 = 1_795_428_000_000
        var previous = ""
        var seen = Set<String>()
        seen.reserveCapacity(100_000)
        for i in 0..<100_000 {
            let id = gen.next(prefix: "evt", nowMs: ms)
            XCTAssertEqual(id.utf8.count, 30)
            if i > 0 && !(id > previous) {
                XCTFail("id \(i) \(id) does not sort after \(previous)")
                break
            }
            seen.insert(id)
            previous = id
        }
        XCTAssertEqual(seen.count, 100_000)
        // Every one of them still says the same millisecond.
        let v = try XCTUnwrap(decode(previous, prefix: "evt"))
        XCTAssertEqual(UInt64(v >> 80), ms)
    }

    func testIdsSortByCreationTimeAndSurviveAClockStepBack() throws {
        var gen = IdentifierGenerator()
        let a = gen.next(prefix: "evt", nowMs: 1_000_000)
        let b = gen.next(prefix: "evt", nowMs: 1_000_001)
        let c = gen.next(prefix: "evt", nowMs: 999_000)  // the clock went back a second
        let d = gen.next(prefix: "evt", nowMs: 1_000_001)
        let e = gen.next(prefix: "evt", nowMs: 1_000_002)
        XCTAssertLessThan(a, b)
        XCTAssertLessThan(b, c)
        XCTAssertLessThan(c, d)
        XCTAssertLessThan(d, e)
        // While the clock is behind, ids keep the last millisecond seen.
        XCTAssertEqual(UInt64(try XCTUnwrap(decode(c, prefix: "evt")) >> 80), 1_000_001)
        XCTAssertEqual(UInt64(try XCTUnwrap(decode(e, prefix: "evt")) >> 80), 1_000_002)
    }

    func testRandomnessDiffersBetweenGeneratorsAndMilliseconds() throws {
        var g1 = IdentifierGenerator(), g2 = IdentifierGenerator()
        let x = g1.next(prefix: "evt", nowMs: 42), y = g2.next(prefix: "evt", nowMs: 42)
        XCTAssertNotEqual(x, y, "80 random bits: two generators do not collide")
        XCTAssertEqual(x.prefix(14), y.prefix(14), "same millisecond, same time characters")
        let low80 = { (v: UInt128) in v & ((UInt128(1) << 80) - 1) }
        let r1 = low80(try XCTUnwrap(decode(g1.next(prefix: "evt", nowMs: 43), prefix: "evt")))
        let r2 = low80(try XCTUnwrap(decode(g1.next(prefix: "evt", nowMs: 44), prefix: "evt")))
        XCTAssertNotEqual(r1, r2, "a new millisecond draws new randomness")
        XCTAssertLessThan(r1 >> 79, 1, "the top random bit is kept clear")
    }

    func testPrefixIsFree() {
        var gen = IdentifierGenerator()
        XCTAssertTrue(gen.next(prefix: "msg", nowMs: 1).hasPrefix("msg_"))
        XCTAssertTrue(gen.next(prefix: "evt", nowMs: 1).hasPrefix("evt_"))
    }

    // MARK: Derived ids

    func testConversationIdsAreDerivedAndStable() {
        // Known values, computed independently (SHA-256 of the 0x1F-joined fields, Crockford base32 of the first 130 bits).
        XCTAssertEqual(ChorusIdentifiers.conversationId(channel: "whatsapp", account: "1065", chat: "4915112345678"), "conv_WVT7XCB17G817NMATQ90TVNFVP")
        XCTAssertEqual(ChorusIdentifiers.conversationId(channel: "telegram", account: "bot1", chat: "-100123"), "conv_W7C7HPKBXXZ0ZKVQ4GECZ3ZDM2")
        XCTAssertEqual(ChorusIdentifiers.contactId(channel: "whatsapp", nativeId: "4915112345678"), "ct_NJS3FWFKB6Z5946G2MQCB7017Q")

        let base = ChorusIdentifiers.conversationId(channel: "whatsapp", account: "1065", chat: "c1")
        XCTAssertEqual(base, ChorusIdentifiers.conversationId(channel: "whatsapp", account: "1065", chat: "c1"))
        XCTAssertNotEqual(base, ChorusIdentifiers.conversationId(channel: "whatsapp", account: "1066", chat: "c1"), "another account")
        XCTAssertNotEqual(base, ChorusIdentifiers.conversationId(channel: "messenger", account: "1065", chat: "c1"), "another channel")
        XCTAssertNotEqual(base, ChorusIdentifiers.conversationId(channel: "whatsapp", account: "1065", chat: "c2"), "another chat")
        // Fields are separated, not concatenated.
        XCTAssertNotEqual(ChorusIdentifiers.conversationId(channel: "wa", account: "10", chat: "65"),
                          ChorusIdentifiers.conversationId(channel: "wa", account: "106", chat: "5"))
        XCTAssertEqual(base.count, 31)
        XCTAssertTrue(base.dropFirst(5).allSatisfy { Self.alphabet.contains($0) })

        let contact = ChorusIdentifiers.contactId(channel: "whatsapp", nativeId: "u1")
        XCTAssertEqual(contact, ChorusIdentifiers.contactId(channel: "whatsapp", nativeId: "u1"))
        XCTAssertNotEqual(contact, ChorusIdentifiers.contactId(channel: "telegram", nativeId: "u1"))
        XCTAssertEqual(contact.count, 29)
    }

    func testNormalizedEventsUseTheDerivedIds() throws {
        let input = #"{"type":"message","channel_ids":{"chat":"c1","account":"A"},"sender":{"id":"u1"},"parts":[{"type":"text","text":"x"}]}"#
        let other = #"{"type":"message","channel_ids":{"chat":"c1","account":"B"},"sender":{"id":"u1"},"parts":[{"type":"text","text":"x"}]}"#
        let a1 = try XCTUnwrap(normalized(input)), a2 = try XCTUnwrap(normalized(input, nowMs: Fixtures.now + 86_400_000))
        let b = try XCTUnwrap(normalized(other))
        XCTAssertEqual(a1.conversationId, a2.conversationId, "same chat, same conversation, any time")
        XCTAssertNotEqual(a1.conversationId, b.conversationId, "another account is another conversation")
        XCTAssertEqual(a1.conversationId, ChorusIdentifiers.conversationId(channel: "whatsapp", account: "A", chat: "c1"))
        XCTAssertEqual(a1.object["sender"]?["contact_id"], b.object["sender"]?["contact_id"], "a contact is per channel, not per account")
        // Another instance of the same channel and account maps to the same conversation.
        let other2 = InstanceContext(name: "wa-backup", channel: "whatsapp", keepRaw: false)
        XCTAssertEqual(try XCTUnwrap(normalized(input, context: other2)).conversationId, a1.conversationId)
    }

    func testBase32() {
        XCTAssertEqual(ChorusIdentifiers.base32([0xFF], characters: 2), "ZW")
        XCTAssertEqual(ChorusIdentifiers.base32([0x00, 0x00], characters: 4), "0000")
        XCTAssertEqual(ChorusIdentifiers.base32([0x08, 0x42], characters: 4), "1110", "the last character is padded with zero bits")
        XCTAssertEqual(ChorusIdentifiers.base32([0xFF, 0xFF, 0xFF], characters: 3), "ZZZ", "stops at the requested length")
        XCTAssertEqual(ChorusIdentifiers.digest(["a", "b"]).count, 32)
        XCTAssertNotEqual(ChorusIdentifiers.digest(["ab"]), ChorusIdentifiers.digest(["a", "b"]))
    }
}
