import ArgumentParser
import ChorusClient
import ChorusJSON

/// `chorusctl`: inspect and drive a running chorusd over its consumer socket.
@main
struct Chorusctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chorusctl",
        abstract: "Inspect and drive a running chorusd.",
        discussion: """
            Talks to chorusd over its Unix socket (docs/protocol.md). The socket is --socket, else \
            $CHORUS_SOCKET, else ./chorus-state/chorus.sock when it exists, else /run/chorus/chorus.sock.
            """,
        subcommands: [Status.self, Plugins.self, Tail.self, Send.self, Subscriptions.self, Replay.self],
        defaultSubcommand: Status.self)

    @OptionGroup var global: GlobalOptions

    /// Runs the command line; every failure, usage errors included, exits with status 1.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                Terminal.note(fullMessage(for: error))
                exit(withError: ExitCode.failure)
            }
            exit(withError: error)
        }
    }
}

/// Options every subcommand takes (before or after the subcommand name).
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The daemon's socket.", valueName: "path"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("Seconds to wait for each reply.", valueName: "seconds"))
    var timeout: Double = 10

    /// Connects, runs `body` and turns client errors into a message on stderr and exit code 1.
    @discardableResult
    func withConnection<T>(_ body: (ChorusConnection) throws(ClientError) -> T) throws -> T {
        do throws(ClientError) {
            let path = socket ?? ChorusConnection.defaultSocketPath()
            let c = try ChorusConnection(path: path, timeoutMilliseconds: Int(max(timeout, 0.001) * 1000))
            defer { c.close() }
            return try body(c)
        } catch {
            Terminal.error(error.description)
            throw ExitCode.failure
        }
    }
}

// MARK: status

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the daemon: uptime, event log, instances and subscriptions.")

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the raw stats reply as JSON.") var json = false

    func run() throws {
        let (hello, stats) = try global.withConnection { c throws(ClientError) in
            (c.hello, try c.call(.stats, expecting: "stats"))
        }
        if json {
            print(JSONWriter.encodeString(.object(stats)))
            return
        }
        print(Report.status(hello: hello, stats: stats), terminator: "")
    }
}

// MARK: plugins

struct Plugins: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the connector plugins the daemon loaded.")

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the raw reply as JSON.") var json = false

    func run() throws {
        let body = try global.withConnection { c throws(ClientError) in try c.call(.plugins, expecting: "plugins") }
        if json {
            print(JSONWriter.encodeString(body["plugins"] ?? .array([])))
            return
        }
        print(Report.plugins(body["plugins"]?.arrayValue ?? []), terminator: "")
    }
}

// MARK: tail

/// Event filter options shared by `tail` and `replay`.
struct FilterOptions: ParsableArguments {
    @Option(name: [.customLong("filter-channel"), .customLong("channel")],
            help: ArgumentHelp("Only events of this channel (repeatable).", valueName: "channel"))
    var channels: [String] = []
    @Option(name: [.customLong("filter-instance"), .customLong("instance")],
            help: ArgumentHelp("Only events of this instance (repeatable).", valueName: "name"))
    var instances: [String] = []
    @Option(name: [.customLong("filter-type"), .customLong("type")],
            help: ArgumentHelp("Only events of this type: message, status, reaction, … (repeatable).", valueName: "type"))
    var types: [String] = []
    @Option(name: [.customLong("filter-conversation"), .customLong("conversation")],
            help: ArgumentHelp("Only events of this conversation id (repeatable).", valueName: "conv_id"))
    var conversations: [String] = []
    @Option(name: [.customLong("filter-direction"), .customLong("direction")],
            help: ArgumentHelp("Only inbound or outbound events.", valueName: "direction"))
    var directions: [String] = []

    var filter: SubscriptionFilter? {
        let f = SubscriptionFilter(channels: set(channels), instances: set(instances), conversations: set(conversations),
                                   types: set(types), directions: set(directions))
        return f.isAll ? nil : f
    }

    private func set(_ values: [String]) -> Set<String>? { values.isEmpty ? nil : Set(values) }
}

struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print events as they arrive.",
        discussion: """
            Without --durable the subscription is ephemeral and starts now. With --durable NAME it \
            resumes NAME where it was last acknowledged and acknowledges each event once printed.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var filters: FilterOptions

    @Option(help: ArgumentHelp("Where to start: now, earliest, stored, cursor:N (the events after N) or time:T (RFC 3339 or ms).",
                               valueName: "position"))
    var from: String?
    @Option(help: ArgumentHelp("Tail (and acknowledge) this durable subscription.", valueName: "name"))
    var durable: String?
    @Option(name: [.customShort("n"), .customLong("count")], help: "Stop after this many events.")
    var count: Int?
    @Flag(help: "Print each event as one line of JSON.") var json = false

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let from { _ = try Arguments.startPosition(from) }
    }

    func run() throws {
        let start = try from.map { try Arguments.startPosition($0) }
        let outcome: String? = try global.withConnection { c throws(ClientError) -> String? in
            let sub = try c.subscribe(name: durable, filter: filters.filter, from: start)
            if !json {
                Terminal.note("tailing \(sub.durable ? "durable subscription \(sub.name)" : "events") after cursor \(sub.cursor) (Ctrl-C to stop)")
            }
            var printed = 0
            while true {
                switch try c.nextMessage() {
                case .event(sub.name, let cursor, let event):
                    if json {
                        print(JSONWriter.encodeString(event))
                    } else {
                        print(EventText.line(cursor: cursor, event: event))
                    }
                    Terminal.flush()
                    printed += 1
                    let last = count.map { printed >= $0 } ?? false
                    if sub.durable {
                        if last {
                            try c.call(.ack(sub: sub.name, cursor: cursor))  // confirmed before exiting
                        } else {
                            try c.send(ClientFrame(command: .ack(sub: sub.name, cursor: cursor)))
                        }
                    }
                    if last { return nil }
                case .goodbye(let reason):
                    return "chorusd closed the connection: \(reason)"
                case .error(let e):
                    return ClientError.protocolError(e).description
                default:
                    continue
                }
            }
        }
        if let outcome {
            Terminal.error(outcome)
            throw ExitCode.failure
        }
    }
}

// MARK: send

struct Send: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a message and print its message id.",
        discussion: """
            Address it with --conversation, or with --instance and --to (the channel's own recipient id). \
            The content is --text, or a whole message object (docs/protocol.md, send) read from --file \
            ("-" for stdin); addressing options override the file's.
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Chorus conversation id.", valueName: "conv_id")) var conversation: String?
    @Option(help: ArgumentHelp("Instance to send through.", valueName: "name")) var instance: String?
    @Option(help: ArgumentHelp("Channel-native recipient id (with --instance).", valueName: "recipient")) var to: String?
    @Option(help: "Text of the message.") var text: String?
    @Option(help: ArgumentHelp("A JSON file with the whole message (\"-\" for stdin).", valueName: "path")) var file: String?
    @Option(name: .customLong("reply-to"), help: ArgumentHelp("Message id to reply to.", valueName: "msg_id"))
    var replyTo: String?
    @Option(name: .customLong("idempotency-key"), help: ArgumentHelp("Sending twice with the same key sends once.", valueName: "key"))
    var idempotencyKey: String?
    @Flag(help: "Wait for the message's status and print it.") var wait = false
    @Option(help: ArgumentHelp("With --wait: the state to wait for (sent, delivered or read); failed always ends the wait.",
                               valueName: "state"))
    var until: String = "sent"
    @Option(name: .customLong("wait-timeout"), help: ArgumentHelp("With --wait: seconds to wait for the status.", valueName: "seconds"))
    var waitTimeout: Double = 60
    @Flag(help: "Print the replies as JSON.") var json = false

    func validate() throws {
        if text == nil && file == nil { throw ValidationError("give the content with --text or --file") }
        if text != nil && file != nil { throw ValidationError("--text and --file cannot be used together") }
        if file == nil && conversation == nil && (instance == nil || to == nil) {
            throw ValidationError("give --conversation, or both --instance and --to")
        }
        if conversation != nil && (instance != nil || to != nil) {
            throw ValidationError("--conversation cannot be combined with --instance/--to")
        }
        if !["sent", "delivered", "read"].contains(until) {
            throw ValidationError("--until must be sent, delivered or read")
        }
    }

    func run() throws {
        let message = try buildMessage()
        let states: Set<String> = until == "sent" ? ["sent", "delivered", "read"] : until == "delivered" ? ["delivered", "read"] : ["read"]
        let result = try global.withConnection { c throws(ClientError) -> (AcceptedMessage, JSONValue?) in
            if wait {
                let r = try c.sendMessageAndWait(message, idempotencyKey: idempotencyKey, until: states,
                                                 timeoutMilliseconds: Int(waitTimeout * 1000))
                return (r.accepted, r.status)
            }
            return (try c.sendMessage(message, idempotencyKey: idempotencyKey), nil)
        }
        let (accepted, status) = result
        if json {
            print(JSONWriter.encodeString(.object(accepted.body)))
            if let status { print(JSONWriter.encodeString(status)) }
        } else {
            print(accepted.messageId)
            if accepted.duplicate {
                Terminal.note("note: this idempotency key was used before; no new message was sent")
            }
            if let status { print(EventText.statusLine(status)) }
        }
        if status?["status"]?["state"]?.stringValue == "failed" { throw ExitCode.failure }
    }

    private func buildMessage() throws -> JSONValue {
        var message = JSONObject()
        if let file {
            let bytes: [UInt8]
            do {
                bytes = try Terminal.readFile(file)
            } catch {
                throw ValidationError("cannot read \(file): \(error)")
            }
            let value: JSONValue
            do {
                value = try JSONParser.parse(bytes)
            } catch {
                throw ValidationError("\(file) is not valid JSON: \(error)")
            }
            guard case .object(let o) = value else { throw ValidationError("\(file) must hold a JSON object") }
            message = o
        } else if let text {
            message["parts"] = [["type": "text", "text": .string(text)]]
        }
        if let conversation {
            message["conversation_id"] = .string(conversation)
            message["instance"] = nil
            message["to"] = nil
        }
        if let instance { message["instance"] = .string(instance) }
        if let to { message["to"] = .string(to) }
        if let replyTo { message["reply_to"] = ["message_id": .string(replyTo)] }
        return .object(message)
    }
}

// MARK: subscriptions

struct Subscriptions: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, reset or delete durable subscriptions.",
        subcommands: [List.self, Reset.self, Delete.self],
        defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List durable subscriptions.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print the raw reply as JSON.") var json = false

        func run() throws {
            let body = try global.withConnection { c throws(ClientError) in
                try c.call(.subscriptions, expecting: "subscriptions")
            }
            if json {
                print(JSONWriter.encodeString(body["subscriptions"] ?? .array([])))
                return
            }
            print(Report.subscriptionList(body["subscriptions"]?.arrayValue ?? []), terminator: "")
        }
    }

    struct Reset: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a durable subscription (needs admin access).",
            discussion: """
                A cursor N acts as if everything up to N had been acknowledged; a time resumes with the \
                first event received at or after it. The subscription must not be connected.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The subscription name.") var name: String
        @Option(help: ArgumentHelp("earliest, now, a cursor, or an RFC 3339 time.", valueName: "position"))
        var to: String

        func validate() throws { _ = try Arguments.resetTarget(to) }

        func run() throws {
            let target = try Arguments.resetTarget(to)
            let body = try global.withConnection { c throws(ClientError) in
                try c.call(.resetSubscription(name: name, to: target), expecting: "ok")
            }
            let cursor = body["cursor"]?.intValue.map { ": delivery resumes after cursor \($0)" } ?? ""
            print("subscription \(name) reset to \(to)\(cursor)")
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a durable subscription (needs admin access).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The subscription name.") var name: String

        func run() throws {
            try global.withConnection { c throws(ClientError) in
                try c.call(.deleteSubscription(name: name), expecting: "ok")
            }
            print("subscription \(name) deleted")
        }
    }
}

// MARK: replay

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print stored events.",
        discussion: """
            Prints the events after --from-cursor up to and including --to-cursor, received between \
            --from-time and --to-time (RFC 3339 such as 2026-11-23T10:00:00Z, or milliseconds since the epoch).
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var filters: FilterOptions
    @Option(name: .customLong("from-cursor"), help: "Start after this cursor.") var fromCursor: Int64?
    @Option(name: .customLong("to-cursor"), help: "Stop at this cursor (inclusive).") var toCursor: Int64?
    @Option(name: .customLong("from-time"), help: ArgumentHelp("Earliest time.", valueName: "time")) var fromTime: String?
    @Option(name: .customLong("to-time"), help: ArgumentHelp("Latest time.", valueName: "time")) var toTime: String?
    @Option(help: "At most this many events.") var limit: Int?
    @Flag(help: "Print each event as one line of JSON.") var json = false

    func validate() throws {
        if let fromTime { _ = try Arguments.time(fromTime, option: "--from-time") }
        if let toTime { _ = try Arguments.time(toTime, option: "--to-time") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        let from = try fromTime.map { try Arguments.time($0, option: "--from-time") }
        let to = try toTime.map { try Arguments.time($0, option: "--to-time") }
        let summary = try global.withConnection { c throws(ClientError) in
            try c.replay(filter: filters.filter ?? .all, fromCursor: fromCursor, toCursor: toCursor, fromTimeMs: from,
                         toTimeMs: to, limit: limit) { cursor, event in
                print(json ? JSONWriter.encodeString(event) : EventText.line(cursor: cursor, event: event))
            }
        }
        if !json {
            Terminal.note("\(summary.count) event\(summary.count == 1 ? "" : "s")"
                + (summary.lastCursor.map { ", last cursor \($0)" } ?? ""))
        }
    }
}

// MARK: Argument conversions

enum Arguments {
    /// `now`, `earliest`, `stored`, `cursor:N`, `time:T` or a bare cursor number.
    static func startPosition(_ s: String) throws -> StartPosition {
        switch s {
        case "now": return .now
        case "earliest": return .earliest
        case "stored": return .stored
        default: break
        }
        if s.hasPrefix("cursor:"), let n = Int64(s.dropFirst(7)), n >= 0 { return .cursor(n) }
        if let n = Int64(s), n >= 0 { return .cursor(n) }
        if s.hasPrefix("time:") { return .timeMs(try time(String(s.dropFirst(5)), option: "--from")) }
        throw ValidationError("--from must be now, earliest, stored, cursor:N or time:T, not '\(s)'")
    }

    /// `earliest`, `now`, a cursor number or an RFC 3339 time.
    static func resetTarget(_ s: String) throws -> StartPosition {
        switch s {
        case "earliest": return .earliest
        case "now": return .now
        default: break
        }
        if let n = Int64(s), n >= 0 { return .cursor(n) }
        if let ms = parseTimestamp(s) { return .timeMs(ms) }
        throw ValidationError("--to must be earliest, now, a cursor or an RFC 3339 time, not '\(s)'")
    }

    /// An RFC 3339 time or integer milliseconds since the epoch.
    static func time(_ s: String, option: String) throws -> Int64 {
        if let ms = parseTimestamp(s) { return ms }
        if let ms = Int64(s) { return ms }
        throw ValidationError("\(option) must be an RFC 3339 time such as 2026-11-23T10:00:00Z or milliseconds, not '\(s)'")
    }
}
