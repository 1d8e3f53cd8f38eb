// SerialWorker.swift — `SerialWorker`, a dedicated thread running blocking jobs one at a time, in order.
//
// Used for work that must be serialized and may block for a long time (the store's single SQLite writer),
// which would otherwise tie up one of libuv's few pool threads. Results go back to the loop through
// `LoopPoster`.

import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// A mutex and condition variable in stable heap memory (pthread objects must not move).
final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    /// Waits for a signal; call with the lock held.
    func wait() { pthread_cond_wait(condition, mutex) }
    func broadcast() { pthread_cond_broadcast(condition) }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// The queue shared between a `SerialWorker` and its thread.
private final class SerialWorkerQueue: @unchecked Sendable {
    let lock = ConditionLock()
    // Guarded by `lock`.
    var jobs: [@Sendable () -> Void] = []
    var head = 0
    var stopping = false
    var running = false

    /// Thread body: runs jobs in FIFO order until stopping and empty.
    func runLoop() {
        while true {
            lock.lock()
            while head == jobs.count && !stopping { lock.wait() }
            if head == jobs.count {
                lock.unlock()
                return
            }
            let job = jobs[head]
            head += 1
            if head == jobs.count || head > 1024 {
                jobs.removeFirst(head)
                head = 0
            }
            running = true
            lock.unlock()
            job()
            lock.withLock { running = false }
        }
    }
}

/// A runner for blocking work that must be serialized: a dedicated thread with a FIFO queue.
/// `submit` is callable from any thread; jobs run one at a time in submission order.
public final class SerialWorker: Sendable {
    private let queue: SerialWorkerQueue
    private let thread: pthread_t
    private let joined: ConditionLockedFlag
    /// The thread name given at creation (truncated to 15 bytes for the OS).
    public let name: String

    /// Starts the worker thread, named `name` (visible in `top -H` / `/proc/<pid>/task/*/comm`).
    public init(name: String) {
        self.name = name
        let queue = SerialWorkerQueue()
        self.queue = queue
        self.joined = ConditionLockedFlag()
        let context = Unmanaged.passRetained(SerialWorkerStart(queue: queue, name: name)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let start = Unmanaged<SerialWorkerStart>.fromOpaque(arg!).takeRetainedValue()
            _ = cuv_set_thread_name(start.name)
            start.queue.runLoop()
            return nil
        }, context)
        precondition(rc == 0, "SerialWorker: pthread_create failed: \(SystemError(code: rc, operation: "pthread_create"))")
        thread = tid
    }

    deinit {
        shutdown()
    }

    /// Queues `job`. Jobs submitted after `shutdown()` are dropped.
    public func submit(_ job: @escaping @Sendable () -> Void) {
        queue.lock.withLock {
            guard !queue.stopping else { return }
            queue.jobs.append(job)
            queue.lock.broadcast()
        }
    }

    /// Number of jobs queued or running.
    public var pendingJobs: Int {
        queue.lock.withLock { queue.jobs.count - queue.head + (queue.running ? 1 : 0) }
    }

    /// True once `shutdown()` was called.
    public var isShutDown: Bool {
        queue.lock.withLock { queue.stopping }
    }

    /// Finishes the queued jobs, then joins the thread. Idempotent; a job may call it (the thread then
    /// finishes the queue and exits without being joined).
    public func shutdown() {
        queue.lock.withLock {
            queue.stopping = true
            queue.lock.broadcast()
        }
        guard joined.setOnce() else { return }
        if pthread_equal(pthread_self(), thread) != 0 {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }
}

/// Start parameters handed to the worker thread.
private final class SerialWorkerStart {
    let queue: SerialWorkerQueue
    let name: String
    init(queue: SerialWorkerQueue, name: String) {
        self.queue = queue
        self.name = name
    }
}

/// A flag that can be set exactly once across threads.
final class ConditionLockedFlag: @unchecked Sendable {
    private let lock = ConditionLock()
    private var isSet = false

    /// Sets the flag; returns true for the single caller that set it.
    func setOnce() -> Bool {
        lock.withLock {
            if isSet { return false }
            isSet = true
            return true
        }
    }
}
