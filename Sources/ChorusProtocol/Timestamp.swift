import ChorusModel

/// Parses an RFC 3339 time ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00.5+01:00") to
/// milliseconds since the Unix epoch; digits of the fraction beyond milliseconds are dropped.
/// Returns nil for anything that is not such a time.
public func parseTimestamp(_ s: String) -> Int64? {
    Timestamp.parse(s)
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds ("2026-11-23T10:00:00.123Z").
public func formatTimestamp(_ ms: Int64) -> String {
    Timestamp.format(ms: ms)
}
