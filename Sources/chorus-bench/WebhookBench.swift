// The WhatsApp webhook benchmark: signed Cloud API webhooks in over keep-alive
// connections → verified, normalized, committed, answered → a durable subscriber.
import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusTestKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Starts a chorusd (the build directory's, release for meaningful numbers) with one WhatsApp
/// instance whose Graph API points at nothing, and drives it for `seconds` with signed
/// text-message webhooks — one message each, every one with its own wamid — over
/// `connections` keep-alive connections, while a durable subscriber reads and acks.
/// Prints the accepted webhooks per second and the arrival → subscriber latency.
func runWhatsAppWebhookBench(connections: Int, seconds: Int) throws {
    let secret = "bench-app-secret-\(Int.random(in: 0..<1_000_000))"
    let dir = TestPaths.temporaryDirectory("chorus-wa-bench")
    let d = try TestDaemon(instancesTOML: """
    [[instance]]
    name = "wa"
    plugin = "whatsapp"
    [instance.settings]
    app_secret = "\(secret)"
    verify_token = "bench-verify"
    access_token = "bench-token"
    phone_number_id = "106540352242922"
    account = "106540352242922"
    api_base_url = "http://127.0.0.1:9"
    media_prefetch = false
    """, extraTOML: "[store]\nfsync = \"grouped\"\nretention_hours = 0\n", directory: dir)
    try d.start()
    defer { d.stop() }
    print("whatsapp webhook bench: \(connections) keep-alive connections, \(seconds) s, chorusd pid \(d.process!.processIdentifier)")

    let subscriber = try BenchSubscriber(socketPath: d.socketPath, name: "wa-bench")

    // The load: each connection signs and posts webhooks until the deadline.
    let cpuBefore = processCPUSeconds(pid: d.process!.processIdentifier)
    let start = monotonicNs()
    let deadline = start + UInt64(seconds) * 1_000_000_000
    let padding = String(repeating: "lorem ipsum ", count: 8)
    let (accepted, failed) = runLoadThreads(connections: connections) { conn in
        let client = try KeepAliveHTTPClient(port: d.httpPort)
        var i = 0
        var ok = 0, bad = 0
        while monotonicNs() < deadline {
            let from = 4915100000000 + (conn * 1_000_003 + i) % 5000
            let body = Array("""
            {"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp",\
            "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},\
            "contacts":[{"profile":{"name":"Bench Customer \(from % 100)"},"wa_id":"\(from)"}],\
            "messages":[{"from":"\(from)","id":"wamid.BENCH\(conn)x\(i)","timestamp":"\(Int(Date().timeIntervalSince1970))",\
            "type":"text","text":{"body":"\(padding)\(monotonicNs())"}}]},"field":"messages"}]}]}
            """.utf8)
            let signature = "sha256=" + TestDigest.hex(TestDigest.hmacSHA256(key: Array(secret.utf8), message: body))
            let status = try client.post(path: "/webhooks/wa", headers: [("X-Hub-Signature-256", signature)], body: body)
            if status == 200 { ok += 1 } else { bad += 1 }
            i += 1
        }
        return (ok, bad)
    }
    let loadSecs = Double(monotonicNs() - start) / 1e9
    let cpuUsed = processCPUSeconds(pid: d.process!.processIdentifier) - cpuBefore
    print(String(format: "whatsapp webhooks: %d accepted (200) in %.1f s = %.0f webhooks/s verified, normalized, committed and answered; %d failed",
                 accepted, loadSecs, Double(accepted) / loadSecs, failed))
    subscriber.finish(expected: accepted, start: start)
    printCPUAndMemory(pid: d.process!.processIdentifier, cpuUsed: cpuUsed, count: accepted, unit: "webhook")
}

/// A durable subscriber on its own thread: reads and acks every 1,000 events, and records the
/// arrival → subscriber latency from the send time (monotonic ns) the load put at the end of the first text part.
final class BenchSubscriber: @unchecked Sendable {
    private let samples = LockedArray<Double>()
    private let received = Counter()
    private let stopReading = LockedFlag()
    private let readerDone = DispatchSemaphore(value: 0)

    init(socketPath: String, name: String) throws {
        let ready = DispatchSemaphore(value: 0)
        let (samples, received, stopReading, readerDone) = (self.samples, self.received, self.stopReading, self.readerDone)
        let reader = Thread {
            defer { readerDone.signal() }
            do {
                let c = try ChorusConnection(path: socketPath, timeoutMilliseconds: 30_000)
                _ = try c.request(.subscribe(name: name, filter: SubscriptionFilter(types: ["message"]), from: .now))
                ready.signal()
                var n = 0
                var last: Int64 = 0
                while !stopReading.value {
                    let m: ServerMessage
                    do { m = try c.nextMessage(timeoutMilliseconds: 500) } catch ClientError.timeout { continue }
                    guard case .event(_, let cursor, let ev) = m else { continue }
                    let now = monotonicNs()
                    if let text = ev["parts"]?.arrayValue?.first?["text"]?.stringValue,
                       let sent = UInt64(text.split(whereSeparator: { $0 == " " || $0 == "\n" }).last ?? "") {
                        samples.append(Double(now &- sent) / 1000)
                    }
                    n += 1; last = cursor
                    received.add(1)
                    if n % 1000 == 0 { try c.send(ClientFrame(command: .ack(sub: name, cursor: cursor))) }
                }
                if last > 0 { _ = try c.request(.ack(sub: name, cursor: last)) }
                c.close()
            } catch {
                print("  subscriber error: \(error)")
                ready.signal()
            }
        }
        reader.start()
        ready.wait()
    }

    /// Waits (up to 60 s) until `expected` events arrived, stops the reader and prints its figures.
    func finish(expected: Int, start: UInt64) {
        let catchUp = Date().addingTimeInterval(60)
        while received.value < expected && Date() < catchUp { usleep(10_000) }
        let endToEnd = Double(monotonicNs() - start) / 1e9
        stopReading.set()
        readerDone.wait()
        let sorted = samples.values.sorted()
        func pct(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        print(String(format: "  durable subscriber: %d events, all read after %.1f s (%.0f events/s)", received.value, endToEnd, Double(received.value) / endToEnd))
        print(String(format: "  arrival → subscriber latency under that load, %d samples: p50 %.0f µs, p99 %.0f µs, p99.9 %.0f µs, max %.0f µs",
                     sorted.count, pct(0.5), pct(0.99), pct(0.999), sorted.last ?? 0))
    }
}

/// Runs `body(connection)` on `connections` threads at once (one thread per connection: each
/// blocks on its requests, and GCD's pool would cap the concurrency) and sums what they report
/// as accepted and failed; a thread that throws counts one failure.
func runLoadThreads(connections: Int, _ body: @escaping @Sendable (Int) throws -> (ok: Int, bad: Int)) -> (accepted: Int, failed: Int) {
    let accepted = Counter(), failed = Counter()
    let group = DispatchGroup()
    for conn in 0..<connections {
        group.enter()
        let t = Thread {
            defer { group.leave() }
            do {
                let (ok, bad) = try body(conn)
                accepted.add(ok)
                failed.add(bad)
            } catch {
                print("  load connection \(conn) error: \(error)")
                failed.add(1)
            }
        }
        t.stackSize = 256 << 10
        t.start()
    }
    group.wait()
    return (accepted.value, failed.value)
}

/// chorusd's CPU per unit of work and its resident memory.
func printCPUAndMemory(pid: Int32, cpuUsed: Double, count: Int, unit: String) {
    print(String(format: "  chorusd CPU: %.2f s over the run, %.0f µs per ", cpuUsed, cpuUsed * 1e6 / Double(max(count, 1)))
          + unit + String(format: " (%.0f ", Double(count) / max(cpuUsed, 0.001)) + unit + "s/s per busy core)")
    print(String(format: "  resident memory after the run: %.1f MiB", Double(residentKiB(pid: pid)) / 1024))
}

/// User + system CPU time of a process, in seconds (from /proc/<pid>/stat).
func processCPUSeconds(pid: Int32) -> Double {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = s.lastIndex(of: ")") else { return 0 }
    let fields = s[s.index(after: close)...].split(separator: " ")
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    guard fields.count > 13, let u = Double(fields[11]), let st = Double(fields[12]) else { return 0 }
    return (u + st) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A flag set by one thread and read by another.
final class LockedFlag: @unchecked Sendable {
    private var v = false
    private let lock = NSLock()
    func set() { lock.lock(); v = true; lock.unlock() }
    var value: Bool { lock.lock(); defer { lock.unlock() }; return v }
}
