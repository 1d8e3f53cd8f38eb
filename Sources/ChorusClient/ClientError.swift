import ChorusProtocol
#if canImport(Glibc)
import Glibc
#endif

/// Why talking to chorusd failed. ``description`` is the sentence to show a user.
public enum ClientError: Error, CustomStringConvertible, Equatable {
    /// Nothing listens on the socket: it does not exist, or it is left over from a daemon that stopped.
    case daemonNotRunning(path: String)
    /// The socket exists but this user may not connect to it.
    case permissionDenied(path: String)
    /// Any other failure of the socket, with the system's errno.
    case connectionFailed(path: String, errno: Int32)
    /// The daemon answered with an error, or sent something this client cannot read.
    case protocolError(ProtocolError)
    /// The daemon closed the connection; `reason` is from its goodbye frame when it sent one.
    case closed(reason: String?)
    /// The daemon did not answer in time.
    case timeout

    public var description: String {
        switch self {
        case .daemonNotRunning(let path):
            if ClientError.fileExists(path) {
                return "chorusd is not running (the socket \(path) exists but nothing listens on it). "
                    + "Start it with `make run` or `systemctl start chorusd`."
            }
            return "chorusd is not running (no socket at \(path)). Start it with `make run` or `systemctl start chorusd`."
        case .permissionDenied(let path):
            return "permission denied on \(path): your user needs to be in the socket's group "
                + "(see docs/configuration.md, [socket] and [[access]])."
        case .connectionFailed(let path, let code):
            return "cannot talk to chorusd on \(path): \(String(cString: strerror(code)))."
        case .protocolError(let e):
            var s = "chorusd: \(e.message) (\(e.code.rawValue)"
            if let field = e.field { s += ", field \(field)" }
            return s + ")"
        case .closed(let reason?):
            return "chorusd closed the connection: \(reason)."
        case .closed(nil):
            return "chorusd closed the connection."
        case .timeout:
            return "timed out waiting for chorusd to answer."
        }
    }

    private static func fileExists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }
}
