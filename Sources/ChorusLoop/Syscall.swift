// Syscall.swift — the one place where ChorusLoop and its users make raw file system calls.
//
// Every wrapper retries on EINTR (except close, see below) and throws a `SystemError` naming the call
// and the path, so callers never inspect errno themselves.

import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// Raw system calls that retry on EINTR and throw `SystemError`.
public enum Syscall {
    /// `open(2)`. Returns the new file descriptor.
    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t) throws -> Int32 {
        while true {
            let fd = cuv_open(path, flags, mode)
            if fd >= 0 { return fd }
            let code = cuv_errno()
            if code == EINTR { continue }
            throw SystemError(code: code, operation: "open(\(path))")
        }
    }

    /// `close(2)`. On Linux the descriptor is released even when close reports EINTR, so EINTR is
    /// treated as success and never retried (retrying could close a descriptor another thread just opened).
    public static func close(_ fd: Int32) throws {
        if Glibc.close(fd) == 0 { return }
        let code = cuv_errno()
        if code == EINTR { return }
        throw SystemError(code: code, operation: "close(\(fd))")
    }

    /// `read(2)` into `buffer`. Returns the number of bytes read; 0 means end of file.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            let code = cuv_errno()
            if code == EINTR { continue }
            throw SystemError(code: code, operation: "read(\(fd))")
        }
    }

    /// `write(2)` of `bytes`. Returns the number of bytes written, which may be fewer than requested.
    public static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.write(fd, bytes.baseAddress, bytes.count)
            if n >= 0 { return n }
            let code = cuv_errno()
            if code == EINTR { continue }
            throw SystemError(code: code, operation: "write(\(fd))")
        }
    }

    /// Writes all of `bytes`, looping over short writes.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            offset += try write(fd, UnsafeRawBufferPointer(rebasing: bytes[offset...]))
        }
    }

    /// `fsync(2)`.
    public static func fsync(_ fd: Int32) throws {
        while Glibc.fsync(fd) != 0 {
            let code = cuv_errno()
            if code == EINTR { continue }
            throw SystemError(code: code, operation: "fsync(\(fd))")
        }
    }

    /// `chmod(2)`.
    public static func chmod(_ path: String, _ mode: mode_t) throws {
        while Glibc.chmod(path, mode) != 0 {
            let code = cuv_errno()
            if code == EINTR { continue }
            throw SystemError(code: code, operation: "chmod(\(path))")
        }
    }

    /// `chown(2)`. Pass `uid_t.max` / `gid_t.max` (i.e. -1) to leave the owner or group unchanged.
    public static func chown(_ path: String, uid: uid_t, gid: gid_t) throws {
        while Glibc.chown(path, uid, gid) != 0 {
            let code = cuv_errno()
            if code == EINTR { continue }
            throw SystemError(code: code, operation: "chown(\(path))")
        }
    }

    /// `unlink(2)`. A path that does not exist is not an error.
    public static func unlink(_ path: String) throws {
        while Glibc.unlink(path) != 0 {
            let code = cuv_errno()
            if code == EINTR { continue }
            if code == ENOENT { return }
            throw SystemError(code: code, operation: "unlink(\(path))")
        }
    }
}
