import ChorusConnectorSDK
import ChorusJSON
import Dispatch

/// What one send becomes for a Graph connector: message calls made in order, some preceded by an upload.
public protocol GraphSendPlan {
    /// What the connector uploads before a call (its own description of the file).
    associatedtype Upload
    /// Request bodies for the messages endpoint, made in order.
    var calls: [JSONValue] { get }
    /// Uploads to make before the call at that index; the returned id goes into that call.
    var uploads: [Int: Upload] { get }
    /// Whether the last call's message id is the send's `channel_message_id`
    /// (false for status updates and sender actions, which are not messages).
    var reportsMessageId: Bool { get }
}

/// Where the bytes of an upload come from.
public enum GraphUploadSource: Sendable, Equatable {
    /// A local file, read off the loop thread.
    case file(String)
    /// A URL the connector fetches itself.
    case url(String)
}

/// The `multipart/form-data` request that uploads one file to the Graph API.
public struct GraphUploadForm: Sendable {
    /// Form fields sent before the file, in order.
    public var fields: [(name: String, value: String)]
    /// The form field carrying the file.
    public var fileField: String
    /// The file name announced in the file part (quotes and line breaks are replaced).
    public var fileName: String
    /// The file part's content type.
    public var mimeType: String

    /// Creates a form.
    public init(fields: [(name: String, value: String)], fileField: String, fileName: String, mimeType: String) {
        self.fields = fields
        self.fileField = fileField
        self.fileName = fileName
        self.mimeType = mimeType
    }

    /// The request body with `boundary`.
    public func body(boundary: String, bytes: [UInt8]) -> [UInt8] {
        var body: [UInt8] = []
        for f in fields {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(f.name)\"\r\n\r\n\(f.value)\r\n".utf8)
        }
        let name = String(fileName.unicodeScalars.map { $0 == "\"" || $0 == "\r" || $0 == "\n" ? "_" : Character($0) })
        body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(fileField)\"; filename=\"\(name)\"\r\nContent-Type: \(mimeType)\r\n\r\n".utf8)
        body += bytes
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        return body
    }
}

/// What differs between Graph channels in how a send is made; `GraphSendQueue` does the rest.
public protocol GraphSendChannel {
    /// The channel's send plan.
    associatedtype Plan: GraphSendPlan
    /// `call` with the id of the upload made for it put where the channel expects it.
    func body(_ call: JSONValue, uploadedId: String, for upload: Plan.Upload) -> JSONValue
    /// The message id in a messages-endpoint answer, if any.
    func messageId(in response: JSONValue) -> String?
    /// Where the bytes of `upload` come from.
    func source(of upload: Plan.Upload) -> GraphUploadSource
    /// The upload form for `upload`; `fetchedContentType` is the `Content-Type` of a URL source's answer.
    func form(for upload: Plan.Upload, fetchedContentType: String?) -> GraphUploadForm
    /// The id in an upload answer, if any.
    func uploadedId(in response: JSONValue) -> String?
    /// The `bad_response` message when an upload answer has no id.
    var missingUploadIdMessage: String { get }
    /// Whether a throttling failure is about the recipient (the pacer pauses that recipient) rather than the sender.
    func isRecipientThrottle(_ failure: GraphFailure) -> Bool
    /// The `paced` message when the recipient's wait exceeds the limit.
    var recipientPacedMessage: String { get }
    /// The `paced` message when the sender's wait exceeds the limit.
    var senderPacedMessage: String { get }
}

/// Runs Graph sends on the loop thread: for each send, its plan's calls in order, each paced
/// (recipient slot, then sender slot, see `SendPacer`), uploads made before the calls that need them,
/// failures classified by `GraphRetryPolicy` (throttling pauses the pacer), progress kept across
/// retries so a retry resumes after the calls already made, and exactly one outcome reported per send.
///
/// It also keeps the stop bookkeeping: after `stop()`, sends not in flight are reported retryable
/// (`stopping`), sends in flight finish their current call, and `host.stopped()` is called once
/// the last one is reported.
public final class GraphSendQueue<Channel: GraphSendChannel> {
    /// One send in progress.
    final class Pending {
        let message: OutboundMessage
        let plan: Channel.Plan
        var next: Int
        var lastId: String?
        var timer: UInt64 = 0
        var inFlight = false
        /// Ids of uploads done for the call at that index.
        var uploaded: [Int: String] = [:]
        init(message: OutboundMessage, plan: Channel.Plan, next: Int) { self.message = message; self.plan = plan; self.next = next }
    }

    private let host: ConnectorHost
    private let graph: GraphClient
    /// What differs per channel.
    public var channel: Channel
    /// The pacer; replace it on reload.
    public var pacer: SendPacer
    /// The Graph path of message calls (`{id}/messages`).
    public var messagesPath: String
    /// The Graph path of uploads.
    public var uploadPath: String
    /// Longer pacing waits are reported retryable (`paced`) with the wait.
    public var maxPacingDelayMs: Int
    /// Largest upload.
    public var mediaMaxBytes: Int
    /// Timeout of fetching a URL upload source.
    public var requestTimeoutMs: Int
    /// Called on the loop thread for every message id a call returned: the send, the id, and when the request started (wall clock ms).
    public var onMessageSent: ((_ message: OutboundMessage, _ messageId: String, _ startedMs: Int64) -> Void)?

    private var pending: [SendID: Pending] = [:]
    /// Progress of multi-call sends (by Chorus message id), kept across retries so a retry does not resend what went out.
    private var progress: [String: Int] = [:]
    private var stoppedReported = false
    /// Whether `stop()` was called.
    public private(set) var isStopping = false

    /// Creates a queue sending through `graph`.
    public init(host: ConnectorHost, graph: GraphClient, channel: Channel, pacer: SendPacer, messagesPath: String, uploadPath: String,
                maxPacingDelayMs: Int, mediaMaxBytes: Int, requestTimeoutMs: Int) {
        self.host = host
        self.graph = graph
        self.channel = channel
        self.pacer = pacer
        self.messagesPath = messagesPath
        self.uploadPath = uploadPath
        self.maxPacingDelayMs = maxPacingDelayMs
        self.mediaMaxBytes = mediaMaxBytes
        self.requestTimeoutMs = requestTimeoutMs
    }

    /// Takes reloaded settings; sends in progress use them from their next step.
    public func configure(pacer: SendPacer, maxPacingDelayMs: Int, mediaMaxBytes: Int, requestTimeoutMs: Int) {
        self.pacer = pacer
        self.maxPacingDelayMs = maxPacingDelayMs
        self.mediaMaxBytes = mediaMaxBytes
        self.requestTimeoutMs = requestTimeoutMs
    }

    /// Starts `plan` for `message`, resuming after the calls a previous attempt of the same message made.
    /// The outcome is reported with `host.sendResult` exactly once.
    public func submit(_ message: OutboundMessage, plan: Channel.Plan) {
        if isStopping { host.sendResult(message.id, .retryable(code: "stopping", message: "instance is stopping")); return }
        let p = Pending(message: message, plan: plan, next: progress[message.messageId] ?? 0)
        pending[message.id] = p
        schedule(p)
    }

    /// Reports every send not in flight as retryable (`stopping`); calls `host.stopped()` once nothing is pending.
    public func stop() {
        isStopping = true
        for (id, p) in pending where !p.inFlight {
            if p.timer != 0 { host.cancelTimer(p.timer) }
            pending[id] = nil
            host.sendResult(id, .retryable(code: "stopping", message: "instance is stopping"))
        }
        finishStopIfIdle()
    }

    private func finishStopIfIdle() {
        guard isStopping, pending.isEmpty, !stoppedReported else { return }
        stoppedReported = true
        host.stopped()
    }

    /// Paces one API call: first the recipient's slot, then the sender's.
    private func schedule(_ p: Pending) {
        let wait = pacer.reserveRecipient(p.message.to)
        guard wait <= Int64(maxPacingDelayMs) else {
            finish(p, .retryable(code: "paced", message: channel.recipientPacedMessage, retryAfterMs: UInt32(min(wait, 3_600_000))))
            return
        }
        after(wait, p) { [weak self] p in self?.scheduleSender(p) }
    }

    private func scheduleSender(_ p: Pending) {
        let wait = pacer.reserveSender()
        guard wait <= Int64(maxPacingDelayMs) else {
            finish(p, .retryable(code: "paced", message: channel.senderPacedMessage, retryAfterMs: UInt32(min(wait, 3_600_000))))
            return
        }
        after(wait, p) { [weak self] p in self?.call(p) }
    }

    private func after(_ ms: Int64, _ p: Pending, _ body: @escaping (Pending) -> Void) {
        if ms <= 0 { body(p); return }
        p.timer = host.timer(afterMs: UInt64(ms)) { [weak p] in
            guard let p else { return }
            p.timer = 0
            body(p)
        }
    }

    private func call(_ p: Pending) {
        guard pending[p.message.id] === p else { return }
        if isStopping { finish(p, .retryable(code: "stopping", message: "instance is stopping")); return }
        var body = p.plan.calls[p.next]
        if let upload = p.plan.uploads[p.next] {
            guard let id = p.uploaded[p.next] else { uploadThenCall(p, upload); return }
            body = channel.body(body, uploadedId: id, for: upload)
        }
        p.inFlight = true
        let startedMs = wallClockMilliseconds()
        graph.post(messagesPath, json: body) { [weak self] result in
            guard let self else { return }
            p.inFlight = false
            switch result {
            case .success(let doc):
                if let id = self.channel.messageId(in: doc) {
                    p.lastId = id
                    self.onMessageSent?(p.message, id, startedMs)
                }
                p.next += 1
                if p.next < p.plan.calls.count {
                    self.progress[p.message.messageId] = p.next
                    if self.isStopping { self.finish(p, .retryable(code: "stopping", message: "instance is stopping")) } else { self.schedule(p) }
                    return
                }
                self.progress[p.message.messageId] = nil
                self.host.count("sent")
                self.finish(p, .sent(channelMessageId: p.plan.reportsMessageId ? p.lastId : nil))
            case .failure(let f):
                if f.isThrottling, case .retryable(let after) = f.disposition {
                    self.host.count("throttled")
                    if self.channel.isRecipientThrottle(f) {
                        self.pacer.pauseRecipient(p.message.to, forMs: Int64(after))
                    } else {
                        self.pacer.pauseSender(forMs: Int64(after))
                    }
                }
                if !f.isRetryable { self.progress[p.message.messageId] = nil }
                self.host.count(f.isRetryable ? "send_retryable" : "send_failed")
                self.finish(p, f.sendOutcome)
            }
        }
    }

    /// Fetches the bytes of `upload` (a file off the loop thread, or a URL), uploads them,
    /// then makes the call with the returned id.
    private func uploadThenCall(_ p: Pending, _ upload: Channel.Plan.Upload) {
        p.inFlight = true
        let limit = mediaMaxBytes
        let deliver: ([UInt8]?, String?, String) -> Void = { [weak self] bytes, contentType, failure in
            guard let self else { return }
            p.inFlight = false
            guard let bytes else {
                self.finish(p, .permanent(code: "media_unavailable", message: failure))
                return
            }
            guard bytes.count <= limit else {
                self.finish(p, .permanent(code: "media_too_large", message: "media is \(bytes.count) bytes, over media_max_bytes (\(limit))"))
                return
            }
            self.postUpload(p, upload, bytes: bytes, contentType: contentType)
        }
        switch channel.source(of: upload) {
        case .file(let path):
            let host = self.host
            let box = LoopThreadBox(deliver)
            DispatchQueue.global().async {
                let bytes = readGraphFile(path)
                host.post { box.value(bytes, nil, "cannot read \(path)") }
            }
        case .url(let url):
            host.request(method: "GET", url: url, timeoutMs: UInt32(requestTimeoutMs)) { r in
                if (200..<300).contains(r.status) {
                    deliver(r.body, r.header("content-type"), "")
                } else {
                    deliver(nil, nil, "fetching \(url) for upload failed: " + (r.error ?? "HTTP \(r.status)"))
                }
            }
        }
    }

    private func postUpload(_ p: Pending, _ upload: Channel.Plan.Upload, bytes: [UInt8], contentType: String?) {
        let boundary = "chorus-\(p.message.id.rawValue)-\(monotonicMilliseconds())"
        let form = channel.form(for: upload, fetchedContentType: contentType)
        let body = form.body(boundary: boundary, bytes: bytes)
        p.inFlight = true
        graph.post(uploadPath, body: body, contentType: "multipart/form-data; boundary=\(boundary)") { [weak self] result in
            guard let self else { return }
            p.inFlight = false
            switch result {
            case .success(let doc):
                guard let id = self.channel.uploadedId(in: doc) else {
                    self.finish(p, .retryable(code: "bad_response", message: self.channel.missingUploadIdMessage))
                    return
                }
                self.host.count("media_uploaded")
                p.uploaded[p.next] = id
                self.call(p)
            case .failure(let f):
                self.finish(p, f.sendOutcome)
            }
        }
    }

    private func finish(_ p: Pending, _ outcome: SendOutcome) {
        guard pending.removeValue(forKey: p.message.id) != nil else { return }
        if p.timer != 0 { host.cancelTimer(p.timer); p.timer = 0 }
        host.sendResult(p.message.id, outcome)
        finishStopIfIdle()
    }
}

/// A loop-thread value carried through another thread and used only back on the loop thread.
final class LoopThreadBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
