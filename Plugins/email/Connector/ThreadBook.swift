import ChorusConnectorSDK
import ChorusJSON

/// Maps mail threads onto Chorus conversations, kept in the instance's durable key-value store.
///
/// A conversation's chat id (`channel_ids.chat`) is either
/// - `<root-message-id>` (in angle brackets) for a thread a correspondent started: the first
///   entry of its `References` (or its `In-Reply-To`, or its own `Message-ID`), or
/// - a bare address (`ana@example.com`) for a thread a consumer started by sending to that address.
///
/// Keys: `mid:<message-id>` → chat, for every message seen or sent, so a reply finds its
/// conversation through `In-Reply-To` / `References`; `chat:<chat>` → the thread's state
/// (who to answer, the subject, the last message ids for `References`).
/// Only called on the loop thread.
final class ThreadBook {
    /// What a reply to a thread needs.
    struct Thread: Equatable, Sendable {
        /// Who replies go to (the correspondent's Reply-To or From).
        var to: [String]
        /// The thread's subject, without "Re:" prefixes.
        var subject: String
        /// The message ids of the thread, oldest first (at most `maxReferences`).
        var references: [String]
        /// The newest message of the thread.
        var last: String?

        var json: JSONValue {
            var o: JSONObject = ["to": .array(to.map { .string($0) }), "subject": .string(subject),
                                 "references": .array(references.map { .string($0) })]
            if let last { o["last"] = .string(last) }
            return .object(o)
        }

        init(to: [String], subject: String, references: [String], last: String?) {
            self.to = to; self.subject = subject; self.references = references; self.last = last
        }

        init?(json: JSONValue) {
            guard let to = json["to"]?.arrayValue?.compactMap({ $0.stringValue }) else { return nil }
            self.to = to
            subject = json["subject"]?.stringValue ?? ""
            references = json["references"]?.arrayValue?.compactMap { $0.stringValue } ?? []
            last = json["last"]?.stringValue
        }
    }

    /// References kept per thread: enough for any MUA's threading, bounded for hostile threads.
    static let maxReferences = 30

    private let host: ConnectorHost
    init(host: ConnectorHost) { self.host = host }

    /// The chat a message belongs to: the conversation of the newest message it refers to that
    /// this instance has seen, else the thread root it names, else a new thread rooted at itself.
    func chat(messageID: String, inReplyTo: [String], references: [String]) -> String {
        for id in inReplyTo + references.reversed() {
            if let chat = host.kvGetString("mid:" + id) { return chat }
        }
        if let known = host.kvGetString("mid:" + messageID) { return known }
        return "<" + (references.first ?? inReplyTo.first ?? messageID) + ">"
    }

    /// The thread state of `chat`, nil when this instance never saw or started it.
    func thread(_ chat: String) -> Thread? {
        guard let bytes = host.kvGet("chat:" + chat), let json = try? JSONParser.parse(bytes) else { return nil }
        return Thread(json: json)
    }

    /// Records `messageID` as part of `chat` and updates the thread state. The writes join the host's next
    /// group commit (`kv_put_async`), ahead of the event the caller emits next, which is therefore never
    /// durable without them; lookups see them at once. `failed` runs when the store refused a write.
    func record(messageID: String, chat: String, thread: Thread, failed: @escaping () -> Void = {}) {
        var t = thread
        if t.references.count > ThreadBook.maxReferences {
            // Keep the root (first) and the newest ones, as RFC 5322 §3.6.4 suggests for long threads.
            t.references = [t.references[0]] + t.references.suffix(ThreadBook.maxReferences - 1)
        }
        // A thread's root needs no `mid:` entry: `chat(…)` derives `<root>` from any reply naming it
        // first in References or in In-Reply-To, so a new thread costs one write instead of two.
        let done: (Bool) -> Void = { durable in if !durable { failed() } }
        if chat != "<" + messageID + ">" {
            host.kvPut("mid:" + messageID, Array(chat.utf8), completion: done)
        }
        host.kvPut("chat:" + chat, JSONWriter.encode(t.json), completion: done)
    }

    /// Whether this instance recorded `messageID` (a message it received or sent, or the root of a thread it knows).
    func knows(_ messageID: String) -> Bool {
        host.kvGet("mid:" + messageID) != nil || host.kvGet("chat:<" + messageID + ">") != nil
    }

    /// The subject without leading reply/forward markers ("Re:", "RE:", "Aw:", "Fwd:", "[External] Re:" is kept as is).
    static func baseSubject(_ subject: String) -> String {
        var s = Substring(subject)
        while true {
            let trimmed = s.drop(while: { $0 == " " || $0 == "\t" })
            let lower = trimmed.lowercased()
            var dropped = false
            for prefix in ["re:", "aw:", "sv:", "antw:", "fwd:", "fw:", "wg:", "tr:"] where lower.hasPrefix(prefix) {
                s = trimmed.dropFirst(prefix.count)
                dropped = true
                break
            }
            if !dropped { return String(trimmed) }
        }
    }
}
