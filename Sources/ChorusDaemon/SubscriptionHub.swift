import ChorusJSON
import ChorusLoop
import ChorusProtocol
import ChorusStore
import Logging

/// The most recent committed events, kept in memory so live subscribers and
/// slightly lagging ones never touch the disk. Bounded by bytes.
final class EventRing {
    private var events: [StoredEvent] = []
    private var head = 0
    private(set) var bytes = 0
    let capacityBytes: Int
    init(capacityBytes: Int) { self.capacityBytes = capacityBytes }

    var count: Int { events.count - head }
    /// The smallest seq held, or nil when empty.
    var firstSeq: Int64? { head < events.count ? events[head].seq : nil }
    var lastSeq: Int64? { events.last.map { $0.seq } }

    func append(_ batch: [StoredEvent]) {
        for e in batch { events.append(e); bytes += e.json.count + 96 }
        while bytes > capacityBytes && head < events.count {
            bytes -= events[head].json.count + 96
            head += 1
        }
        if head > 4096 && head * 2 > events.count {
            events.removeFirst(head)
            head = 0
        }
    }

    /// Events with seq > `after`, at most `limit`, if the ring still holds the one right after `after`.
    func events(after: Int64, limit: Int) -> ArraySlice<StoredEvent>? {
        guard let first = firstSeq else { return nil }
        if first > after + 1 {
            // The ring may start later only because seqs have gaps (pruned or duplicate): fine if nothing older exists.
            return nil
        }
        // Binary search for the first seq > after.
        var lo = head, hi = events.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if events[mid].seq <= after { lo = mid + 1 } else { hi = mid }
        }
        return events[lo..<min(events.count, lo + limit)]
    }
}

/// Read-only store connections for the thread pool, reused.
final class ReaderPool: @unchecked Sendable {
    private let path: String
    private var idle: [StoreReader] = []
    private let lock = PthreadMutex()
    init(path: String) { self.path = path }

    func with<T>(_ body: (StoreReader) throws -> T) throws -> T {
        lock.lock()
        let r = idle.popLast()
        lock.unlock()
        let reader = try r ?? StoreReader(path: path)
        defer { lock.lock(); idle.append(reader); lock.unlock() }
        return try body(reader)
    }

    func closeAll() {
        lock.lock(); defer { lock.unlock() }
        for r in idle { r.close() }
        idle.removeAll()
    }
}

/// One subscription of one consumer connection.
final class Subscriber {
    let name: String
    let durable: Bool
    var filter: SubscriptionFilter
    weak var session: ConsumerSession?
    /// The cursor of the last event considered (delivered or filtered out).
    var position: Int64
    /// Durable: the last acknowledged cursor.
    var acked: Int64
    /// Live: fed as events commit. Otherwise catching up from the ring or the store.
    var live = false
    var fetching = false
    var delivered: Int64 = 0

    init(name: String, durable: Bool, filter: SubscriptionFilter, session: ConsumerSession, position: Int64, acked: Int64) {
        self.name = name; self.durable = durable; self.filter = filter; self.session = session
        self.position = position; self.acked = acked
    }

    func matches(_ e: StoredEvent) -> Bool {
        filter.matches(channel: e.channelKind, instance: e.instance, conversationId: e.conversationId, type: e.type, direction: e.direction)
    }
}

/// Fans committed events out to subscribers, each at its own pace.
///
/// A subscriber whose connection has more than `bufferLimit` bytes waiting
/// stops being fed live: it is marked as catching up and, as its socket
/// drains, is fed from the in-memory ring or, further behind, from the store
/// (read on the thread pool). So a slow consumer never slows the others and
/// never makes the daemon's memory grow beyond its buffer.
final class SubscriptionHub {
    let loop: EventLoop
    let ring: EventRing
    let readers: ReaderPool
    let logger: Logger
    let bufferLimit: Int
    /// The last committed seq.
    var lastSeq: Int64
    private(set) var subscribers: [String: Subscriber] = [:]
    private var ephemeralCounter = 0
    static let batch = 1024

    init(loop: EventLoop, ring: EventRing, readers: ReaderPool, lastSeq: Int64, bufferLimit: Int, logger: Logger) {
        self.loop = loop; self.ring = ring; self.readers = readers; self.lastSeq = lastSeq
        self.bufferLimit = bufferLimit; self.logger = logger
    }

    func ephemeralName() -> String {
        ephemeralCounter += 1
        return "eph-\(ephemeralCounter)"
    }

    func subscriber(named: String) -> Subscriber? { subscribers[named] }

    func add(_ s: Subscriber) {
        subscribers[s.name] = s
        s.live = false
        pump(s)
    }

    func remove(_ name: String) { subscribers.removeValue(forKey: name) }

    /// Newly committed events (ascending seq).
    func publish(_ events: [StoredEvent]) {
        guard let last = events.last else { return }
        ring.append(events)
        lastSeq = max(lastSeq, last.seq)
        for s in subscribers.values where s.live {
            guard let session = s.session, !session.isClosed else { continue }
            deliver(events[...], to: s, session: session)
            if session.pendingWriteBytes > bufferLimit {
                s.live = false   // fed from the log as it drains
            }
        }
    }

    /// Called when a session's socket drained: feed its lagging subscribers.
    func drained(_ session: ConsumerSession) {
        for s in subscribers.values where s.session === session && !s.live { pump(s) }
    }

    /// Feeds a lagging subscriber until it is live again or its buffer is full.
    func pump(_ s: Subscriber) {
        guard !s.live, !s.fetching, let session = s.session, !session.isClosed else { return }
        while session.pendingWriteBytes <= bufferLimit / 2 {
            if s.position >= lastSeq { s.live = true; return }
            if let slice = ring.events(after: s.position, limit: SubscriptionHub.batch) {
                if slice.isEmpty { s.live = true; return }
                deliver(slice, to: s, session: session)
                continue
            }
            // Too far behind for the ring: read from the store on the thread pool.
            s.fetching = true
            let after = s.position
            let readers = self.readers
            loop.offload({ () -> Result<[StoredEvent], Error> in
                Result { try readers.with { try $0.events(after: after, limit: SubscriptionHub.batch) } }
            }, completion: { [weak self, weak s] result in
                guard let self, let s else { return }
                s.fetching = false
                guard let session = s.session, !session.isClosed, self.subscribers[s.name] === s else { return }
                switch result {
                case .success(let stored):
                    if stored.isEmpty {
                        // Nothing on disk after this position (pruned or not yet visible): jump to the ring.
                        s.position = max(s.position, (self.ring.firstSeq ?? (self.lastSeq + 1)) - 1)
                    } else {
                        self.deliver(stored[...], to: s, session: session)
                    }
                    self.pump(s)
                case .failure(let error):
                    self.logger.error("reading the log for subscription \(s.name) failed: \(error)")
                    session.write(ServerFrame.error(ProtocolError(code: .internal, message: "reading the log failed: \(error)")))
                }
            })
            return
        }
    }

    /// Writes the events after the subscriber's position that match its filter, as one write.
    private func deliver(_ events: ArraySlice<StoredEvent>, to s: Subscriber, session: ConsumerSession) {
        var out: [UInt8] = []
        out.reserveCapacity(events.count * 640)
        for e in events where e.seq > s.position {
            s.position = e.seq
            if s.matches(e) {
                ServerFrame.appendEvent(sub: s.name, cursor: e.seq, eventJSON: e.json, to: &out)
                s.delivered += 1
            }
        }
        if !out.isEmpty { session.write(out) }
    }

    /// Subscription stats for `stats`.
    func statsJSON() -> [JSONValue] {
        subscribers.values.sorted { $0.name < $1.name }.map { s in
            [
                "name": .string(s.name), "durable": .bool(s.durable), "connected": true,
                "cursor": .int(s.position), "acked": s.durable ? .int(s.acked) : .null,
                "lag": .int(max(0, lastSeq - s.position)),
                "buffered_bytes": .int(s.session?.pendingWriteBytes ?? 0),
                "mode": .string(s.live ? "live" : "catchup"), "delivered": .int(s.delivered),
            ]
        }
    }
}

/// A pthread mutex without Foundation.
final class PthreadMutex: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>
    init() { m = .allocate(capacity: 1); pthread_mutex_init(m, nil) }
    deinit { pthread_mutex_destroy(m); m.deallocate() }
    func lock() { pthread_mutex_lock(m) }
    func unlock() { pthread_mutex_unlock(m) }
}

#if canImport(Glibc)
import Glibc
#endif
