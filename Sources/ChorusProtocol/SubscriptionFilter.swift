import ChorusJSON

/// Which events a subscription or a replay wants.
///
/// Each dimension is either nil (no restriction) or a non-empty set of accepted
/// values; an event matches when it matches every dimension that is set.
/// On the wire: `{"channels":[..],"instances":[..],"conversations":[..],"types":[..],"directions":[..]}`,
/// every field optional.
public struct SubscriptionFilter: Sendable, Equatable {
    /// Accepted channel names (`"sandbox"`, `"whatsapp"`, …).
    public var channels: Set<String>?
    /// Accepted instance names.
    public var instances: Set<String>?
    /// Accepted Chorus conversation ids (`conv_…`).
    public var conversations: Set<String>?
    /// Accepted event types (`"message"`, `"status"`, …).
    public var types: Set<String>?
    /// Accepted directions (`"inbound"`, `"outbound"`).
    public var directions: Set<String>?

    /// The filter that matches every event.
    public static let all = SubscriptionFilter()

    /// The names of the fields, in wire order.
    public static let fieldNames = ["channels", "instances", "conversations", "types", "directions"]

    /// Longest accepted list in one filter field.
    public static let maxValuesPerField = 1000

    public init(channels: Set<String>? = nil, instances: Set<String>? = nil, conversations: Set<String>? = nil,
                types: Set<String>? = nil, directions: Set<String>? = nil)
    {
        self.channels = channels
        self.instances = instances
        self.conversations = conversations
        self.types = types
        self.directions = directions
    }

    /// Reads the `filter` field of a frame. nil or JSON null means ``all``.
    ///
    /// Errors name the offending field as `filter.<name>`: `unknown_field` for a key
    /// that is not a filter dimension, `invalid` when a value is not a non-empty
    /// array of non-empty strings.
    public init(json: JSONValue?) throws(ProtocolError) {
        try self.init(json: json, field: "filter")
    }

    init(json: JSONValue?, field: String) throws(ProtocolError) {
        self.init()
        guard let json, !json.isNull else { return }
        guard case .object(let object) = json else {
            throw .invalid(field, "field '\(field)' must be an object, found \(json.typeName)")
        }
        for (key, value) in object {
            let path = "\(field).\(key)"
            guard SubscriptionFilter.fieldNames.contains(key) else {
                throw ProtocolError(code: .unknownField,
                                    message: "unknown field '\(path)' (a filter takes \(SubscriptionFilter.fieldNames.joined(separator: ", ")))",
                                    field: path)
            }
            if value.isNull { continue }
            guard case .array(let items) = value else {
                throw .invalid(path, "field '\(path)' must be an array of strings, found \(value.typeName)")
            }
            if items.isEmpty {
                throw .invalid(path, "field '\(path)' must not be empty (leave it out to accept everything)")
            }
            if items.count > SubscriptionFilter.maxValuesPerField {
                throw .invalid(path, "field '\(path)' has more than \(SubscriptionFilter.maxValuesPerField) values")
            }
            var set = Set<String>()
            for (i, item) in items.enumerated() {
                guard case .string(let s) = item else {
                    throw .invalid(path, "field '\(path)[\(i)]' must be a string, found \(item.typeName)")
                }
                guard !s.isEmpty else { throw .invalid(path, "field '\(path)[\(i)]' must not be empty") }
                set.insert(s)
            }
            switch key {
            case "channels": channels = set
            case "instances": instances = set
            case "conversations": conversations = set
            case "types": types = set
            default: directions = set
            }
        }
    }

    /// True when no dimension is restricted.
    public var isAll: Bool {
        channels == nil && instances == nil && conversations == nil && types == nil && directions == nil
    }

    /// The wire form: an object with the restricted dimensions only, values sorted.
    public var json: JSONValue {
        var o = JSONObject()
        for (name, set) in zip(SubscriptionFilter.fieldNames, [channels, instances, conversations, types, directions]) {
            if let set { o[name] = .array(set.sorted().map { .string($0) }) }
        }
        return .object(o)
    }

    /// Whether an event with these attributes passes the filter.
    ///
    /// An attribute the event does not have (nil) never matches a restricted dimension:
    /// a filter on conversations excludes events that belong to no conversation.
    public func matches(channel: String?, instance: String?, conversationId: String?, type: String?,
                        direction: String?) -> Bool
    {
        SubscriptionFilter.accepts(channels, channel)
            && SubscriptionFilter.accepts(instances, instance)
            && SubscriptionFilter.accepts(conversations, conversationId)
            && SubscriptionFilter.accepts(types, type)
            && SubscriptionFilter.accepts(directions, direction)
    }

    @inline(__always)
    private static func accepts(_ set: Set<String>?, _ value: String?) -> Bool {
        guard let set else { return true }
        guard let value else { return false }
        return set.contains(value)
    }
}

/// Where a subscription starts (the `from` of `subscribe`, the `to` of `reset_subscription`).
public enum StartPosition: Sendable, Equatable {
    /// Only events committed after the subscription is made.
    case now
    /// From the oldest event still in the log.
    case earliest
    /// After the last cursor the durable subscription acknowledged (a new one starts at `now`).
    case stored
    /// The events after this cursor (give the last cursor processed). As a reset target: as if
    /// everything up to this cursor had been acknowledged.
    case cursor(Int64)
    /// From the first event received at or after this time (milliseconds since the Unix epoch).
    case timeMs(Int64)
}
