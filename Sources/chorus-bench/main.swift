// chorus-bench: starts a release chorusd with the sandbox connector and prints throughput,
// latency and memory figures. Argument parsing and orchestration only; the
// load generator and daemon control come from ChorusTestKit and ChorusClient.
import ArgumentParser
import ChorusClient
import ChorusJSON
import ChorusProtocol
import ChorusStore
import ChorusTestKit
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chorus-bench",
        abstract: "Measure Chorus end to end: webhook in → durable commit → subscriber → ack.")

    @Option(help: "Messages per throughput run.") var messages = 200_000
    @Option(help: "Messages per webhook request in the batched runs (the single-message run always uses 1).") var batch = 100
    @Option(help: "HTTP load connections.") var connections = 32
    @Option(help: "Messages in the memory backlog run (0 skips it).") var backlog = 1_000_000
    @Option(help: "Seconds of the paced latency run.") var latencySeconds = 5
    @Option(help: "store.fsync policy: always, grouped or off.") var fsync = "grouped"
    @Flag(help: "Also run the store-only benchmark (SQLite commit rates).") var store = false
    @Flag(help: "Run the signed WhatsApp webhook benchmark instead (for --latency-seconds seconds).") var whatsapp = false
    @Flag(help: "Run the email benchmark instead: mail in over LMTP (for --latency-seconds seconds, 8 connections unless --connections says otherwise).") var email = false

    func run() throws {
        if whatsapp { try runWhatsAppWebhookBench(connections: connections, seconds: max(latencySeconds, 5)); return }
        if email { try runEmailLMTPBench(connections: connections == 32 ? 8 : connections, seconds: max(latencySeconds, 5)); return }
        print("chorus-bench: \(ProcessInfo.processInfo.processorCount) cores, build \(TestPaths.buildDir), fsync=\(fsync)")
        if store {
            let dir = TestPaths.temporaryDirectory("chorus-store-bench")
            for b in [1, 64, 512] {
                print(try StoreBenchmark.run(directory: dir + "/b\(b)", events: b == 1 ? 5_000 : 100_000, batchSize: b, payloadBytes: 500,
                                             fsync: FsyncPolicy(rawValue: fsync) ?? .grouped))
            }
        }
        let d = try TestDaemon(
            instancesTOML: "[[instance]]\nname = \"sandbox\"\nplugin = \"sandbox\"\n[instance.settings]\ndeliver_after_ms = 0\n",
            extraTOML: "[store]\nfsync = \"\(fsync)\"\nretention_hours = 0\n")
        try d.start()
        defer { d.stop() }
        let pid = d.process!.processIdentifier
        usleep(300_000)
        print(String(format: "resident memory idle: %.1f MiB", Double(residentKiB(pid: pid)) / 1024))

        let single = min(messages, 50_000)
        try throughput(d, pid: pid, total: single, perRequest: 1, subscribers: 1)
        try throughput(d, pid: pid, total: messages, perRequest: batch, subscribers: 1)
        try throughput(d, pid: pid, total: messages, perRequest: batch, subscribers: 4)
        try latency(d, rate: 1000, seconds: latencySeconds)
        if backlog > 0 { try memory(d, pid: pid, count: backlog) }
    }

    static let padding = String(repeating: "lorem ipsum ", count: 26)

    static func body(from: Int, id: String, sentNs: UInt64) -> String {
        #"{"from":"cust-\#(from)","name":"Bench Customer","text":"\#(padding)\#(sentNs)","id":"\#(id)"}"#
    }

    /// Posts `total` messages over `connections` keep-alive connections, `perRequest` per webhook
    /// (one thread per connection: GCD's pool would cap the concurrency at the core count).
    func load(_ d: TestDaemon, total: Int, perRequest: Int, tag: String) throws {
        let perConn = (total + connections - 1) / connections
        let (_, failed) = runLoadThreads(connections: connections) { c in
            let start = c * perConn, end = min(total, start + perConn)
            guard start < end else { return (0, 0) }
            let client = try KeepAliveHTTPClient(port: d.httpPort)
            var ok = 0, bad = 0
            var i = start
            while i < end {
                let n = min(perRequest, end - i)
                var parts: [String] = []
                for k in i..<(i + n) { parts.append(Bench.body(from: k % 1000, id: "\(tag)-\(k)", sentNs: monotonicNs())) }
                let body = n == 1 ? parts[0] : "[" + parts.joined(separator: ",") + "]"
                if try client.post(path: "/webhooks/sandbox/messages", body: Array(body.utf8)) == 200 { ok += 1 } else { bad += 1 }
                i += n
            }
            return (ok, bad)
        }
        if failed > 0 { print("  warning: \(failed) requests failed") }
    }

    func throughput(_ d: TestDaemon, pid: Int32, total: Int, perRequest: Int, subscribers: Int) throws {
        let cpuBefore = processCPUSeconds(pid: pid)
        let tag = "t\(perRequest)x\(subscribers)-\(Int.random(in: 0..<1_000_000))"
        var readers: [Thread] = []
        let done = DispatchGroup()
        let ready = DispatchSemaphore(value: 0)
        let finishTimes = LockedArray<Double>()
        for s in 0..<subscribers {
            done.enter()
            let t = Thread {
                defer { done.leave() }
                do {
                    let c = try ChorusConnection(path: d.socketPath, timeoutMilliseconds: 60_000)
                    let name = "bench-\(tag)-\(s)"
                    _ = try c.request(.subscribe(name: name, filter: SubscriptionFilter(types: ["message"]), from: .now))
                    ready.signal()
                    var n = 0
                    var last: Int64 = 0
                    while n < total {
                        if case .event(_, let cursor, _) = try c.nextMessage(timeoutMilliseconds: 60_000) {
                            n += 1; last = cursor
                            if n % 1000 == 0 { try c.send(ClientFrame(command: .ack(sub: name, cursor: cursor))) }
                        }
                    }
                    _ = try c.request(.ack(sub: name, cursor: last))
                    finishTimes.append(Date().timeIntervalSince1970)
                    c.close()
                } catch {
                    print("  subscriber error: \(error)")
                    ready.signal()
                }
            }
            t.start()
            readers.append(t)
        }
        for _ in 0..<subscribers { ready.wait() }
        let start = Date().timeIntervalSince1970
        try load(d, total: total, perRequest: perRequest, tag: tag)
        let loaded = Date().timeIntervalSince1970
        done.wait()
        let end = finishTimes.values.max() ?? loaded
        let rate = Double(total) / (end - start)
        let cpu = processCPUSeconds(pid: pid) - cpuBefore
        print(String(format: "throughput: %d msgs, %d per webhook, %d connections, %d durable subscriber(s): %.0f msgs/s to each subscriber (ingest %.0f msgs/s, %.0f webhooks/s); chorusd CPU %.1f µs per message",
                     total, perRequest, connections, subscribers, rate, Double(total) / (loaded - start),
                     Double(total) / Double(perRequest) / (loaded - start), cpu / Double(total) * 1e6))
    }

    func latency(_ d: TestDaemon, rate: Int, seconds: Int) throws {
        let total = rate * seconds
        let samples = LockedArray<Double>()
        let ready = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        let tag = "lat-\(Int.random(in: 0..<1_000_000))"
        let t = Thread {
            defer { done.signal() }
            do {
                let c = try ChorusConnection(path: d.socketPath, timeoutMilliseconds: 30_000)
                let name = "bench-\(tag)"
                _ = try c.request(.subscribe(name: name, filter: SubscriptionFilter(types: ["message"]), from: .now))
                ready.signal()
                var n = 0
                while n < total {
                    if case .event(_, let cursor, let ev) = try c.nextMessage(timeoutMilliseconds: 30_000) {
                        let now = monotonicNs()
                        if let text = ev["parts"]?.arrayValue?.first?["text"]?.stringValue,
                           let sent = UInt64(text.split(separator: " ").last ?? "") ?? UInt64(text.suffix(20).filter { $0.isNumber }) {
                            samples.append(Double(now - sent) / 1000)
                        }
                        n += 1
                        try c.send(ClientFrame(command: .ack(sub: name, cursor: cursor)))
                    }
                }
            } catch {
                print("  latency subscriber error: \(error)")
                ready.signal()
            }
        }
        t.start()
        ready.wait()
        let client = try KeepAliveHTTPClient(port: d.httpPort)
        let interval = 1_000_000_000 / UInt64(rate)
        let begin = monotonicNs()
        for i in 0..<total {
            let due = begin + UInt64(i) * interval
            while monotonicNs() < due { }
            _ = try client.post(path: "/webhooks/sandbox/messages", body: Array(Bench.body(from: i % 50, id: "\(tag)-\(i)", sentNs: monotonicNs()).utf8))
        }
        done.wait()
        let sorted = samples.values.sorted()
        guard !sorted.isEmpty else { print("latency: no samples"); return }
        func pct(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        print(String(format: "latency at %d msg/s paced (webhook sent → event at a durable subscriber), %d samples: p50 %.0f µs, p99 %.0f µs, p99.9 %.0f µs, max %.0f µs",
                     rate, sorted.count, pct(0.5), pct(0.99), pct(0.999), sorted.last!))
    }

    func memory(_ d: TestDaemon, pid: Int32, count: Int) throws {
        // A durable subscription that is not connected: the backlog builds up in the log, not in memory.
        let c = try ChorusConnection(path: d.socketPath)
        _ = try c.request(.subscribe(name: "bench-backlog", filter: nil, from: .now))
        c.close()
        let start = Date()
        try load(d, total: count, perRequest: 500, tag: "mem")
        let secs = Date().timeIntervalSince(start)
        usleep(500_000)
        let rss = Double(residentKiB(pid: pid)) / 1024
        print(String(format: "backlog: %d messages ingested in %.1f s (%.0f msgs/s) for an offline durable subscriber; resident memory %.1f MiB",
                     count, secs, Double(count) / secs, rss))
        // Catch up: the subscriber reconnects and reads the whole backlog from the log.
        let r = try ChorusConnection(path: d.socketPath, timeoutMilliseconds: 60_000)
        _ = try r.request(.subscribe(name: "bench-backlog", filter: nil, from: nil))
        let t0 = Date()
        var n = 0
        var peak = 0
        while n < count {
            if case .event(_, let cursor, _) = try r.nextMessage(timeoutMilliseconds: 60_000) {
                n += 1
                if n % 10_000 == 0 {
                    try r.send(ClientFrame(command: .ack(sub: "bench-backlog", cursor: cursor)))
                    peak = max(peak, residentKiB(pid: pid))
                }
            }
        }
        let cs = Date().timeIntervalSince(t0)
        print(String(format: "catch-up: %d backlog messages read by the subscriber in %.1f s (%.0f msgs/s); peak resident memory while catching up %.1f MiB",
                     count, cs, Double(count) / cs, Double(peak) / 1024))
        r.close()
    }
}

func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

final class Counter: @unchecked Sendable {
    private var v = 0
    private let lock = NSLock()
    func add(_ n: Int) { lock.lock(); v += n; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return v }
}

final class LockedArray<T>: @unchecked Sendable {
    private var items: [T] = []
    private let lock = NSLock()
    func append(_ x: T) { lock.lock(); items.append(x); lock.unlock() }
    var values: [T] { lock.lock(); defer { lock.unlock() }; return items }
}

Bench.main()
