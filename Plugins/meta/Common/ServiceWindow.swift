import ChorusConnectorSDK
import ChorusJSON

/// The customer-service window: a business may send free-form messages to a
/// user only within 24 hours of that user's last message; outside it, only
/// templates. Tracks the last inbound time (and message id, for typing
/// indicators and read receipts) per chat, persisted in the host's durable
/// key/value state so it survives restarts.
///
/// `ConnectorHost.kvPut` is a synchronous durable commit, far too slow to call
/// per webhook, so records are written behind: chats are grouped into
/// `shardCount` shards (keys `window-shard:<n>`, a JSON object of the chats
/// active in the last 24 hours), and dirty shards are written by a timer
/// `flushIntervalMs` after the first change, and by `flush()` (call it from
/// `stop`). A chat's record is marked dirty only when the stored time is more
/// than `persistGranularityMs` old. A crash can therefore lose the last few
/// seconds of updates: the window then looks *shorter* (or closed), never
/// longer — a free-form send is refused rather than sent outside the window.
public final class ServiceWindowTracker {
    /// The window's length, 24 hours.
    public let windowMs: Int64
    /// See the type's documentation.
    public let persistGranularityMs: Int64
    /// Delay between the first unsaved change and the write.
    public let flushIntervalMs: UInt64
    /// Number of key/value records the chats are spread over.
    public let shardCount: Int
    private let store: Store
    private var shards: [Int: [String: Entry]] = [:]
    private var dirty: Set<Int> = []
    private var flushTimer: UInt64 = 0

    /// Where the records live: the host's key/value store, or memory (tests).
    public enum Store {
        case host(ConnectorHost)
        case memory
    }

    struct Entry { var lastInboundMs: Int64; var persistedMs: Int64; var lastMessageId: String? }

    public init(store: Store, windowMs: Int64 = 24 * 3_600_000, persistGranularityMs: Int64 = 60_000,
                flushIntervalMs: UInt64 = 2_000, shardCount: Int = 64) {
        self.store = store
        self.windowMs = windowMs
        self.persistGranularityMs = persistGranularityMs
        self.flushIntervalMs = flushIntervalMs
        self.shardCount = max(1, shardCount)
    }

    /// The shard of a chat: FNV-1a of its id (stable across restarts, unlike `Hasher`).
    func shard(_ chat: String) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in chat.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return Int(h % UInt64(shardCount))
    }

    static func key(_ shard: Int) -> String { "window-shard:\(shard)" }

    /// The entries of a shard, loaded from the store on first use.
    private func entries(_ s: Int) -> [String: Entry] {
        if let e = shards[s] { return e }
        var loaded: [String: Entry] = [:]
        if case .host(let host) = store, let bytes = host.kvGet(Self.key(s)), case .object(let o)? = try? JSONParser.parse(bytes) {
            for (chat, v) in o {
                guard let t = v["t"]?.intValue else { continue }
                loaded[chat] = Entry(lastInboundMs: t, persistedMs: t, lastMessageId: v["m"]?.stringValue)
            }
        }
        shards[s] = loaded
        return loaded
    }

    /// Records an inbound message from `chat` at `atMs` (epoch milliseconds; the
    /// message's own timestamp, so a late-delivered webhook does not stretch the window).
    public func recordInbound(chat: String, atMs: Int64, messageId: String? = nil) {
        let s = shard(chat)
        var e = entries(s)[chat] ?? Entry(lastInboundMs: 0, persistedMs: 0, lastMessageId: nil)
        guard atMs >= e.lastInboundMs else { return }
        e.lastInboundMs = atMs
        if let messageId { e.lastMessageId = messageId }
        if atMs - e.persistedMs >= persistGranularityMs { markDirty(s) }
        shards[s]![chat] = e
    }

    private func markDirty(_ s: Int) {
        dirty.insert(s)
        guard flushTimer == 0, case .host(let host) = store else { return }
        flushTimer = host.timer(afterMs: flushIntervalMs) { [weak self] in
            guard let self else { return }
            self.flushTimer = 0
            self.flush()
        }
    }

    /// Writes every changed shard now (pruning chats whose window has closed). Returns false when a write failed
    /// (those shards stay dirty and are retried by the next flush).
    @discardableResult
    public func flush(nowMs: Int64 = wallClockMilliseconds()) -> Bool {
        if case .host(let host) = store, flushTimer != 0 {
            host.cancelTimer(flushTimer)
            flushTimer = 0
        }
        guard case .host(let host) = store else { dirty.removeAll(); return true }
        var ok = true
        for s in dirty.sorted() {
            var live = entries(s).filter { nowMs - $0.value.lastInboundMs < windowMs }
            var o = JSONObject()
            for (chat, e) in live.sorted(by: { $0.key < $1.key }) {
                var v: JSONObject = ["t": .int(e.lastInboundMs)]
                if let m = e.lastMessageId { v["m"] = .string(m) }
                o[chat] = .object(v)
            }
            if host.kvPut(Self.key(s), o.isEmpty ? nil : JSONWriter.encode(.object(o))) {
                for k in live.keys { live[k]!.persistedMs = live[k]!.lastInboundMs }
                shards[s] = live
                dirty.remove(s)
            } else {
                ok = false
            }
        }
        if !dirty.isEmpty, !ok { markDirty(dirty.first!) }
        return ok
    }

    /// Whether changes are waiting to be written.
    public var hasUnsavedChanges: Bool { !dirty.isEmpty }

    /// The last inbound time of `chat` (epoch ms), if known.
    public func lastInbound(chat: String) -> Int64? { entries(shard(chat))[chat]?.lastInboundMs }

    /// The id of the last inbound message of `chat`, if known.
    public func lastInboundMessageId(chat: String) -> String? { entries(shard(chat))[chat]?.lastMessageId }

    /// Whether a free-form message to `chat` is allowed at `nowMs`.
    public func isOpen(chat: String, nowMs: Int64 = wallClockMilliseconds()) -> Bool {
        guard let last = lastInbound(chat: chat) else { return false }
        return nowMs - last < windowMs
    }

    /// When the window of `chat` closes (epoch ms), if it is known.
    public func closesAt(chat: String) -> Int64? { lastInbound(chat: chat).map { $0 + windowMs } }
}
