import CChorusPlugin
import ChorusJSON

/// A Chorus channel connector written in Swift.
///
/// The SDK bridges a type conforming to `Connector` to the C plugin ABI
/// (`chorus_plugin.h`): export it from your dynamic library with
///
/// ```swift
/// @_cdecl("chorus_plugin_entry")
/// public func chorus_plugin_entry(_ offer: UnsafePointer<chorus_host_offer>?,
///                                 _ out: UnsafeMutablePointer<UnsafePointer<chorus_plugin_descriptor>?>?) -> chorus_status {
///     ConnectorExport.entry(offer: offer, out: out, descriptor: MyConnector.descriptor, factory: MyConnector.init)
/// }
/// ```
///
/// ## Implementation requirements
///
/// - **Threading.** Every method is called on the host's event-loop thread, and
///   every `ConnectorHost` method must be called on it too, except
///   `ConnectorHost.post`. Never block: no sleeping, no synchronous network or
///   disk I/O. Use `host.request` for HTTP, `host.watch` for sockets, timers for
///   delays, or a thread of your own that posts its results back.
/// - **`init`** validates the settings and fails with `ConnectorError` (its
///   message is shown to the operator) rather than starting half-configured.
///   Do not register routes or start I/O in `init`: do it in `start`.
/// - **Inbound.** Emit each event with `host.emit` and answer the channel
///   (for example the webhook's HTTP response) only in the emit completion:
///   `.committed` and `.duplicate` mean the event is durable, so acknowledge;
///   `.unavailable` means the channel must retry (answer 503); `.invalid` is a
///   bug in the connector (answer 500 or drop, and log). Emit events in the
///   normalized schema, `docs/schema.md`, without the host-assigned fields.
/// - **Outbound.** `send` must end in *exactly one* `host.sendResult` for its
///   `SendID`: `.sent` with the channel's message id, `.retryable` (with the
///   delay the channel asked for, if any) or `.permanent` with the channel's
///   error code. Throwing from `send` counts as a permanent failure and then
///   `sendResult` must not be called.
/// - **Reload.** `reload` applies new settings atomically or throws and keeps
///   the old ones.
/// - **Stop.** `stop` stops taking input, finishes or fails every pending send,
///   then calls `host.stopped()` (the default implementation calls it at once,
///   which is right for connectors with nothing pending). The host fails what is
///   left after its shutdown timeout.
/// - **State.** Keep cursors and tokens in `host.kvPut` (durable on return);
///   never log secrets.
///
/// `chorus-conformance path/to/libchorus-yours.so` checks these requirements
/// against a built plugin (see `docs/connector-sdk.md`).
public protocol Connector: AnyObject {
    /// The host this instance was created with (keep the one `init` received).
    var host: ConnectorHost { get }
    /// Creates an instance with its settings. Throw `ConnectorError` to refuse them.
    init(host: ConnectorHost, settings: ConnectorSettings) throws
    /// Starts the instance: register routes, open connections, arm timers.
    func start() throws
    /// Applies new settings, or throws and keeps the old ones.
    func reload(settings: ConnectorSettings) throws
    /// Delivers one outbound message; see "Implementation requirements".
    func send(_ message: OutboundMessage) throws
    /// Stops; calls `host.stopped()` when every pending send is reported.
    func stop()
}

extension Connector {
    public func reload(settings: ConnectorSettings) throws {
        throw ConnectorError("this connector cannot reload its settings; restart the instance")
    }
    public func stop() { host.stopped() }
}

/// An error with a message for the operator.
public struct ConnectorError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var status: chorus_status
    public init(_ message: String, status: chorus_status = CHORUS_ERR_INVALID) { self.message = message; self.status = status }
    public var description: String { message }
}

/// Identifies one send; pass it back to `ConnectorHost.sendResult`.
public struct SendID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { String(rawValue) }
}

/// An outbound message handed to `Connector.send` (docs/schema.md, "What a plugin receives").
public struct OutboundMessage: Sendable {
    public let id: SendID
    /// The message as JSON.
    public let json: JSONValue
    public let raw: [UInt8]
    public var messageId: String { json["message_id"]?.stringValue ?? "" }
    public var type: String { json["type"]?.stringValue ?? "message" }
    /// The channel-native recipient (chat id).
    public var to: String { json["to"]?.stringValue ?? "" }
    public var parts: [JSONValue] { json["parts"]?.arrayValue ?? [] }
}

/// The operator's settings for one instance, flattened to dotted keys.
public struct ConnectorSettings: Sendable {
    public let instanceName: String
    public let stateDirectory: String
    public let values: [(key: String, value: String)]

    public init(instanceName: String, stateDirectory: String, values: [(key: String, value: String)]) {
        self.instanceName = instanceName; self.stateDirectory = stateDirectory; self.values = values
    }

    public subscript(key: String) -> String? { values.last { $0.key == key }?.value }

    /// A required string setting.
    public func string(_ key: String) throws -> String {
        guard let v = self[key], !v.isEmpty else { throw ConnectorError("setting \"\(key)\" is required") }
        return v
    }
    public func int(_ key: String, default d: Int) throws -> Int {
        guard let v = self[key] else { return d }
        guard let i = Int(v) else { throw ConnectorError("setting \"\(key)\": expected an integer, found \"\(v)\"") }
        return i
    }
    public func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let v = self[key] else { return d }
        switch v { case "true": return true; case "false": return false
        default: throw ConnectorError("setting \"\(key)\": expected true or false, found \"\(v)\"") }
    }
    /// A list setting given as a TOML array (JSON text) or a comma-separated string.
    public func list(_ key: String) -> [String] {
        guard let v = self[key] else { return [] }
        if v.hasPrefix("["), case .array(let a)? = try? JSONParser.parse(v) { return a.compactMap { $0.stringValue } }
        return v.split(separator: ",").map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

/// What a connector declares about itself.
public struct ConnectorDescriptor: Sendable {
    public var name: String
    public var version: String
    public var channel: String
    public var summary: String
    public var capabilities: Capabilities
    public init(name: String, version: String, channel: String, summary: String, capabilities: Capabilities) {
        self.name = name; self.version = version; self.channel = channel; self.summary = summary; self.capabilities = capabilities
    }

    public struct Capabilities: Sendable {
        public var flags: UInt64
        public var receiveParts: [String]
        public var sendParts: [String]
        public var maxTextLength: UInt32
        public var ratePerSecond: UInt32
        public var ratePerChatPerMinute: UInt32
        public var maxMediaBytes: UInt64
        public init(flags: UInt64 = 0, receiveParts: [String], sendParts: [String], maxTextLength: UInt32 = 0,
                    ratePerSecond: UInt32 = 0, ratePerChatPerMinute: UInt32 = 0, maxMediaBytes: UInt64 = 0)
        {
            self.flags = flags; self.receiveParts = receiveParts; self.sendParts = sendParts
            self.maxTextLength = maxTextLength; self.ratePerSecond = ratePerSecond
            self.ratePerChatPerMinute = ratePerChatPerMinute; self.maxMediaBytes = maxMediaBytes
        }
    }
}
