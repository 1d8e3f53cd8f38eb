// The server side of one LMTP connection (RFC 2033 on top of RFC 5321), as a pure state machine:
// bytes in, replies and actions out. No I/O: the caller owns the socket.

/// One LMTP server connection. Feed it the bytes the client sends; write back the `.write` actions,
/// deliver the `.deliver` envelopes and call `complete(_:)` with the per-recipient outcome; close on `.close`.
///
/// Supported: LHLO (EHLO and HELO are refused with 500, as RFC 2033 requires), MAIL FROM (with the SIZE,
/// BODY and SMTPUTF8 parameters), RCPT TO, DATA, RSET, NOOP, VRFY (252) and QUIT; PIPELINING (any number of
/// commands in one `feed`), partial lines across feeds, dot-unstuffing, bare LF tolerated as a line end
/// (stored as CRLF), a running size limit and one reply per recipient after DATA.
///
/// Not thread-safe: one connection, one owner.
public final class LMTPSession {
    /// One message accepted by DATA, waiting for delivery.
    public struct Envelope: Sendable, Equatable {
        /// The reverse path (MAIL FROM), without angle brackets; "" for the null sender `<>`.
        public var from: String
        /// The accepted recipients (RCPT TO), without angle brackets, in RCPT order; duplicates kept.
        public var recipients: [String]
        /// The message: dot-unstuffed, CRLF line ends, the final "." line removed.
        public var data: [UInt8]
        /// `data.count`.
        public var size: Int

        /// Creates an envelope.
        public init(from: String, recipients: [String], data: [UInt8]) {
            self.from = from
            self.recipients = recipients
            self.data = data
            self.size = data.count
        }
    }

    /// What the caller must do next.
    public enum Action: Sendable, Equatable {
        /// Send these bytes to the client (consecutive replies come joined in one `.write`).
        case write([UInt8])
        /// Deliver this message, then call `complete(_:)`; the session processes no input until then.
        case deliver(Envelope)
        /// Close the connection (after writing what came before).
        case close
    }

    /// The name announced in the greeting and the LHLO reply.
    public let hostname: String
    /// The largest message accepted, in bytes (advertised as SIZE).
    public let maxMessageBytes: Int
    /// The longest command line accepted, CRLF included; longer lines get 500 5.5.2.
    public var maxLineBytes: Int = 2048
    /// The most recipients in one transaction; more get 452 4.5.3.
    public var maxRecipients: Int = 1000

    private let acceptRecipient: (String) -> Bool

    private enum Phase { case command, data }
    private var phase: Phase = .command
    private var greeted = false
    private var sender: String?
    private var recipients: [String] = []
    private var input: [UInt8] = []
    private var discardingLongLine = false
    private var waitingForCompletion = false
    private var pendingRecipients: [String] = []
    private var closed = false

    // DATA state.
    private var message: [UInt8] = []
    private var messageTooBig = false
    private var atLineStart = true

    /// Data bytes kept back at most before a line without its end is moved into the message (memory bound).
    private static let dataChunk = 16 * 1024

    /// Creates a session. `acceptRecipient` decides each RCPT TO (false → 550 5.1.1); it gets the address
    /// without angle brackets.
    public init(hostname: String, maxMessageBytes: Int, acceptRecipient: @escaping (String) -> Bool = { _ in true }) {
        self.hostname = hostname
        self.maxMessageBytes = max(0, maxMessageBytes)
        self.acceptRecipient = acceptRecipient
    }

    /// The greeting to send when the connection opens: "220 <hostname> LMTP Chorus ready".
    public func greeting() -> [UInt8] {
        Array("220 \(hostname) LMTP Chorus ready\r\n".utf8)
    }

    /// True while a `.deliver` waits for `complete(_:)`.
    public var isWaitingForDelivery: Bool { waitingForCompletion }

    /// True once QUIT was handled (or the session was told to stop): further input is ignored.
    public var isClosed: Bool { closed }

    /// Processes bytes from the client. Input that arrives while a delivery is pending is kept and
    /// processed by `complete(_:)`.
    public func feed(_ bytes: [UInt8]) -> [Action] {
        guard !closed else { return [] }
        input.append(contentsOf: bytes)
        var out = Output()
        process(&out)
        return out.actions
    }

    /// Reports the outcome of the pending delivery and resumes processing buffered input.
    ///
    /// One reply is sent per recipient of the envelope, in RCPT order. Each recipient takes the first
    /// unused result with the same address (compared case-insensitively); a recipient with no result gets
    /// a temporary failure. For a refused recipient, `message` may start with its own reply code and
    /// enhanced status ("550 5.7.1 Message refused") to choose a permanent failure; without one the
    /// reply is "451 4.3.0 <message>", which makes the MTA retry later. Accepted recipients get
    /// "250 2.0.0 <recipient> committed" (the message is ignored). Calling it with no delivery pending
    /// does nothing.
    public func complete(_ results: [(recipient: String, accepted: Bool, message: String)]) -> [Action] {
        guard waitingForCompletion, !closed else { return [] }
        var out = Output()
        var used = [Bool](repeating: false, count: results.count)
        for recipient in pendingRecipients {
            let index = results.indices.first {
                !used[$0] && results[$0].recipient.lowercased() == recipient.lowercased()
            }
            guard let index else {
                out.reply("451 4.3.0 <\(Self.printable(recipient))> no delivery result, try again later")
                continue
            }
            used[index] = true
            let result = results[index]
            if result.accepted {
                out.reply("250 2.0.0 <\(Self.printable(recipient))> committed")
            } else {
                out.reply(Self.failureReply(result.message))
            }
        }
        pendingRecipients = []
        waitingForCompletion = false
        process(&out)
        return out.actions
    }

    // MARK: - Input processing

    /// Replies and actions of one call, with consecutive writes joined.
    private struct Output {
        var actions: [Action] = []

        mutating func reply(_ line: String) {
            write(Array((line + "\r\n").utf8))
        }

        mutating func write(_ bytes: [UInt8]) {
            if case .write(let previous)? = actions.last {
                actions[actions.count - 1] = .write(previous + bytes)
            } else {
                actions.append(.write(bytes))
            }
        }
    }

    private func process(_ out: inout Output) {
        var start = 0
        defer { input.removeFirst(start) }
        while !closed && !waitingForCompletion && start < input.count {
            switch phase {
            case .command:
                guard let newline = input[start...].firstIndex(of: 10) else {
                    // No full line yet: keep it, unless it is already too long to be a command.
                    if input.count - start > maxLineBytes {
                        discardingLongLine = true
                        start = input.count
                    }
                    return
                }
                let lineEnd = newline > start && input[newline - 1] == 13 ? newline - 1 : newline
                let line = Array(input[start..<lineEnd])
                let tooLong = discardingLongLine || newline + 1 - start > maxLineBytes
                start = newline + 1
                discardingLongLine = false
                if tooLong {
                    out.reply("500 5.5.2 Line too long")
                } else {
                    command(line, &out)
                }
            case .data:
                guard let next = dataStep(from: start, &out) else { return }
                start = next
            }
        }
    }

    /// Consumes data bytes from `start`; returns the new start, or nil when more input is needed.
    private func dataStep(from start: Int, _ out: inout Output) -> Int? {
        guard let newline = input[start...].firstIndex(of: 10) else {
            // A line without its end yet. Keep short ones (it might be the final "."); move long ones
            // into the message, keeping a trailing CR that may belong to a CRLF split across feeds.
            let pending = input.count - start
            guard pending > Self.dataChunk else { return nil }
            var end = input.count
            if input[end - 1] == 13 { end -= 1 }
            appendData(input[start..<end], lineEnd: false)
            return end
        }
        let lineEnd = newline > start && input[newline - 1] == 13 ? newline - 1 : newline
        let content = input[start..<lineEnd]
        if atLineStart && content.count == 1 && content.first == 46 {  // "."
            finishData(&out)
        } else {
            appendData(content, lineEnd: true)
        }
        return newline + 1
    }

    private func appendData(_ bytes: ArraySlice<UInt8>, lineEnd: Bool) {
        var bytes = bytes
        if atLineStart, bytes.first == 46 { bytes = bytes.dropFirst() }  // dot-unstuffing
        atLineStart = lineEnd
        let added = bytes.count + (lineEnd ? 2 : 0)
        if messageTooBig { return }
        if message.count + added > maxMessageBytes {
            messageTooBig = true
            message = []
            return
        }
        message.append(contentsOf: bytes)
        if lineEnd { message.append(contentsOf: [13, 10]) }
    }

    private func finishData(_ out: inout Output) {
        phase = .command
        atLineStart = true
        let rcpts = recipients
        let from = sender ?? ""
        let data = message
        let tooBig = messageTooBig
        resetTransaction()
        if tooBig {
            for _ in rcpts {
                out.reply("552 5.3.4 Message too big for this system (limit \(maxMessageBytes) bytes)")
            }
            return
        }
        pendingRecipients = rcpts
        waitingForCompletion = true
        out.actions.append(.deliver(Envelope(from: from, recipients: rcpts, data: data)))
    }

    private func resetTransaction() {
        sender = nil
        recipients = []
        message = []
        messageTooBig = false
    }

    // MARK: - Commands

    private func command(_ line: [UInt8], _ out: inout Output) {
        guard let text = String(validating: line, as: UTF8.self) else {
            out.reply("500 5.5.2 Syntax error: invalid UTF-8 in command")
            return
        }
        let verbEnd = text.firstIndex(of: " ") ?? text.endIndex
        let verb = text[..<verbEnd].uppercased()
        let argument = text[verbEnd...].drop { $0 == " " }
        switch verb {
        case "LHLO":
            guard !argument.isEmpty else {
                out.reply("501 5.5.4 Syntax: LHLO hostname")
                return
            }
            greeted = true
            resetTransaction()
            out.reply("250-\(hostname)")
            out.reply("250-PIPELINING")
            out.reply("250-ENHANCEDSTATUSCODES")
            out.reply("250-8BITMIME")
            out.reply("250-SMTPUTF8")
            out.reply("250 SIZE \(maxMessageBytes)")
        case "EHLO", "HELO":
            out.reply("500 5.5.1 This is an LMTP server: use LHLO (RFC 2033)")
        case "MAIL":
            mail(String(argument), &out)
        case "RCPT":
            rcpt(String(argument), &out)
        case "DATA":
            if !argument.isEmpty {
                out.reply("501 5.5.4 Syntax: DATA takes no arguments")
            } else if sender == nil {
                out.reply("503 5.5.1 Bad sequence of commands: MAIL first")
            } else if recipients.isEmpty {
                out.reply("503 5.5.1 Bad sequence of commands: no valid recipients")
            } else {
                phase = .data
                atLineStart = true
                message = []
                messageTooBig = false
                out.reply("354 Start mail input; end with <CRLF>.<CRLF>")
            }
        case "RSET":
            if !argument.isEmpty {
                out.reply("501 5.5.4 Syntax: RSET takes no arguments")
            } else {
                resetTransaction()
                out.reply("250 2.0.0 OK")
            }
        case "NOOP":
            out.reply("250 2.0.0 OK")
        case "QUIT":
            out.reply("221 2.0.0 \(hostname) closing connection")
            out.actions.append(.close)
            closed = true
        case "VRFY":
            if argument.isEmpty {
                out.reply("501 5.5.4 Syntax: VRFY address")
            } else {
                out.reply("252 2.5.0 Cannot VRFY user, but will accept the message and attempt delivery")
            }
        case "EXPN", "HELP", "TURN", "ETRN", "BDAT", "STARTTLS", "AUTH":
            out.reply("502 5.5.1 Command not implemented")
        default:
            out.reply("500 5.5.2 Command unrecognized")
        }
    }

    private func mail(_ argument: String, _ out: inout Output) {
        guard greeted else {
            out.reply("503 5.5.1 Bad sequence of commands: LHLO first")
            return
        }
        guard sender == nil else {
            out.reply("503 5.5.1 Bad sequence of commands: nested MAIL command")
            return
        }
        guard let (path, parameters) = Self.parsePath(argument, keyword: "FROM:") else {
            out.reply("501 5.5.4 Syntax: MAIL FROM:<address> [parameters]")
            return
        }
        for parameter in parameters {
            let (key, value) = Self.splitParameter(parameter)
            switch key {
            case "SIZE":
                guard let value, !value.isEmpty, value.allSatisfy(\.isASCIIDigit) else {
                    out.reply("501 5.5.4 Syntax: SIZE=<number>")
                    return
                }
                if Int(value).map({ $0 > maxMessageBytes }) ?? true {
                    out.reply("552 5.3.4 Message size exceeds fixed limit of \(maxMessageBytes) bytes")
                    return
                }
            case "BODY":
                guard let value, ["7BIT", "8BITMIME"].contains(value.uppercased()) else {
                    out.reply("501 5.5.4 Syntax: BODY=7BIT or BODY=8BITMIME")
                    return
                }
            case "SMTPUTF8":
                guard value == nil else {
                    out.reply("501 5.5.4 Syntax: SMTPUTF8 takes no value")
                    return
                }
            default:
                out.reply("555 5.5.4 Unsupported MAIL parameter \(Self.printable(key))")
                return
            }
        }
        sender = path
        recipients = []
        out.reply("250 2.1.0 Sender <\(Self.printable(path))> OK")
    }

    private func rcpt(_ argument: String, _ out: inout Output) {
        guard sender != nil else {
            out.reply("503 5.5.1 Bad sequence of commands: MAIL first")
            return
        }
        guard let (path, parameters) = Self.parsePath(argument, keyword: "TO:"), !path.isEmpty else {
            out.reply("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        }
        if let parameter = parameters.first {
            out.reply("555 5.5.4 Unsupported RCPT parameter \(Self.printable(Self.splitParameter(parameter).key))")
            return
        }
        guard recipients.count < maxRecipients else {
            out.reply("452 4.5.3 Too many recipients")
            return
        }
        guard acceptRecipient(path) else {
            out.reply("550 5.1.1 <\(Self.printable(path))>: Recipient address rejected: unknown user")
            return
        }
        recipients.append(path)
        out.reply("250 2.1.5 Recipient <\(Self.printable(path))> OK")
    }

    // MARK: - Parsing helpers

    /// Parses `FROM:<path> params…` / `TO:<path> params…` (keyword case-insensitive, optional space after
    /// the colon). Returns the address without brackets and source route, and the parameters.
    static func parsePath(_ argument: String, keyword: String) -> (String, [String])? {
        guard argument.uppercased().hasPrefix(keyword) else { return nil }
        let rest = argument.dropFirst(keyword.count).drop { $0 == " " }
        guard rest.first == "<" else { return nil }
        // The path ends at the first ">" outside a quoted local part.
        var inQuotes = false
        var escaped = false
        var spaceOutsideQuotes = false
        var close: String.Index?
        var index = rest.index(after: rest.startIndex)
        while index < rest.endIndex {
            let character = rest[index]
            if escaped {
                escaped = false
            } else if character == "\\" && inQuotes {
                escaped = true
            } else if character == "\"" {
                inQuotes.toggle()
            } else if character == ">" && !inQuotes {
                close = index
                break
            } else if (character == "<" || character == " ") && !inQuotes {
                spaceOutsideQuotes = spaceOutsideQuotes || character == " "
                if character == "<" { return nil }
            }
            index = rest.index(after: index)
        }
        guard let close, !spaceOutsideQuotes else { return nil }
        var address = String(rest[rest.index(after: rest.startIndex)..<close])
        // A source route ("@a,@b:user@d") is ignored (RFC 5321 section 4.1.1.3).
        if address.hasPrefix("@"), let colon = address.firstIndex(of: ":") {
            address = String(address[address.index(after: colon)...])
        }
        if address.unicodeScalars.contains(where: { $0.value < 32 || $0.value == 127 }) { return nil }
        let after = rest[rest.index(after: close)...]
        guard after.isEmpty || after.first == " " else { return nil }
        let parameters = after.split(separator: " ").map(String.init)
        return (address, parameters)
    }

    /// "KEY=value" as (upper-cased key, value); a parameter without "=" has no value.
    static func splitParameter(_ parameter: String) -> (key: String, value: String?) {
        guard let equals = parameter.firstIndex(of: "=") else { return (parameter.uppercased(), nil) }
        return (parameter[..<equals].uppercased(), String(parameter[parameter.index(after: equals)...]))
    }

    /// A reply for a refused recipient: the message's own code when it has one, else 451 4.3.0.
    static func failureReply(_ message: String) -> String {
        let text = printable(message)
        let bytes = Array(text.utf8)
        if bytes.count >= 4, bytes[0] == 0x34 || bytes[0] == 0x35, bytes[1].isDigit, bytes[2].isDigit, bytes[3] == 0x20 {
            return text
        }
        return "451 4.3.0 " + (text.isEmpty ? "Temporary delivery failure, try again later" : text)
    }

    /// `text` on one line: control characters become spaces (a reply must not break the protocol).
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 32 || $0.value == 127 ? " " : $0 }))
    }
}

private extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}

private extension UInt8 {
    var isDigit: Bool { self >= 0x30 && self <= 0x39 }
}
