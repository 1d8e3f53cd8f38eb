import ChorusConnectorSDK
import ChorusJSON
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Inbound media files a Graph connector downloaded, kept under the state directory, and the
/// media route (`GET /webhooks/<instance>/media/<key>`) that serves them.
///
/// Files are named by the percent-encoded key and read and written off the loop thread (writes go
/// through a temporary file and a rename). A request for a file not stored yet is parked as a
/// waiter; the connector downloads the media and answers it with `takeWaiter(_:)`.
public final class GraphMediaStore {
    private let host: ConnectorHost
    /// The directory the files live in (created on the first write).
    public let directory: String
    private var waiters: [UInt64: Responder] = [:]
    private var nextWaiter: UInt64 = 0

    /// Creates a store over `directory`.
    public init(host: ConnectorHost, directory: String) {
        self.host = host
        self.directory = directory
    }

    /// The file of media `key`.
    public func path(for key: String) -> String { directory + "/" + percentEncodePathSegment(key) }

    /// Answers a media route request: the stored file (`application/octet-stream`) when there is one,
    /// else `miss(key, waiter)` runs on the loop thread, which must end with the waiter answered
    /// (see `takeWaiter(_:)`). An empty key is answered 404.
    public func serve(_ req: IncomingRequest, _ res: Responder, miss: @escaping (_ key: String, _ waiter: UInt64) -> Void) {
        let key = percentDecodePathSegment(req.path.split(separator: "/").last.map(String.init) ?? "")
        guard !key.isEmpty else { res.respond(status: 404); return }
        nextWaiter += 1
        let token = nextWaiter
        waiters[token] = res
        let file = self.path(for: key)
        let host = self.host
        let owner = WeakStore(self)
        let onMiss = LoopThreadBox(miss)
        DispatchQueue.global().async {
            let bytes = readGraphFile(file)
            host.post {
                guard let self = owner.value else { return }
                if let bytes {
                    self.takeWaiter(token)?.respond(status: 200, headers: [("Content-Type", "application/octet-stream")], body: bytes)
                } else {
                    onMiss.value(key, token)
                }
            }
        }
    }

    /// Removes and returns the request parked as `waiter`, nil when there is none (or `waiter` is nil).
    public func takeWaiter(_ waiter: UInt64?) -> Responder? {
        guard let waiter else { return nil }
        return waiters.removeValue(forKey: waiter)
    }

    /// Writes media `key` off the loop thread.
    public func store(_ key: String, bytes: [UInt8]) {
        let dir = directory, file = self.path(for: key)
        DispatchQueue.global().async { writeGraphFile(dir: dir, path: file, bytes: bytes) }
    }
}

/// A weak reference handed through another thread and dereferenced only back on the loop thread.
private final class WeakStore: @unchecked Sendable {
    weak var value: GraphMediaStore?
    init(_ value: GraphMediaStore) { self.value = value }
}

/// Decodes `%XX` escapes of a path segment (malformed escapes are kept as they are).
public func percentDecodePathSegment(_ s: String) -> String {
    var out = [UInt8]()
    let b = Array(s.utf8)
    var i = 0
    while i < b.count {
        if b[i] == UInt8(ascii: "%"), i + 2 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) {
            out.append(v); i += 3; continue
        }
        out.append(b[i]); i += 1
    }
    return String(decoding: out, as: UTF8.self)
}

// MARK: Files (called off the loop thread)

/// The whole content of `path`, nil when it cannot be read.
func readGraphFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 { return nil }
        if n == 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return out
}

/// Writes `bytes` to `path` through `path.tmp` and a rename, creating `dir` (mode 0700) first.
func writeGraphFile(dir: String, path: String, bytes: [UInt8]) {
    var partial = ""
    for comp in dir.split(separator: "/") {
        partial += "/" + comp
        mkdir(partial, 0o700)
    }
    let tmp = path + ".tmp"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { return }
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, bytes.count - off) }
        if n <= 0 { break }
        off += n
    }
    fsync(fd)
    close(fd)
    if off == bytes.count { rename(tmp, path) } else { unlink(tmp) }
}
