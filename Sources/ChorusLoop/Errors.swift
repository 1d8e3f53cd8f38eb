// Errors.swift — the typed errors of ChorusLoop.
//
// `SystemError` carries an errno value from a raw system call (see `Syscall`); `UVError` carries a
// negative libuv status code. Both name the operation that failed so a log line is actionable on its own.

import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// Typed errno error, thrown by `Syscall` and by other direct system calls.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The errno value (positive).
    public let code: Int32
    /// What was being done, e.g. `"open(/run/chorus.sock)"`.
    public let operation: String

    /// Creates an error from an errno value and the operation that failed.
    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// Creates an error from an errno value and the operation that failed.
    public static func errno(code: Int32, operation: String) -> SystemError {
        SystemError(code: code, operation: operation)
    }

    /// Creates an error from the calling thread's current `errno`.
    public static func lastErrno(operation: String) -> SystemError {
        SystemError(code: cuv_errno(), operation: operation)
    }

    /// `"<operation>: <strerror> (errno N)"`.
    public var description: String {
        let message = strerror(code).map { String(cString: $0) } ?? "unknown error"
        return "\(operation): \(message) (errno \(code))"
    }
}

/// libuv error: a negative status code returned by a libuv function or passed to a callback.
public struct UVError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The libuv status code (negative, e.g. `UV_ECONNREFUSED`).
    public let code: Int32
    /// What was being done, e.g. `"uv_tcp_bind(127.0.0.1:8080)"`.
    public let operation: String

    /// Creates an error from a negative libuv status code and the operation that failed.
    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// The symbolic libuv name of the code, e.g. `"ECONNREFUSED"`.
    public var name: String { String(cString: uv_err_name(code)) }

    /// `"<operation>: <uv_strerror> (<uv_err_name>)"`.
    public var description: String {
        "\(operation): \(String(cString: uv_strerror(code))) (\(name))"
    }

    /// Throws a `UVError` when `status` is negative.
    @inlinable
    public static func check(_ status: Int32, _ operation: @autoclosure () -> String) throws {
        if status < 0 { throw UVError(code: status, operation: operation()) }
    }
}

/// Ignores SIGPIPE for the whole process: a peer that disconnects mid-write then yields EPIPE instead of
/// killing the daemon. Call once at startup, before any socket is written.
public func ignoreSIGPIPE() {
    _ = cuv_ignore_sigpipe()
}
