import ChorusJSON
import ChorusTestKit
import MetaGraph
import XCTest

/// The shared Meta code, in-process: signatures, error classification, pacing, the service window, conversions.
final class MetaGraphTests: XCTestCase {
    // MARK: Signatures

    func testSignatureMatchesOpenSSLAndRefusesTampering() throws {
        let body = try MetaFixtures.raw("text")
        let expected = try MetaFixtures.signature(body)
        XCTAssertEqual(GraphSignature.sign(body: body, secret: MetaFixtures.appSecret), expected)
        XCTAssertNoThrow(try GraphSignature.verify(body: body, header: expected, secret: MetaFixtures.appSecret).get())
        // Upper-case hex is the same digest.
        let upper = "sha256=" + expected.dropFirst(7).uppercased()
        XCTAssertNoThrow(try GraphSignature.verify(body: body, header: upper, secret: MetaFixtures.appSecret).get())

        var tampered = body
        tampered[tampered.count / 2] ^= 1
        XCTAssertEqual(verifyFailure(tampered, expected), .mismatch)
        XCTAssertEqual(verifyFailure(body, try MetaFixtures.signature(body, secret: "another-secret")), .mismatch)
        XCTAssertEqual(verifyFailure(body, nil), .missing)
        XCTAssertEqual(verifyFailure(body, "sha1=" + String(expected.dropFirst(7))), .malformed)
        XCTAssertEqual(verifyFailure(body, String(expected.dropLast())), .malformed)
        XCTAssertEqual(verifyFailure(body, "sha256=" + String(repeating: "zz", count: 32)), .malformed)
    }

    private func verifyFailure(_ body: [UInt8], _ header: String?) -> GraphSignature.Failure? {
        if case .failure(let f) = GraphSignature.verify(body: body, header: header, secret: MetaFixtures.appSecret) { return f }
        return nil
    }

    func testConstantTimeEquals() {
        XCTAssertTrue(WebhookVerification.constantTimeEquals("token", "token"))
        XCTAssertFalse(WebhookVerification.constantTimeEquals("token", "tokem"))
        XCTAssertFalse(WebhookVerification.constantTimeEquals("token", "token2"))
        XCTAssertTrue(WebhookVerification.constantTimeEquals("", ""))
    }

    // MARK: Errors and retries

    func graphBody(_ code: Int, subcode: Int? = nil, details: String? = nil) -> [UInt8] {
        var e: JSONObject = ["message": .string("(#\(code)) something"), "type": "OAuthException", "code": .int(code), "fbtrace_id": "Axyz"]
        if let subcode { e["error_subcode"] = .int(subcode) }
        if let details { e["error_data"] = ["messaging_product": "whatsapp", "details": .string(details)] }
        return JSONWriter.encode(["error": .object(e)])
    }

    func testGraphErrorParsing() throws {
        let e = try XCTUnwrap(GraphError.parse(graphBody(131047, subcode: 2494010, details: "Message failed to send because more than 24 hours have passed")))
        XCTAssertEqual(e.code, 131047)
        XCTAssertEqual(e.subcode, 2494010)
        XCTAssertEqual(e.type, "OAuthException")
        XCTAssertEqual(e.traceId, "Axyz")
        XCTAssertEqual(e.details, "Message failed to send because more than 24 hours have passed")
        XCTAssertNil(GraphError.parse(Array("not json".utf8)))
        XCTAssertNil(GraphError.parse(Array(#"{"success":true}"#.utf8)))
    }

    func testRetryClassification() {
        func classify(_ status: Int, _ body: [UInt8], retryAfter: String? = nil) -> GraphFailure {
            GraphRetryPolicy.classify(status: status, transportError: nil, headers: retryAfter.map { [(name: "retry-after", value: $0)] } ?? [], body: body)
        }
        // Throughput throttling: retryable, with the documented fallback delay, or what Retry-After says.
        let t = classify(400, graphBody(130429))
        XCTAssertEqual(t.disposition, .retryable(afterMs: 1_000))
        XCTAssertTrue(t.isThrottling)
        XCTAssertEqual(t.code, "130429")
        XCTAssertEqual(classify(400, graphBody(130429), retryAfter: "7").disposition, .retryable(afterMs: 7_000))
        // Pair rate, WABA rate, app/user/page limits.
        XCTAssertEqual(classify(400, graphBody(131056)).disposition, .retryable(afterMs: 6_000))
        for code in [80007, 4, 17, 32, 613] {
            XCTAssertTrue(classify(400, graphBody(code)).isRetryable, "code \(code)")
            XCTAssertTrue(classify(400, graphBody(code)).isThrottling, "code \(code)")
        }
        // 429 without a Graph body; 5xx; transient codes; transport errors.
        XCTAssertEqual(classify(429, []).disposition, .retryable(afterMs: 1_000))
        XCTAssertEqual(classify(429, [], retryAfter: "3").disposition, .retryable(afterMs: 3_000))
        XCTAssertEqual(classify(503, Array("upstream down".utf8)).code, "http_503")
        XCTAssertTrue(classify(503, []).isRetryable)
        XCTAssertTrue(classify(500, graphBody(131000)).isRetryable)
        XCTAssertTrue(classify(400, graphBody(2)).isRetryable)
        let transport = GraphRetryPolicy.classify(status: 0, transportError: "Connection refused", headers: [], body: [])
        XCTAssertEqual(transport.code, "transport")
        XCTAssertEqual(transport.disposition, .retryable(afterMs: 0))
        // Permanent with the code: invalid parameter, re-engagement (24 h window), bad token.
        let p = classify(400, graphBody(100, details: "Parameter value is not valid"))
        XCTAssertEqual(p.disposition, .permanent)
        XCTAssertEqual(p.code, "100")
        XCTAssertTrue(p.message.contains("Parameter value is not valid"))
        XCTAssertEqual(classify(400, graphBody(131047)).disposition, .permanent)
        XCTAssertEqual(classify(401, graphBody(190)).code, "190")
        XCTAssertEqual(classify(404, []).code, "http_404")
        XCTAssertEqual(classify(404, []).disposition, .permanent)
        // The send outcome carries the code and the delay.
        XCTAssertEqual(t.sendOutcome, .retryable(code: "130429", message: t.message, retryAfterMs: 1_000))
        XCTAssertEqual(p.sendOutcome, .permanent(code: "100", message: p.message))
    }

    // MARK: Pacing

    func testTokenBucketPacesAfterBurst() {
        var b = TokenBucket(ratePerSecond: 10, burst: 3)
        var delays: [Int64] = []
        for _ in 0..<5 {
            let d = b.delay(nowMs: 1_000)
            b.take(atMs: 1_000 + d)
            delays.append(d)
        }
        XCTAssertEqual(delays, [0, 0, 0, 100, 200])
        // After a quiet second the burst is available again.
        XCTAssertEqual(b.delay(nowMs: 3_000), 0)
        b.pause(untilMs: 5_000)
        XCTAssertEqual(b.delay(nowMs: 3_000), 2_000)
    }

    func testSendPacerAppliesNumberAndRecipientLimits() {
        // 80/s for the number: the 81st message in the same millisecond waits one interval.
        var pacer = SendPacer(ratePerSecond: 80, recipientRatePerSecond: 1000, recipientBurst: 1000)
        var last: Int64 = 0
        for i in 0..<81 {
            XCTAssertEqual(pacer.reserveRecipient("r\(i)", nowMs: 10_000), 0)
            last = pacer.reserveSender(nowMs: 10_000)
        }
        XCTAssertEqual(last, 13)  // 1000/80 = 12.5 ms, rounded up
        // Per recipient: a burst of 45, then one every 6 s (WhatsApp's pair rate).
        var pair = SendPacer(ratePerSecond: 1000, recipientRatePerSecond: 1.0 / 6.0, recipientBurst: 45)
        var waits: [Int64] = []
        for _ in 0..<47 { waits.append(pair.reserveRecipient("same", nowMs: 0)) }
        XCTAssertEqual(waits.prefix(45).max(), 0)
        XCTAssertEqual(waits[45], 6_000)
        XCTAssertEqual(waits[46], 12_000)
        // Messages held for one recipient take no number slots yet: others are not held up.
        XCTAssertEqual(pair.reserveRecipient("other", nowMs: 0), 0)
        XCTAssertEqual(pair.reserveSender(nowMs: 0), 0)
        // Throttling pauses.
        pair.pauseSender(forMs: 2_000, nowMs: 0)
        XCTAssertEqual(pair.reserveSender(nowMs: 0), 2_000)
        pair.pauseRecipient("fourth", forMs: 500, nowMs: 10_000)
        XCTAssertEqual(pair.reserveRecipient("fourth", nowMs: 10_000), 500)
        XCTAssertEqual(pair.trackedRecipients, 3)
    }

    // MARK: Service window

    func testServiceWindowOpensWithInboundAndClosesAfter24Hours() {
        let w = ServiceWindowTracker(store: .memory)
        let t0: Int64 = 1_700_000_000_000
        XCTAssertFalse(w.isOpen(chat: "16505551234", nowMs: t0), "unknown chats have no window")
        w.recordInbound(chat: "16505551234", atMs: t0, messageId: "wamid.A")
        XCTAssertTrue(w.isOpen(chat: "16505551234", nowMs: t0 + 23 * 3_600_000))
        XCTAssertFalse(w.isOpen(chat: "16505551234", nowMs: t0 + 24 * 3_600_000))
        XCTAssertEqual(w.closesAt(chat: "16505551234"), t0 + 24 * 3_600_000)
        // An older (redelivered) message does not move the window back; a newer one extends it.
        w.recordInbound(chat: "16505551234", atMs: t0 - 5_000, messageId: "wamid.OLD")
        XCTAssertEqual(w.lastInbound(chat: "16505551234"), t0)
        XCTAssertEqual(w.lastInboundMessageId(chat: "16505551234"), "wamid.A")
        w.recordInbound(chat: "16505551234", atMs: t0 + 10 * 3_600_000, messageId: "wamid.B")
        XCTAssertTrue(w.isOpen(chat: "16505551234", nowMs: t0 + 30 * 3_600_000))
        XCTAssertEqual(w.lastInboundMessageId(chat: "16505551234"), "wamid.B")
        XCTAssertFalse(w.isOpen(chat: "someone-else", nowMs: t0))
    }

    // MARK: Conversions

    func testTimestampsAndMoney() {
        XCTAssertEqual(MetaConvert.timestamp(unixSeconds: "1739321024"), "2025-02-12T00:43:44Z")
        XCTAssertEqual(MetaConvert.timestamp(unixSeconds: .int(0)), "1970-01-01T00:00:00Z")
        XCTAssertEqual(MetaConvert.rfc3339(epochSeconds: 951_782_400), "2000-02-29T00:00:00Z")
        XCTAssertNil(MetaConvert.timestamp(unixSeconds: "soon"))
        XCTAssertEqual(MetaConvert.epochMs(unixSeconds: "1739321024"), 1_739_321_024_000)
        XCTAssertEqual(MetaConvert.minorUnits(.double(7.99), currency: "USD"), 799)
        XCTAssertEqual(MetaConvert.minorUnits("114.99", currency: "EUR"), 11499)
        XCTAssertEqual(MetaConvert.minorUnits(.int(500), currency: "JPY"), 500)
        XCTAssertEqual(MetaConvert.minorUnits("1.2345", currency: "KWD"), 1235)
        XCTAssertEqual(MetaConvert.minorUnits(.int(12), currency: "EUR"), 1200)
        XCTAssertNil(MetaConvert.minorUnits("abc", currency: "EUR"))
        XCTAssertEqual(MetaConvert.decimal(minorUnits: 11499, currency: "EUR"), "114.99")
        XCTAssertEqual(MetaConvert.decimal(minorUnits: 5, currency: "USD"), "0.05")
        XCTAssertEqual(MetaConvert.decimal(minorUnits: 500, currency: "JPY"), "500")
        XCTAssertEqual(percentEncodePathSegment("a b/c"), "a%20b%2Fc")
    }
}
