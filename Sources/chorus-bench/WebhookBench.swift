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

    // The durable subscriber: records arrival → subscriber latency from the send time carried in the text.
    let samples = LockedArray<Double>()
    let received = Counter()
    let ready = DispatchSemaphore(value: 0)
    let stopReading = LockedFlag()
    let readerDone = DispatchSemaphore(value: 0)
    let reader = Thread {
        defer { readerDone.signal() }
        do {
            let c = try ChorusConnection(path: d.socketPath, timeoutMilliseconds: 30_000)
            _ = try c.request(.subscribe(name: "wa-bench", filter: SubscriptionFilter(types: ["message"]), from: .now))
            ready.signal()
            var n = 0
            var last: Int64 = 0
            while !stopReading.value {
                let m: ServerMessage
                do { m = try c.nextMessage(timeoutMilliseconds: 500) } catch ClientError.timeout { continue }
                guard case .event(_, let cursor, let ev) = m else { continue }
                let now = monotonicNs()
                if let text = ev["parts"]?.arrayValue?.first?["text"]?.stringValue, let sent = UInt64(text.split(separator: " ").last ?? "") {
                    samples.append(Double(now &- sent) / 1000)
                }
                n += 1; last = cursor
                received.add(1)
                if n % 1000 == 0 { try c.send(ClientFrame(command: .ack(sub: "wa-bench", cursor: cursor))) }
            }
            if last > 0 { _ = try c.request(.ack(sub: "wa-bench", cursor: last)) }
            c.close()
        } catch {
            print("  subscriber error: \(error)")
            ready.signal()
        }
    }
    reader.start()
    ready.wait()

    // The load: each connection signs and posts webhooks until the deadline.
    let accepted = Counter(), failed = Counter()
    let group = DispatchGroup()
    let cpuBefore = processCPUSeconds(pid: d.process!.processIdentifier)
    let start = monotonicNs()
    let deadline = start + UInt64(seconds) * 1_000_000_000
    let padding = String(repeating: "lorem ipsum ", count: 8)
    for conn in 0..<connections {
        group.enter()
        // One thread per connection: each blocks on its request, and GCD's pool would cap the concurrency.
        let t = Thread {
            defer { group.leave() }
            do {
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
                    let signature = "sha256=" + hexDigest(HMACSHA256.mac(key: Array(secret.utf8), message: body))
                    let status = try client.post(path: "/webhooks/wa", headers: [("X-Hub-Signature-256", signature)], body: body)
                    if status == 200 { ok += 1 } else { bad += 1 }
                    i += 1
                }
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
    let loadSecs = Double(monotonicNs() - start) / 1e9
    let cpuUsed = processCPUSeconds(pid: d.process!.processIdentifier) - cpuBefore
    // Let the subscriber catch up with everything that was committed.
    let catchUp = Date().addingTimeInterval(60)
    while received.value < accepted.value && Date() < catchUp { usleep(10_000) }
    let endToEnd = Double(monotonicNs() - start) / 1e9
    stopReading.set()
    readerDone.wait()

    let sorted = samples.values.sorted()
    func pct(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
    print(String(format: "whatsapp webhooks: %d accepted (200) in %.1f s = %.0f webhooks/s verified, normalized, committed and answered; %d failed",
                 accepted.value, loadSecs, Double(accepted.value) / loadSecs, failed.value))
    print(String(format: "  durable subscriber: %d events, all read after %.1f s (%.0f events/s)", received.value, endToEnd, Double(received.value) / endToEnd))
    print(String(format: "  arrival → subscriber latency under that load, %d samples: p50 %.0f µs, p99 %.0f µs, p99.9 %.0f µs, max %.0f µs",
                 sorted.count, pct(0.5), pct(0.99), pct(0.999), sorted.last ?? 0))
    print(String(format: "  chorusd CPU: %.2f s over the run, %.0f µs per webhook (%.0f webhooks/s per busy core)",
                 cpuUsed, cpuUsed * 1e6 / Double(max(accepted.value, 1)), Double(accepted.value) / max(cpuUsed, 0.001)))
    print(String(format: "  resident memory after the run: %.1f MiB", Double(residentKiB(pid: d.process!.processIdentifier)) / 1024))
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

func hexDigest(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}

/// HMAC-SHA256 (RFC 2104, FIPS 180-4) in Swift, so the load generator signs
/// webhooks independently of the plugin's OpenSSL-based verification.
enum HMACSHA256 {
    static func mac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var k = key.count > 64 ? sha256(key) : key
        k += [UInt8](repeating: 0, count: 64 - k.count)
        let inner = sha256(k.map { $0 ^ 0x36 } + message)
        return sha256(k.map { $0 ^ 0x5c } + inner)
    }

    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func sha256(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var data = message
        let bitLength = UInt64(message.count) * 8
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        for i in (0..<8).reversed() { data.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        var w = [UInt32](repeating: 0, count: 64)
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        for chunk in stride(from: 0, to: data.count, by: 64) {
            for i in 0..<16 {
                let j = chunk + i * 4
                w[i] = UInt32(data[j]) << 24 | UInt32(data[j + 1]) << 16 | UInt32(data[j + 2]) << 8 | UInt32(data[j + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
            for i in 0..<64 {
                let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                let ch = (e & f) ^ (~e & g)
                let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
                let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                let maj = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ maj
                hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
            }
            h[0] = h[0] &+ a; h[1] = h[1] &+ b; h[2] = h[2] &+ c; h[3] = h[3] &+ d
            h[4] = h[4] &+ e; h[5] = h[5] &+ f; h[6] = h[6] &+ g; h[7] = h[7] &+ hh
        }
        var out: [UInt8] = []
        for v in h { for s in [24, 16, 8, 0] { out.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
        return out
    }
}
