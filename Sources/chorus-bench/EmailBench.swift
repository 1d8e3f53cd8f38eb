// The email benchmark: mail in over LMTP (the way Postfix delivers) → MIME-parsed, threaded,
// committed → answered 250 → a durable subscriber.
import ChorusClient
import ChorusTestKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Starts a chorusd with one email instance that only listens for LMTP, and drives it for
/// `seconds` over `connections` LMTP connections, one transaction at a time per connection
/// (MAIL, RCPT and DATA pipelined, as Postfix does), each a ~1.5 KiB multipart/alternative mail
/// with its own Message-ID, while a durable subscriber reads and acks.
func runEmailLMTPBench(connections: Int, seconds: Int) throws {
    let dir = TestPaths.temporaryDirectory("chorus-email-bench")
    let port = try freeLoopbackPort()
    let d = try TestDaemon(instancesTOML: """
    [[instance]]
    name = "mail"
    plugin = "email"
    [instance.settings]
    address = "support@bench.test"
    lmtp_listen = "127.0.0.1:\(port)"
    """, extraTOML: "[store]\nfsync = \"grouped\"\nretention_hours = 0\n", directory: dir)
    try d.start()
    defer { d.stop() }
    print("email LMTP bench: \(connections) LMTP connections, \(seconds) s, chorusd pid \(d.process!.processIdentifier)")
    let subscriber = try BenchSubscriber(socketPath: d.socketPath, name: "email-bench")

    let cpuBefore = processCPUSeconds(pid: d.process!.processIdentifier)
    let start = monotonicNs()
    let deadline = start + UInt64(seconds) * 1_000_000_000
    let filler = String(repeating: "Thanks for the quick answer, the parcel arrived. ", count: 8)
    let (accepted, failed) = runLoadThreads(connections: connections) { conn in
        let c = try LineClient(port: port)
        _ = try c.reply()                       // 220
        try c.send("LHLO bench.test\r\n")
        _ = try c.reply()                       // 250 (multi-line)
        var ok = 0, bad = 0, i = 0
        while monotonicNs() < deadline {
            let id = "bench-\(conn)-\(i)@customer.test"
            let mail = "From: Bench Customer <c\(conn)@customer.test>\r\nTo: support@bench.test\r\nSubject: Order \(i)\r\n"
                + "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <\(id)>\r\nMIME-Version: 1.0\r\n"
                + "Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
                + "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\(filler)\(monotonicNs())\r\n"
                + "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>\(filler)</p>\r\n--b1--\r\n.\r\n"
            try c.send("MAIL FROM:<c\(conn)@customer.test>\r\nRCPT TO:<support@bench.test>\r\nDATA\r\n")
            let r1 = try c.reply(), r2 = try c.reply(), r3 = try c.reply()
            guard r1.hasPrefix("250"), r2.hasPrefix("250"), r3.hasPrefix("354") else { bad += 1; break }
            try c.send(mail)
            if try c.reply().hasPrefix("250") { ok += 1 } else { bad += 1 }
            i += 1
        }
        return (ok, bad)
    }
    let loadSecs = Double(monotonicNs() - start) / 1e9
    let cpuUsed = processCPUSeconds(pid: d.process!.processIdentifier) - cpuBefore
    print(String(format: "email over LMTP: %d mails answered 250 in %.1f s = %.0f mails/s parsed, threaded, committed and answered; %d failed",
                 accepted, loadSecs, Double(accepted) / loadSecs, failed))
    subscriber.finish(expected: accepted, start: start)
    printCPUAndMemory(pid: d.process!.processIdentifier, cpuUsed: cpuUsed, count: accepted, unit: "mail")
}
