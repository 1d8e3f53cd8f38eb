// UnixServer.swift — `UnixServer`, a listening Unix-domain socket (`uv_pipe_t`) handing out `StreamConnection`s.
//
// At bind it removes a stale socket file left by a crashed process, but refuses to take over a socket
// another process is still listening on, and never deletes a file that is not a socket. After bind (and
// before listen) it applies the file mode and group, so no client can connect with the default permissions.
// On close it unlinks the socket file only if it is still the one this server created.
//
// A socket that is already bound and listening (passed by systemd's socket activation) can be adopted
// instead: nothing is bound, chmod'ed or unlinked — the socket and its file belong to whoever created them.

import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// Listening Unix-domain socket. Loop thread only.
public final class UnixServer: LoopHandleOwner {
    private let loop: EventLoop
    private let handle: UnsafeMutablePointer<uv_pipe_t>
    private var state: HandleState = .open
    private var onConnection: ((StreamConnection) -> Void)?
    private var identity: (device: UInt64, inode: UInt64)?

    /// The socket path.
    public let path: String
    /// Called when accepting a connection fails (e.g. `UV_EMFILE`); the server keeps listening.
    public var onAcceptError: ((UVError) -> Void)?
    /// Number of connections accepted so far.
    public private(set) var acceptedConnections = 0

    /// Binds `path`, sets its mode (and group if given), and listens. Each accepted connection is passed
    /// to `onConnection` with reading started and `peer` set from `SO_PEERCRED`.
    ///
    /// Throws `SystemError` when the path is too long, is not a socket, is in use by a live listener, or
    /// cannot be chmod'ed/chown'ed; `UVError` when bind or listen fails.
    public init(loop: EventLoop, path: String, mode: mode_t = 0o660, group: gid_t? = nil, backlog: Int32 = 128,
                onConnection: @escaping (StreamConnection) -> Void) throws {
        precondition(loop.isOpen, "UnixServer created on a shut-down EventLoop")
        self.loop = loop
        self.path = path
        self.onConnection = onConnection
        handle = allocateUV(uv_pipe_t.self)
        uv_pipe_init(loop.uvLoop, handle, 0)
        attachOwner(self, to: uvHandle(handle))

        do {
            guard path.utf8.count < cuv_unix_path_capacity() else {
                throw SystemError(code: ENAMETOOLONG, operation: "bind(\(path))")
            }
            try UnixServer.removeStaleSocket(path)
            try UVError.check(uv_pipe_bind(handle, path), "bind(\(path))")
            identity = UnixServer.identity(of: path)
            do {
                try Syscall.chmod(path, mode)
                if let group { try Syscall.chown(path, uid: uid_t.max, gid: group) }
                try UVError.check(uv_listen(uvStream(handle), backlog, unixServerAccept), "listen(\(path))")
            } catch {
                removeSocketFileIfOurs()
                throw error
            }
        } catch {
            state = .closing
            self.onConnection = nil
            closeUVHandle(uvHandle(handle))
            throw error
        }
    }

    /// Adopts `descriptor`, a Unix-domain stream socket that is already bound and listening (for example one
    /// passed by systemd's socket activation), and accepts connections on it like a server created with a path.
    /// The socket file's mode and group are left as they are, and `close()` never unlinks it.
    ///
    /// The server owns `descriptor` from this call on, also when it throws (it is then closed). Throws
    /// `UVError` when libuv cannot take the descriptor or listen on it.
    public init(loop: EventLoop, adoptingListeningDescriptor descriptor: Int32, backlog: Int32 = 128,
                onConnection: @escaping (StreamConnection) -> Void) throws {
        precondition(loop.isOpen, "UnixServer created on a shut-down EventLoop")
        self.loop = loop
        self.onConnection = onConnection
        let pipe = allocateUV(uv_pipe_t.self)
        uv_pipe_init(loop.uvLoop, pipe, 0)
        handle = pipe
        let opened = uv_pipe_open(pipe, descriptor)
        if opened < 0 { try? Syscall.close(descriptor) }
        path = opened < 0 ? "fd \(descriptor)" : UnixServer.boundPath(pipe) ?? "fd \(descriptor)"
        attachOwner(self, to: uvHandle(handle))
        do {
            try UVError.check(opened, "adopt listening socket fd \(descriptor)")
            try UVError.check(uv_listen(uvStream(handle), backlog, unixServerAccept), "listen(\(path))")
        } catch {
            state = .closing
            self.onConnection = nil
            closeUVHandle(uvHandle(handle))
            throw error
        }
    }

    /// The path a pipe handle is bound to (`getsockname`), or nil (unnamed or abstract sockets give "").
    private static func boundPath(_ handle: UnsafeMutablePointer<uv_pipe_t>) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        var size = buffer.count
        guard uv_pipe_getsockname(handle, &buffer, &size) == 0, size > 0, size < buffer.count else { return nil }
        return String(decoding: buffer[..<size].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Stops accepting and unlinks the socket file (if it is still ours). Existing connections stay open. Idempotent.
    public func close() {
        guard state == .open else { return }
        state = .closing
        onConnection = nil
        closeUVHandle(uvHandle(handle))
        removeSocketFileIfOurs()
    }

    /// True until `close()`.
    public var isListening: Bool { state == .open }

    fileprivate func accept(status: Int32) {
        guard state == .open else { return }
        if status < 0 {
            onAcceptError?(UVError(code: status, operation: "accept(\(path))"))
            return
        }
        let client = allocateUV(uv_pipe_t.self)
        uv_pipe_init(loop.uvLoop, client, 0)
        let rc = uv_accept(uvStream(handle), uvStream(client))
        if rc < 0 {
            closeUVHandle(uvHandle(client))
            onAcceptError?(UVError(code: rc, operation: "accept(\(path))"))
            return
        }
        var fd: uv_os_fd_t = -1
        let peer = uv_fileno(uvHandle(client), &fd) == 0 ? PeerCredentials.of(socket: fd) : nil
        let connection = StreamConnection(loop: loop, handle: uvStream(client), peer: peer)
        acceptedConnections += 1
        onConnection?(connection)
    }

    // MARK: Socket file management

    private static func identity(of path: String) -> (device: UInt64, inode: UInt64)? {
        var device: UInt64 = 0
        var inode: UInt64 = 0
        var isSocket: Int32 = 0
        guard cuv_path_identity(path, &device, &inode, &isSocket) == 0 else { return nil }
        return (device, inode)
    }

    /// Removes `path` if it is a socket nobody listens on. Throws if it is another kind of file or is live.
    static func removeStaleSocket(_ path: String) throws {
        var device: UInt64 = 0
        var inode: UInt64 = 0
        var isSocket: Int32 = 0
        let rc = cuv_path_identity(path, &device, &inode, &isSocket)
        if rc == -ENOENT { return }
        if rc < 0 { throw SystemError(code: -rc, operation: "lstat(\(path))") }
        guard isSocket != 0 else {
            throw SystemError(code: EEXIST, operation: "bind(\(path)): exists and is not a socket")
        }
        let fd = cuv_unix_connect(path)
        if fd >= 0 {
            try? Syscall.close(fd)
            throw SystemError(code: EADDRINUSE, operation: "bind(\(path)): another process is listening")
        }
        switch -fd {
        case ECONNREFUSED, ENOENT:
            try Syscall.unlink(path)
        default:
            throw SystemError(code: -fd, operation: "connect(\(path)) while checking for a stale socket")
        }
    }

    private func removeSocketFileIfOurs() {
        guard let ours = identity else { return }
        identity = nil
        guard let current = UnixServer.identity(of: path), current == ours else { return }
        try? Syscall.unlink(path)
    }

    func closeForShutdown() { close() }

    func handleDidClose(_ handle: UnsafeMutablePointer<uv_handle_t>) {
        state = .closed
        onConnection = nil
        onAcceptError = nil
    }
}

private func unixServerAccept(_ server: UnsafeMutablePointer<uv_stream_t>?, _ status: Int32) {
    handleOwner(server, as: UnixServer.self).accept(status: status)
}
