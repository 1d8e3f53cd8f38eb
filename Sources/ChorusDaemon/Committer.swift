import ChorusLoop
import ChorusStore
import Dispatch

extension StoredEvent {
    /// The committed form of an appended event, as kept in memory for fan-out.
    init(seq: Int64, appended e: NewEvent) {
        self.init(seq: seq, id: e.id, instance: e.instance, channelKind: e.channelKind, type: e.type,
                  direction: e.direction, conversationId: e.conversationId, receivedAtMs: e.receivedAtMs, json: e.json)
    }
}

/// Groups every write of one loop iteration into one SQLite transaction
/// (one fsync), run on the store's dedicated writer thread.
///
/// While a commit is in flight the next batch accumulates, so the disk is
/// always busy with the largest batch the load allows: under load, grouping
/// grows by itself; at low rate each write commits alone with no added delay.
/// Completions run on the loop, in order, after the commit is durable.
final class Committer {
    typealias Completion = (Result<ArraySlice<WriteResult>, StoreError>) -> Void

    private let loop: EventLoop
    private let worker: SerialWorker
    private let writer: StoreWriter
    private var pendingOps: [WriteOp] = []
    private var pendingCompletions: [(range: Range<Int>, done: Completion)] = []
    private var inFlight = false
    /// The loop time at which the running commit was handed to the writer thread.
    private var inFlightSinceMs: UInt64 = 0
    /// Called on the loop after each successful commit with the appended events, in seq order.
    var onCommitted: (([StoredEvent]) -> Void)?
    /// Called when a commit failed (e.g. disk full) and when commits succeed again.
    var onHealthChange: ((StoreError?) -> Void)?
    private(set) var lastError: StoreError?
    private(set) var commits: Int64 = 0
    private(set) var opsCommitted: Int64 = 0
    private(set) var largestBatch = 0
    var maxBatchOps = 8192

    init(loop: EventLoop, worker: SerialWorker, writer: StoreWriter) {
        self.loop = loop
        self.worker = worker
        self.writer = writer
        loop.addBeforeBlockingHook { [weak self] in self?.flush() }
    }

    var isIdle: Bool { !inFlight && pendingOps.isEmpty }

    /// How long the running group commit has been on the writer thread (ms), or nil when none is running.
    /// The watchdog uses it to notice a writer thread that stopped completing commits.
    var inFlightMilliseconds: UInt64? { inFlight ? loop.nowMilliseconds &- inFlightSinceMs : nil }

    /// Writes not durable yet: those of the running commit plus those waiting for the next one.
    var uncommittedCount: Int { (inFlight ? inFlightOpCount : 0) + pendingOps.count }
    private var inFlightOpCount = 0
    var pendingCount: Int { pendingOps.count }

    /// Queues ops for the next group commit; `done` gets one result per op, in order.
    func enqueue(_ ops: [WriteOp], _ done: @escaping Completion) {
        let start = pendingOps.count
        pendingOps.append(contentsOf: ops)
        pendingCompletions.append((start..<pendingOps.count, done))
    }

    func enqueue(_ op: WriteOp, _ done: @escaping Completion) { enqueue([op], done) }

    /// Submits the pending batch if no commit is running.
    func flush() {
        guard !inFlight, !pendingOps.isEmpty else { return }
        let ops: [WriteOp]
        let completions: [(range: Range<Int>, done: Completion)]
        if pendingOps.count <= maxBatchOps || pendingCompletions.count == 1 {
            ops = pendingOps
            completions = pendingCompletions
            pendingOps = []
            pendingCompletions = []
        } else {
            // Split at a completion boundary so one enormous backlog does not become one enormous transaction.
            var n = 0
            var k = 0
            while k < pendingCompletions.count && n + pendingCompletions[k].range.count <= maxBatchOps {
                n += pendingCompletions[k].range.count; k += 1
            }
            if k == 0 { k = 1; n = pendingCompletions[0].range.count }
            ops = Array(pendingOps[0..<n])
            completions = Array(pendingCompletions[0..<k])
            pendingOps.removeFirst(n)
            pendingCompletions = pendingCompletions[k...].map { (($0.range.lowerBound - n)..<($0.range.upperBound - n), $0.done) }
        }
        inFlight = true
        inFlightSinceMs = loop.nowMilliseconds
        inFlightOpCount = ops.count
        largestBatch = max(largestBatch, ops.count)
        let writer = self.writer
        let poster = loop.poster
        let box = UncheckedBox((ops, completions))
        let me = UncheckedBox(self)
        worker.submit {
            let result: Result<[WriteResult], StoreError>
            do { result = .success(try writer.commit(box.value.0)) } catch let e as StoreError {
                result = .failure(e)
            } catch {
                result = .failure(.other(code: -1, message: "\(error)"))
            }
            let r = UncheckedBox(result)
            poster.post { me.value.finished(box.value.0, box.value.1, r.value) }
        }
    }

    private func finished(_ ops: [WriteOp], _ completions: [(range: Range<Int>, done: Completion)],
                          _ result: Result<[WriteResult], StoreError>)
    {
        inFlight = false
        switch result {
        case .success(let results):
            commits += 1
            opsCommitted += Int64(ops.count)
            if lastError != nil { lastError = nil; onHealthChange?(nil) }
            var events: [StoredEvent] = []
            for (i, op) in ops.enumerated() {
                if case .appendEvent(let e) = op, case .appended(let seq) = results[i] {
                    events.append(StoredEvent(seq: seq, appended: e))
                }
            }
            for c in completions { c.done(.success(results[c.range])) }
            if !events.isEmpty { onCommitted?(events) }
        case .failure(let error):
            let wasHealthy = lastError == nil
            lastError = error
            if wasHealthy { onHealthChange?(error) }
            for c in completions { c.done(.failure(error)) }
        }
        // More may have queued meanwhile; the before-blocking hook also flushes, but don't wait for I/O.
        if !pendingOps.isEmpty { loop.execute { [weak self] in self?.flush() } }
    }

    private var lastProbeMs: UInt64 = 0

    /// After a failure, tries a tiny commit (at most once a second) to find out whether the store recovered
    /// (for example, disk space came back), since refused webhooks no longer produce writes.
    func probe() {
        guard lastError != nil, !inFlight, pendingOps.isEmpty else { return }
        let now = loop.nowMilliseconds
        guard now - lastProbeMs >= 1000 || lastProbeMs == 0 else { return }
        lastProbeMs = now
        enqueue(.putKV(instance: "_chorusd", key: "health_probe", value: Array(String(now).utf8))) { _ in }
    }

    /// Gives every queued (not yet submitted) write of `key` the value `value`: a synchronous kv_put
    /// overtakes queued async writes of the same key, and the last write must win.
    func rewriteQueuedKV(instance: String, key: String, value: [UInt8]?) {
        for i in pendingOps.indices {
            if case .putKV(let inst, let k, _) = pendingOps[i], inst == instance, k == key {
                pendingOps[i] = .putKV(instance: inst, key: k, value: value)
            }
        }
    }

    /// Runs a commit synchronously (the loop waits): for the few operations whose
    /// API promises durability on return (a plugin's kv_put).
    func commitNow(_ ops: [WriteOp]) -> Result<[WriteResult], StoreError> {
        let sem = DispatchSemaphore(value: 0)
        let writer = self.writer
        let box = UncheckedBox(ops)
        let out = UncheckedBox<Result<[WriteResult], StoreError>?>(nil)
        worker.submit {
            do { out.value = .success(try writer.commit(box.value)) } catch let e as StoreError {
                out.value = .failure(e)
            } catch {
                out.value = .failure(.other(code: -1, message: "\(error)"))
            }
            sem.signal()
        }
        sem.wait()
        return out.value!
    }
}

/// Moves a value across threads whose hand-off is already serialized by the caller.
final class UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
