// Timer.swift — `LoopTimer`, a one-shot or repeating timer on the loop (`uv_timer_t`).

import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// A timer on the event loop. Loop thread only.
///
/// The handle stays open (and keeps this object alive) until `close()`; a stopped timer can be restarted.
/// `EventLoop.shutdown()` closes timers that are still open.
public final class LoopTimer: LoopHandleOwner {
    private let handle: UnsafeMutablePointer<uv_timer_t>
    private var state: HandleState = .open
    private var callback: (() -> Void)?

    /// Creates a stopped timer on `loop`.
    public init(loop: EventLoop) {
        precondition(loop.isOpen, "LoopTimer created on a shut-down EventLoop")
        handle = allocateUV(uv_timer_t.self)
        uv_timer_init(loop.uvLoop, handle)  // cannot fail: only registers the handle
        attachOwner(self, to: uvHandle(handle))
    }

    /// Starts (or restarts) the timer: `callback` runs after `timeoutMilliseconds`, then every
    /// `repeatMilliseconds` if that is non-zero. Replaces a previous callback. Ignored after `close()`.
    public func start(timeoutMilliseconds: UInt64, repeatMilliseconds: UInt64 = 0, _ callback: @escaping () -> Void) {
        guard state == .open else { return }
        self.callback = callback
        uv_timer_start(handle, loopTimerFired, timeoutMilliseconds, repeatMilliseconds)
    }

    /// Stops the timer; it can be started again.
    public func stop() {
        guard state == .open else { return }
        uv_timer_stop(handle)
    }

    /// True while the timer is armed.
    public var isActive: Bool {
        state == .open && uv_is_active(uvHandle(handle)) != 0
    }

    /// Whether an armed timer keeps `EventLoop.run()` from returning (true by default). Watchdogs and
    /// periodic housekeeping timers usually should not.
    public func setKeepsLoopAlive(_ keepsAlive: Bool) {
        guard state == .open else { return }
        if keepsAlive { uv_ref(uvHandle(handle)) } else { uv_unref(uvHandle(handle)) }
    }

    /// Closes the timer and releases the handle. Idempotent.
    public func close() {
        guard state == .open else { return }
        state = .closing
        callback = nil
        closeUVHandle(uvHandle(handle))
    }

    fileprivate func fire() {
        guard state == .open, let callback else { return }
        callback()
    }

    func closeForShutdown() { close() }

    func handleDidClose(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        state = .closed
        callback = nil
    }
}

private func loopTimerFired(_ handle: UnsafeMutablePointer<uv_timer_t>?) {
    handleOwner(handle, as: LoopTimer.self).fire()
}
