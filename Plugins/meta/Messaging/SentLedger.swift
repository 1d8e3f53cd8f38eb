import ChorusConnectorSDK
import ChorusJSON

/// The outbound messages of each chat that no read receipt has covered yet:
/// their mids and send times. Messenger reports reads (and sometimes
/// deliveries) as a *watermark* — "everything sent up to this time" — so to
/// turn one receipt into a status per message, the connector must know what
/// it sent and when.
///
/// Kept in memory and, so that a restart between a send and its read receipt
/// loses nothing, in the host's key/value store under `sent:<chat>` (one JSON
/// array per chat, rewritten on each change). Bounded: at most `perChat`
/// messages per chat (the oldest are dropped) and `maxChats` chats in memory
/// (the least recently touched are evicted from memory; their records stay in
/// the store). A message is forgotten once a read receipt covers it.
public final class SentLedger {
    /// One message sent to a chat.
    public struct Entry: Equatable, Sendable {
        public let mid: String
        /// Epoch milliseconds.
        public var atMs: Int64
        public init(mid: String, atMs: Int64) { self.mid = mid; self.atMs = atMs }
    }

    /// Where records persist.
    public enum Store {
        case host(ConnectorHost)
        case memory
    }

    public let perChat: Int
    public let maxChats: Int
    private let store: Store
    private var chats: [String: [Entry]] = [:]
    private var touched: [String: UInt64] = [:]
    private var clock: UInt64 = 0

    public init(store: Store, perChat: Int = 500, maxChats: Int = 10_000) {
        self.store = store
        self.perChat = max(1, perChat)
        self.maxChats = max(1, maxChats)
    }

    static func key(_ chat: String) -> String { "sent:" + chat }

    private func load(_ chat: String) -> [Entry] {
        clock += 1
        touched[chat] = clock
        if let e = chats[chat] { return e }
        var entries: [Entry] = []
        if case .host(let host) = store, let bytes = host.kvGet(Self.key(chat)), let doc = try? JSONParser.parse(bytes) {
            for item in doc.arrayValue ?? [] {
                if let mid = item["mid"]?.stringValue, let t = item["at_ms"]?.intValue { entries.append(Entry(mid: mid, atMs: t)) }
            }
        }
        chats[chat] = entries
        evictIfNeeded()
        return entries
    }

    private func evictIfNeeded() {
        guard chats.count > maxChats else { return }
        // Drop the least recently used tenth from memory (records stay in the store).
        let victims = touched.sorted { $0.value < $1.value }.prefix(max(1, maxChats / 10)).map { $0.key }
        for v in victims { chats[v] = nil; touched[v] = nil }
    }

    private func save(_ chat: String, _ entries: [Entry]) {
        chats[chat] = entries
        guard case .host(let host) = store else { return }
        if entries.isEmpty {
            host.kvPut(Self.key(chat), nil)
        } else {
            let doc = JSONValue.array(entries.map { ["mid": .string($0.mid), "at_ms": .int($0.atMs)] })
            host.kvPut(Self.key(chat), JSONWriter.encode(doc))
        }
    }

    /// Records a message sent to `chat` at `atMs`; a known mid keeps the earlier of the two times
    /// (the echo's timestamp is Meta's own, the send's is when the request left).
    public func record(chat: String, mid: String, atMs: Int64) {
        var entries = load(chat)
        if let i = entries.firstIndex(where: { $0.mid == mid }) {
            guard atMs < entries[i].atMs else { return }
            entries[i].atMs = atMs
        } else {
            entries.append(Entry(mid: mid, atMs: atMs))
        }
        entries.sort { $0.atMs < $1.atMs }
        if entries.count > perChat { entries.removeFirst(entries.count - perChat) }
        save(chat, entries)
    }

    /// The messages of `chat` sent at or before `upToMs`, oldest first.
    public func covered(chat: String, upToMs: Int64) -> [Entry] {
        load(chat).filter { $0.atMs <= upToMs }
    }

    /// When `mid` was sent to `chat`, if it is known.
    public func time(chat: String, mid: String) -> Int64? {
        load(chat).first { $0.mid == mid }?.atMs
    }

    /// Forgets messages (a read receipt covered them).
    public func forget(chat: String, mids: [String]) {
        let drop = Set(mids)
        let entries = load(chat)
        let kept = entries.filter { !drop.contains($0.mid) }
        if kept.count != entries.count { save(chat, kept) }
    }

    /// Messages remembered for `chat`.
    public func entries(chat: String) -> [Entry] { load(chat) }
}
