// LoopTests.swift — tests of the event loop core: timers, execute, before-blocking hooks, the cross-thread
// poster, offloading, the serial worker, signals, fd watching, shutdown and the Syscall wrappers.

import CLibUV
import ChorusLoop
import Foundation
import XCTest

final class LoopTests: XCTestCase {
    func testTimersFireInDeadlineOrder() throws {
        let loop = try EventLoop()
        var fired: [Int] = []
        var timers: [LoopTimer] = []
        for (index, delay) in [(3, 30), (1, 10), (4, 40), (2, 20), (0, 0)] {
            let timer = LoopTimer(loop: loop)
            timer.start(timeoutMilliseconds: UInt64(delay)) {
                fired.append(index)
                timer.close()
            }
            timers.append(timer)
        }
        let start = loop.nowMilliseconds
        runToCompletion(loop)
        XCTAssertEqual(fired, [0, 1, 2, 3, 4])
        XCTAssertGreaterThanOrEqual(loop.nowMilliseconds - start, 40)
        XCTAssertTrue(timers.allSatisfy { !$0.isActive })
    }

    func testRepeatingTimerAndStop() throws {
        let loop = try EventLoop()
        let timer = LoopTimer(loop: loop)
        var ticks = 0
        timer.start(timeoutMilliseconds: 1, repeatMilliseconds: 2) {
            ticks += 1
            if ticks == 5 {
                timer.stop()
                XCTAssertFalse(timer.isActive)
                timer.close()
            }
        }
        runToCompletion(loop)
        XCTAssertEqual(ticks, 5)
    }

    func testExecuteRunsInOrderOnNextIteration() throws {
        let loop = try EventLoop()
        var log: [String] = []
        loop.execute {
            log.append("a")
            loop.execute { log.append("c") }
        }
        loop.execute { log.append("b") }
        XCTAssertEqual(log, [], "execute must not run synchronously")
        runToCompletion(loop)
        XCTAssertEqual(log, ["a", "b", "c"])
    }

    func testBeforeBlockingHooksRunInOrderAndCanBeRemoved() throws {
        let loop = try EventLoop()
        var log: [String] = []
        var first = 0
        first = loop.addBeforeBlockingHook { log.append("first") }
        loop.addBeforeBlockingHook {
            log.append("second")
            loop.removeBeforeBlockingHook(first)
        }
        let timer = LoopTimer(loop: loop)
        var iterations = 0
        timer.start(timeoutMilliseconds: 1, repeatMilliseconds: 1) {
            iterations += 1
            if iterations == 3 { timer.close() }
        }
        runToCompletion(loop)
        XCTAssertEqual(Array(log.prefix(2)), ["first", "second"])
        XCTAssertEqual(log.filter { $0 == "first" }.count, 1, "removed hook must not run again")
        XCTAssertGreaterThanOrEqual(log.filter { $0 == "second" }.count, 3, "a hook runs every iteration")
    }

    func testPosterFromFourThreadsDeliversEverythingInOrderPerThread() throws {
        let loop = try EventLoop()
        let threads = 4
        let postsPerThread = 1000
        var received: [[Int]] = Array(repeating: [], count: threads)
        var total = 0
        var ranOffLoop = false
        let poster = loop.poster
        let bound = LoopBound(loop)
        let sink = LoopBound({ (thread: Int, value: Int) in
            if !bound.value.isOnLoopThread { ranOffLoop = true }
            received[thread].append(value)
            total += 1
            if total == threads * postsPerThread { bound.value.releaseKeepAlive() }
        })
        loop.retainKeepAlive()
        for thread in 0..<threads {
            Thread.detachNewThread {
                for value in 0..<postsPerThread {
                    poster.post { sink.value(thread, value) }
                }
            }
        }
        runToCompletion(loop)
        XCTAssertFalse(ranOffLoop)
        XCTAssertEqual(total, threads * postsPerThread)
        for thread in 0..<threads {
            XCTAssertEqual(received[thread], Array(0..<postsPerThread), "thread \(thread) out of order")
        }
        // After shutdown, posting is a silent no-op.
        XCTAssertTrue(poster.isClosed)
        poster.post { XCTFail("must not run after shutdown") }
    }

    func testOffloadRunsWorkOffLoopAndCompletesOnLoop() throws {
        let loop = try EventLoop()
        var results: [Int: Int] = [:]
        var completionsOnLoop = 0
        let workThreadWasLoop = Locked(false)
        let loopThread = LoopBound(pthread_self())
        for n in 1...8 {
            loop.offload({ () -> Int in
                if pthread_equal(pthread_self(), loopThread.value) != 0 { workThreadWasLoop.value = true }
                usleep(2_000)
                return n * n
            }, completion: { value in
                if loop.isOnLoopThread { completionsOnLoop += 1 }
                results[n] = value
            })
        }
        runToCompletion(loop)
        XCTAssertFalse(workThreadWasLoop.value, "work must run on the thread pool")
        XCTAssertEqual(completionsOnLoop, 8)
        XCTAssertEqual(results, Dictionary(uniqueKeysWithValues: (1...8).map { ($0, $0 * $0) }))
    }

    func testSerialWorkerRunsJobsInOrderAndShutdownDrains() throws {
        let worker = SerialWorker(name: "chorus-test")
        let log = Locked<[Int]>([])
        let concurrent = Locked(0)
        let maxConcurrent = Locked(0)
        for i in 0..<500 {
            worker.submit {
                let now = concurrent.mutate { value -> Int in value += 1; return value }
                maxConcurrent.mutate { $0 = max($0, now) }
                if i % 100 == 0 { usleep(1_000) }
                log.mutate { $0.append(i) }
                concurrent.mutate { $0 -= 1 }
            }
        }
        worker.shutdown()
        XCTAssertEqual(log.value, Array(0..<500))
        XCTAssertEqual(maxConcurrent.value, 1)
        XCTAssertTrue(worker.isShutDown)
        XCTAssertEqual(worker.pendingJobs, 0)
        worker.submit { log.mutate { $0.append(-1) } }
        worker.shutdown()
        XCTAssertEqual(log.value.count, 500, "jobs after shutdown are dropped")
    }

    func testSerialWorkerPostsResultsBackToLoop() throws {
        let loop = try EventLoop()
        let worker = SerialWorker(name: "chorus-store")
        let poster = loop.poster
        var results: [Int] = []
        let sink = LoopBound({ (value: Int) in results.append(value) })
        let done = LoopBound({ loop.releaseKeepAlive() })
        loop.retainKeepAlive()
        for i in 0..<50 {
            worker.submit { poster.post { sink.value(i) } }
        }
        worker.submit { poster.post { done.value() } }
        runToCompletion(loop)
        worker.shutdown()
        XCTAssertEqual(results, Array(0..<50))
    }

    func testSignalWatcherDeliversSignal() throws {
        let loop = try EventLoop()
        var received: [Int32] = []
        var watcher: SignalWatcher?
        watcher = try SignalWatcher(loop: loop, signal: SIGUSR2) { signum in
            received.append(signum)
            watcher?.close()
        }
        loop.execute { kill(getpid(), SIGUSR2) }
        runToCompletion(loop)
        XCTAssertEqual(received, [SIGUSR2])
        let other = try EventLoop()
        XCTAssertThrowsError(try SignalWatcher(loop: other, signal: 9999) { _ in }) { error in
            XCTAssertEqual((error as? UVError)?.code, Int32(UV_EINVAL.rawValue))
        }
        other.shutdown()
        XCTAssertEqual(other.handleCount, 0)
    }

    func testFDWatcherReportsReadableAndWritable() throws {
        let loop = try EventLoop()
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer {
            try? Syscall.close(fds[0])
            try? Syscall.close(fds[1])
        }
        var events: [FDEvents] = []
        var readBack: [UInt8] = []
        let writerWatcher = try FDWatcher(loop: loop, fd: fds[1], events: .writable) { status, ready in
            XCTAssertEqual(status, 0)
            events.append(ready)
        }
        let readerWatcher = try FDWatcher(loop: loop, fd: fds[0], events: .readable) { status, ready in
            XCTAssertEqual(status, 0)
            events.append(ready)
            var buffer = [UInt8](repeating: 0, count: 16)
            let n = (try? buffer.withUnsafeMutableBytes { try Syscall.read(fds[0], into: $0) }) ?? 0
            readBack.append(contentsOf: buffer[0..<n])
        }
        var writerBox: FDWatcher? = writerWatcher
        // Writable fires first; then write, stop watching writability, and wait for the reader.
        let timer = LoopTimer(loop: loop)
        timer.start(timeoutMilliseconds: 5) {
            XCTAssertTrue(events.contains(.writable))
            try? writerBox?.update(events: [])
            writerBox?.close()
            writerBox = nil
            _ = [UInt8]([1, 2, 3]).withUnsafeBytes { try? Syscall.write(fds[1], $0) }
            timer.start(timeoutMilliseconds: 20) {
                readerWatcher.close()
                timer.close()
            }
        }
        runToCompletion(loop)
        XCTAssertEqual(readBack, [1, 2, 3])
        XCTAssertTrue(events.contains(.readable))
        let other = try EventLoop()
        XCTAssertThrowsError(try FDWatcher(loop: other, fd: -1, events: .readable) { _, _ in }) { error in
            XCTAssertTrue(error is UVError)
        }
        other.shutdown()
    }

    func testShutdownClosesHandlesLeftOpen() throws {
        let loop = try EventLoop()
        let timer = LoopTimer(loop: loop)
        timer.start(timeoutMilliseconds: 60_000) { XCTFail("must not fire") }
        let signal = try SignalWatcher(loop: loop, signal: SIGUSR1) { _ in }
        let path = temporarySocketPath("shutdown")
        var serverSide: StreamConnection?
        var clientSide: StreamConnection?
        var closes: [String] = []
        func stopWhenConnected() {
            if serverSide != nil && clientSide != nil { loop.stop() }
        }
        let server = try UnixServer(loop: loop, path: path) { connection in
            serverSide = connection
            connection.onClose = { error in
                XCTAssertNil(error)
                closes.append("server")
            }
            stopWhenConnected()
        }
        StreamConnection.connect(loop: loop, path: path) { result in
            clientSide = try? result.get()
            clientSide?.onClose = { _ in closes.append("client") }
            stopWhenConnected()
        }
        XCTAssertGreaterThanOrEqual(loop.handleCount, 7, "3 internal + timer + signal + listener + client pipe")
        loop.run()  // returns through stop(): the timer and signal watcher keep it alive
        XCTAssertNotNil(serverSide)
        XCTAssertNotNil(clientSide)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))

        loop.shutdown()
        XCTAssertEqual(Set(closes), ["server", "client"], "shutdown closes streams and reports it")
        XCTAssertFalse(timer.isActive)
        XCTAssertEqual(signal.signal, SIGUSR1)
        XCTAssertFalse(server.isListening)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "closing the server unlinks its socket")
        XCTAssertFalse(loop.isOpen)
        XCTAssertEqual(loop.handleCount, 0)
        loop.execute { XCTFail("execute after shutdown is dropped") }
        loop.shutdown()  // idempotent
    }

    func testRunReturnsWhenNothingIsLeftDespitePosterAndHooks() throws {
        let loop = try EventLoop()
        loop.addBeforeBlockingHook {}
        _ = loop.poster
        let start = Date()
        runToCompletion(loop, timeoutMilliseconds: 2_000)
        XCTAssertLessThan(Date().timeIntervalSince(start), 1.0)
    }

    func testSyscallWrappers() throws {
        let path = FileManager.default.temporaryDirectory.path + "/chorus-syscall-\(getpid())"
        try Syscall.unlink(path)  // absent: not an error
        let fd = try Syscall.open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o600)
        let payload = Array("hello syscall".utf8)
        try payload.withUnsafeBytes { XCTAssertEqual(try Syscall.write(fd, $0), payload.count) }
        try Syscall.fsync(fd)
        try Syscall.close(fd)
        try Syscall.chmod(path, 0o640)
        try Syscall.chown(path, uid: uid_t.max, gid: getgid())
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o640)
        let readFD = try Syscall.open(path, O_RDONLY, 0)
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = try buffer.withUnsafeMutableBytes { try Syscall.read(readFD, into: $0) }
        XCTAssertEqual(Array(buffer[0..<n]), payload)
        try Syscall.close(readFD)
        try Syscall.unlink(path)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))

        XCTAssertThrowsError(try Syscall.open("/nonexistent-dir/x", O_RDONLY, 0)) { error in
            let systemError = error as? SystemError
            XCTAssertEqual(systemError?.code, ENOENT)
            XCTAssertEqual(systemError?.operation, "open(/nonexistent-dir/x)")
            XCTAssertTrue(systemError?.description.contains("No such file or directory") ?? false)
        }
        XCTAssertThrowsError(try Syscall.close(-1)) { error in
            XCTAssertEqual((error as? SystemError)?.code, EBADF)
        }
    }

    func testErrorDescriptions() {
        let uv = UVError(code: Int32(UV_ECONNREFUSED.rawValue), operation: "connect(x)")
        XCTAssertEqual(uv.name, "ECONNREFUSED")
        XCTAssertEqual(uv.description, "connect(x): connection refused (ECONNREFUSED)")
        XCTAssertEqual(SystemError.errno(code: EACCES, operation: "open(y)").description,
                       "open(y): Permission denied (errno \(EACCES))")
        XCTAssertThrowsError(try UVError.check(-22, "thing")) { XCTAssertEqual(($0 as? UVError)?.code, -22) }
        XCTAssertNoThrow(try UVError.check(0, "thing"))
    }
}
