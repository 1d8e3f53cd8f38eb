// Signal.swift — `SignalWatcher`, delivery of a POSIX signal as a loop callback (`uv_signal_t`).

import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// Runs a callback on the loop thread whenever the process receives `signal`. Loop thread only.
public final class SignalWatcher: LoopHandleOwner {
    private let handle: UnsafeMutablePointer<uv_signal_t>
    private var state: HandleState = .open
    private var callback: ((Int32) -> Void)?
    /// The watched signal number.
    public let signal: Int32

    /// Starts watching `signal` (e.g. `SIGTERM`, `SIGHUP`). Throws `UVError` for an invalid signal.
    public init(loop: EventLoop, signal: Int32, _ callback: @escaping (Int32) -> Void) throws {
        precondition(loop.isOpen, "SignalWatcher created on a shut-down EventLoop")
        self.signal = signal
        self.callback = callback
        handle = allocateUV(uv_signal_t.self)
        uv_signal_init(loop.uvLoop, handle)  // cannot fail once the loop's signal pipe exists
        attachOwner(self, to: uvHandle(handle))
        let rc = uv_signal_start(handle, signalWatcherFired, signal)
        if rc < 0 {
            close()
            throw UVError(code: rc, operation: "uv_signal_start(\(signal))")
        }
    }

    /// Stops watching and releases the handle. Idempotent.
    public func close() {
        guard state == .open else { return }
        state = .closing
        callback = nil
        closeUVHandle(uvHandle(handle))
    }

    /// Whether the watcher keeps `EventLoop.run()` from returning (true by default). A daemon's
    /// SIGTERM watcher usually should not, so the loop can end when everything else is closed.
    public func setKeepsLoopAlive(_ keepsAlive: Bool) {
        guard state == .open else { return }
        if keepsAlive { uv_ref(uvHandle(handle)) } else { uv_unref(uvHandle(handle)) }
    }

    fileprivate func fire(_ signum: Int32) {
        guard state == .open, let callback else { return }
        callback(signum)
    }

    func closeForShutdown() { close() }

    func handleDidClose(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        state = .closed
        callback = nil
    }
}

private func signalWatcherFired(_ handle: UnsafeMutablePointer<uv_signal_t>?, _ signum: Int32) {
    handleOwner(handle, as: SignalWatcher.self).fire(signum)
}
