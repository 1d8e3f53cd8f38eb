// FDWatcher.swift — `FDWatcher`, readiness notifications for a file descriptor owned elsewhere (`uv_poll_t`).

import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// Readiness events of a watched file descriptor.
public struct FDEvents: OptionSet, Sendable, Hashable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Data can be read (`UV_READABLE`).
    public static let readable = FDEvents(rawValue: Int32(UV_READABLE.rawValue))
    /// Data can be written (`UV_WRITABLE`).
    public static let writable = FDEvents(rawValue: Int32(UV_WRITABLE.rawValue))
    /// The peer hung up (`UV_DISCONNECT`); only reported when requested.
    public static let disconnect = FDEvents(rawValue: Int32(UV_DISCONNECT.rawValue))
}

/// Watches a file descriptor someone else owns (`uv_poll_t`). Loop thread only.
///
/// The descriptor is not closed by the watcher; close the watcher before closing the descriptor.
/// Note that libuv switches the descriptor to non-blocking mode. Only one watcher per descriptor per loop.
public final class FDWatcher: LoopHandleOwner {
    private let handle: UnsafeMutablePointer<uv_poll_t>
    private var state: HandleState = .open
    private var callback: ((_ status: Int32, _ events: FDEvents) -> Void)?
    /// The watched descriptor.
    public let fd: Int32
    /// The events currently watched.
    public private(set) var events: FDEvents

    /// Starts watching `fd` for `events`. `callback` receives a libuv status (< 0 is an error, e.g. `UV_EBADF`)
    /// and the events that are ready.
    public init(loop: EventLoop, fd: Int32, events: FDEvents,
                _ callback: @escaping (_ status: Int32, _ events: FDEvents) -> Void) throws {
        precondition(loop.isOpen, "FDWatcher created on a shut-down EventLoop")
        self.fd = fd
        self.events = events
        self.callback = callback
        handle = allocateUV(uv_poll_t.self)
        let rc = uv_poll_init(loop.uvLoop, handle, fd)
        if rc < 0 {
            // uv_poll_init registers the handle only on success.
            free(handle)
            state = .closed
            throw UVError(code: rc, operation: "uv_poll_init(fd \(fd))")
        }
        attachOwner(self, to: uvHandle(handle))
        if !events.isEmpty {
            let started = uv_poll_start(handle, events.rawValue, fdWatcherFired)
            if started < 0 {
                close()
                throw UVError(code: started, operation: "uv_poll_start(fd \(fd))")
            }
        }
    }

    /// Changes the watched events; an empty set stops watching until the next update.
    public func update(events: FDEvents) throws {
        guard state == .open else { return }
        self.events = events
        if events.isEmpty {
            uv_poll_stop(handle)
            return
        }
        try UVError.check(uv_poll_start(handle, events.rawValue, fdWatcherFired), "uv_poll_start(fd \(fd))")
    }

    /// Stops watching and releases the handle (the descriptor stays open). Idempotent.
    public func close() {
        guard state == .open else { return }
        state = .closing
        callback = nil
        closeUVHandle(uvHandle(handle))
    }

    fileprivate func fire(status: Int32, events: Int32) {
        guard state == .open, let callback else { return }
        callback(status, FDEvents(rawValue: events))
    }

    func closeForShutdown() { close() }

    func handleDidClose(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        state = .closed
        callback = nil
    }
}

private func fdWatcherFired(_ handle: UnsafeMutablePointer<uv_poll_t>?, _ status: Int32, _ events: Int32) {
    handleOwner(handle, as: FDWatcher.self).fire(status: status, events: events)
}
