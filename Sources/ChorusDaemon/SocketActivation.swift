import CSystemd
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The listening sockets systemd passed to chorusd (socket activation, `sd_listen_fds(3)`).
///
/// `chorus.socket` names them with `FileDescriptorName=`: **`consumer`** is the consumer Unix socket
/// (a listening `AF_UNIX` stream socket) and **`http`** the webhook ingress (a listening `AF_INET`/`AF_INET6`
/// stream socket). Without `$LISTEN_FDNAMES` the descriptors are taken in that order. A descriptor with any
/// other name, or a second one with the same name, is refused: logged and closed.
struct ActivatedSockets: Equatable {
    /// The passed consumer socket, if any.
    var consumer: Int32?
    /// The passed HTTP ingress socket, if any.
    var http: Int32?
    /// Descriptors that were refused, with why (the caller logs and closes them).
    var refused: [(fd: Int32, reason: String)] = []

    /// No socket was passed.
    var isEmpty: Bool { consumer == nil && http == nil && refused.isEmpty }

    static func == (a: ActivatedSockets, b: ActivatedSockets) -> Bool {
        a.consumer == b.consumer && a.http == b.http && a.refused.map(\.fd) == b.refused.map(\.fd)
            && a.refused.map(\.reason) == b.refused.map(\.reason)
    }

    /// The names chorusd accepts.
    static let knownNames = ["consumer", "http"]

    /// Assigns passed descriptors to their roles. `names` is nil when `$LISTEN_FDNAMES` was not set: the
    /// descriptors are then positional (consumer, http; any further one is refused).
    static func assign(descriptors: [Int32], names: [String]?) -> ActivatedSockets {
        var out = ActivatedSockets()
        for (index, fd) in descriptors.enumerated() {
            let name: String
            if let names {
                name = index < names.count ? names[index] : "unknown"
            } else if index < knownNames.count {
                name = knownNames[index]
            } else {
                out.refused.append((fd, "socket activation passed \(descriptors.count) descriptors without names; chorusd uses at most two (consumer, http)"))
                continue
            }
            switch name {
            case "consumer" where out.consumer == nil: out.consumer = fd
            case "http" where out.http == nil: out.http = fd
            case "consumer", "http":
                out.refused.append((fd, "a second descriptor named \"\(name)\" was passed; only the first is used"))
            default:
                out.refused.append((fd, "unknown descriptor name \"\(name)\" (chorusd accepts FileDescriptorName=consumer and FileDescriptorName=http)"))
            }
        }
        return out
    }

    /// Takes the descriptors systemd passed to this process, if any: reads `$LISTEN_PID`, `$LISTEN_FDS` and
    /// `$LISTEN_FDNAMES`, removes them from the environment (plugins' child processes must not see them), and
    /// checks that each socket is of the kind its role needs. A refused descriptor is logged and closed.
    /// Throws when a descriptor named for a role is not a listening socket of the right kind: the socket unit
    /// and chorusd disagree, and binding the address itself instead would fight the socket unit for it.
    static func take(logger: Logger) throws(DaemonError) -> ActivatedSockets {
        let namesGiven = getenv("LISTEN_FDNAMES") != nil
        var cNames: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = csd_listen_fds_with_names(1, &cNames)
        defer { csd_free_names(cNames) }
        if count < 0 {
            throw DaemonError("socket activation: cannot read the passed descriptors: \(String(cString: strerror(-count)))")
        }
        guard count > 0 else { return ActivatedSockets() }
        var names: [String]? = nil
        if namesGiven, let cNames {
            names = (0..<Int(count)).map { i in cNames[i].map { String(cString: $0) } ?? "unknown" }
        }
        let start = csd_listen_fds_start()
        let descriptors = (0..<count).map { start + $0 }
        let sockets = assign(descriptors: descriptors, names: names)
        for (fd, reason) in sockets.refused {
            logger.error("socket activation: refusing descriptor \(fd): \(reason); closing it")
            close(fd)
        }
        if let fd = sockets.consumer {
            try check(csd_is_listening_unix_stream(fd), fd: fd, name: "consumer", kind: "a listening AF_UNIX stream socket (ListenStream=/path)", others: sockets)
        }
        if let fd = sockets.http {
            try check(csd_is_listening_inet_stream(fd), fd: fd, name: "http", kind: "a listening TCP socket (ListenStream=address:port)", others: sockets)
        }
        return sockets
    }

    private static func check(_ rc: Int32, fd: Int32, name: String, kind: String, others: ActivatedSockets) throws(DaemonError) {
        if rc > 0 { return }
        let why = rc < 0 ? ": \(String(cString: strerror(-rc)))" : ""
        for open in [others.consumer, others.http].compactMap({ $0 }) { close(open) }
        throw DaemonError("socket activation: the descriptor named \"\(name)\" (fd \(fd)) is not \(kind)\(why); fix chorus.socket")
    }
}
