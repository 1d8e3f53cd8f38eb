import ChorusJSON

/// The version of the consumer protocol this module speaks (the `protocol` field of `hello`).
public let protocolVersion = 1

/// The machine-readable code of a protocol error (the `code` field of an `error` frame).
public enum ErrorCode: String, Sendable, CaseIterable {
    /// The line is not a JSON object.
    case badFrame = "bad_frame"
    /// The line is longer than the server's `max_frame_bytes`; the rest of the line was discarded.
    case frameTooLarge = "frame_too_large"
    /// The `op` is not one the server knows.
    case unknownOp = "unknown_op"
    /// The frame has a field the op does not take (`field` names it).
    case unknownField = "unknown_field"
    /// A field is missing, has the wrong type or an unacceptable value (`field` names it).
    case invalid
    /// The peer's access rights do not allow the operation.
    case forbidden
    /// The named subscription, conversation, instance or plugin does not exist.
    case notFound = "not_found"
    /// The durable subscription is already attached to another live connection.
    case busy
    /// The server cannot take the request now (disk full, queue full, shutting down).
    case unavailable
    /// The request is understood but not supported (protocol version, part type).
    case unsupported
    /// A bug or an unexpected failure inside the server.
    case `internal`
}

/// An error reply of the consumer protocol.
///
/// The server sends it as `{"type":"error","id":..,"code":..,"message":..,"field":..}`;
/// ``ClientFrame/parse(_:)`` throws it for frames that fail validation, with the
/// frame's `id` when it could be read so that the reply can echo it.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of error this is.
    public var code: ErrorCode
    /// A sentence for a human.
    public var message: String
    /// The offending field, as a dotted path (`filter.channels`), when there is one.
    public var field: String?
    /// The `id` of the frame this error answers, when it could be read.
    public var id: JSONValue?

    public init(code: ErrorCode, message: String, field: String? = nil, id: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.field = field
        self.id = id
    }

    /// `code: message (field X)`.
    public var description: String {
        var s = "\(code.rawValue): \(message)"
        if let field { s += " (field \(field))" }
        return s
    }

    static func invalid(_ field: String, _ message: String) -> ProtocolError {
        ProtocolError(code: .invalid, message: message, field: field)
    }
}
