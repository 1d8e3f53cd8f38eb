// StreamTests.swift — tests of StreamConnection and UnixServer: bulk exchange, write coalescing and
// backpressure accounting (pendingWriteBytes / onDrain), peer credentials, close semantics and the
// socket-file handling of UnixServer.

import CLibUV
import ChorusLoop
import Foundation
import XCTest

final class StreamTests: XCTestCase {
    func testUnixServerAndClientExchangeOneMegabyte() throws {
        let loop = try EventLoop()
        let path = temporarySocketPath("echo")
        let payload = patternBytes(1 << 20)
        var echoed: [UInt8] = []
        var serverReads = 0
        var clientClosed = false
        var serverClosedError: UVError?? = .none

        var server: UnixServer!
        server = try UnixServer(loop: loop, path: path, mode: 0o600) { connection in
            connection.onRead = { chunk in
                serverReads += 1
                connection.write(chunk)  // echo
            }
            connection.onClose = { error in serverClosedError = .some(error) }
            server.close()  // one client is enough
        }
        StreamConnection.connect(loop: loop, path: path) { result in
            guard case .success(let client) = result else { return XCTFail("connect failed: \(result)") }
            client.onRead = { chunk in
                echoed.append(contentsOf: chunk)
                if echoed.count == payload.count { client.close() }
            }
            client.onClose = { error in
                XCTAssertNil(error)
                clientClosed = true
            }
            // Many small writes in one iteration coalesce into one buffer.
            var offset = 0
            while offset < payload.count {
                let end = min(offset + 4096, payload.count)
                payload[offset..<end].withUnsafeBytes { client.write($0) }
                offset = end
            }
            XCTAssertEqual(client.pendingWriteBytes, payload.count, "nothing is written before the loop flushes")
        }
        runToCompletion(loop)
        XCTAssertTrue(clientClosed)
        XCTAssertEqual(echoed.count, payload.count)
        XCTAssertTrue(echoed == payload, "echoed bytes differ")
        XCTAssertGreaterThan(serverReads, 0)
        if case .some(let error) = serverClosedError {
            XCTAssertNil(error, "server side sees a clean end of file")
        } else {
            XCTFail("server connection never reported close")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }

    func testPendingWriteBytesAndDrainWithSlowReader() throws {
        let loop = try EventLoop()
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        // Small kernel buffers so the writer really has to wait for the reader.
        _ = cuv_set_socket_buffers(fds[0], 16 * 1024, 0)
        _ = cuv_set_socket_buffers(fds[1], 0, 16 * 1024)
        let readerFD = fds[1]
        let connection = try StreamConnection.adopt(loop: loop, fd: fds[0])
        XCTAssertEqual(connection.peer?.uid, getuid(), "socketpair peer is this process")
        XCTAssertEqual(connection.peer?.pid, getpid())

        let total = 4 << 20
        let payload = patternBytes(total, seed: 99)
        var drains = 0
        var pendingAtDrain = -1
        var observedPartial = false
        var received: [UInt8] = []
        var closeError: UVError?? = .none

        connection.onDrain = {
            drains += 1
            pendingAtDrain = connection.pendingWriteBytes
        }
        connection.onClose = { error in closeError = .some(error) }
        connection.write(payload)
        XCTAssertEqual(connection.pendingWriteBytes, total)
        let hook = loop.addBeforeBlockingHook {
            let pending = connection.pendingWriteBytes
            if pending > 0 && pending < total { observedPartial = true }
        }
        // The reader starts late and reads slowly, then closes its end.
        loop.offload({ () -> [UInt8] in
            usleep(50_000)
            var data: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 8192)
            while data.count < total {
                let n = (try? buffer.withUnsafeMutableBytes { try Syscall.read(readerFD, into: $0) }) ?? 0
                if n <= 0 { break }
                data.append(contentsOf: buffer[0..<n])
            }
            try? Syscall.close(readerFD)
            return data
        }, completion: { data in
            received = data
            loop.removeBeforeBlockingHook(hook)
        })
        runToCompletion(loop)
        XCTAssertEqual(received.count, total)
        XCTAssertTrue(received == payload)
        XCTAssertEqual(drains, 1, "one drain after the single burst")
        XCTAssertEqual(pendingAtDrain, 0)
        XCTAssertTrue(observedPartial, "the kernel could not take 4 MiB at once")
        XCTAssertEqual(connection.pendingWriteBytes, 0)
        XCTAssertTrue(connection.isClosed)
        if case .some(let error) = closeError {
            XCTAssertNil(error, "peer close after all data is a clean end of file")
        } else {
            XCTFail("onClose not called")
        }
    }

    func testPeerCredentialsOfPlainSocketClient() throws {
        let loop = try EventLoop()
        let path = temporarySocketPath("peer")
        var peer: PeerCredentials?
        var greeting: [UInt8] = []
        var server: UnixServer!
        server = try UnixServer(loop: loop, path: path) { connection in
            peer = connection.peer
            connection.onRead = { chunk in
                greeting.append(contentsOf: chunk)
                connection.write(Array("welcome\n".utf8))
                connection.closeAfterFlush()
            }
            server.close()
        }
        var mode: mode_t = 0
        var statBuffer = stat()
        if lstat(path, &statBuffer) == 0 { mode = statBuffer.st_mode & 0o777 }
        XCTAssertEqual(mode, 0o660, "default mode applied after bind")

        loop.offload({ () -> Result<[UInt8], ClientError> in
            let fd = cuv_unix_connect(path)
            guard fd >= 0 else { return .failure(ClientError(description: "connect errno \(-fd)")) }
            defer { try? Syscall.close(fd) }
            setReceiveTimeout(fd, seconds: 10)
            do {
                try sendAll(fd, Array("hello".utf8))
                return .success(try readToEnd(fd))
            } catch {
                return .failure(ClientError(description: "\(error)"))
            }
        }, completion: { result in
            switch result {
            case .success(let reply): XCTAssertEqual(String(decoding: reply, as: UTF8.self), "welcome\n")
            case .failure(let error): XCTFail("client failed: \(error)")
            }
        })
        runToCompletion(loop)
        XCTAssertEqual(String(decoding: greeting, as: UTF8.self), "hello")
        XCTAssertEqual(peer?.uid, getuid())
        XCTAssertEqual(peer?.gid, getgid())
        XCTAssertEqual(peer?.pid, getpid())
    }

    func testUnixServerReplacesStaleSocketButNotLiveOneOrRegularFile() throws {
        let loop = try EventLoop()
        let path = temporarySocketPath("stale")
        // A stale socket file: bound, then its listener closed without unlinking.
        let staleFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(staleFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        try Syscall.close(staleFD)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))

        let server = try UnixServer(loop: loop, path: path, mode: 0o600) { _ in }
        XCTAssertTrue(server.isListening)

        // A second server on the same live path must refuse.
        XCTAssertThrowsError(try UnixServer(loop: loop, path: path) { _ in }) { error in
            XCTAssertEqual((error as? SystemError)?.code, EADDRINUSE)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), "live socket untouched")

        // A regular file is never deleted.
        let filePath = temporarySocketPath("regular")
        XCTAssertTrue(FileManager.default.createFile(atPath: filePath, contents: Data("x".utf8)))
        defer { try? Syscall.unlink(filePath) }
        XCTAssertThrowsError(try UnixServer(loop: loop, path: filePath) { _ in }) { error in
            XCTAssertEqual((error as? SystemError)?.code, EEXIST)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: filePath))

        // Too long a path.
        XCTAssertThrowsError(try UnixServer(loop: loop, path: "/tmp/" + String(repeating: "x", count: 200)) { _ in }) { error in
            XCTAssertEqual((error as? SystemError)?.code, ENAMETOOLONG)
        }
        server.close()
        runToCompletion(loop)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }

    func testConnectToMissingSocketFails() throws {
        let loop = try EventLoop()
        var outcome: Result<StreamConnection, UVError>?
        StreamConnection.connect(loop: loop, path: temporarySocketPath("missing")) { outcome = $0 }
        runToCompletion(loop)
        guard case .failure(let error) = outcome else { return XCTFail("expected failure, got \(String(describing: outcome))") }
        XCTAssertEqual(error.code, Int32(UV_ENOENT.rawValue))
    }

    func testCloseIsIdempotentAndReportsOnceAndDropsLaterWrites() throws {
        let loop = try EventLoop()
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        defer { try? Syscall.close(fds[1]) }
        let connection = try StreamConnection.adopt(loop: loop, fd: fds[0])
        var closeCount = 0
        connection.onClose = { error in
            XCTAssertNil(error)
            closeCount += 1
        }
        connection.write(Array("never sent".utf8))
        connection.close()
        connection.close()
        XCTAssertTrue(connection.isClosed)
        XCTAssertEqual(connection.pendingWriteBytes, 0)
        connection.write(Array("ignored".utf8))
        runToCompletion(loop)
        XCTAssertEqual(closeCount, 1)
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = try buffer.withUnsafeMutableBytes { try Syscall.read(fds[1], into: $0) }
        XCTAssertEqual(n, 0, "close discards buffered output; the peer sees end of file only")
    }

    func testPeerEOFClosesAfterFlushAndReportsClean() throws {
        let loop = try EventLoop()
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        let peerFD = fds[1]
        let connection = try StreamConnection.adopt(loop: loop, fd: fds[0])
        var reads: [UInt8] = []
        var closedWith: UVError?? = .none
        connection.onRead = { chunk in
            reads.append(contentsOf: chunk)
            connection.write(Array("reply".utf8))
        }
        connection.onClose = { closedWith = .some($0) }
        loop.offload({ () -> [UInt8] in
            _ = try? sendAll(peerFD, Array("ping".utf8))
            shutdown(peerFD, Int32(SHUT_WR))
            setReceiveTimeout(peerFD, seconds: 10)
            let reply = (try? readToEnd(peerFD)) ?? []
            try? Syscall.close(peerFD)
            return reply
        }, completion: { reply in
            XCTAssertEqual(String(decoding: reply, as: UTF8.self), "reply")
        })
        runToCompletion(loop)
        XCTAssertEqual(String(decoding: reads, as: UTF8.self), "ping")
        if case .some(let error) = closedWith { XCTAssertNil(error) } else { XCTFail("onClose not called") }
    }

    func testPauseAndResumeReading() throws {
        let loop = try EventLoop()
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        defer { try? Syscall.close(fds[1]) }
        let connection = try StreamConnection.adopt(loop: loop, fd: fds[0])
        var reads: [String] = []
        connection.onRead = { reads.append(String(decoding: $0, as: UTF8.self)) }
        connection.pauseReading()
        XCTAssertFalse(connection.isReading)
        try sendAll(fds[1], Array("queued".utf8))
        let timer = LoopTimer(loop: loop)
        timer.start(timeoutMilliseconds: 30) {
            XCTAssertEqual(reads, [], "no reads while paused")
            connection.resumeReading()
            XCTAssertTrue(connection.isReading)
            timer.start(timeoutMilliseconds: 30) {
                connection.close()
                timer.close()
            }
        }
        runToCompletion(loop)
        XCTAssertEqual(reads.joined(), "queued")
    }
}
