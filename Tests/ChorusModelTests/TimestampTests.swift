import ChorusModel
import Foundation
import XCTest

final class TimestampTests: XCTestCase {
    func testFormat() {
        XCTAssertEqual(Timestamp.format(ms: 0), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(Timestamp.format(ms: 1), "1970-01-01T00:00:00.001Z")
        XCTAssertEqual(Timestamp.format(ms: 1_700_000_000_123), "2023-11-14T22:13:20.123Z")
        XCTAssertEqual(Timestamp.format(ms: Fixtures.now), "2026-11-23T10:00:00.000Z")
        XCTAssertEqual(Timestamp.format(ms: 951_782_400_000), "2000-02-29T00:00:00.000Z")
        XCTAssertEqual(Timestamp.format(ms: 253_402_300_799_999), "9999-12-31T23:59:59.999Z")
        XCTAssertEqual(Timestamp.format(ms: -1), "1969-12-31T23:59:59.999Z")
        XCTAssertEqual(Timestamp.format(ms: -1000), "1969-12-31T23:59:59.000Z")
        XCTAssertEqual(Timestamp.format(ms: -31_536_000_000), "1969-01-01T00:00:00.000Z")
        XCTAssertEqual(Timestamp.format(ms: -62_135_596_800_000), "0001-01-01T00:00:00.000Z")
    }

    func testParseForms() {
        XCTAssertEqual(Timestamp.parse("2026-11-23T10:00:00Z"), Fixtures.now)
        XCTAssertEqual(Timestamp.parse("2026-11-23t10:00:00z"), Fixtures.now, "lower-case T and Z")
        XCTAssertEqual(Timestamp.parse("2026-11-23 10:00:00Z"), Fixtures.now, "space separator (RFC 3339 §5.6 note)")
        XCTAssertEqual(Timestamp.parse("2026-11-23T10:00:00.000Z"), Fixtures.now)
        XCTAssertEqual(Timestamp.parse("2026-11-23T10:00:00.1Z"), Fixtures.now + 100)
        XCTAssertEqual(Timestamp.parse("2026-11-23T10:00:00.12Z"), Fixtures.now + 120)
        XCTAssertEqual(Timestamp.parse("2026-11-23T10:00:00.123Z"), Fixtures.now + 123)
        XCTAssertEqual(Timestamp.parse("2026-11-23T10:00:00.123999999Z"), Fixtures.now + 123, "digits past milliseconds are truncated")
        XCTAssertEqual(Timestamp.parse("2026-11-23T11:00:00+01:00"), Fixtures.now)
        XCTAssertEqual(Timestamp.parse("2026-11-23T15:30:00.250+05:30"), Fixtures.now + 250)
        XCTAssertEqual(Timestamp.parse("2026-11-23T02:00:00-08:00"), Fixtures.now)
        XCTAssertEqual(Timestamp.parse("2026-11-23T10:00:00+00:00"), Fixtures.now)
        XCTAssertEqual(Timestamp.parse("2026-11-23T10:00:00-00:00"), Fixtures.now)
        XCTAssertEqual(Timestamp.parse("2026-11-24T00:30:00+14:30"), Fixtures.now, "offsets past ±12 exist")
        XCTAssertEqual(Timestamp.parse("1970-01-01T00:00:00Z"), 0)
        XCTAssertEqual(Timestamp.parse("1969-12-31T23:59:59.999Z"), -1)
        XCTAssertEqual(Timestamp.parse("2024-02-29T12:00:00Z"), 1_709_208_000_000, "leap day")
        XCTAssertEqual(Timestamp.parse("2000-02-29T00:00:00Z"), 951_782_400_000, "2000 is a leap year")
        XCTAssertEqual(Timestamp.parse("2016-12-31T23:59:60Z"), Timestamp.parse("2017-01-01T00:00:00Z"), "a leap second counts as the next second")
    }

    func testParseRefusesInvalidInput() {
        let invalid = [
            "", "2026", "2026-11-23", "2026-11-23T10:00:00", "2026-11-23T10:00Z", "2026-11-23T10:00:00 Z",
            "2026-11-23X10:00:00Z", "2026/11/23T10:00:00Z", "26-11-23T10:00:00Z",
            "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-11-00T00:00:00Z", "2026-11-31T00:00:00Z",
            "2026-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2026-02-30T00:00:00Z", "2026-04-31T00:00:00Z",
            "2026-11-23T24:00:00Z", "2026-11-23T10:60:00Z", "2026-11-23T10:00:61Z",
            "2026-11-23T10:00:00.Z", "2026-11-23T10:00:00,5Z", "2026-11-23T10:00:00+0100", "2026-11-23T10:00:00+01",
            "2026-11-23T10:00:00+1:00", "2026-11-23T10:00:00+24:00", "2026-11-23T10:00:00+01:60",
            "2026-11-23T10:00:00Z ", " 2026-11-23T10:00:00Z", "2026-11-23T10:00:00ZZ", "2026-11-23T10:00:00+01:00Z",
            "２０２６-11-23T10:00:00Z", "2026-11-23T1a:00:00Z", "-2026-11-23T10:00:00Z",
        ]
        for s in invalid {
            XCTAssertNil(Timestamp.parse(s), "accepted \"\(s)\"")
        }
    }

    func testRoundTrips() {
        var values: [Int64] = [0, 1, -1, 999, 1000, -999, -1000, -1001, 86_399_999, 86_400_000, Fixtures.now,
                               951_782_400_000, 951_868_799_999, 4_107_542_399_999, 253_402_300_799_999, -62_135_596_800_000]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 { values.append(Int64.random(in: -62_135_596_800_000...253_402_300_799_999, using: &rng)) }
        for ms in values {
            let text = Timestamp.format(ms: ms)
            XCTAssertEqual(text.utf8.count, 24, text)
            guard Timestamp.parse(text) == ms else {
                XCTFail("\(ms) → \(text) → \(String(describing: Timestamp.parse(text)))")
                return
            }
        }
        // Text → ms → text is the canonical UTC form.
        XCTAssertEqual(Timestamp.parse("2026-11-23T11:59:58.5+02:00").map { Timestamp.format(ms: $0) }, "2026-11-23T09:59:58.500Z")
        XCTAssertEqual(Timestamp.parse("2026-01-01T00:30:00+01:00").map { Timestamp.format(ms: $0) }, "2025-12-31T23:30:00.000Z")
    }

    func testFormatMatchesFoundationForEveryDayOfSomeYears() {
        // Day boundaries in leap and common years, compared with an independent calendar.
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        for year in [1900, 1970, 1999, 2000, 2024, 2026, 2100] {
            var day = calendar.date(from: DateComponents(year: year, month: 1, day: 1))!
            while calendar.component(.year, from: day) == year {
                let ms = Int64((day.timeIntervalSince1970 * 1000).rounded())
                let c = calendar.dateComponents([.year, .month, .day], from: day)
                let expected = String(format: "%04d-%02d-%02dT00:00:00.000Z", c.year!, c.month!, c.day!)
                guard Timestamp.format(ms: ms) == expected, Timestamp.parse(expected) == ms else {
                    XCTFail("\(expected): formatted \(Timestamp.format(ms: ms)), parsed \(String(describing: Timestamp.parse(expected))) for \(ms)")
                    return
                }
                day = calendar.date(byAdding: .day, value: 1, to: day)!
            }
        }
    }
}
