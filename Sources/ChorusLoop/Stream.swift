// Stream.swift — `StreamConnection`, a connected byte stream (Unix-domain or TCP) with write coalescing.
//
// Reads are delivered chunk by chunk as they arrive (no framing). Writes are appended to an owned output
// buffer; the loop's before-blocking pass flushes every connection that wrote during the iteration with
// `uv_try_write`, and whatever the kernel did not take at once is copied into memory owned by a single
// `uv_write` request (freed in its callback). While that request is in flight, new writes keep coalescing
// in the buffer, so a slow peer costs one write request at a time and `pendingWriteBytes` stays exact.

import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// Credentials of the process at the other end of a Unix-domain socket (`SO_PEERCRED`).
public struct PeerCredentials: Sendable, Equatable, Hashable, CustomStringConvertible {
    public let pid: Int32
    public let uid: UInt32
    public let gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// Reads `SO_PEERCRED` of a connected Unix-domain socket; nil for other sockets or on error.
    public static func of(socket fd: Int32) -> PeerCredentials? {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        guard cuv_peer_credentials(fd, &pid, &uid, &gid) == 0 else { return nil }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }

    public var description: String { "pid=\(pid) uid=\(uid) gid=\(gid)" }
}

/// A connected byte stream (Unix or TCP), with write coalescing. Loop thread only.
///
/// Set the callbacks right after the connection is handed to you (reading is already started; data is only
/// delivered from a later loop iteration). The connection stays alive while its handle is open, so the owner
/// does not need to keep a reference to receive `onClose`.
public final class StreamConnection: LoopHandleOwner {
    /// Largest slice handed to one `uv_try_write` / `uv_write` (libuv buffer lengths are 32-bit).
    private static let maxWriteSlice = 1 << 30
    /// Output buffer capacity kept after a flush; larger buffers are released.
    private static let retainedBufferCapacity = 64 * 1024

    let loop: EventLoop
    let handle: UnsafeMutablePointer<uv_stream_t>

    /// A chunk as read (not framed).
    public var onRead: (([UInt8]) -> Void)?
    /// Called once when the connection is closed: nil after end of file or a local `close()`, the error otherwise.
    public var onClose: ((_ error: UVError?) -> Void)?
    /// Called when `pendingWriteBytes` dropped to 0 after having been > 0.
    public var onDrain: (() -> Void)?
    /// Called when the peer ends its sending side (end of file). When nil, the connection closes once pending
    /// writes are flushed (`closeAfterFlush()`); when set, the handler decides (reading has stopped either way).
    public var onEOF: (() -> Void)?

    /// Credentials of the peer process for Unix-domain sockets (`SO_PEERCRED`), nil for TCP.
    public private(set) var peer: PeerCredentials?

    private var state: HandleState = .open
    private var output: [UInt8] = []
    private var inFlightBytes = 0
    private var reading = false
    private var readPaused = false
    private var eofReceived = false
    private var closeWhenFlushed = false
    private var shutdownRequested = false
    private var shutdownStarted = false
    private var hadPendingWrites = false
    private var closeError: UVError?
    /// Set while queued in the loop's flush list.
    private var isQueuedForFlush = false

    /// Wraps an initialised stream handle and starts reading. Internal: created by servers and `connect`.
    init(loop: EventLoop, handle: UnsafeMutablePointer<uv_stream_t>, peer: PeerCredentials?, startReading: Bool = true) {
        self.loop = loop
        self.handle = handle
        self.peer = peer
        attachOwner(self, to: uvHandle(handle))
        if startReading { startReadingIfWanted() }
    }

    // MARK: Client-side constructors

    /// Connects to a listening Unix-domain socket. `completion` runs on the loop with the connected stream
    /// (reading started, `peer` set to the server's credentials) or the connect error.
    public static func connect(loop: EventLoop, path: String,
                               completion: @escaping (Result<StreamConnection, UVError>) -> Void) {
        precondition(loop.isOpen, "StreamConnection.connect on a shut-down EventLoop")
        let pipe = allocateUV(uv_pipe_t.self)
        uv_pipe_init(loop.uvLoop, pipe, 0)
        let connection = StreamConnection(loop: loop, handle: uvStream(pipe), peer: nil, startReading: false)
        let request = allocateUV(uv_connect_t.self)
        let pending = PendingConnect(connection: connection, path: path, completion: completion)
        request.pointee.data = Unmanaged.passRetained(pending).toOpaque()
        uv_pipe_connect(request, pipe, path, streamConnectFinished)
    }

    /// Adopts an already connected stream socket or pipe descriptor (for example one end of `socketpair`).
    /// The connection owns the descriptor from now on and closes it. Reading starts immediately.
    public static func adopt(loop: EventLoop, fd: Int32) throws -> StreamConnection {
        precondition(loop.isOpen, "StreamConnection.adopt on a shut-down EventLoop")
        let pipe = allocateUV(uv_pipe_t.self)
        uv_pipe_init(loop.uvLoop, pipe, 0)
        let rc = uv_pipe_open(pipe, fd)
        if rc < 0 {
            closeUVHandle(uvHandle(pipe))
            throw UVError(code: rc, operation: "uv_pipe_open(fd \(fd))")
        }
        return StreamConnection(loop: loop, handle: uvStream(pipe), peer: PeerCredentials.of(socket: fd))
    }

    fileprivate func finishConnect(status: Int32, path: String) -> Result<StreamConnection, UVError> {
        if status < 0 {
            let error = UVError(code: status, operation: "connect(\(path))")
            closeError = error
            close()
            return .failure(error)
        }
        if state != .open {
            return .failure(UVError(code: Int32(UV_ECANCELED.rawValue), operation: "connect(\(path))"))
        }
        if let fd = fileDescriptor { peer = PeerCredentials.of(socket: fd) }
        startReadingIfWanted()
        return .success(self)
    }

    // MARK: State

    /// True once `close()` was called or the connection failed (also while the handle is still closing).
    public var isClosed: Bool { state != .open }

    /// Bytes written but not yet accepted by the kernel: buffered plus in flight. 0 once closed.
    public var pendingWriteBytes: Int {
        state == .open ? output.count + inFlightBytes : 0
    }

    /// The underlying descriptor, for diagnostics and socket options.
    public var fileDescriptor: Int32? {
        guard state != .closed else { return nil }
        var fd: uv_os_fd_t = -1
        return uv_fileno(uvHandle(handle), &fd) == 0 ? fd : nil
    }

    // MARK: Writing

    /// Appends `bytes` to the output buffer; flushed before the loop next blocks. Ignored once closed or
    /// after `closeAfterFlush()`.
    public func write(_ bytes: [UInt8]) {
        guard state == .open, !closeWhenFlushed, !shutdownRequested, !bytes.isEmpty else { return }
        output.append(contentsOf: bytes)
        noteOutput()
    }

    /// Appends a copy of `bytes` to the output buffer (see `write(_:)`).
    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard state == .open, !closeWhenFlushed, !shutdownRequested, !bytes.isEmpty else { return }
        output.append(contentsOf: bytes)
        noteOutput()
    }

    /// Appends the UTF-8 bytes of `text` (see `write(_:)`).
    public func write(_ text: String) {
        guard state == .open, !closeWhenFlushed, !shutdownRequested, !text.isEmpty else { return }
        output.append(contentsOf: text.utf8)
        noteOutput()
    }

    private func noteOutput() {
        assert(loop.isOnLoopThread, "StreamConnection.write called off the loop thread")
        hadPendingWrites = true
        queueForFlush()
    }

    private func queueForFlush() {
        guard !isQueuedForFlush else { return }
        isQueuedForFlush = true
        loop.dirtyStreams.append(self)
    }

    /// Called by the loop's before-blocking pass.
    func flushPending() {
        isQueuedForFlush = false
        guard state == .open, inFlightBytes == 0 else { return }
        if output.isEmpty {
            finishedWriting()
            return
        }
        let sliceLength = min(output.count, Self.maxWriteSlice)
        var written = 0
        var failure: Int32 = 0
        output.withUnsafeMutableBytes { raw in
            var buffer = uv_buf_init(raw.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(sliceLength))
            let rc = uv_try_write(handle, &buffer, 1)
            if rc >= 0 {
                written = Int(rc)
            } else if rc != Int32(UV_EAGAIN.rawValue) && rc != Int32(UV_ENOSYS.rawValue) {
                failure = rc
            }
        }
        if failure < 0 {
            fail(UVError(code: failure, operation: "write"))
            return
        }
        let remaining = sliceLength - written
        if remaining > 0 {
            // Copy what the kernel did not take into memory owned by the write request.
            let headerSize = (MemoryLayout<uv_write_t>.size + 15) & ~15
            guard let block = malloc(headerSize + remaining) else { fatalError("ChorusLoop: out of memory") }
            let request = block.bindMemory(to: uv_write_t.self, capacity: 1)
            let payload = block + headerSize
            output.withUnsafeBytes { raw in
                payload.copyMemory(from: raw.baseAddress! + written, byteCount: remaining)
            }
            request.pointee.data = Unmanaged.passUnretained(self).toOpaque()
            var buffer = uv_buf_init(payload.assumingMemoryBound(to: CChar.self), UInt32(remaining))
            let rc = uv_write(request, handle, &buffer, 1, streamWriteFinished)
            if rc < 0 {
                free(block)
                fail(UVError(code: rc, operation: "uv_write"))
                return
            }
            inFlightBytes = remaining
        }
        consumeOutput(sliceLength)
        if inFlightBytes == 0 {
            if output.isEmpty { finishedWriting() } else { queueForFlush() }
        }
    }

    private func consumeOutput(_ count: Int) {
        if count == output.count {
            output.removeAll(keepingCapacity: output.capacity <= Self.retainedBufferCapacity)
        } else {
            output.removeFirst(count)
        }
    }

    fileprivate func writeFinished(status: Int32) {
        inFlightBytes = 0
        guard state == .open else { return }
        if status < 0 {
            fail(UVError(code: status, operation: "write"))
            return
        }
        if output.isEmpty {
            finishedWriting()
        } else {
            queueForFlush()
        }
    }

    /// Pending output reached zero: close if asked to, otherwise schedule `onDrain`.
    private func finishedWriting() {
        if closeWhenFlushed {
            close()
            return
        }
        if shutdownRequested && !shutdownStarted {
            startShutdown()
        }
        if hadPendingWrites {
            hadPendingWrites = false
            loop.drainedStreams.append(self)
        }
    }

    /// Runs `onDrain` (from the loop's flush pass), if nothing was written in between.
    func deliverDrain() {
        guard state == .open, pendingWriteBytes == 0, let onDrain else { return }
        onDrain()
    }

    // MARK: Reading

    /// Stops delivering reads (the kernel buffers, then the peer's writes block). Idempotent.
    public func pauseReading() {
        readPaused = true
        if reading {
            uv_read_stop(handle)
            reading = false
        }
    }

    /// Resumes delivering reads after `pauseReading()`. Idempotent.
    public func resumeReading() {
        readPaused = false
        startReadingIfWanted()
    }

    /// True while reads are being delivered.
    public var isReading: Bool { reading }

    private func startReadingIfWanted() {
        guard state == .open, !reading, !readPaused, !eofReceived, !closeWhenFlushed else { return }
        let rc = uv_read_start(handle, streamAllocate, streamReadFinished)
        if rc < 0 {
            fail(UVError(code: rc, operation: "uv_read_start"))
            return
        }
        reading = true
    }

    fileprivate func didRead(_ bytes: UnsafeRawBufferPointer) {
        guard state == .open else { return }
        let chunk = [UInt8](bytes)
        onRead?(chunk)
    }

    fileprivate func didReadEOF() {
        guard state == .open else { return }
        eofReceived = true
        if reading {
            uv_read_stop(handle)
            reading = false
        }
        if let onEOF {
            onEOF()
        } else {
            closeAfterFlush()
        }
    }

    fileprivate func readFailed(_ status: Int32) {
        guard state == .open else { return }
        fail(UVError(code: status, operation: "read"))
    }

    // MARK: Closing

    /// Closes now; buffered output is discarded. Idempotent; `onClose` then fires (from the close callback).
    public func close() {
        guard state == .open else { return }
        state = .closing
        if reading {
            uv_read_stop(handle)
            reading = false
        }
        output = []
        closeUVHandle(uvHandle(handle))
    }

    /// Stops reading and closes once every pending byte has been written. Later writes are ignored.
    public func closeAfterFlush() {
        guard state == .open, !closeWhenFlushed else { return }
        closeWhenFlushed = true
        if reading {
            uv_read_stop(handle)
            reading = false
        }
        if pendingWriteBytes == 0 {
            close()
        } else {
            queueForFlush()
        }
    }

    /// Ends the sending side (`shutdown(SHUT_WR)`, the peer reads end of file) once every pending byte has been
    /// written; reading continues. Later writes are ignored. Idempotent.
    public func shutdownWriteAfterFlush() {
        guard state == .open, !shutdownRequested else { return }
        shutdownRequested = true
        if pendingWriteBytes == 0 {
            startShutdown()
        } else {
            queueForFlush()
        }
    }

    private func startShutdown() {
        guard state == .open, !shutdownStarted else { return }
        shutdownStarted = true
        let request = allocateUV(uv_shutdown_t.self)
        request.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let rc = uv_shutdown(request, handle, streamShutdownFinished)
        if rc < 0 {
            free(request)
            fail(UVError(code: rc, operation: "shutdown"))
        }
    }

    fileprivate func shutdownFinished(status: Int32) {
        guard state == .open, status < 0, status != Int32(UV_ECANCELED.rawValue) else { return }
        fail(UVError(code: status, operation: "shutdown"))
    }

    /// Records the first error as the close reason and closes.
    private func fail(_ error: UVError) {
        if closeError == nil && !eofReceived { closeError = error }
        close()
    }

    func closeForShutdown() { close() }

    func handleDidClose(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        state = .closed
        output = []
        let callback = onClose
        onClose = nil
        onRead = nil
        onDrain = nil
        onEOF = nil
        callback?(closeError)
    }
}

// MARK: - libuv callbacks

/// Connect request context: the connection being connected and the caller's completion.
private final class PendingConnect {
    let connection: StreamConnection
    let path: String
    let completion: (Result<StreamConnection, UVError>) -> Void
    init(connection: StreamConnection, path: String, completion: @escaping (Result<StreamConnection, UVError>) -> Void) {
        self.connection = connection
        self.path = path
        self.completion = completion
    }
}

private func streamConnectFinished(_ request: UnsafeMutablePointer<uv_connect_t>?, _ status: Int32) {
    guard let request else { return }
    let pending = Unmanaged<PendingConnect>.fromOpaque(request.pointee.data!).takeRetainedValue()
    free(request)
    let result = pending.connection.finishConnect(status: status, path: pending.path)
    pending.completion(result)
}

private func streamAllocate(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int,
                            _ buffer: UnsafeMutablePointer<uv_buf_t>?) {
    let connection = handleOwner(handle, as: StreamConnection.self)
    let loop = connection.loop
    buffer!.pointee = uv_buf_init(loop.readBuffer.assumingMemoryBound(to: CChar.self), UInt32(loop.readBufferSize))
}

private func streamReadFinished(_ stream: UnsafeMutablePointer<uv_stream_t>?, _ nread: Int,
                                _ buffer: UnsafePointer<uv_buf_t>?) {
    let connection = handleOwner(stream, as: StreamConnection.self)
    if nread > 0 {
        connection.didRead(UnsafeRawBufferPointer(start: buffer!.pointee.base, count: nread))
    } else if nread == Int(UV_EOF.rawValue) {
        connection.didReadEOF()
    } else if nread < 0 {
        connection.readFailed(Int32(nread))
    }
}

private func streamShutdownFinished(_ request: UnsafeMutablePointer<uv_shutdown_t>?, _ status: Int32) {
    guard let request else { return }
    let connection = Unmanaged<StreamConnection>.fromOpaque(request.pointee.data!).takeUnretainedValue()
    free(request)
    connection.shutdownFinished(status: status)
}

private func streamWriteFinished(_ request: UnsafeMutablePointer<uv_write_t>?, _ status: Int32) {
    guard let request else { return }
    let connection = Unmanaged<StreamConnection>.fromOpaque(request.pointee.data!).takeUnretainedValue()
    free(request)  // the payload lives in the same block
    connection.writeFinished(status: status)
}
