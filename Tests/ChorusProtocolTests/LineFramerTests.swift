import ChorusProtocol
import XCTest

final class LineFramerTests: XCTestCase {
    private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    private func drain(_ f: inout LineFramer) -> [FramerOutput] {
        var out: [FramerOutput] = []
        while let o = f.next() { out.append(o) }
        return out
    }

    func testSplitsCompleteLines() {
        var f = LineFramer(maxFrameBytes: 100)
        f.append(bytes("{\"op\":\"ping\"}\n{\"op\":\"stats\"}\n"))
        XCTAssertEqual(drain(&f), [.frame(bytes("{\"op\":\"ping\"}")), .frame(bytes("{\"op\":\"stats\"}"))])
        XCTAssertEqual(f.bufferedByteCount, 0)
    }

    func testPartialChunksAreJoined() {
        var f = LineFramer(maxFrameBytes: 100)
        let text = "{\"op\":\"ping\",\"id\":1}\n{\"op\":\"ack\"}\n"
        var frames: [FramerOutput] = []
        for b in bytes(text) {
            f.append([b])
            frames += drain(&f)
        }
        XCTAssertEqual(frames, [.frame(bytes("{\"op\":\"ping\",\"id\":1}")), .frame(bytes("{\"op\":\"ack\"}"))])

        var g = LineFramer(maxFrameBytes: 100)
        g.append(bytes("abc"))
        XCTAssertNil(g.next())
        XCTAssertEqual(g.bufferedByteCount, 3)
        g.append(bytes("def\nghi"))
        XCTAssertEqual(g.next(), .frame(bytes("abcdef")))
        XCTAssertNil(g.next())
        g.append(bytes("\n"))
        XCTAssertEqual(g.next(), .frame(bytes("ghi")))
    }

    func testCRLFIsStripped() {
        var f = LineFramer(maxFrameBytes: 100)
        f.append(bytes("one\r\ntwo\r"))
        XCTAssertEqual(f.next(), .frame(bytes("one")))
        XCTAssertNil(f.next())
        f.append(bytes("\nthree\rx\n"))
        XCTAssertEqual(drain(&f), [.frame(bytes("two")), .frame(bytes("three\rx"))])
    }

    func testEmptyAndBlankLinesAreSkipped() {
        var f = LineFramer(maxFrameBytes: 100)
        f.append(bytes("\n\r\n  \t \na\n\n\nb\n"))
        XCTAssertEqual(drain(&f), [.frame(bytes("a")), .frame(bytes("b"))])
    }

    func testLineOfExactlyTheLimitIsAccepted() {
        var f = LineFramer(maxFrameBytes: 5)
        f.append(bytes("12345"))
        XCTAssertNil(f.next())
        f.append(bytes("\r"))
        XCTAssertNil(f.next(), "a CR right after the limit may be the start of CRLF")
        f.append(bytes("\n12345\n"))
        XCTAssertEqual(drain(&f), [.frame(bytes("12345")), .frame(bytes("12345"))])
    }

    func testOversizedLineInOneChunkIsReportedAndSkipped() {
        var f = LineFramer(maxFrameBytes: 8)
        f.append(bytes("ok\n0123456789\nafter\n"))
        XCTAssertEqual(drain(&f), [.frame(bytes("ok")), .oversized(10), .frame(bytes("after"))])
    }

    func testOversizedLineAcrossChunksIsReportedOnceAndResynchronised() {
        var f = LineFramer(maxFrameBytes: 16)
        f.append(bytes("0123456789"))
        XCTAssertNil(f.next())
        f.append(bytes("0123456789"))
        guard case .oversized(let n)? = f.next() else { return XCTFail("expected an oversize report") }
        XCTAssertGreaterThan(n, 16)
        XCTAssertEqual(f.bufferedByteCount, 0, "the oversized line is not kept in memory")
        // The rest of the line keeps arriving: nothing more is reported and nothing is buffered.
        for _ in 0..<100 {
            f.append(bytes(String(repeating: "x", count: 1000)))
            XCTAssertNil(f.next())
            XCTAssertEqual(f.bufferedByteCount, 0)
        }
        f.append(bytes("tail of the big line\n{\"op\":\"ping\"}\npartial"))
        XCTAssertEqual(f.next(), .frame(bytes("{\"op\":\"ping\"}")))
        XCTAssertNil(f.next())
        f.append(bytes("\n"))
        XCTAssertEqual(f.next(), .frame(bytes("partial")))
    }

    func testOversizedWithoutCRIsDetectedAtLimitPlusOne() {
        var f = LineFramer(maxFrameBytes: 4)
        f.append(bytes("12345"))
        XCTAssertEqual(f.next(), .oversized(5))
        f.append(bytes("\nok\n"))
        XCTAssertEqual(drain(&f), [.frame(bytes("ok"))])
    }

    func testLargeVolumeKeepsBufferBounded() {
        var f = LineFramer(maxFrameBytes: 64)
        var count = 0
        let line = bytes("{\"op\":\"ack\",\"sub\":\"crm\",\"cursor\":1}\n")
        for _ in 0..<5000 {
            f.append(line + line + Array(line[0..<10]))
            count += drain(&f).count
            f.append(Array(line[10...]))
            count += drain(&f).count
        }
        XCTAssertEqual(count, 15000)
        XCTAssertEqual(f.bufferedByteCount, 0)
    }
}
