/// One result of ``LineFramer/next()``.
public enum FramerOutput: Equatable, Sendable {
    /// A complete line, without its line terminator (`\n` or `\r\n`).
    case frame([UInt8])
    /// A line longer than the limit. The value is the number of bytes of that line
    /// seen when the limit was crossed (always more than `maxFrameBytes`); the rest
    /// of the line, up to and including its newline, is discarded without being buffered.
    case oversized(Int)
}

/// Splits a byte stream into newline-delimited frames.
///
/// - `\n` ends a line; a `\r` right before it is removed too.
/// - Lines that are empty or contain only spaces and tabs are skipped.
/// - A line longer than `maxFrameBytes` (not counting its terminator) is reported
///   once as ``FramerOutput/oversized(_:)`` as soon as the limit is crossed, and
///   the stream resynchronises at the next newline. Memory stays bounded by
///   `maxFrameBytes` plus the size of one appended chunk.
///
/// Typical use: `append` what a read returned, then call `next()` until it returns nil.
public struct LineFramer: Sendable {
    /// The longest line accepted, in bytes, not counting the terminator.
    public let maxFrameBytes: Int

    private var buffer: [UInt8] = []
    /// Start of the current (incomplete) line in `buffer`.
    private var head = 0
    /// Everything in `buffer[head..<scanned]` is known to contain no newline.
    private var scanned = 0
    /// True while the rest of an oversized line is being thrown away.
    private var discarding = false

    private static let lf: UInt8 = 0x0A
    private static let cr: UInt8 = 0x0D

    /// - Parameter maxFrameBytes: the longest line accepted (at least 1).
    public init(maxFrameBytes: Int) {
        precondition(maxFrameBytes > 0, "maxFrameBytes must be positive")
        self.maxFrameBytes = maxFrameBytes
    }

    /// Bytes held for a line that has not been completed yet.
    public var bufferedByteCount: Int { buffer.count - head }

    /// Adds bytes read from the stream.
    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { append(UnsafeRawBufferPointer($0)) }
    }

    /// Adds bytes read from the stream, straight from a read buffer.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        if discarding {
            guard let nl = bytes.firstIndex(of: LineFramer.lf) else { return }
            discarding = false
            let rest = UnsafeRawBufferPointer(rebasing: bytes[(nl + 1)...])
            if !rest.isEmpty { buffer.append(contentsOf: rest) }
            return
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame or oversize report, or nil when more bytes are needed.
    public mutating func next() -> FramerOutput? {
        while true {
            guard let nl = findNewline() else {
                scanned = buffer.count
                let pending = buffer.count - head
                if pending > maxFrameBytes + 1 || (pending == maxFrameBytes + 1 && buffer.last != LineFramer.cr) {
                    // The line can no longer fit: report it now and drop what was received of it.
                    discarding = true
                    buffer.removeAll(keepingCapacity: buffer.capacity <= 4 * maxFrameBytes)
                    head = 0
                    scanned = 0
                    return .oversized(pending)
                }
                compact()
                return nil
            }
            let start = head
            var end = nl
            if end > start && buffer[end - 1] == LineFramer.cr { end -= 1 }
            head = nl + 1
            scanned = head
            let length = end - start
            if length > maxFrameBytes { return .oversized(length) }
            if isBlank(start, end) { continue }
            return .frame(Array(buffer[start..<end]))
        }
    }

    private func findNewline() -> Int? {
        guard scanned < buffer.count else { return nil }
        return buffer.withUnsafeBufferPointer { b -> Int? in
            var i = scanned
            let n = b.count
            while i < n {
                if b[i] == LineFramer.lf { return i }
                i += 1
            }
            return nil
        }
    }

    private func isBlank(_ start: Int, _ end: Int) -> Bool {
        var i = start
        while i < end {
            let c = buffer[i]
            if c != 0x20 && c != 0x09 { return false }
            i += 1
        }
        return true
    }

    /// Drops consumed bytes so the buffer does not grow without bound.
    private mutating func compact() {
        if head == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            head = 0
            scanned = 0
        } else if head >= 4096 && head * 2 >= buffer.count {
            buffer.removeSubrange(0..<head)
            scanned -= head
            head = 0
        }
    }
}
