// Loop.swift — the event loop: a typed wrapper over one `uv_loop_t`.
//
// The loop is created and run on one thread and owns all I/O. Besides the libuv loop itself it keeps
// three internal handles: a `uv_async_t` for `LoopPoster` (closures posted from other threads), a
// `uv_idle_t` that drives `execute` (and keeps the poll from blocking while work is queued), and an
// unreferenced `uv_prepare_t` that runs the before-blocking hooks and then flushes the coalesced writes
// of every `StreamConnection` that wrote during the iteration.
//
// Handle lifetime convention used by every wrapper in this module: handles live in malloc'd memory,
// `handle->data` holds a retained reference to the Swift owner (a `LoopHandleOwner`), and the shared
// close callback releases the owner and frees the memory. `EventLoop.shutdown()` walks the loop and asks
// each owner to close its handle.

import CLibUV
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Handle ownership (internal)

/// A Swift object that owns one or more libuv handles. `handle->data` holds it retained while the handle is open.
protocol LoopHandleOwner: AnyObject {
    /// Called by `EventLoop.shutdown()` for a handle of this owner that is not closing yet; must close it.
    func closeForShutdown()
    /// Called from the close callback, right before the handle memory is freed.
    func handleDidClose(_ handle: UnsafeMutablePointer<uv_handle_t>)
}

/// Allocates zeroed memory for a libuv handle or request of type `T` (freed with `free`).
func allocateUV<T>(_ type: T.Type) -> UnsafeMutablePointer<T> {
    let size = MemoryLayout<T>.size
    guard let raw = calloc(1, size) else { fatalError("ChorusLoop: out of memory allocating \(T.self)") }
    return raw.bindMemory(to: T.self, capacity: 1)
}

/// Views a concrete handle (`uv_timer_t`, `uv_tcp_t`, ...) as its `uv_handle_t` header.
@inline(__always)
func uvHandle<T>(_ pointer: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_handle_t> {
    UnsafeMutablePointer<uv_handle_t>(OpaquePointer(pointer))
}

/// Views a concrete stream handle (`uv_tcp_t`, `uv_pipe_t`) as `uv_stream_t`.
@inline(__always)
func uvStream<T>(_ pointer: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_stream_t> {
    UnsafeMutablePointer<uv_stream_t>(OpaquePointer(pointer))
}

/// Stores `owner`, retained, in `handle->data`. Released by the close callback.
func attachOwner(_ owner: LoopHandleOwner, to handle: UnsafeMutablePointer<uv_handle_t>) {
    handle.pointee.data = Unmanaged<AnyObject>.passRetained(owner).toOpaque()
}

/// The owner stored in `handle->data`, unretained. Only for the concrete type that attached itself.
@inline(__always)
func handleOwner<T: AnyObject>(_ handle: UnsafeMutableRawPointer?, as type: T.Type) -> T {
    let h = handle!.assumingMemoryBound(to: uv_handle_t.self)
    return Unmanaged<T>.fromOpaque(h.pointee.data!).takeUnretainedValue()
}

/// Closes a handle with the shared close callback (release owner, free memory).
func closeUVHandle(_ handle: UnsafeMutablePointer<uv_handle_t>) {
    if uv_is_closing(handle) != 0 { return }
    uv_close(handle, loopHandleDidClose)
}

/// The shared close callback: notifies and releases the owner, then frees the handle memory.
private func loopHandleDidClose(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    guard let handle else { return }
    if let data = handle.pointee.data {
        handle.pointee.data = nil
        let owner = Unmanaged<AnyObject>.fromOpaque(data).takeRetainedValue()
        (owner as? LoopHandleOwner)?.handleDidClose(handle)
    }
    free(handle)
}

/// Lifecycle of a single handle owned by a wrapper.
enum HandleState {
    case open
    case closing
    case closed
}

// MARK: - Event loop

/// The event loop. Created and run on one thread; every method except the use of `poster` is loop-thread only.
///
/// Typical life: `init()`, create servers/timers, `run()` until `stop()`, then `shutdown()` which closes
/// every remaining handle and closes the libuv loop. An `EventLoop` that was never shut down is kept
/// alive by its own internal handles (it is never freed with handles still open).
public final class EventLoop: LoopHandleOwner {
    private enum LifeState { case open, shuttingDown, closed }

    /// The libuv loop. Valid until `shutdown()` completed.
    let uvLoop: UnsafeMutablePointer<uv_loop_t>
    /// Shared read buffer handed to libuv's alloc callbacks (reads are delivered synchronously, one at a time).
    let readBuffer: UnsafeMutableRawPointer
    /// Size of `readBuffer`.
    let readBufferSize = 64 * 1024

    private let asyncHandle: UnsafeMutablePointer<uv_async_t>
    private let idleHandle: UnsafeMutablePointer<uv_idle_t>
    private let prepareHandle: UnsafeMutablePointer<uv_prepare_t>

    private var loopThread: pthread_t
    private var lifeState: LifeState = .open
    private var isRunning = false
    private var uvLoopClosed = false

    private var executeQueue: [() -> Void] = []
    private var idleActive = false
    private var hooks: [(id: Int, body: () -> Void)] = []
    private var nextHookID = 1
    private var keepAliveCount = 0

    /// Streams that have buffered output to flush in the before-blocking pass.
    var dirtyStreams: [StreamConnection] = []
    /// Streams whose pending output reached zero during the flush pass; `onDrain` runs after the pass.
    var drainedStreams: [StreamConnection] = []

    /// Thread-safe handle used to post closures to the loop from any thread.
    public let poster: LoopPoster

    /// Creates a libuv loop bound to the calling thread.
    public init() throws {
        uvLoop = allocateUV(uv_loop_t.self)
        let rc = uv_loop_init(uvLoop)
        if rc < 0 {
            free(uvLoop)
            throw UVError(code: rc, operation: "uv_loop_init")
        }
        guard let buffer = malloc(64 * 1024) else { fatalError("ChorusLoop: out of memory") }
        readBuffer = buffer
        loopThread = pthread_self()
        asyncHandle = allocateUV(uv_async_t.self)
        idleHandle = allocateUV(uv_idle_t.self)
        prepareHandle = allocateUV(uv_prepare_t.self)
        poster = LoopPoster(handle: asyncHandle)

        // None of these can fail on a freshly initialised loop (they only register the handle).
        uv_async_init(uvLoop, asyncHandle, loopAsyncFired)
        uv_idle_init(uvLoop, idleHandle)
        uv_prepare_init(uvLoop, prepareHandle)
        attachOwner(self, to: uvHandle(asyncHandle))
        attachOwner(self, to: uvHandle(idleHandle))
        attachOwner(self, to: uvHandle(prepareHandle))
        uvLoop.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        // Neither the poster nor the hooks keep `run()` from returning when nothing else is left.
        uv_unref(uvHandle(asyncHandle))
        uv_unref(uvHandle(prepareHandle))
        uv_prepare_start(prepareHandle, loopPrepareFired)
    }

    deinit {
        // Only reachable once shutdown() closed the internal handles (they retain the loop).
        if uvLoopClosed {
            free(uvLoop)
        }
        free(readBuffer)
    }

    // MARK: Running

    /// Runs the loop (`uv_run(UV_RUN_DEFAULT)`) until `stop()` is called or no referenced handle or request is left.
    /// The calling thread becomes the loop thread. Not reentrant.
    public func run() {
        precondition(!isRunning, "EventLoop.run() called from inside the running loop")
        guard lifeState == .open else { return }
        loopThread = pthread_self()
        isRunning = true
        defer { isRunning = false }
        uv_run(uvLoop, UV_RUN_DEFAULT)
    }

    /// Runs a single loop iteration without blocking (`UV_RUN_NOWAIT`). Returns true if handles or requests are
    /// still active. Useful for tests and for draining during shutdown.
    @discardableResult
    public func runOnce() -> Bool {
        precondition(!isRunning, "EventLoop.runOnce() called from inside the running loop")
        guard lifeState != .closed else { return false }
        loopThread = pthread_self()
        isRunning = true
        defer { isRunning = false }
        return uv_run(uvLoop, UV_RUN_NOWAIT) != 0
    }

    /// Makes `run()` return at the end of the current iteration (`uv_stop`).
    public func stop() {
        guard lifeState != .closed else { return }
        uv_stop(uvLoop)
    }

    /// The loop's cached time in milliseconds (`uv_now`), updated at the start of each iteration.
    public var nowMilliseconds: UInt64 {
        uv_now(uvLoop)
    }

    /// Refreshes the cached loop time (`uv_update_time`).
    public func updateTime() {
        uv_update_time(uvLoop)
    }

    /// True when called on the thread that created (or last ran) the loop.
    public var isOnLoopThread: Bool {
        pthread_equal(pthread_self(), loopThread) != 0
    }

    /// Whether the loop is still accepting new handles (false once `shutdown()` began closing them for good).
    public var isOpen: Bool { lifeState != .closed }

    // MARK: Keep-alive for cross-thread work

    /// Keeps `run()` from returning for lack of work while another thread is expected to post back through
    /// `poster` (the poster alone does not keep the loop alive). Balance with `releaseKeepAlive()`.
    public func retainKeepAlive() {
        guard lifeState == .open else { return }
        keepAliveCount += 1
        if keepAliveCount == 1 { uv_ref(uvHandle(asyncHandle)) }
    }

    /// Balances one `retainKeepAlive()`.
    public func releaseKeepAlive() {
        guard keepAliveCount > 0 else { return }
        keepAliveCount -= 1
        if keepAliveCount == 0 && lifeState != .closed { uv_unref(uvHandle(asyncHandle)) }
    }

    // MARK: Deferred execution

    /// Runs `body` on the loop thread at the next iteration (before polling for I/O). Loop thread only.
    /// Closures run in the order they were queued; closures queued while the queue runs go to the next iteration.
    /// After `shutdown()` finished, closures are dropped.
    public func execute(_ body: @escaping () -> Void) {
        assert(isOnLoopThread, "EventLoop.execute called off the loop thread; use poster.post")
        guard lifeState != .closed else { return }
        executeQueue.append(body)
        requestImmediateIteration()
    }

    /// Makes the next poll non-blocking (the idle handle is active while there is queued work).
    func requestImmediateIteration() {
        guard !idleActive, lifeState != .closed else { return }
        idleActive = true
        uv_idle_start(idleHandle, loopIdleFired)
    }

    fileprivate func runExecuteQueue() {
        var batch: [() -> Void] = []
        swap(&batch, &executeQueue)
        for body in batch { body() }
        if executeQueue.isEmpty && dirtyStreams.isEmpty && drainedStreams.isEmpty && idleActive {
            idleActive = false
            uv_idle_stop(idleHandle)
        }
    }

    // MARK: Before-blocking hooks

    /// Registers a hook run once per loop iteration right before the loop blocks for I/O (`uv_prepare_t`).
    /// Hooks run in registration order, before coalesced socket writes are flushed.
    /// Returns an id for `removeBeforeBlockingHook`.
    @discardableResult
    public func addBeforeBlockingHook(_ hook: @escaping () -> Void) -> Int {
        let id = nextHookID
        nextHookID += 1
        hooks.append((id: id, body: hook))
        return id
    }

    /// Removes a hook registered with `addBeforeBlockingHook`. Unknown ids are ignored.
    public func removeBeforeBlockingHook(_ id: Int) {
        hooks.removeAll { $0.id == id }
    }

    fileprivate func runBeforeBlocking() {
        if !hooks.isEmpty {
            let snapshot = hooks
            for entry in snapshot where hooks.contains(where: { $0.id == entry.id }) {
                entry.body()
            }
        }
        flushStreams()
    }

    /// Flushes every stream that wrote during this iteration, then delivers drain notifications. Writes made by
    /// `onDrain` handlers are flushed in a further pass (bounded; beyond that, the next iteration does not block).
    func flushStreams() {
        var passes = 0
        while (!dirtyStreams.isEmpty || !drainedStreams.isEmpty) && passes < 16 {
            passes += 1
            var batch: [StreamConnection] = []
            swap(&batch, &dirtyStreams)
            for stream in batch { stream.flushPending() }
            var drained: [StreamConnection] = []
            swap(&drained, &drainedStreams)
            for stream in drained { stream.deliverDrain() }
        }
        if !dirtyStreams.isEmpty || !drainedStreams.isEmpty {
            requestImmediateIteration()
        }
    }

    // MARK: Offloading blocking work

    /// Runs `work` on libuv's thread pool (`uv_queue_work`) and then `completion` on the loop thread with its result.
    public func offload<T>(_ work: @escaping @Sendable () -> T, completion: @escaping (T) -> Void) {
        precondition(lifeState != .closed, "EventLoop.offload after shutdown")
        let job = OffloadJobBox(work: work, completion: completion)
        let request = allocateUV(uv_work_t.self)
        request.pointee.data = Unmanaged<OffloadJob>.passRetained(job).toOpaque()
        let rc = uv_queue_work(uvLoop, request, offloadRunWork, offloadAfterWork)
        precondition(rc == 0, "uv_queue_work failed: \(UVError(code: rc, operation: "uv_queue_work"))")
    }

    // MARK: Poster wakeup

    fileprivate func drainPoster() {
        poster.drain()
    }

    // MARK: Shutdown

    /// Closes every handle still open and runs the loop until they are closed, then closes the libuv loop.
    /// Call after `run()` returned, on the loop thread. Closures still queued in the poster are run first;
    /// posts arriving afterwards are dropped. Idempotent.
    public func shutdown() {
        precondition(!isRunning, "EventLoop.shutdown() must be called after run() returned")
        guard lifeState == .open else { return }
        lifeState = .shuttingDown
        loopThread = pthread_self()
        isRunning = true
        defer { isRunning = false }

        poster.drain()
        closeUserHandlesAndRun()
        // Stop accepting posts; run what slipped in, then close anything it opened.
        let leftovers = poster.close()
        if !leftovers.isEmpty {
            for body in leftovers { body() }
            closeUserHandlesAndRun()
        }

        lifeState = .closed
        executeQueue.removeAll()
        dirtyStreams.removeAll()
        drainedStreams.removeAll()
        hooks.removeAll()
        closeUVHandle(uvHandle(asyncHandle))
        closeUVHandle(uvHandle(idleHandle))
        closeUVHandle(uvHandle(prepareHandle))
        idleActive = false
        uv_run(uvLoop, UV_RUN_DEFAULT)

        var attempts = 0
        while true {
            let rc = uv_loop_close(uvLoop)
            if rc == 0 { uvLoopClosed = true; break }
            attempts += 1
            if attempts > 8 {
                let message = Array("ChorusLoop: \(UVError(code: rc, operation: "uv_loop_close"))\n".utf8)
                _ = message.withUnsafeBytes { try? Syscall.write(2, $0) }
                break
            }
            // Something opened a handle from a close callback: close everything that is left and retry.
            for handle in allHandles() where uv_is_closing(handle) == 0 {
                if let data = handle.pointee.data,
                   let owner = Unmanaged<AnyObject>.fromOpaque(data).takeUnretainedValue() as? LoopHandleOwner {
                    if owner === self { closeUVHandle(handle) } else { owner.closeForShutdown() }
                } else {
                    closeUVHandle(handle)
                }
            }
            uv_run(uvLoop, UV_RUN_DEFAULT)
        }
    }

    /// Asks the owner of every non-internal handle to close, then runs the loop until only internal handles
    /// remain (close callbacks, cancelled writes, queued work and `execute` closures all complete).
    private func closeUserHandlesAndRun() {
        for _ in 0..<8 {
            let open = allHandles().filter { !isInternal($0) && uv_is_closing($0) == 0 }
            for handle in open where uv_is_closing(handle) == 0 {
                if let data = handle.pointee.data,
                   let owner = Unmanaged<AnyObject>.fromOpaque(data).takeUnretainedValue() as? LoopHandleOwner {
                    owner.closeForShutdown()
                } else {
                    closeUVHandle(handle)
                }
            }
            uv_run(uvLoop, UV_RUN_DEFAULT)
            poster.drain()
            if allHandles().allSatisfy({ isInternal($0) }) && executeQueue.isEmpty { return }
        }
    }

    private func isInternal(_ handle: UnsafeMutablePointer<uv_handle_t>) -> Bool {
        handle == uvHandle(asyncHandle) || handle == uvHandle(idleHandle) || handle == uvHandle(prepareHandle)
    }

    /// Every handle registered with the loop (including closing ones), via `uv_walk`.
    private func allHandles() -> [UnsafeMutablePointer<uv_handle_t>] {
        let collector = HandleCollector()
        let context = Unmanaged.passUnretained(collector).toOpaque()
        uv_walk(uvLoop, { handle, arg in
            guard let handle, let arg else { return }
            Unmanaged<HandleCollector>.fromOpaque(arg).takeUnretainedValue().handles.append(handle)
        }, context)
        return withExtendedLifetime(collector) { collector.handles }
    }

    /// Number of handles currently registered with the loop, internal ones included. For diagnostics and tests.
    public var handleCount: Int { lifeState == .closed && uvLoopClosed ? 0 : allHandles().count }

    // MARK: LoopHandleOwner (internal handles)

    func closeForShutdown() {
        // Internal handles are closed by shutdown() itself, after every user handle.
    }

    func handleDidClose(_ handle: UnsafeMutablePointer<uv_handle_t>) {}
}

/// Collects handle pointers during `uv_walk`.
private final class HandleCollector {
    var handles: [UnsafeMutablePointer<uv_handle_t>] = []
}

// MARK: - Internal handle callbacks

private func loopAsyncFired(_ handle: UnsafeMutablePointer<uv_async_t>?) {
    handleOwner(handle, as: EventLoop.self).drainPoster()
}

private func loopIdleFired(_ handle: UnsafeMutablePointer<uv_idle_t>?) {
    handleOwner(handle, as: EventLoop.self).runExecuteQueue()
}

private func loopPrepareFired(_ handle: UnsafeMutablePointer<uv_prepare_t>?) {
    handleOwner(handle, as: EventLoop.self).runBeforeBlocking()
}

// MARK: - Offload

/// Type-erased offloaded job (the uv_work_t carries it retained).
class OffloadJob: @unchecked Sendable {
    func runWork() {}
    func complete() {}
}

/// An offloaded job with its typed result. `result` is written on a pool thread and read on the loop thread
/// after libuv's completion handoff (which orders the two).
private final class OffloadJobBox<T>: OffloadJob, @unchecked Sendable {
    private let work: @Sendable () -> T
    private let completion: (T) -> Void
    private var result: T?

    init(work: @escaping @Sendable () -> T, completion: @escaping (T) -> Void) {
        self.work = work
        self.completion = completion
    }

    override func runWork() {
        result = work()
    }

    override func complete() {
        if let result { completion(result) }
    }
}

private func offloadRunWork(_ request: UnsafeMutablePointer<uv_work_t>?) {
    guard let request, let data = request.pointee.data else { return }
    Unmanaged<OffloadJob>.fromOpaque(data).takeUnretainedValue().runWork()
}

private func offloadAfterWork(_ request: UnsafeMutablePointer<uv_work_t>?, _ status: Int32) {
    guard let request else { return }
    let data = request.pointee.data
    free(request)
    guard let data else { return }
    let job = Unmanaged<OffloadJob>.fromOpaque(data).takeRetainedValue()
    // status is UV_ECANCELED only for cancelled work, which this module never cancels.
    if status == 0 { job.complete() }
}

// MARK: - Poster

/// Thread-safe handle used to post closures to the loop from any thread (`uv_async_t` + locked queue).
/// Many posts may coalesce into one wakeup; all closures run, in the order they were posted.
/// After the loop has shut down, `post` returns silently and the closure is dropped.
public final class LoopPoster: Sendable {
    private let state: PosterState

    init(handle: UnsafeMutablePointer<uv_async_t>) {
        state = PosterState(handle: handle)
    }

    /// Queues `body` to run on the loop thread. Callable from any thread.
    public func post(_ body: @escaping @Sendable () -> Void) {
        state.lock.withLock {
            guard let handle = state.handle else { return }
            state.queue.append(body)
            // Only the transition from empty needs a wakeup: the drain takes everything queued until then.
            if state.queue.count == 1 { uv_async_send(handle) }
        }
    }

    /// True once the loop has shut down (posts are dropped).
    public var isClosed: Bool {
        state.lock.withLock { state.handle == nil }
    }

    /// Runs every queued closure (loop thread).
    func drain() {
        let batch: [@Sendable () -> Void] = state.lock.withLock {
            let taken = state.queue
            state.queue = []
            return taken
        }
        // Closures posted while the batch runs have sent their own wakeup and run on that one.
        for body in batch { body() }
    }

    /// Stops accepting posts and returns what is still queued (loop thread, during shutdown).
    func close() -> [@Sendable () -> Void] {
        state.lock.withLock {
            state.handle = nil
            let taken = state.queue
            state.queue = []
            return taken
        }
    }
}

/// The poster's queue, guarded by a pthread mutex (visible to ThreadSanitizer, unlike a futex-based lock).
/// The async handle is only used through `uv_async_send`, which is thread-safe, and only while the lock is held,
/// so shutdown (which clears it under the lock before closing the handle) can never race a wakeup.
private final class PosterState: @unchecked Sendable {
    let lock = ConditionLock()
    var queue: [@Sendable () -> Void] = []
    var handle: UnsafeMutablePointer<uv_async_t>?

    init(handle: UnsafeMutablePointer<uv_async_t>) {
        self.handle = handle
    }
}
