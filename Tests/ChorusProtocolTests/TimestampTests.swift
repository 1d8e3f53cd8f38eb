import ChorusProtocol
import XCTest

final class TimestampTests: XCTestCase {
    func testParsesRFC3339Forms() {
        XCTAssertEqual(parseTimestamp("2026-11-23T10:00:00Z"), 1_795_428_000_000)
        XCTAssertEqual(parseTimestamp("2026-11-23T10:00:00.123Z"), 1_795_428_000_123)
        XCTAssertEqual(parseTimestamp("2026-11-23T10:00:00.1Z"), 1_795_428_000_100)
        XCTAssertEqual(parseTimestamp("2026-11-23T10:00:00.123456789Z"), 1_795_428_000_123)
        XCTAssertEqual(parseTimestamp("2026-11-23T11:30:00+01:30"), 1_795_428_000_000)
        XCTAssertEqual(parseTimestamp("2026-11-23T05:00:00-05:00"), 1_795_428_000_000)
        XCTAssertEqual(parseTimestamp("2026-11-23t10:00:00z"), 1_795_428_000_000)
        XCTAssertEqual(parseTimestamp("1970-01-01T00:00:00Z"), 0)
        XCTAssertEqual(parseTimestamp("1969-12-31T23:59:59.999Z"), -1)
        XCTAssertEqual(parseTimestamp("2024-02-29T00:00:00Z"), 1_709_164_800_000)
    }

    func testRejectsNonTimestamps() {
        for s in ["", "2026-11-23", "2026-11-23T10:00:00", "2026-13-01T00:00:00Z", "2026-11-23T24:00:00Z",
                  "2026-11-23T10:60:00Z", "2026-11-23T10:00:00.Z", "2026-11-23T10:00:00+0100", "now",
                  "2026-11-23T10:00:00Zjunk", "２０２６-11-23T10:00:00Z"]
        {
            XCTAssertNil(parseTimestamp(s), s)
        }
    }

    func testFormats() {
        XCTAssertEqual(formatTimestamp(1_795_428_000_123), "2026-11-23T10:00:00.123Z")
        XCTAssertEqual(formatTimestamp(0), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(formatTimestamp(-1), "1969-12-31T23:59:59.999Z")
        XCTAssertEqual(formatTimestamp(1_709_164_800_000), "2024-02-29T00:00:00.000Z")
    }

    func testRoundTrips() {
        var ms: Int64 = -86_400_000 * 400
        while ms < 4_102_444_800_000 {  // up to 2100
            XCTAssertEqual(parseTimestamp(formatTimestamp(ms)), ms, formatTimestamp(ms))
            ms += 7_919_999_937  // about every 92 days, with varying time of day and milliseconds
        }
    }
}
